//! `StateSnapshot`: round trips, loading then replaying, and bad bytes.

use crate::common;

use common::{assert_converged, deliver, engine, json};
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::{
    EngineConfig, Operation, PeerId, ReconciliationEngine, SnapshotError, StateSnapshot, Trust,
    VectorClock,
};

fn busy_engine() -> ReconciliationEngine {
    let (mut a, mut b) = (engine(1), engine(2));
    a.set("r", json("{\"x\":[1,2]}"), 1_000).unwrap();
    a.increment("c", 4, 1_001).unwrap();
    a.add("s", json("\"m\""), 1_002).unwrap();
    let eb = b.set("r", json("\"concurrent\""), 1_003).unwrap();
    b.increment("c", -1, 1_004).unwrap();
    a.receive(eb, 1_005).unwrap();
    let events: Vec<_> = b.log().iter().cloned().collect();
    for e in events {
        a.receive(e, 1_005).unwrap();
    }
    a.set("gone", json("1"), 1_006).unwrap();
    a.delete("gone", 1_007).unwrap();
    a
}

#[test]
fn encode_decode_load_is_identity() {
    let mut a = busy_engine();
    let bytes = a.encode_snapshot();
    let snapshot = StateSnapshot::decode(&bytes).unwrap();
    let mut b =
        ReconciliationEngine::from_snapshot(PeerId(3), EngineConfig::default(), snapshot).unwrap();
    assert_eq!(b.state_json(), a.state_json());
    assert_eq!(b.clock(), a.clock());
    assert_eq!(b.digest(), a.digest());
    // Re-encoding the loaded state gives the same state again.
    let again = StateSnapshot::decode(&b.encode_snapshot()).unwrap();
    let mut c =
        ReconciliationEngine::from_snapshot(PeerId(4), EngineConfig::default(), again).unwrap();
    assert_eq!(c.digest(), a.digest());
}

#[test]
fn a_new_peer_loads_a_snapshot_then_replays_held_events() {
    let mut a = busy_engine();
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    // Events written after the snapshot reach the new peer first: held.
    let later = vec![
        a.increment("c", 10, 2_000).unwrap(),
        a.set("r", json("\"after\""), 2_001).unwrap(),
    ];
    let mut fresh = engine(9);
    deliver(&mut fresh, &later, 2_002);
    assert_eq!(fresh.holding().len(), 2);
    fresh.load_snapshot(snapshot, Trust::OWN).unwrap();
    assert!(fresh.holding().is_empty());
    assert_converged(&mut [a, fresh]);
}

#[test]
fn loading_joins_states_so_neither_side_loses_writes() {
    let mut a = busy_engine();
    let mut b = engine(7);
    // b has writes of its own that a's snapshot lacks.
    b.set("mine", json("true"), 1_500).unwrap();
    b.increment("c", 100, 1_500).unwrap();
    let b_events: Vec<_> = b.log().iter().cloned().collect();
    b.load_snapshot(
        StateSnapshot::decode(&a.encode_snapshot()).unwrap(),
        Trust::OWN,
    )
    .unwrap();
    deliver(&mut a, &b_events, 2_000);
    assert_eq!(b.get("c"), Some(serde_json::json!(103)));
    // b's next write depends on everything it has now.
    let next = b.set("after", json("1"), 3_000).unwrap();
    assert!(next.deps.get(PeerId(1)) > 0);
    deliver(&mut a, &[next], 3_000);
    assert_converged(&mut [a, b]);
}

/// A snapshot joined into a state of its own keeps every dot of ours
/// that no event it carries supersedes (a member could otherwise delete
/// any value by leaving it out), so it must carry what superseded the
/// values a peer behind it may still hold, folded or not, and after a
/// restart from what was stored: `c` overwrites, deletes and removes
/// `a`'s values (another writer: no later write of their own writer's
/// settles them), `a` takes that, folds it all, restarts from its stored
/// snapshot and serves `b`, which was away.
#[test]
fn a_lagging_peer_learns_folded_supersessions_from_a_snapshot() {
    let (mut a, mut b, mut c) = (engine(1), engine(2), engine(3));
    let old = [
        a.set("r", json("1"), 1_000).unwrap(),
        a.set("gone", json("2"), 1_001).unwrap(),
        a.add("s", json("\"m\""), 1_002).unwrap(),
    ];
    deliver(&mut b, &old, 1_003);
    deliver(&mut c, &old, 1_003);
    let newer = [
        c.set("r", json("3"), 2_000).unwrap(),
        c.delete("gone", 2_001).unwrap().expect("a delete"),
        c.remove("s", json("\"m\""), 2_002)
            .unwrap()
            .expect("a remove"),
    ];
    deliver(&mut a, &newer, 2_003);
    let all = a.clock().clone();
    assert!(a.compact(&all) > 0);
    assert!(a.log().is_empty(), "every event folded");
    let stored = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let a =
        ReconciliationEngine::from_snapshot(PeerId(1), EngineConfig::default(), stored).unwrap();
    let sent = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    b.load_snapshot(sent, Trust::from_peer(3_000)).unwrap();
    assert_eq!(b.get("r"), Some(serde_json::json!(3)));
    assert_eq!(b.get("gone"), None);
    assert_eq!(b.get("s"), None, "an empty set shows as nothing");
    assert_eq!(b.stats().kept_unsuperseded, 0);
    assert_converged(&mut [a, b, c]);
}

