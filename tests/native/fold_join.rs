//! Engines only, no sync layer: random writes of every kind (registers,
//! counters, sets, deletes of each, a deleted key reused for another
//! kind) at random peers, events delivered partially and out of order,
//! folds (honest: every engine's clock; and greedy: one's own clock, as a
//! fold past a lagging peer), and whole-state snapshots pushed from any
//! engine to any other at any time (a peer ahead in some origins and
//! behind in others). Then everything is exchanged (events where they
//! are logged, else a snapshot) until all clocks agree. Every engine must
//! then hold the state of a reference engine that got every event, in
//! order, and no snapshot. `CPC_SEED=n` replays; `CPC_FOLD_JOIN_SEEDS=n`.

use crate::common::{self, Rng};
use cpc_sync::protocol::snapshot::StateSnapshot;
use cpc_sync::protocol::{
    EngineConfig, JsonValue, P2PEvent, PeerId, ReconciliationEngine, Trust, VectorClock,
};

const NOW: u64 = 1_700_000_000_000;

/// Engine `i` to read and engine `j` to change (`i != j`).
fn pair<T>(engines: &mut [T], i: usize, j: usize) -> (&T, &mut T) {
    if i < j {
        let (l, r) = engines.split_at_mut(j);
        (&l[i], &mut r[0])
    } else {
        let (l, r) = engines.split_at_mut(i);
        (&r[0], &mut l[j])
    }
}

fn json(s: &str) -> JsonValue {
    JsonValue::parse(s).expect("json")
}

fn local_op(e: &mut ReconciliationEngine, rng: &mut Rng, now: u64) -> Option<P2PEvent> {
    let k = rng.below(3);
    let key = |p: &str| format!("{p}{k}");
    let member = json(&format!("\"m{}\"", rng.below(3)));
    let value = json(&rng.below(100).to_string());
    match rng.below(10) {
        0..=2 => e.set(&key("r/"), value, now).ok(),
        3 => e.increment(&key("c/"), rng.below(5) as i64 - 1, now).ok(),
        4 | 5 => e.add(&key("s/"), member, now).ok(),
        6 => e.remove(&key("s/"), member, now).ok().flatten(),
        7 => {
            let p = ["r/", "c/", "s/", "x/"][rng.below(4)];
            e.delete(&key(p), now).ok().flatten()
        }
        // One key of any kind (each refused while it holds another).
        _ => match rng.below(3) {
            0 => e.set(&key("x/"), value, now).ok(),
            1 => e.increment(&key("x/"), 1, now).ok(),
            _ => e.add(&key("x/"), member, now).ok(),
        },
    }
}

fn push_snapshot(from: &ReconciliationEngine, to: &mut ReconciliationEngine, now: u64) -> bool {
    let bytes = from.encode_snapshot();
    let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
    match to.load_snapshot(snapshot, Trust::from_peer(now)) {
        Ok(()) => true,
        Err(e) => panic!("{} refused {}'s snapshot: {e}", to.peer(), from.peer()),
    }
}

/// Sends `to` what `from` has and it lacks: events, or a snapshot past the
/// horizon.
fn sync_pair(from: &ReconciliationEngine, to: &mut ReconciliationEngine, now: u64) {
    if from.needs_snapshot(to.clock()) {
        push_snapshot(from, to, now);
    } else {
        for e in from.events_missing_from(to.clock()) {
            let _ = to.receive(e, now);
        }
    }
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let n = 3 + rng.below(3);
    let mut engines: Vec<ReconciliationEngine> = (0..n)
        .map(|i| ReconciliationEngine::new(PeerId(100 + i as u64), EngineConfig::default()))
        .collect();
    let mut all: Vec<P2PEvent> = Vec::new();
    let mut now = NOW;
    let steps = 200 + rng.below(400);
    for _ in 0..steps {
        now += 1 + rng.below(5) as u64;
        let i = rng.below(n);
        match rng.below(20) {
            0..=8 => {
                if let Some(e) = local_op(&mut engines[i], &mut rng, now) {
                    all.push(e);
                }
            }
            9..=14 => {
                // Some of the events made so far, in random order.
                let j = rng.below(n);
                if j != i {
                    let mut missing = engines[j].events_missing_from(engines[i].clock());
                    if engines[j].needs_snapshot(engines[i].clock()) {
                        missing.clear();
                    }
                    rng.shuffle(&mut missing);
                    let take = rng.below(missing.len() + 1);
                    for e in missing.into_iter().take(take) {
                        let _ = engines[i].receive(e, now);
                    }
                }
            }
            15 | 16 => {
                let stable = if rng.chance(0.5) {
                    VectorClock::meet(engines.iter().map(|e| e.clock()))
                } else {
                    engines[i].clock().clone()
                };
                engines[i].compact(&stable);
            }
            17 if rng.chance(0.3) => {
                // Closed after a fold, opened from the snapshot it stored.
                let bytes = engines[i].encode_snapshot();
                let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
                let peer = engines[i].peer();
                engines[i] =
                    ReconciliationEngine::from_snapshot(peer, EngineConfig::default(), snapshot)
                        .expect("own snapshot");
            }
            _ => {
                let j = rng.below(n);
                if j != i {
                    let (a, b) = pair(&mut engines, i, j);
                    push_snapshot(a, b, now);
                }
            }
        }
    }
    // Everything exchanged until all clocks agree.
    for _round in 0..20 {
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let (a, b) = pair(&mut engines, i, j);
                sync_pair(a, b, now);
            }
        }
        if engines.iter().all(|e| e.clock() == engines[0].clock()) {
            break;
        }
    }
    let mut reference = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    for e in all {
        reference.receive(e, now).expect("in order");
    }
    for e in &engines {
        assert_eq!(
            e.clock(),
            reference.clock(),
            "seed {seed}: clocks of {}",
            e.peer()
        );
    }
    let want = reference.state_json();
    for e in &mut engines {
        let got = e.state_json();
        assert_eq!(
            got,
            want,
            "seed {seed}: {} differs from the reference",
            e.peer()
        );
    }
    let d = reference.digest();
    for e in &mut engines {
        assert_eq!(e.digest(), d, "seed {seed}: digest of {}", e.peer());
    }
}

#[test]
fn folds_and_snapshots_anywhere_end_in_the_reference_state() {
    common::for_seeds("fold join", "CPC_FOLD_JOIN_SEEDS", 300, run_seed);
}
