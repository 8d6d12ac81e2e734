//! Engines that took one history by different paths (in any order, with
//! folds, restarts, a snapshot midway, a snapshot's load whole or in
//! slices) end alike, and what a forged copy costs one (a review's).

use crate::common::register_write;
use cpc_sync::protocol::digest;
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::seal::Seal;
use cpc_sync::protocol::{
    EngineConfig, EventId, Operation, P2PEvent, PeerId, ReconciliationEngine, StateSnapshot, Trust,
    VectorClock,
};
use std::time::{Duration, Instant};

const NOW: u64 = 1 << 40;

/// `p`'s register write `s` of "k", observing its write before.
fn write(p: PeerId, s: u64, value: &str) -> P2PEvent {
    let mut e = register_write(EventId::new(p, s), "k", value, NOW);
    if s > 1 {
        if let Operation::Register(RegisterOp::Write { observed, .. }) = &mut e.op {
            *observed = VectorClock::from_iter([(p, s - 1)]);
        }
    }
    e
}

/// An engine (peer 1) of an unsigned room that applied `n` writes of
/// peer 2, folded them, and holds one event of peer 2 (its `n + 2`).
fn folded_engine(n: u64, hold: bool) -> ReconciliationEngine {
    let p = PeerId(2);
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    for s in 1..=n {
        a.receive(write(p, s, "1"), NOW).expect("applied");
    }
    let clock = a.clock().clone();
    assert!(a.compact(&clock) > 0);
    if hold {
        a.receive(write(p, n + 2, "2"), NOW).expect("held");
        assert_eq!(a.holding().len(), 1);
    }
    a
}

/// A Merkle leaf's copy, under `a`'s clock, of `k` made-up events of peer 2
/// (seqs 2..=k+1, none live), each with a made-up seal naming event 2 as
/// its run's first. Nothing checks an unsigned room's seals.
fn forged_leaf(a: &ReconciliationEngine, k: u64) -> StateSnapshot {
    let p = PeerId(2);
    let events: Vec<P2PEvent> = (2..=k + 1)
        .map(|s| {
            let mut e = register_write(EventId::new(p, s), "k", "0", NOW);
            e.seal = Some(Box::new(Seal::new(2, [7; 32], [[0; 32]; 2])));
            e
        })
        .collect();
    let live = vec![false; events.len()];
    let copy = StateSnapshot {
        version_vector: a.clock().clone(),
        events,
        live,
    };
    // As it comes off the wire.
    StateSnapshot::decode(&copy.encode()).expect("decodes")
}

fn time_join(n: u64, k: u64, hold: bool) -> (Duration, usize) {
    let mut a = folded_engine(n, hold);
    let copy = forged_leaf(&a, k);
    let bytes = copy.encode().len();
    let leaf = digest::leaf_of("k");
    let started = Instant::now();
    let _ = a.join_leaf(
        leaf,
        copy,
        Trust {
            signed: false,
            now_ms: Some(NOW),
        },
    );
    (started.elapsed(), bytes)
}

/// A leaf copy in an unsigned room, whose events carry made-up seals, cost
/// the receiver a walk of every sequence number from each seal's `first`
/// to its event (`overlaps_kept`'s walk over the holding queue) when it
/// held any event of that origin: quadratic in the copy's events, about a
/// minute of a thread for a leaf near the 16 MiB cap. Only events past
/// what is applied are ever held: the walk starts there.
#[test]
fn forged_seals_in_an_unsigned_leaf_cost_no_quadratic_walk() {
    // Not a speed figure: the walk's order. Quadratic, holding one event
    // made the join of 20,000 forged events ~100 times as long (1 s).
    let (without, bytes) = time_join(40_000, 20_000, false);
    let (with, _) = time_join(40_000, 20_000, true);
    println!(
        "20,000 forged events ({bytes} bytes): join_leaf {without:?} holding nothing of the \
         origin, {with:?} holding one event of it"
    );
    assert!(
        with < without * 20 + Duration::from_millis(100),
        "holding one event of the origin made the join {with:?} (else {without:?})"
    );
}