#[test]
fn a_snapshot_is_no_larger_than_its_event_log() {
    let mut a = engine(1);
    for i in 0..1_000 {
        a.set(&format!("key{}", i % 100), json(&i.to_string()), 1_000 + i)
            .unwrap();
    }
    let log: Vec<_> = a.log().iter().cloned().collect();
    let log_bytes = cpc_sync::protocol::P2PEvent::encode_batch(&log).len();
    let snapshot = a.encode_snapshot();
    assert!(
        snapshot.len() * 4 < log_bytes,
        "{} vs {log_bytes}",
        snapshot.len()
    );
}

#[test]
fn malformed_snapshots_are_typed_errors_never_panics() {
    let good = busy_engine().encode_snapshot();
    assert_eq!(
        StateSnapshot::decode(b"").unwrap_err(),
        SnapshotError::BadMagic
    );
    assert_eq!(
        StateSnapshot::decode(b"JUNKJUNK").unwrap_err(),
        SnapshotError::BadMagic
    );
    let mut future = good.clone();
    future[4] = 99;
    assert_eq!(
        StateSnapshot::decode(&future).unwrap_err(),
        SnapshotError::UnsupportedFormat(99)
    );
    // Every truncation and many single-byte corruptions: an error or a valid
    // snapshot, never a panic.
    for len in 0..good.len() {
        assert!(
            StateSnapshot::decode(&good[..len]).is_err(),
            "truncated at {len}"
        );
    }
    for i in 5..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            if let Ok(snapshot) = StateSnapshot::decode(&bad) {
                let mut e = engine(5);
                let _ = e.load_snapshot(snapshot, Trust::OWN);
                let _ = e.state_json();
                let _ = e.digest();
            }
        }
    }
    // A length prefix claiming billions of entities fails without allocating them.
    let mut huge = b"CPCS\x03\x00\x01".to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        StateSnapshot::decode(&huge),
        Err(SnapshotError::Malformed(_))
    ));
    // A snapshot of the previous format (2) is refused by name.
    assert!(matches!(
        StateSnapshot::decode(b"CPCS\x02\x00"),
        Err(SnapshotError::UnsupportedFormat(2))
    ));
}

#[test]
fn events_out_of_order_or_repeated_are_rejected() {
    let a = busy_engine();
    let snapshot = a.snapshot();
    assert!(snapshot.events.len() >= 3);
    // The first event again at the end; all of them backwards; two
    // neighbours swapped; the middle one twice in a row. (Decoding checks
    // the order where runs meet: each case puts the fault there.)
    let mut repeated = snapshot.clone();
    repeated.events.push(snapshot.events[0].clone());
    let mut reversed = snapshot.clone();
    reversed.events.reverse();
    let mut swapped = snapshot.clone();
    swapped.events.swap(0, 1);
    let mut doubled = snapshot.clone();
    doubled.events.insert(1, snapshot.events[1].clone());
    for (case, mut bad) in [
        ("repeated", repeated),
        ("reversed", reversed),
        ("swapped", swapped),
        ("doubled", doubled),
    ] {
        bad.live = vec![true; bad.events.len()];
        // Room in the clock for the event added: a snapshot of more events
        // than its clock counts is refused before its order is read.
        bad.version_vector.set(PeerId(u64::MAX), 1);
        let err = StateSnapshot::decode(&bad.encode()).unwrap_err();
        assert!(matches!(err, SnapshotError::Malformed(_)), "{case}: {err}");
    }
    assert!(StateSnapshot::decode(&snapshot.encode()).is_ok());
}

