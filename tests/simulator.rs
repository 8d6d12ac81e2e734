//! Convergence under faults: message drops, duplicates, reordering across
//! senders, disconnects that lose queued frames, partitions, crash-restarts
//! from storage, corrupted and truncated frames. After the faults stop and
//! the network heals, every peer must agree within a bounded number of
//! gossip rounds and no acknowledged write may be lost.
//!
//! `CPC_SEED=n` replays one seed; `CPC_SIM_SEEDS=n` sets how many run
//! (default 60; `npm test` runs 500 in release, the soak 10,000), and
//! `CPC_ADVERSARY_SEEDS=n` how many worlds with a hostile peer (default 60;
//! `npm test` runs 150).

mod common;
mod sim;

use sim::World;

/// Gossip intervals allowed from the heal to full convergence.
const MAX_ROUNDS: u64 = 40;

fn run_seed(seed: u64) {
    let mut world = World::new(seed);
    world.run_faulty(4_000);
    let rounds = world.heal(MAX_ROUNDS);
    if rounds.is_none() {
        panic!(
            "seed {seed}: not converged within {MAX_ROUNDS} gossip rounds\n{}",
            world.diagnose()
        );
    }
    world.check();
}

#[test]
fn peers_converge_after_faults() {
    common::for_seeds("simulator", "CPC_SIM_SEEDS", 60, run_seed);
}

/// One more peer, hostile (see `sim/adversary.rs`), linked to all others
/// in a signed room, under the same faults: the honest peers still
/// converge, lose no acknowledged write, take nothing hostile in, and hold
/// at most their per-origin share of its dependency bombs.
#[test]
fn honest_peers_converge_beside_a_hostile_one() {
    common::for_seeds("adversary", "CPC_ADVERSARY_SEEDS", 60, |seed| {
        let mut world = World::with_adversary(seed);
        world.run_faulty(4_000);
        if world.heal(MAX_ROUNDS).is_none() {
            panic!(
                "seed {seed}: honest peers not converged within {MAX_ROUNDS} gossip rounds\n{}",
                world.diagnose()
            );
        }
        world.check();
    });
}