mod round_trips {
    use crate::common::{self, engine, Rng};
    use crate::properties::{history_on, steps_up_to, Family, Step};
    use cpc_sync::protocol::{P2PEvent, ReconciliationEngine, StateSnapshot, Trust, VectorClock};
    use proptest::prelude::*;

    fn history(steps: &[Step]) -> Vec<P2PEvent> {
        let mut peers: Vec<ReconciliationEngine> = (1..=3).map(engine).collect();
        history_on(&mut peers, Family::Mixed, steps)
    }

    const NOW: u64 = u64::MAX / 2;

    /// Our own storage, read back.
    fn restored(e: &mut ReconciliationEngine, id: u64) -> ReconciliationEngine {
        let bytes = e.encode_snapshot();
        let snapshot = StateSnapshot::decode_shared(&bytes).expect("decodes");
        let mut fresh = engine(id);
        fresh
            .load_snapshot(snapshot, Trust::OWN)
            .expect("our own snapshot verifies");
        fresh
    }

    proptest! {
        #![proptest_config(common::fuzz_config("alike round trips", 512))]

        /// Events applied in any order with folds and restarts from our own
        /// snapshot between them end where the events applied alone end;
        /// and a peer that took a snapshot midway (fresh or joined) and the
        /// rest as events ends there too.
        #[test]
        fn folds_restarts_and_midway_snapshots_end_alike(
            steps in steps_up_to(200),
            seed in any::<u64>(),
        ) {
            let events = history(&steps);
            let mut rng = Rng::new(seed);
            let mut order = events.clone();
            rng.shuffle(&mut order);
            let mut reference = engine(50);
            for e in &events {
                reference.receive(e.clone(), NOW).expect("taken");
            }
            let mut a = engine(51);
            let mut c = engine(52);
            let mut c_loaded = false;
            let mut d = engine(53);
            for (i, e) in order.iter().enumerate() {
                a.receive(e.clone(), NOW).expect("taken");
                if rng.chance(0.5) {
                    d.receive(e.clone(), NOW).expect("taken");
                }
                if rng.chance(0.15) {
                    // A partial stable clock: what some peer has.
                    let stable: VectorClock = a
                        .clock()
                        .iter()
                        .map(|(p, v)| (p, rng.below(v as usize + 1) as u64))
                        .collect();
                    a.compact(&stable);
                }
                if rng.chance(0.1) {
                    a = restored(&mut a, 51);
                }
                if !c_loaded && rng.chance(0.1) {
                    let s = StateSnapshot::decode(&a.encode_snapshot()).expect("decodes");
                    c.load_snapshot(s, Trust::from_peer(NOW)).expect("a's snapshot loads");
                    c_loaded = true;
                    // The rest of the events, from here, in order; and
                    // the ones before again (duplicates).
                    let _ = i;
                }
                if rng.chance(0.05) {
                    let s = StateSnapshot::decode(&a.encode_snapshot()).expect("decodes");
                    d.load_snapshot(s, Trust::from_peer(NOW)).expect("a's snapshot joins");
                }
            }
            for e in &order {
                // What a restart dropped from the holding queue comes again.
                a.receive(e.clone(), NOW).expect("taken");
                c.receive(e.clone(), NOW).expect("taken");
                d.receive(e.clone(), NOW).expect("taken");
            }
            let stable = a.clock().clone();
            a.compact(&stable);
            let mut a2 = restored(&mut a, 51);
            for (name, x) in [("a", &mut a), ("restored a", &mut a2), ("c", &mut c), ("d", &mut d)] {
                prop_assert_eq!(x.clock(), reference.clock(), "{}", name);
                prop_assert_eq!(x.state_json(), reference.state_json(), "{}", name);
                prop_assert_eq!(x.digest(), reference.digest(), "{}", name);
            }
        }
    }
}

