//! A peer offline for long, writing offline, while the others write and
//! fold many times; it is restarted from its own storage while offline,
//! then comes back. Every acknowledged write (the offline peer's too) must
//! be in the healed state, and every peer must end alike.
//! `CPC_SEED=n` replays one seed; `CPC_OFFLINE_SEEDS=n` sets how many.

use crate::common;
use crate::sim::{Faults, World};

const MAX_ROUNDS: u64 = 60;

/// The world heals within [`MAX_ROUNDS`] gossip rounds and holds every
/// acknowledged write.
fn heal_and_check(world: &mut World, seed: u64) {
    if world.heal(MAX_ROUNDS).is_none() {
        panic!(
            "seed {seed}: not converged within {MAX_ROUNDS} gossip rounds\n{}",
            world.diagnose()
        );
    }
    world.check();
}
fn quiet() -> Faults {
    Faults {
        drop: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        disconnect: 0.0,
        partition: 0.0,
        crash: 0.0,
    }
}

pub fn run_seed(seed: u64, compact_after: usize, offline_ms: u64, crashes: bool) {
    let mut world = World::tuned(seed, |sync| {
        sync.compact_after = compact_after;
        sync.keep_unacked = compact_after / 2;
    });
    world.faults = quiet();
    let n = world.peers.len();
    // Everyone online for a while.
    for _ in 0..100 {
        world.step(true, true);
    }
    // Peer 0 (and, half the seeds, peer 1 too, on its own) goes offline.
    let mut off = vec![0];
    if seed % 2 == 1 && n > 3 {
        off.push(1);
    }
    for &i in &off {
        world.offline.insert(i);
        for j in 0..n {
            if j != i {
                world.cut(i, j);
            }
        }
    }
    let steps = offline_ms / 10;
    for s in 0..steps {
        world.step(true, true);
        for &i in &off {
            if world.peers[i].node.is_some() && world.rng.chance(0.3) {
                world.local_op(i);
            }
            if crashes && world.peers[i].node.is_some() && world.rng.chance(0.003) {
                world.crash(i);
            }
        }
        let _ = s;
    }
    // Restart from own storage before coming back.
    for &i in &off {
        if crashes && world.peers[i].node.is_some() {
            world.crash(i);
        }
    }
    world.offline.clear();
    if world.heal(MAX_ROUNDS).is_none() {
        panic!(
            "seed {seed}: not converged within {MAX_ROUNDS} gossip rounds\n{}",
            world.diagnose()
        );
    }
    if std::env::var("CPC_OFFLINE_SHOW").is_ok() {
        println!("{}", world.diagnose());
    }
    world.check();
}

#[test]
fn offline_writer_across_many_folds() {
    common::for_seeds("offline fold", "CPC_OFFLINE_SEEDS", 30, |seed| {
        run_seed(seed, 20, 6_000, true)
    });
}

#[test]
fn offline_writer_across_many_folds_no_crash() {
    common::for_seeds("offline fold nc", "CPC_OFFLINE_SEEDS", 30, |seed| {
        run_seed(seed, 20, 6_000, false)
    });
}

/// As above under the simulator's faults (drops, duplicates, corruption,
/// disconnects, partitions, crashes of any peer) the whole time.
pub fn run_faulty_seed(seed: u64, compact_after: usize, offline_ms: u64) {
    let mut world = World::tuned(seed, |sync| {
        sync.compact_after = compact_after;
        sync.keep_unacked = compact_after / 2;
    });
    let n = world.peers.len();
    world.run_faulty(1_000);
    let off = world.rng.below(n);
    world.offline.insert(off);
    for j in 0..n {
        if j != off {
            world.cut(off, j);
        }
    }
    for _ in 0..offline_ms / 10 {
        world.step(true, true);
        if world.peers[off].node.is_some() && world.rng.chance(0.3) {
            world.local_op(off);
        }
    }
    world.offline.clear();
    world.run_faulty(1_000);
    heal_and_check(&mut world, seed);
}

#[test]
fn offline_writer_across_many_folds_under_faults() {
    common::for_seeds("offline fold faulty", "CPC_OFFLINE_SEEDS", 30, |seed| {
        run_faulty_seed(seed, [8, 20][(seed % 2) as usize], 8_000)
    });
}

/// Folds for weight, as the room peer's (`fold_lagging` with a small
/// lag: a peer lacking that many goes without and gets a snapshot), at
/// random peers and times, with a long-offline writer that is reopened
/// from its storage (closing folds) and random faults.
pub fn run_lagging_seed(seed: u64) {
    let mut world = World::tuned(seed, |sync| {
        sync.compact_after = 30;
        sync.keep_unacked = 15;
    });
    let n = world.peers.len();
    let fold_some = |world: &mut World| {
        if world.rng.chance(0.05) {
            let i = world.rng.below(world.peers.len());
            let lag = 1 + world.rng.below(10);
            world.with_node(i, |node| node.fold_lagging(lag));
        }
    };
    for _ in 0..100 {
        world.step(true, true);
        fold_some(&mut world);
    }
    let off = world.rng.below(n);
    world.offline.insert(off);
    for j in 0..n {
        if j != off {
            world.cut(off, j);
        }
    }
    for _ in 0..600 {
        world.step(true, true);
        fold_some(&mut world);
        if world.peers[off].node.is_some() && world.rng.chance(0.3) {
            world.local_op(off);
        }
        if world.peers[off].node.is_some() && world.rng.chance(0.005) {
            // Closed (a fold) and, later, opened again from storage.
            world.with_node(off, |node| node.fold());
            for _ in 0..10 {
                world.step(true, false);
            }
            if world.peers[off].node.is_some() {
                world.crash(off);
            }
        }
    }
    world.offline.clear();
    for _ in 0..100 {
        world.step(true, true);
        fold_some(&mut world);
    }
    heal_and_check(&mut world, seed);
}

#[test]
fn offline_writer_with_folds_for_weight() {
    common::for_seeds("offline lagging", "CPC_OFFLINE_SEEDS", 30, run_lagging_seed);
}
