//! Conflict policies as room state: every peer follows the room's, local
//! defaults only fill in where the room set nothing, and room state is
//! neither the app's to read or write nor a liar's to forge.

use crate::common;

use common::{deliver, engine, json};
use cpc_sync::protocol::engine::{policy_key, POLICY_PREFIX};
use cpc_sync::protocol::event::{CounterOp, RegisterOp, SetOp};
use cpc_sync::protocol::reconciliation::RequestType;
use cpc_sync::protocol::{
    Candidate, ConflictPolicy, JsonValue, Operation, P2PEvent, PeerId, ReceiveError, ReconcileStep,
    ReconciliationEngine, ReconciliationRequest, SnapshotError, StateSnapshot, Trust, WriteError,
};

const NOW: u64 = 1_000_000;

/// Delivers every event each engine logged to every other engine.
fn gossip(engines: &mut [ReconciliationEngine]) {
    let events: Vec<P2PEvent> = engines
        .iter()
        .flat_map(|e| e.log().iter().cloned().collect::<Vec<_>>())
        .collect();
    for e in engines.iter_mut() {
        e.receive_all(events.iter().cloned(), NOW);
    }
}

fn conflicted_keys(e: &ReconciliationEngine) -> Vec<String> {
    e.conflicts().into_iter().map(|c| c.key).collect()
}

/// Peers 1 and 2 write `doc/x` concurrently; everyone sees both writes.
fn concurrent_writes(engines: &mut [ReconciliationEngine]) {
    engines[0].set("doc/x", json("\"one\""), NOW).unwrap();
    engines[1].set("doc/x", json("\"two\""), NOW).unwrap();
    gossip(engines);
}

#[test]
fn peers_with_different_local_defaults_follow_the_room() {
    let mut peers = vec![engine(1), engine(2), engine(3)];
    peers[0].set_policy("doc/", ConflictPolicy::Lww);
    peers[1].set_policy("doc/", ConflictPolicy::MultiValue);
    peers[1].set_policy("doc/draft/", ConflictPolicy::Reconcile);
    concurrent_writes(&mut peers);
    // Before the room decides, each shows its own way.
    assert!(conflicted_keys(&peers[0]).is_empty());
    assert_eq!(conflicted_keys(&peers[1]), ["doc/x"]);
    assert!(conflicted_keys(&peers[2]).is_empty());

    // Peer 3, which set nothing locally, sets the room's policy.
    peers[2]
        .set_room_policy("doc/", ConflictPolicy::MultiValue, NOW)
        .unwrap();
    gossip(&mut peers);
    for p in &peers {
        assert_eq!(p.room_policy("doc/"), Some(ConflictPolicy::MultiValue));
        assert_eq!(p.policy("doc/x"), ConflictPolicy::MultiValue);
        // A room prefix wins over a longer local one: all peers agree.
        assert_eq!(p.policy("doc/draft/y"), ConflictPolicy::MultiValue);
        assert_eq!(conflicted_keys(p), ["doc/x"], "peer {}", p.peer());
        assert_eq!(p.conflicts(), peers[0].conflicts());
    }
    // Where the room set nothing, local defaults still apply.
    assert_eq!(peers[1].policy("other"), ConflictPolicy::Lww);
    peers[1].set_policy("other/", ConflictPolicy::Reconcile);
    assert_eq!(peers[1].policy("other/k"), ConflictPolicy::Reconcile);

    // The room changes its mind (concurrently, twice): the later write wins
    // everywhere, and everywhere the conflict is hidden alike.
    peers[0]
        .set_room_policy("doc/", ConflictPolicy::Reconcile, NOW)
        .unwrap();
    peers[1]
        .set_room_policy("doc/", ConflictPolicy::Lww, NOW + 5)
        .unwrap();
    gossip(&mut peers);
    let digest = peers[0].digest();
    for p in peers.iter_mut() {
        assert_eq!(
            p.room_policies(),
            [("doc/".to_string(), ConflictPolicy::Lww)]
        );
        assert!(conflicted_keys(p).is_empty());
        assert_eq!(p.digest(), digest);
    }

    // Taken back: each peer falls back to its own defaults again.
    peers[2].clear_room_policy("doc/", NOW).unwrap().unwrap();
    gossip(&mut peers);
    assert!(peers.iter().all(|p| p.room_policies().is_empty()));
    assert_eq!(conflicted_keys(&peers[1]), ["doc/x"]);
    assert!(conflicted_keys(&peers[0]).is_empty());
}

