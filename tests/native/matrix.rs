//! The conflict resolution matrix, row by row, across real engines.

use crate::common;

use common::{assert_converged, deliver, engine, json};
use cpc_sync::protocol::{
    ConflictPolicy, EngineConfig, Kind, PeerId, Receipt, ReceiveError, ReconciliationEngine,
    WriteError,
};
use serde_json::json as j;

#[test]
fn lww_register_higher_timestamp_wins_and_shows_no_conflict() {
    let (mut a, mut b) = (engine(1), engine(2));
    let ea = a.set("title", json("\"from a\""), 1_000).unwrap();
    let eb = b.set("title", json("\"from b\""), 2_000).unwrap();
    deliver(&mut a, &[eb], 2_000);
    deliver(&mut b, &[ea], 2_000);
    assert_eq!(a.get("title"), Some(j!("from b")));
    assert!(a.conflicts().is_empty() && b.conflicts().is_empty());
    assert_converged(&mut [a, b]);
}

#[test]
fn lww_tie_breaks_by_higher_peer_id() {
    let (mut a, mut b) = (engine(1), engine(2));
    let ea = a.set("k", json("1"), 5_000).unwrap();
    let eb = b.set("k", json("2"), 5_000).unwrap();
    deliver(&mut a, &[eb], 5_000);
    deliver(&mut b, &[ea], 5_000);
    assert_eq!(a.get("k"), Some(j!(2)));
    assert_converged(&mut [a, b]);
}

#[test]
fn a_write_after_seeing_another_wins_even_with_a_slower_wall_clock() {
    let (mut a, mut b) = (engine(1), engine(2));
    let ea = a.set("k", json("\"first\""), 9_000).unwrap();
    deliver(&mut b, &[ea], 9_000);
    // b's wall clock is far behind, but b saw a's write.
    let eb = b.set("k", json("\"second\""), 1_000).unwrap();
    deliver(&mut a, &[eb], 9_000);
    assert_eq!(a.get("k"), Some(j!("second")));
    assert_converged(&mut [a, b]);
}

#[test]
fn multi_value_keeps_siblings_until_resolved() {
    let (mut a, mut b) = (engine(1), engine(2));
    for e in [&mut a, &mut b] {
        e.set_policy("doc/", ConflictPolicy::MultiValue);
    }
    let ea = a.set("doc/x", json("\"a\""), 1_000).unwrap();
    let eb = b.set("doc/x", json("\"b\""), 1_001).unwrap();
    deliver(&mut a, &[eb], 2_000);
    deliver(&mut b, &[ea], 2_000);
    for e in [&a, &b] {
        let conflicts = e.conflicts();
        assert_eq!(conflicts.len(), 1);
        let values: Vec<&str> = conflicts[0]
            .candidates
            .iter()
            .map(|c| c.value.as_str())
            .collect();
        assert_eq!(values, ["\"a\"", "\"b\""]);
        // The state shows what LWW would pick.
        assert_eq!(e.get("doc/x"), Some(j!("b")));
    }
    let resolved = a.resolve("doc/x", json("\"merged\""), 3_000).unwrap();
    deliver(&mut b, &[resolved], 3_000);
    assert!(a.conflicts().is_empty() && b.conflicts().is_empty());
    assert_eq!(b.get("doc/x"), Some(j!("merged")));
    assert_converged(&mut [a, b]);
}

#[test]
fn counter_counts_every_increment_once() {
    let mut peers: Vec<ReconciliationEngine> = (1..=3).map(engine).collect();
    let mut events = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        events.push(p.increment("likes", 1 + i as i64, 1_000).unwrap());
        events.push(p.increment("likes", -1, 1_001).unwrap());
    }
    for p in peers.iter_mut() {
        // Duplicates too: each counts once.
        for e in events.iter().chain(events.iter()) {
            p.receive(e.clone(), 2_000).unwrap();
        }
    }
    assert_eq!(peers[0].get("likes"), Some(j!(3)));
    assert_converged(&mut peers);
}

/// A counter past the range of a 64-bit integer wrapped around and
/// changed sign, the same wrong total at every peer (a review): this
/// peer's own total is refused past it, and the room's stops at it.
#[test]
fn a_counter_stops_at_the_range_of_a_64_bit_integer() {
    let mut peers: Vec<ReconciliationEngine> = (1..=2).map(engine).collect();
    let mut events = vec![peers[0].increment("n", i64::MAX - 1, 1_000).unwrap()];
    assert!(matches!(
        peers[0].increment("n", 2, 1_001),
        Err(WriteError::CounterOverflow { by: 2, .. })
    ));
    events.push(peers[0].increment("n", 1, 1_002).unwrap());
    events.push(peers[1].increment("n", 5, 1_000).unwrap());
    for p in peers.iter_mut() {
        for e in &events {
            p.receive(e.clone(), 2_000).unwrap();
        }
    }
    assert_eq!(peers[0].get("n"), Some(j!(i64::MAX)));
    assert_converged(&mut peers);
    events.push(peers[1].increment("n", i64::MIN, 3_000).unwrap());
    peers[0].receive(events[3].clone(), 3_000).unwrap();
    assert_eq!(peers[0].get("n"), Some(j!(4)), "back in range, exact");
    assert_converged(&mut peers);
}