mod signed_round_trips {
    use crate::common::{self, Rng};
    use crate::properties::{history_on, steps_up_to, Family, Step};
    use cpc_sync::protocol::seal;
    use cpc_sync::protocol::{
        EngineConfig, Identity, P2PEvent, ReconciliationEngine, StateSnapshot, Trust, VectorClock,
    };
    use proptest::prelude::*;

    fn identities() -> Vec<Identity> {
        (1..=3).map(Identity::from_seed).collect()
    }

    fn engine_of(identity: &Identity) -> ReconciliationEngine {
        ReconciliationEngine::new(identity.peer(), EngineConfig::default())
    }

    fn observer(n: u64) -> ReconciliationEngine {
        ReconciliationEngine::new(
            cpc_sync::protocol::PeerId(1000 + n),
            EngineConfig::default(),
        )
    }

    /// Every peer's events, in creation order.
    fn history(ids: &[Identity], steps: &[Step]) -> Vec<P2PEvent> {
        let mut peers: Vec<ReconciliationEngine> = ids.iter().map(engine_of).collect();
        history_on(&mut peers, Family::Mixed, steps)
    }

    /// Each peer's events cut into runs of 1 to 4 and sealed.
    fn runs(ids: &[Identity], events: &[P2PEvent], rng: &mut Rng) -> Vec<Vec<P2PEvent>> {
        let mut out = Vec::new();
        for id in ids {
            let mine: Vec<P2PEvent> = events
                .iter()
                .filter(|e| e.id.peer == id.peer())
                .cloned()
                .collect();
            let mut at = 0;
            while at < mine.len() {
                let len = (1 + rng.below(4)).min(mine.len() - at);
                let mut run = mine[at..at + len].to_vec();
                seal::seal(id, &mut run);
                out.push(run);
                at += len;
            }
        }
        out
    }

    const NOW: u64 = u64::MAX / 2;
    const SIGNED: Trust = Trust {
        signed: true,
        now_ms: Some(NOW),
    };

    fn restored(e: &ReconciliationEngine, n: u64) -> ReconciliationEngine {
        let bytes = e.encode_snapshot();
        let snapshot = StateSnapshot::decode_shared(&bytes).expect("decodes");
        let mut fresh = observer(n);
        fresh
            .load_snapshot(snapshot, Trust::OWN)
            .expect("our own snapshot verifies");
        fresh
    }

    fn take(e: &mut ReconciliationEngine, batch: Vec<P2PEvent>) -> Result<(), TestCaseError> {
        let taken = e.receive_runs(batch, NOW);
        prop_assert!(taken.refused.is_empty(), "refused: {:?}", taken.refused);
        Ok(())
    }