/// Room policies are state: they survive compaction (the log folded away),
/// travel in snapshots, and join into an engine that had its own.
#[test]
fn room_policies_survive_compaction_and_snapshots() {
    use cpc_sync::protocol::ConflictPolicy;
    let mut a = busy_engine();
    a.set_room_policy("r", ConflictPolicy::MultiValue, 1_100)
        .unwrap();
    a.set_room_policy("doc/", ConflictPolicy::Reconcile, 1_101)
        .unwrap();
    a.set_room_policy("doc/", ConflictPolicy::Lww, 1_102)
        .unwrap();
    let clock = a.clock().clone();
    assert!(a.compact(&clock) > 0);
    assert!(a.log().is_empty());
    assert_eq!(a.conflicts().len(), 1, "busy_engine's concurrent \"r\"");

    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let mut b =
        ReconciliationEngine::from_snapshot(PeerId(3), EngineConfig::default(), snapshot).unwrap();
    assert_eq!(b.room_policies(), a.room_policies());
    assert_eq!(b.policy("r"), ConflictPolicy::MultiValue);
    assert_eq!(b.conflicts(), a.conflicts());
    assert_eq!(b.state_json(), a.state_json());

    // Joined into an engine with a policy of its own (another prefix).
    let mut c = engine(4);
    c.set_room_policy("c/", ConflictPolicy::MultiValue, 1_103)
        .unwrap();
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    c.load_snapshot(snapshot, Trust::OWN).unwrap();
    assert_eq!(c.room_policy("doc/"), Some(ConflictPolicy::Lww));
    assert_eq!(c.room_policy("c/"), Some(ConflictPolicy::MultiValue));
    assert_eq!(c.conflicts(), a.conflicts());

    // And b, a copy of a, compacts and re-encodes: still there.
    let clock = b.clock().clone();
    b.compact(&clock);
    let again = StateSnapshot::decode(&b.encode_snapshot()).unwrap();
    let mut d =
        ReconciliationEngine::from_snapshot(PeerId(5), EngineConfig::default(), again).unwrap();
    assert_eq!(d.room_policies(), a.room_policies());
    assert_eq!(d.digest(), a.digest());
}

#[test]
fn a_loaded_snapshot_moves_the_clock_past_its_latest_write() {
    // Written at 50,000 (a clock ahead of ours), then overwritten: the
    // snapshot's latest timestamp is on the live write.
    let mut a = engine(1);
    a.set("k", json("1"), 50_000).unwrap();
    a.set("k", json("2"), 50_001).unwrap();
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let mut b = engine(2);
    b.load_snapshot(snapshot, Trust::OWN).unwrap();
    // A write of ours at an earlier wall time still wins: it comes after.
    let ours = b.set("k", json("3"), 1_000).unwrap();
    let theirs = a.log().iter().last().unwrap().hlc;
    assert!(ours.hlc > theirs, "{:?} <= {:?}", ours.hlc, theirs);
    assert_eq!(b.state_json(), "{\"k\":3}");
}

/// A snapshot claiming a clock below what its own events rest on is a lie
/// (loading it would apply events the clock says we lack): refused for
/// an event beyond its origin's entry, for a dependency beyond the clock,
/// and for an observed dot beyond it.
#[test]
fn events_beyond_the_snapshots_clock_are_refused() {
    let honest = StateSnapshot::decode(&busy_engine().encode_snapshot()).unwrap();
    let load = |snapshot: StateSnapshot| engine(9).load_snapshot(snapshot, Trust::OWN);
    load(honest.clone()).expect("the honest snapshot loads");
    let (a, b) = (PeerId(1), PeerId(2));
    let ahead = honest.version_vector.get(b) + 1;
    let first_of_a = |s: &StateSnapshot| s.events.iter().position(|e| e.id.peer == a).unwrap();

    let mut lowered = honest.clone();
    let top = lowered.version_vector.get(a);
    lowered.version_vector.set(a, top - 1);
    assert!(matches!(load(lowered), Err(SnapshotError::BeyondClock(id)) if id.peer == a));

    let mut deps = honest.clone();
    let at = first_of_a(&deps);
    deps.events[at].deps = VectorClock::from_iter([(b, ahead)]);
    let id = deps.events[at].id;
    assert!(matches!(load(deps), Err(SnapshotError::BeyondClock(e)) if e == id));

    let mut observed = honest.clone();
    let at = observed
        .events
        .iter()
        .position(|e| {
            e.id.peer == a && matches!(e.op, Operation::Register(RegisterOp::Write { .. }))
        })
        .unwrap();
    observed.events[at].deps = VectorClock::new();
    if let Operation::Register(RegisterOp::Write { observed: seen, .. }) =
        &mut observed.events[at].op
    {
        *seen = VectorClock::from_iter([(b, ahead)]);
    }
    let id = observed.events[at].id;
    assert!(matches!(load(observed), Err(SnapshotError::BeyondClock(e)) if e == id));
}

/// A snapshot built in code with a live flag missing is refused, not
/// indexed past its end.
#[test]
fn a_snapshot_whose_live_flags_do_not_match_its_events_is_refused() {
    let mut snapshot = StateSnapshot::decode(&busy_engine().encode_snapshot()).unwrap();
    snapshot.live.pop();
    assert!(matches!(
        engine(9).load_snapshot(snapshot, Trust::OWN),
        Err(SnapshotError::Malformed(_))
    ));
}