#[test]
fn set_add_wins_over_concurrent_remove() {
    let (mut a, mut b) = (engine(1), engine(2));
    let add = a.add("tags", json("\"x\""), 1_000).unwrap();
    deliver(&mut b, &[add], 1_000);
    let remove = b.remove("tags", json("\"x\""), 2_000).unwrap().unwrap();
    let readd = a.add("tags", json("\"x\""), 2_000).unwrap();
    let other = a.add("tags", json("\"a\""), 2_001).unwrap();
    deliver(&mut a, &[remove], 3_000);
    deliver(&mut b, &[readd, other], 3_000);
    assert_eq!(a.get("tags"), Some(j!(["a", "x"])));
    assert_converged(&mut [a, b]);
}

#[test]
fn update_wins_over_concurrent_delete_for_every_kind() {
    let (mut a, mut b) = (engine(1), engine(2));
    let setup = vec![
        a.set("r", json("1"), 1_000).unwrap(),
        a.increment("c", 5, 1_000).unwrap(),
        a.add("s", json("1"), 1_000).unwrap(),
    ];
    deliver(&mut b, &setup, 1_000);
    // a deletes everything; concurrently b updates everything.
    let deletes: Vec<_> = ["r", "c", "s"]
        .iter()
        .map(|k| a.delete(k, 2_000).unwrap().unwrap())
        .collect();
    let updates = vec![
        b.set("r", json("2"), 1_500).unwrap(),
        b.increment("c", 2, 1_500).unwrap(),
        b.add("s", json("2"), 1_500).unwrap(),
    ];
    deliver(&mut a, &updates, 3_000);
    deliver(&mut b, &deletes, 3_000);
    for e in [&a, &b] {
        assert_eq!(e.state(), j!({"c": 2, "r": 2, "s": [2]}), "on {}", e.peer());
    }
    // A delete that saw everything removes the key.
    let delete = b.delete("r", 4_000).unwrap().unwrap();
    deliver(&mut a, &[delete], 4_000);
    assert_eq!(a.get("r"), None);
    assert_converged(&mut [a, b]);
}

#[test]
fn a_key_keeps_its_kind_and_mismatches_are_typed_errors() {
    let mut a = engine(1);
    a.set("k", json("1"), 1_000).unwrap();
    let err = a.increment("k", 1, 1_000).unwrap_err();
    assert_eq!(
        err,
        WriteError::KindMismatch {
            key: "k".into(),
            actual: Kind::Register,
            attempted: Kind::Counter
        }
    );
    assert!(err.to_string().contains("holds a register"));
    assert!(a.add("k", json("1"), 1_000).is_err());
    a.delete("k", 1_000).unwrap();
    a.increment("k", 2, 1_001)
        .expect("a deleted key may take another kind");
    assert_eq!(a.get("k"), Some(j!(2)));
    assert!(a.set("k", json("1"), 1_002).is_err());
}

#[test]
fn concurrent_first_writes_of_different_kinds_converge() {
    let (mut a, mut b) = (engine(1), engine(2));
    let ea = a.set("k", json("\"text\""), 1_000).unwrap();
    let eb = b.increment("k", 7, 2_000).unwrap();
    deliver(&mut a, &[eb], 2_000);
    deliver(&mut b, &[ea], 2_000);
    // The kind with the earliest first operation shows, on both.
    assert_eq!(a.get("k"), Some(j!("text")));
    assert_converged(&mut [a, b]);
}

#[test]
fn events_wait_in_the_holding_queue_for_their_dependencies() {
    let (mut a, mut b, mut c) = (engine(1), engine(2), engine(3));
    let e1 = a.set("x", json("1"), 1_000).unwrap();
    deliver(&mut b, std::slice::from_ref(&e1), 1_000);
    let e2 = b.set("x", json("2"), 1_001).unwrap(); // depends on e1
    let e3 = b.increment("n", 1, 1_002).unwrap(); // depends on e2
    assert_eq!(c.receive(e3.clone(), 2_000), Ok(Receipt::Held));
    assert_eq!(c.receive(e2.clone(), 2_000), Ok(Receipt::Held));
    assert_eq!(c.receive(e2, 2_000), Ok(Receipt::Duplicate));
    assert_eq!(c.holding().len(), 2);
    assert_eq!(c.get("x"), None);
    assert_eq!(c.receive(e1, 2_000), Ok(Receipt::Applied { released: 3 }));
    assert!(c.holding().is_empty());
    assert_eq!(c.state(), j!({"n": 1, "x": 2}));
    common::assert_causal(&c);
    assert_eq!(c.resolve_conflicts(), 0);
}