    proptest! {
        #![proptest_config(common::fuzz_config("alike signed round trips", 512))]

        #[test]
        fn signed_runs_in_any_order_with_folds_restarts_and_snapshots_end_alike(
            steps in steps_up_to(200),
            seed in any::<u64>(),
        ) {
            let ids = identities();
            let events = history(&ids, &steps);
            let mut rng = Rng::new(seed);
            let mut runs = runs(&ids, &events, &mut rng);
            let mut reference = observer(0);
            for e in &events {
                reference.receive(e.clone(), NOW).expect("taken");
            }
            rng.shuffle(&mut runs);
            let (mut a, mut c, mut d) = (observer(1), observer(2), observer(3));
            let mut c_loaded = false;
            let mut at = 0;
            while at < runs.len() {
                let n = (1 + rng.below(3)).min(runs.len() - at);
                let batch: Vec<P2PEvent> = runs[at..at + n].iter().flatten().cloned().collect();
                at += n;
                take(&mut a, batch.clone())?;
                if rng.chance(0.5) {
                    take(&mut d, batch.clone())?;
                }
                if rng.chance(0.15) {
                    let stable: VectorClock = a
                        .clock()
                        .iter()
                        .map(|(p, v)| (p, rng.below(v as usize + 1) as u64))
                        .collect();
                    a.compact(&stable);
                }
                if rng.chance(0.1) {
                    a = restored(&a, 1);
                }
                if !c_loaded && rng.chance(0.1) {
                    let s = StateSnapshot::decode(&a.encode_snapshot()).expect("decodes");
                    seal::verify_runs(&s.events).expect("a's snapshot's seals verify");
                    c.load_snapshot(s, SIGNED).expect("a's snapshot loads");
                    c_loaded = true;
                }
                if rng.chance(0.05) {
                    let s = StateSnapshot::decode(&a.encode_snapshot()).expect("decodes");
                    seal::verify_runs(&s.events).expect("a's snapshot's seals verify");
                    d.load_snapshot(s, SIGNED).expect("a's snapshot joins");
                }
            }
            for run in &runs {
                take(&mut a, run.clone())?;
                take(&mut c, run.clone())?;
                take(&mut d, run.clone())?;
            }
            let stable = a.clock().clone();
            a.compact(&stable);
            let mut a2 = restored(&a, 1);
            for (name, x) in [("a", &mut a), ("restored a", &mut a2), ("c", &mut c), ("d", &mut d)] {
                prop_assert_eq!(x.clock(), reference.clock(), "{}", name);
                prop_assert!(x.holding().is_empty(), "{} holds {}", name, x.holding().len());
                prop_assert_eq!(x.state_json(), reference.state_json(), "{}", name);
                prop_assert_eq!(x.digest(), reference.digest(), "{}", name);
            }
        }
    }
}

/// A fresh engine holding one version of an event loads a snapshot with
/// another: `load_snapshot` notes it as an equivocation (and keeps it out
/// of the evidence it notes, `note_held_versions`); the sliced load a page
/// uses (`begin_load`, `load_step`, `finish_load`) skips that step.
#[test]
fn a_sliced_load_and_a_whole_load_of_one_snapshot_end_alike() {
    use cpc_sync::protocol::seal;
    use cpc_sync::protocol::Identity;
    let p = Identity::from_seed(7);
    let sealed = |seq: u64, value: &str| {
        let mut run = vec![register_write(EventId::new(p.peer(), seq), "a", value, NOW)];
        seal::seal(&p, &mut run);
        run
    };
    let signed = Trust {
        signed: true,
        now_ms: Some(NOW),
    };
    let mut honest = ReconciliationEngine::new(PeerId(10), EngineConfig::default());
    assert!(honest.receive_runs(sealed(1, "1"), NOW).refused.is_empty());
    assert!(honest.receive_runs(sealed(2, "2"), NOW).refused.is_empty());
    let bytes = honest.encode_snapshot();
    let fresh = || {
        let mut e = ReconciliationEngine::new(PeerId(11), EngineConfig::default());
        // The signer's other version of its event 2, held for its event 1.
        assert!(e.receive_runs(sealed(2, "666"), NOW).refused.is_empty());
        assert_eq!(e.holding().len(), 1);
        e
    };
    let mut whole = fresh();
    whole
        .load_snapshot(StateSnapshot::decode(&bytes).unwrap(), signed)
        .expect("loads");
    let mut sliced = fresh();
    let mut load = sliced
        .begin_load(StateSnapshot::decode(&bytes).unwrap(), signed)
        .expect("begins");
    while !sliced.load_step(&mut load, 1).expect("a step") {}
    sliced.finish_load(load).expect("loads");
    assert_eq!(whole.state_json(), sliced.state_json());
    assert_eq!(whole.clock(), sliced.clock());
    assert_eq!(
        whole.stats().equivocations,
        sliced.stats().equivocations,
        "equivocations noted: whole load {}, sliced load {}",
        whole.stats().equivocations,
        sliced.stats().equivocations
    );
}