#[test]
fn room_state_stays_out_of_app_reads_and_writes() {
    let mut a = engine(1);
    let fresh_digest = engine(1).digest();
    a.set("k", json("1"), NOW).unwrap();
    a.take_changes();
    a.set_room_policy("", ConflictPolicy::Reconcile, NOW)
        .unwrap();
    let key = policy_key("");
    assert_eq!(a.state_json(), r#"{"k":1}"#);
    let entries: serde_json::Value = serde_json::from_str(&a.entries_json()).unwrap();
    assert_eq!(entries.as_array().map(Vec::len), Some(1));
    assert_eq!(a.get(&key), None);
    assert!(a.take_changes().is_empty(), "no change reported to the app");
    assert_ne!(a.digest(), fresh_digest, "the digest covers room state");
    // A room-wide "reconcile" does not reach room state itself.
    assert_eq!(a.policy(&key), ConflictPolicy::Lww);

    let reserved = |r: Result<(), WriteError>| matches!(r, Err(WriteError::ReservedKey { .. }));
    assert!(reserved(a.set(&key, json("\"lww\""), NOW).map(drop)));
    assert!(reserved(a.resolve(&key, json("\"lww\""), NOW).map(drop)));
    assert!(reserved(a.delete(&key, NOW).map(drop)));
    assert!(reserved(a.increment("\u{0}cpc/n", 1, NOW).map(drop)));
    assert!(reserved(a.add("\u{0}cpc/s", json("1"), NOW).map(drop)));
    assert!(reserved(a.remove("\u{0}cpc/s", json("1"), NOW).map(drop)));
    assert!(reserved(
        a.set_room_policy(POLICY_PREFIX, ConflictPolicy::MultiValue, NOW)
            .map(drop)
    ));
    assert_eq!(
        a.room_policies(),
        [(String::new(), ConflictPolicy::Reconcile)]
    );
}

#[test]
fn a_policy_change_updates_conflicts_and_reconcile_requests() {
    let mut peers = vec![engine(1), engine(2)];
    concurrent_writes(&mut peers);
    let [a, b] = &mut peers[..] else {
        unreachable!()
    };
    a.take_changes();
    assert!(a.conflicts().is_empty() && a.pending_reconciliations(NOW).is_empty());

    // Locally: the conflicted key is reported changed, shows its conflict
    // and is due for reconciliation.
    let policy = a
        .set_room_policy("doc/", ConflictPolicy::Reconcile, NOW)
        .unwrap();
    let changed: Vec<String> = a.take_changes().iter().map(|k| k.to_string()).collect();
    assert_eq!(changed, ["doc/x"]);
    assert_eq!(conflicted_keys(a), ["doc/x"]);
    assert_eq!(a.pending_reconciliations(NOW).len(), 1);

    // Remotely: the same, once the event arrives.
    b.take_changes();
    assert!(b.pending_reconciliations(NOW).is_empty());
    deliver(b, &[policy], NOW);
    let changed: Vec<String> = b.take_changes().iter().map(|k| k.to_string()).collect();
    assert_eq!(changed, ["doc/x"]);
    assert_eq!(b.pending_reconciliations(NOW).len(), 1);

    // b asks a (the lowest origin); a resolves; both settle.
    let mut lww = |_: &str, _: &[Candidate]| None;
    let steps = b.reconcile(&mut lww, &|_| true, NOW);
    let [ReconcileStep::Request(request)] = &steps[..] else {
        panic!("b asks a: {steps:?}")
    };
    let response = a
        .handle_reconciliation_request(request, &mut lww, NOW)
        .unwrap()
        .expect("a has every sibling");
    b.handle_reconciliation_response(&response, NOW).unwrap();
    assert!(a.conflicts().is_empty() && b.conflicts().is_empty());
    assert_eq!(a.digest(), b.digest());
}

/// Mallory, a member with a valid key, writes events as she likes. What
/// could she make us believe through a policy entity? That the room's
/// policy is one she picked: that is a member's right, like any write,
/// settled by Last-Write-Wins. Beyond that, nothing: a policy key that
/// holds no policy, or another kind that would hide it (a kind's earliest
/// first operation is what a key shows), a resolution on room state, other
/// reserved keys, are refused on every peer alike, whether they come as
/// events or inside a snapshot; and asking us to reconcile room state does
/// not make us write it.
#[test]
fn a_lying_member_cannot_forge_room_state() {
    let mut victim = engine(1);
    victim.set_policy("", ConflictPolicy::Reconcile);
    let mut honest = engine(2);
    let mut mallory = engine(9);
    // The room's policy, and a conflict the victim shows under it.
    let policy = honest
        .set_room_policy("doc/", ConflictPolicy::MultiValue, NOW)
        .unwrap();
    let writes = [
        honest.set("doc/x", json("1"), NOW).unwrap(),
        mallory.set("doc/x", json("2"), NOW).unwrap(),
    ];
    deliver(&mut victim, std::slice::from_ref(&policy), NOW);
    deliver(&mut victim, &writes, NOW);
    let before = (victim.digest(), victim.conflicts(), victim.clock().clone());
    assert_eq!(before.1.len(), 1);

    // Each forgery is mallory's next event, made from an honest one.
    let forge = |mallory: &mut ReconciliationEngine, key: &str, op: Operation| {
        let mut event = mallory.set("scratch", json("0"), NOW).unwrap();
        event.key = key.into();
        event.op = op;
        event.hlc = policy.hlc; // as early as the real policy: first kind
        event
    };
    let write = |value: &str, resolution: bool| {
        Operation::Register(RegisterOp::Write {
            value: json(value),
            observed: Default::default(),
            resolution,
        })
    };
    let key = policy_key("doc/");
    let forgeries = [
        forge(
            &mut mallory,
            &key,
            Operation::Counter(CounterOp::Increment { by: 1, sum: 1 }),
        ),
        forge(
            &mut mallory,
            &key,
            Operation::Set(SetOp::Add {
                member: json("\"lww\""),
                observed: Default::default(),
            }),
        ),
        forge(&mut mallory, &key, write("\"sometimes\"", false)),
        forge(&mut mallory, &key, write(r#"{"policy":"lww"}"#, false)),
        forge(&mut mallory, &key, write("\"lww\"", true)),
        forge(&mut mallory, "\u{0}cpc/admin", write("\"mallory\"", false)),
        forge(
            &mut mallory,
            &policy_key("\u{0}cpc/"),
            write("\"multi-value\"", false),
        ),
    ];
    let refused_before = victim.stats().refused_malformed;
    for forgery in &forgeries {
        let result = victim.receive(forgery.clone(), NOW);
        assert!(
            matches!(result, Err(ReceiveError::InvalidRoomState { .. })),
            "{:?}: {result:?}",
            forgery.op
        );
    }
    assert_eq!(
        victim.stats().refused_malformed - refused_before,
        forgeries.len() as u64
    );
    let after = (victim.digest(), victim.conflicts(), victim.clock().clone());
    assert_eq!(after, before, "nothing forged got in");
    assert_eq!(victim.room_policy("doc/"), Some(ConflictPolicy::MultiValue));

    // The same forgery inside a snapshot: the whole snapshot is refused.
    let mut liar = engine(8);
    liar.receive_all([policy.clone()], NOW);
    let mut snapshot = liar.snapshot();
    let forged = snapshot
        .events
        .iter_mut()
        .find(|e| e.key == policy.key)
        .expect("the policy backs the snapshot");
    forged.op = Operation::Counter(CounterOp::Increment { by: 1, sum: 1 });
    let trust = Trust {
        signed: false,
        now_ms: Some(NOW),
    };
    let mut fresh = engine(3);
    assert!(matches!(
        fresh.load_snapshot(snapshot, trust),
        Err(SnapshotError::Malformed(_))
    ));
    assert!(fresh.room_policies().is_empty() && fresh.clock().is_empty());
    let honest_snapshot = StateSnapshot::decode(&liar.encode_snapshot()).unwrap();
    fresh.load_snapshot(honest_snapshot, trust).unwrap();
    assert_eq!(fresh.room_policy("doc/"), Some(ConflictPolicy::MultiValue));

    // Two genuine concurrent policies leave siblings on the policy key;
    // a request to reconcile them is refused, and nothing is written (a
    // resolution would be refused by every peer, stalling ours).
    let mut other = engine(4);
    let rival = other
        .set_room_policy("doc/", ConflictPolicy::Lww, NOW - 1)
        .unwrap();
    deliver(&mut victim, std::slice::from_ref(&rival), NOW);
    let request = ReconciliationRequest {
        message_type: RequestType::ReconciliationRequest,
        source_peer_id: PeerId(9),
        target_peer_id: PeerId(1),
        key: None,
        conflicting_events: vec![policy.clone(), rival],
    };
    let own = victim.clock().get(PeerId(1));
    let mut handler = |_: &str, _: &[Candidate]| Some(JsonValue::parse("\"evil\"").unwrap());
    assert!(matches!(
        victim.handle_reconciliation_request(&request, &mut handler, NOW),
        Err(ReceiveError::Malformed(_))
    ));
    assert_eq!(
        victim.clock().get(PeerId(1)),
        own,
        "the victim wrote nothing"
    );
    assert!(victim
        .pending_reconciliations(NOW)
        .iter()
        .all(|k| !k.starts_with('\0')));
    assert_eq!(victim.resolver(&key), None);
    assert_eq!(victim.room_policy("doc/"), Some(ConflictPolicy::MultiValue));
}