#[test]
fn at_capacity_the_holding_queue_refuses_new_events_and_keeps_the_old() {
    let config = EngineConfig {
        holding_capacity: 2,
        ..EngineConfig::default()
    };
    let mut a = engine(1);
    let events: Vec<_> = (0..4)
        .map(|i| a.increment("n", 1, 1_000 + i).unwrap())
        .collect();
    let mut b = ReconciliationEngine::new(PeerId(2), config);
    assert_eq!(b.receive(events[1].clone(), 2_000), Ok(Receipt::Held));
    assert_eq!(b.receive(events[2].clone(), 2_000), Ok(Receipt::Held));
    let refused = b.receive(events[3].clone(), 2_000).unwrap_err();
    assert!(matches!(
        refused,
        ReceiveError::HoldingQueueFull { capacity: 2, .. }
    ));
    assert_eq!(b.stats().refused_queue_full, 1);
    assert_eq!(
        b.receive(events[0].clone(), 2_000),
        Ok(Receipt::Applied { released: 3 })
    );
    // The refused event is taken when offered again.
    assert_eq!(
        b.receive(events[3].clone(), 2_000),
        Ok(Receipt::Applied { released: 1 })
    );
    assert_eq!(b.get("n"), Some(j!(4)));
}

#[test]
fn timestamps_too_far_ahead_are_refused_then_taken_later() {
    let mut a = engine(1);
    let e = a.set("k", json("1"), 10_000_000).unwrap();
    let mut b = engine(2);
    let err = b.receive(e.clone(), 1_000).unwrap_err();
    assert!(matches!(err, ReceiveError::ClockSkew { .. }), "{err}");
    assert_eq!(b.stats().refused_clock_skew, 1);
    assert_eq!(
        b.receive(e, 10_000_000),
        Ok(Receipt::Applied { released: 1 })
    );
}

#[test]
fn equivocation_is_detected() {
    let mut a = engine(1);
    let e = a.set("k", json("1"), 1_000).unwrap();
    let mut b = engine(2);
    b.receive(e.clone(), 1_000).unwrap();
    let mut forged = e;
    forged.key = "other".into();
    assert!(matches!(
        b.receive(forged, 1_000),
        Err(ReceiveError::Equivocation { .. })
    ));
    assert_eq!(b.stats().equivocations, 1);
}

/// Changes taken in parts name every changed key once between them: a
/// key taken and changed again before the last part is not named again;
/// once the last is taken, a change is named again.
#[test]
fn changes_taken_in_parts_name_each_key_once() {
    let mut a = engine(1);
    for i in 0..10 {
        a.set(&format!("k{i}"), json("1"), 1).unwrap();
    }
    let mut named: Vec<String> = a
        .take_some_changes(4)
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(named.len(), 4);
    assert!(a.has_changes());
    // A key already taken, changed again, and a new one.
    a.set(&named[0].clone(), json("2"), 2).unwrap();
    a.set("new", json("1"), 3).unwrap();
    while a.has_changes() {
        let part = a.take_some_changes(4);
        assert!(part.len() <= 4);
        named.extend(part.iter().map(|k| k.to_string()));
    }
    named.sort();
    let before = named.len();
    named.dedup();
    assert_eq!(named.len(), before, "a key named twice");
    assert_eq!(named.len(), 11, "{named:?}");
    a.set("k0", json("3"), 4).unwrap();
    assert_eq!(
        a.take_some_changes(4).len(),
        1,
        "named again in the next list"
    );
}

#[test]
fn state_is_plain_json() {
    let mut a = engine(1);
    a.set("name", json("{\"first\":\"Ada\"}"), 1).unwrap();
    a.increment("visits", 2, 2).unwrap();
    a.add("tags", json("\"b\""), 3).unwrap();
    a.add("tags", json("\"a\""), 4).unwrap();
    a.set("gone", json("true"), 5).unwrap();
    a.delete("gone", 6).unwrap();
    assert_eq!(
        a.state(),
        j!({"name": {"first": "Ada"}, "tags": ["a", "b"], "visits": 2})
    );
    assert_eq!(a.clock().get(PeerId(1)), 6);
    assert_eq!(a.take_changes().len(), 4);
    assert!(a.take_changes().is_empty());
}
