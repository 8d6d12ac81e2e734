//! Properties of the merge, for every kind: the same events in any order,
//! with duplicates, give the same state and digest; joining states through
//! snapshots is associative; a snapshot round trip is the identity. And the
//! version vector behaves as the sorted map it once was.
//!
//! The proptest RNG seed is printed; `CPC_SEED=n` replays it.

use crate::common;

use common::{engine, json, Rng};
use std::collections::BTreeMap;

use cpc_sync::protocol::{
    P2PEvent, PeerId, ReconciliationEngine, StateSnapshot, Trust, VectorClock,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Family {
    Register,
    Counter,
    Set,
    Mixed,
}

/// One step of a history: peer, op, key, value, sync-after.
pub(crate) type Step = (usize, u8, u8, i16, bool);

/// Runs `steps` on three engines and returns every event made, in
/// creation order.
fn history(family: Family, steps: &[Step]) -> Vec<P2PEvent> {
    history_on(&mut (1..=3).map(engine).collect::<Vec<_>>(), family, steps)
}

/// [`history`] on `peers` (three or more; a step's peer is taken modulo
/// three).
pub(crate) fn history_on(
    peers: &mut [ReconciliationEngine],
    family: Family,
    steps: &[Step],
) -> Vec<P2PEvent> {
    let mut events: Vec<P2PEvent> = Vec::new();
    for (t, &(p, op, key, value, sync)) in steps.iter().enumerate() {
        let now = 1_000 + t as u64;
        let key = format!("k{}", key % 3);
        let v = json(&value.to_string());
        let peer = &mut peers[p % 3];
        let op = match family {
            Family::Register => op % 2,
            Family::Counter => 2 + op % 2,
            Family::Set => 4 + op % 3,
            Family::Mixed => op % 7,
        };
        let made = match op {
            0 => peer.set(&key, v, now).map(Some),
            1 | 3 | 6 => peer.delete(&key, now),
            2 => peer.increment(&key, value as i64, now).map(Some),
            4 => peer
                .add(&key, json(&(value % 4).to_string()), now)
                .map(Some),
            _ => peer.remove(&key, json(&(value % 4).to_string()), now),
        };
        if let Ok(Some(event)) = made {
            events.push(event);
        }
        if sync {
            // Peer p catches up on everything so far: later events depend on it.
            for e in &events {
                let _ = peer.receive(e.clone(), now);
            }
        }
    }
    events
}

fn apply_shuffled(events: &[P2PEvent], seed: u64, id: u64) -> ReconciliationEngine {
    let mut rng = Rng::new(seed);
    let mut order: Vec<P2PEvent> = events.to_vec();
    order.extend(events.iter().filter(|_| rng.chance(0.3)).cloned());
    rng.shuffle(&mut order);
    let mut e = engine(id);
    for event in order {
        e.receive(event, u64::MAX / 2).expect("taken");
    }
    e
}

fn join(into: &mut ReconciliationEngine, from: &ReconciliationEngine) {
    into.load_snapshot(
        StateSnapshot::decode(&from.encode_snapshot()).expect("decodes"),
        Trust::OWN,
    )
    .expect("verifies");
}

fn config() -> Config {
    let seed = common::seed("properties");
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    steps_up_to(40)
}

/// Histories of 1 to `most - 1` steps.
pub(crate) fn steps_up_to(most: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0..3usize,
            any::<u8>(),
            any::<u8>(),
            -50i16..50,
            prop::bool::weighted(0.3),
        ),
        1..most,
    )
}

fn check_order_independence(
    family: Family,
    steps: &[Step],
    seed: u64,
) -> Result<(), TestCaseError> {
    let events = history(family, steps);
    let mut a = apply_shuffled(&events, seed, 10);
    let mut b = apply_shuffled(&events, seed ^ 0xdead_beef, 11);
    prop_assert_eq!(a.state_json(), b.state_json());
    prop_assert_eq!(a.digest(), b.digest());
    prop_assert!(a.holding().is_empty() && b.holding().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn registers_merge_in_any_order(steps in steps(), seed in any::<u64>()) {
        check_order_independence(Family::Register, &steps, seed)?;
    }

    #[test]
    fn counters_merge_in_any_order(steps in steps(), seed in any::<u64>()) {
        check_order_independence(Family::Counter, &steps, seed)?;
    }

    #[test]
    fn sets_merge_in_any_order(steps in steps(), seed in any::<u64>()) {
        check_order_independence(Family::Set, &steps, seed)?;
    }

    #[test]
    fn mixed_kinds_merge_in_any_order(steps in steps(), seed in any::<u64>()) {
        check_order_independence(Family::Mixed, &steps, seed)?;
    }

    /// Three partial replicas joined as (a ⊔ b) ⊔ c and a ⊔ (b ⊔ c), then
    /// given every event: both equal the reference.
    #[test]
    fn joining_states_is_associative(steps in steps(), seed in any::<u64>()) {
        let events = history(Family::Mixed, &steps);
        let mut rng = Rng::new(seed);
        let part = |rng: &mut Rng, id| {
            let some: Vec<P2PEvent> = events.iter().filter(|_| rng.chance(0.5)).cloned().collect();
            apply_shuffled(&some, rng.next_u64(), id)
        };
        let (a, b, c) = (part(&mut rng, 21), part(&mut rng, 22), part(&mut rng, 23));
        let mut left = engine(31);
        join(&mut left, &a);
        join(&mut left, &b);
        join(&mut left, &c);
        let mut bc = engine(32);
        join(&mut bc, &b);
        join(&mut bc, &c);
        let mut right = engine(33);
        join(&mut right, &a);
        join(&mut right, &bc);
        prop_assert_eq!(left.state_json(), right.state_json());
        prop_assert_eq!(left.digest(), right.digest());
        let mut reference = apply_shuffled(&events, seed, 34);
        for e in [&mut left, &mut right] {
            for event in &events {
                e.receive(event.clone(), u64::MAX / 2).expect("taken");
            }
            prop_assert!(e.holding().is_empty());
            prop_assert_eq!(e.state_json(), reference.state_json());
            prop_assert_eq!(e.digest(), reference.digest());
        }
    }

    #[test]
    fn snapshot_round_trip_is_identity(steps in steps(), seed in any::<u64>()) {
        let events = history(Family::Mixed, &steps);
        let mut original = apply_shuffled(&events, seed, 40);
        let bytes = original.encode_snapshot();
        let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
        let mut loaded = engine(41);
        loaded.load_snapshot(snapshot, Trust::OWN).expect("verifies");
        prop_assert_eq!(loaded.state_json(), original.state_json());
        prop_assert_eq!(loaded.clock(), original.clock());
        prop_assert_eq!(loaded.digest(), original.digest());
    }
}

proptest! {
    #![proptest_config(config())]

    /// What a relay forwards: the events applied since the mark are exactly
    /// those missing from the clock at the mark, whatever was held, released
    /// or duplicated in between.
    #[test]
    fn applied_since_mark_is_the_clock_difference(
        steps in steps(),
        seed in any::<u64>(),
        cut in 0usize..40,
    ) {
        let events = history(Family::Mixed, &steps);
        let mut rng = Rng::new(seed);
        let mut order = events.clone();
        order.extend(events.iter().filter(|_| rng.chance(0.3)).cloned());
        rng.shuffle(&mut order);
        let cut = cut.min(order.len());
        let mut e = engine(10);
        for event in &order[..cut] {
            let _ = e.receive(event.clone(), u64::MAX / 2);
        }
        let before = e.clock().clone();
        e.mark_applied();
        for event in &order[cut..] {
            let _ = e.receive(event.clone(), u64::MAX / 2);
        }
        let mut since: Vec<_> = e.applied_since_mark().iter().map(|e| e.id).collect();
        let mut missing: Vec<_> = e.events_missing_from(&before).iter().map(|e| e.id).collect();
        since.sort();
        missing.sort();
        prop_assert_eq!(since, missing);
        prop_assert!(e.applied_since_mark().is_empty(), "reading ends the marking");
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever mix of writers, held events and floods of new origins a
    /// peer takes in, its own digest and its own snapshot stay decodable,
    /// and it restarts from its snapshot to the same state.
    #[test]
    fn a_peer_can_always_decode_its_own_digest_and_snapshot(
        limit in 2usize..24,
        writers in 1u64..80,
        held in 0u64..40,
        own_writes in 0u8..4,
    ) {
        use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
        use cpc_sync::protocol::{EngineConfig, PeerId};
        let config = EngineConfig { max_origins: limit, ..EngineConfig::default() };
        let mut me = ReconciliationEngine::new(PeerId(1), config.clone());
        for i in 0..own_writes {
            me.set(&format!("mine{i}"), json("1"), 1_000).expect("own writes are never refused");
        }
        for w in 0..writers {
            let mut writer = engine(100 + w);
            let first = writer.set(&format!("w{w}"), json("1"), 1_000).expect("set");
            let second = writer.set(&format!("w{w}"), json("2"), 1_001).expect("set");
            // Some arrive out of order: held, their origin not yet applied.
            if w < held {
                let _ = me.receive(second, 2_000);
            } else {
                let _ = me.receive(first, 2_000);
                let _ = me.receive(second, 2_000);
            }
        }
        prop_assert!(me.clock().len() <= limit, "{} origins", me.clock().len());
        // Applied and held, each origin counted once.
        let mut known: std::collections::BTreeSet<PeerId> =
            me.holding().iter().map(|e| e.id.peer).collect();
        known.extend(me.clock().iter().map(|(p, _)| p));
        prop_assert!(known.len() <= limit, "{} origins known", known.len());
        let digest = Message::Digest { clock: me.clock().clone(), root: me.digest() };
        for frame in wire::encode(&digest, 1) {
            prop_assert!(matches!(wire::decode(&frame), Ok(Decoded::Message(_))));
        }
        let snapshot = StateSnapshot::decode(&me.encode_snapshot()).expect("its own snapshot decodes");
        let mut restored = ReconciliationEngine::new(PeerId(1), config);
        restored.load_snapshot(snapshot, Trust::OWN).expect("its own snapshot loads");
        prop_assert_eq!(restored.state_json(), me.state_json());
        prop_assert_eq!(restored.digest(), me.digest());
    }
}

/// The model of a version vector: a sorted map of its nonzero entries
/// (what `VectorClock` was before it was one sorted vector).
type ClockModel = BTreeMap<PeerId, u64>;

fn clock_model(entries: &[(u64, u64)]) -> ClockModel {
    let mut m = ClockModel::new();
    for &(p, v) in entries.iter().filter(|(_, v)| *v > 0) {
        let e = m.entry(PeerId(p)).or_insert(0);
        *e = (*e).max(v);
    }
    m
}

fn clock_of(model: &ClockModel) -> VectorClock {
    model.iter().map(|(&p, &v)| (p, v)).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Every operation of a version vector agrees with the sorted map,
    /// and so do its JSON and binary (signed) forms.
    #[test]
    fn a_version_vector_behaves_as_a_sorted_map(
        // Up to 600 entries: past the size where a clock becomes a B-tree.
        a in proptest::collection::vec((0u64..1_000, 0u64..5), 0..600),
        b in proptest::collection::vec((0u64..1_000, 0u64..5), 0..600),
        p in 0u64..1_000,
        v in 0u64..5,
    ) {
        let x: VectorClock = a.iter().map(|&(p, v)| (PeerId(p), v)).collect();
        let y: VectorClock = b.iter().map(|&(p, v)| (PeerId(p), v)).collect();
        let (mut mx, my) = (clock_model(&a), clock_model(&b));
        prop_assert_eq!(&x, &clock_of(&mx));
        prop_assert_eq!(x.descends(&y), my.iter().all(|(p, v)| mx.get(p).unwrap_or(&0) >= v));
        prop_assert_eq!(
            x.first_not_covered(&y),
            my.iter().find(|(p, v)| mx.get(p).unwrap_or(&0) < v).map(|(p, v)| (*p, *v))
        );
        let json = serde_json::to_string(&x).unwrap();
        prop_assert_eq!(&json, &serde_json::to_string(&mx).unwrap());
        prop_assert_eq!(&serde_json::from_str::<VectorClock>(&json).unwrap(), &x);
        prop_assert_eq!(postcard::to_allocvec(&x).unwrap(), postcard::to_allocvec(&mx).unwrap());
        let met: ClockModel = mx
            .iter()
            .filter_map(|(p, v)| Some((*p, (*v).min(*my.get(p)?))))
            .collect();
        prop_assert_eq!(VectorClock::meet([&x, &y].into_iter()), clock_of(&met));
        let mut x = x;
        x.merge(&y);
        for (p, v) in &my {
            let e = mx.entry(*p).or_insert(0);
            *e = (*e).max(*v);
        }
        prop_assert_eq!(&x, &clock_of(&mx));
        x.set(PeerId(p), v);
        if v == 0 {
            mx.remove(&PeerId(p));
        } else {
            mx.insert(PeerId(p), v);
        }
        prop_assert_eq!(&x, &clock_of(&mx));
        prop_assert_eq!(x.increment(PeerId(p)), v + 1);
    }
}

/// `applied_since_mark` is what `events_missing_from` the clock at the
/// mark gives, also after a local write made while something is held
/// (which marks, to note what it releases): a later mark starts afresh
/// (a helper's review of a first fix that kept the earlier mark).
#[test]
fn a_mark_set_after_a_local_write_with_something_held_starts_there() {
    use cpc_sync::protocol::EventId;
    let mut e = engine(10);
    // Origin 7's second event: held (its first is missing).
    let held = common::register_write(
        EventId::new(cpc_sync::protocol::PeerId(7), 2),
        "x",
        "1",
        1_000,
    );
    let _ = e.receive(held, u64::MAX / 2);
    assert_eq!(e.holding().len(), 1);
    e.set("mine", json("1"), 1_100).unwrap();
    let before = e.clock().clone();
    e.mark_applied();
    let other = common::register_write(
        EventId::new(cpc_sync::protocol::PeerId(8), 1),
        "y",
        "1",
        1_200,
    );
    let _ = e.receive(other, u64::MAX / 2);
    let since: Vec<EventId> = e.applied_since_mark().iter().map(|e| e.id).collect();
    let missing: Vec<EventId> = e
        .events_missing_from(&before)
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        since, missing,
        "applied since the mark is the clock difference"
    );
}
