//! The reconciliation request/response exchange on `reconcile` keys.

use crate::common;

use common::{assert_converged, deliver, engine, json};
use cpc_sync::protocol::{
    Candidate, ConflictPolicy, JsonValue, P2PEvent, PeerId, ReceiveError, ReconcileStep,
    ReconciliationEngine, ReconciliationRequest, ReconciliationResponse,
};
use serde_json::json as j;

fn reconcile_peers(n: u64) -> Vec<ReconciliationEngine> {
    (1..=n)
        .map(|i| {
            let mut e = engine(i);
            e.set_policy("doc/", ConflictPolicy::Reconcile);
            e
        })
        .collect()
}

/// The app's handler: joins the candidates' strings in peer order.
fn join(_key: &str, candidates: &[Candidate]) -> Option<JsonValue> {
    let mut parts: Vec<String> = candidates
        .iter()
        .map(|c| c.value.to_value().as_str().unwrap_or_default().to_string())
        .collect();
    parts.sort();
    Some(JsonValue::from(&serde_json::Value::String(parts.join("+"))))
}

/// Peers 1 and 3 write `doc/title` concurrently; peer 3 sees both.
fn a_conflict_at_peer_3() -> (Vec<ReconciliationEngine>, P2PEvent, P2PEvent) {
    let mut peers = reconcile_peers(3);
    let e1 = peers[0].set("doc/title", json("\"one\""), 1_000).unwrap();
    let e3 = peers[2].set("doc/title", json("\"three\""), 1_000).unwrap();
    deliver(&mut peers[2], std::slice::from_ref(&e1), 1_000);
    (peers, e1, e3)
}

/// Peer 3's request to its resolver, peer 1.
fn request_from_peer_3(peers: &mut [ReconciliationEngine]) -> ReconciliationRequest {
    let step = peers[2]
        .request_reconciliation("doc/title", &mut join, &|_| true, 1_000)
        .unwrap();
    let ReconcileStep::Request(request) = step else {
        panic!("peer 3 is not the resolver")
    };
    request
}

#[test]
fn the_requester_asks_the_lowest_origin_and_applies_its_answer() {
    let (mut peers, e1, e3) = a_conflict_at_peer_3();
    deliver(&mut peers[1], &[e1.clone(), e3.clone()], 1_000);

    // Peer 3 sees the conflict; peer 1 (lowest origin) is the resolver.
    assert_eq!(peers[2].resolver("doc/title"), Some(PeerId(1)));
    assert_eq!(peers[2].pending_reconciliations(1_000).len(), 1);
    let request = request_from_peer_3(&mut peers);
    assert!(
        peers[2].pending_reconciliations(1_001).is_empty(),
        "asked once"
    );

    // The JSON form has the spec's shape, and names the key.
    let wire = serde_json::to_value(&request).unwrap();
    assert_eq!(wire["key"], "doc/title");
    assert_eq!(wire["type"], "RECONCILIATION_REQUEST");
    assert_eq!(wire["source_peer_id"], "0000000000000003");
    assert_eq!(wire["target_peer_id"], "0000000000000001");
    assert_eq!(wire["conflicting_events"].as_array().unwrap().len(), 2);
    assert_eq!(wire.as_object().unwrap().len(), 5);
    let back: ReconciliationRequest = serde_json::from_value(wire).unwrap();
    assert_eq!(back, request);

    // The resolver (which has not yet seen e3) applies the events it lacks.
    let response = peers[0]
        .handle_reconciliation_request(&request, &mut join, 1_100)
        .unwrap()
        .expect("resolved");
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["type"], "RECONCILIATION_RESPONSE");
    assert_eq!(wire["target_peer_id"], "0000000000000003");
    let resolution = response.resolution_events[0].clone();
    assert!(
        resolution.dependencies().count() >= 2,
        "descends every sibling"
    );

    assert_eq!(
        peers[2]
            .handle_reconciliation_response(&response, 1_200)
            .unwrap(),
        1
    );
    assert_eq!(peers[2].get("doc/title"), Some(j!("one+three")));
    assert!(peers[2].conflicts().is_empty());
    deliver(&mut peers[1], &[resolution], 1_200);
    assert!(peers[1].conflicts().is_empty());
    let (p2, p3) = (peers[2].clone_events(), peers[0].clone_events());
    deliver(&mut peers[0], &p2, 1_300);
    deliver(&mut peers[2], &p3, 1_300);
    assert_converged(&mut peers);
}

#[test]
fn a_request_after_compaction_still_carries_every_sibling() {
    let (mut peers, e1, e3) = a_conflict_at_peer_3();
    // Peer 3 folds its whole log (everyone it knows has it): the siblings
    // leave the log but stay in the archive, since the state rests on them.
    let everything = peers[2].clock().clone();
    assert!(peers[2].compact(&everything) > 0);
    assert!(peers[2].log().is_empty());
    let request = request_from_peer_3(&mut peers);
    assert_eq!(request.conflicting_events, vec![e1, e3]);
    let response = peers[0]
        .handle_reconciliation_request(&request, &mut join, 1_100)
        .unwrap()
        .expect("resolved");
    peers[2]
        .handle_reconciliation_response(&response, 1_200)
        .unwrap();
    assert_eq!(peers[2].get("doc/title"), Some(j!("one+three")));
}

#[test]
fn the_resolver_settles_its_own_conflict_without_a_request() {
    let mut peers = reconcile_peers(2);
    let e1 = peers[0].set("doc/a", json("\"x\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/a", json("\"y\""), 1_000).unwrap();
    deliver(&mut peers[0], &[e2], 1_000);
    deliver(&mut peers[1], &[e1], 1_000);
    let steps = peers[0].reconcile(&mut join, &|_| true, 1_000);
    let [ReconcileStep::Resolved(resolution)] = steps.as_slice() else {
        panic!("{steps:?}")
    };
    deliver(&mut peers[1], std::slice::from_ref(resolution), 1_000);
    assert_eq!(peers[1].get("doc/a"), Some(j!("x+y")));
    assert_converged(&mut peers);
}

#[test]
fn a_request_after_settlement_is_answered_with_the_settling_event() {
    let mut peers = reconcile_peers(2);
    let e1 = peers[0].set("doc/a", json("\"x\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/a", json("\"y\""), 1_000).unwrap();
    deliver(&mut peers[0], &[e2], 1_000);
    deliver(&mut peers[1], &[e1], 1_000);
    let ReconcileStep::Request(request) = peers[1]
        .request_reconciliation("doc/a", &mut join, &|_| true, 1_000)
        .unwrap()
    else {
        panic!()
    };
    peers[0].reconcile(&mut join, &|_| true, 1_000);
    let mut never_called =
        |_: &str, _: &[Candidate]| -> Option<JsonValue> { panic!("already settled") };
    let response = peers[0]
        .handle_reconciliation_request(&request, &mut never_called, 1_100)
        .unwrap()
        .unwrap();
    peers[1]
        .handle_reconciliation_response(&response, 1_100)
        .unwrap();
    assert_converged(&mut peers);
}

#[test]
fn concurrent_resolutions_settle_by_resolver_id_without_another_round() {
    // Peers 1 and 2 each see a different conflict on one key and resolve
    // concurrently; the results are siblings that settle by resolver id.
    let mut peers = reconcile_peers(4);
    let e1 = peers[0].set("doc/k", json("\"1\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/k", json("\"2\""), 1_000).unwrap();
    let e3 = peers[2].set("doc/k", json("\"3\""), 1_000).unwrap();
    let e4 = peers[3].set("doc/k", json("\"4\""), 1_000).unwrap();
    deliver(&mut peers[0], std::slice::from_ref(&e3), 1_000);
    deliver(&mut peers[1], std::slice::from_ref(&e4), 1_000);
    let r1 = match peers[0].reconcile(&mut join, &|_| true, 1_000).pop() {
        Some(ReconcileStep::Resolved(e)) => e,
        other => panic!("{other:?}"),
    };
    let r2 = match peers[1].reconcile(&mut join, &|_| true, 1_000).pop() {
        Some(ReconcileStep::Resolved(e)) => e,
        other => panic!("{other:?}"),
    };
    let everything = [e1, e2, e3, e4, r1, r2];
    for p in peers.iter_mut() {
        for e in &everything {
            let _ = p.receive(e.clone(), 2_000).unwrap();
        }
    }
    for p in peers.iter_mut() {
        assert!(p.conflicts().is_empty(), "peer {}", p.peer());
        assert!(p.pending_reconciliations(2_000).is_empty());
        assert_eq!(p.get("doc/k"), Some(j!("1+3")), "resolver 1 wins");
    }
    assert_converged(&mut peers);
}

#[test]
fn malformed_requests_are_typed_errors() {
    let mut a = engine(1);
    let request = ReconciliationRequest {
        message_type: Default::default(),
        source_peer_id: PeerId(2),
        target_peer_id: PeerId(9),
        key: None,
        conflicting_events: vec![],
    };
    let mut lww = |_: &str, _: &[Candidate]| None;
    let err = a
        .handle_reconciliation_request(&request, &mut lww, 0)
        .unwrap_err();
    assert!(matches!(err, ReceiveError::Malformed(_)), "{err}");
    let request = ReconciliationRequest {
        target_peer_id: PeerId(1),
        ..request
    };
    assert!(a
        .handle_reconciliation_request(&request, &mut lww, 0)
        .is_err());
    assert!(matches!(
        a.request_reconciliation("nothing", &mut lww, &|_| true, 0),
        Err(ReceiveError::NoConflict(_))
    ));
    let response: Result<ReconciliationResponse, _> = serde_json::from_value(
        j!({"type": "RECONCILIATION_REQUEST", "source_peer_id": "1", "target_peer_id": "2", "resolution_events": []}),
    );
    assert!(response.is_err(), "the type tag is checked");
}

/// Every event an engine has applied, for catching another engine up.
trait CloneEvents {
    fn clone_events(&self) -> Vec<cpc_sync::protocol::P2PEvent>;
}

impl CloneEvents for ReconciliationEngine {
    fn clone_events(&self) -> Vec<cpc_sync::protocol::P2PEvent> {
        self.log().iter().cloned().collect()
    }
}

/// A resolution copies the value it settles on. A remote value over our
/// own writes' bound (a build without it made it) that wins is still
/// settled on; one too large for a run is passed over, the handler's pick
/// too, for the last writer's value that fits; with none left the conflict
/// stays for the app. Before, `settle` failed on a won value over 8 MiB,
/// and the conflict was asked about every few seconds, forever.
#[test]
fn a_won_value_too_large_for_our_writes_still_settles_its_conflict() {
    use cpc_sync::protocol::engine::{MAX_RESOLUTION_BYTES, MAX_WRITE_BYTES};
    use cpc_sync::protocol::event::{Operation, RegisterOp};
    use cpc_sync::protocol::WriteError;
    let text = |bytes: usize| JsonValue::from(&serde_json::Value::String("b".repeat(bytes)));
    // Peer 2's write, later than peer 1's (it wins by LWW), of `value`.
    let conflict = |value: JsonValue| {
        let mut peers = reconcile_peers(2);
        peers[0].set("doc/a", json("\"x\""), 1_000).unwrap();
        let mut theirs = peers[1].set("doc/a", json("\"y\""), 2_000).unwrap();
        let Operation::Register(RegisterOp::Write { value: v, .. }) = &mut theirs.op else {
            unreachable!()
        };
        *v = value;
        deliver(&mut peers[0], &[theirs], 2_000);
        assert_eq!(peers[0].conflicts().len(), 1);
        peers.swap_remove(0)
    };
    let settled =
        |resolver: &mut ReconciliationEngine,
         handler: &mut dyn FnMut(&str, &[Candidate]) -> Option<JsonValue>| {
            match resolver.reconcile(handler, &|_| true, 3_000).as_slice() {
                [ReconcileStep::Resolved(r)] => {
                    assert!(resolver.conflicts().is_empty());
                    let Operation::Register(RegisterOp::Write { value, .. }) = &r.op else {
                        panic!("{r:?}")
                    };
                    Some(value.as_str().len())
                }
                [] => None,
                steps => panic!("{steps:?}"),
            }
        };
    let mut lww = |_: &str, _: &[Candidate]| None;
    // Over our writes' bound, within a run's: settled on, whole.
    let over = MAX_WRITE_BYTES + 1_000;
    let mut resolver = conflict(text(over));
    assert_eq!(settled(&mut resolver, &mut lww), Some(over + 2));
    // Too large for a run: the other value, by LWW and over the handler.
    let huge = MAX_RESOLUTION_BYTES + 1;
    let mut resolver = conflict(text(huge));
    assert_eq!(settled(&mut resolver, &mut lww), Some(3), "\"x\"");
    let mut resolver = conflict(json("\"y\""));
    let mut picks_huge = |_: &str, _: &[Candidate]| Some(text(huge));
    assert_eq!(settled(&mut resolver, &mut picks_huge), Some(3));
    // A value of the handler's own over our writes' bound is refused like
    // a write; the same value, a sibling's, is copied.
    let mut picks_over = |_: &str, _: &[Candidate]| Some(text(over));
    let mut resolver = conflict(json("\"y\""));
    assert_eq!(settled(&mut resolver, &mut picks_over), Some(3));
    let mut resolver = conflict(text(over));
    let mut picks_sibling = |_: &str, c: &[Candidate]| {
        c.iter()
            .map(|c| c.value.clone())
            .max_by_key(|v| v.as_str().len())
    };
    assert_eq!(settled(&mut resolver, &mut picks_sibling), Some(over + 2));
    // Nothing that fits (two others' values, their writers out of
    // reach, so this peer resolves): the conflict stays, the error typed.
    let mut peers = reconcile_peers(3);
    let mut huge_from = |i: usize, hlc: u64| {
        let mut e = peers[i].set("doc/a", json("\"y\""), hlc).unwrap();
        let Operation::Register(RegisterOp::Write { value, .. }) = &mut e.op else {
            unreachable!()
        };
        *value = text(huge);
        e
    };
    let (b, c) = (huge_from(1, 1_000), huge_from(2, 2_000));
    deliver(&mut peers[0], &[b, c], 2_000);
    let err = peers[0].request_reconciliation("doc/a", &mut lww, &|_| false, 3_000);
    assert!(
        matches!(
            err,
            Err(ReceiveError::OwnWrite(WriteError::TooLarge { .. }))
        ),
        "{err:?}"
    );
    assert_eq!(peers[0].conflicts().len(), 1);
    // Tried again after the retry time, not at every tick before it.
    let mut calls = 0;
    let mut counting = |_: &str, _: &[Candidate]| {
        calls += 1;
        None
    };
    assert!(peers[0]
        .reconcile(&mut counting, &|_| false, 4_000)
        .is_empty());
    assert!(peers[0]
        .reconcile(&mut counting, &|_| false, 8_001)
        .is_empty());
    assert_eq!(calls, 1, "asked once, at 8,001 ms");
}

/// A request for a key the resolver leaves to its app (multi-value, or
/// last writer wins) is refused: any member could otherwise name a
/// conflict the resolver's user is to settle, and have it write a signed
/// resolution of its own over it.
#[test]
fn a_request_for_a_key_this_peer_does_not_reconcile_is_refused() {
    let (mut peers, e1, e3) = a_conflict_at_peer_3();
    let request = request_from_peer_3(&mut peers);
    peers[0].set_policy("doc/", ConflictPolicy::MultiValue);
    let err = peers[0].handle_reconciliation_request(&request, &mut join, 1_100);
    assert!(matches!(err, Err(ReceiveError::NoConflict(_))), "{err:?}");
    deliver(&mut peers[0], &[e3], 1_100);
    assert_eq!(peers[0].conflicts().len(), 1, "left to its app");
    assert_eq!(
        peers[0].clock().get(PeerId(1)),
        1,
        "nothing written: {e1:?}"
    );
    // Reconciled again, the same request is answered.
    peers[0].set_policy("doc/", ConflictPolicy::Reconcile);
    let answer = peers[0].handle_reconciliation_request(&request, &mut join, 1_200);
    assert!(matches!(answer, Ok(Some(_))), "{answer:?}");
}

/// A resolver that never answers (it leaves the key to its app, or keeps
/// quiet on purpose) is passed over once asked about the same siblings
/// `PASS_OVER_AFTER_ASKS` (3) times: the next origin is asked, and with none
/// left the requester settles the conflict itself. Before, it asked the
/// same resolver every five seconds, for good.
#[test]
fn a_resolver_that_never_answers_is_passed_over() {
    let mut peers = reconcile_peers(4);
    // Peers 1, 2 and 4 write concurrently; peer 4 sees all three, and its
    // requests go nowhere.
    let e1 = peers[0].set("doc/q", json("\"one\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/q", json("\"two\""), 1_000).unwrap();
    peers[3].set("doc/q", json("\"four\""), 1_000).unwrap();
    deliver(&mut peers[3], &[e1, e2], 1_000);
    let asked = |peers: &mut [ReconciliationEngine], now: u64| match peers[3]
        .reconcile(&mut join, &|_| true, now)
        .as_slice()
    {
        [ReconcileStep::Request(r)] => Some(r.target_peer_id),
        [ReconcileStep::Resolved(_)] => None,
        steps => panic!("{steps:?}"),
    };
    let mut now = 1_000;
    for expected in [1, 1, 1, 2, 2, 2] {
        assert_eq!(
            asked(&mut peers, now),
            Some(PeerId(expected)),
            "at {now} ms"
        );
        assert!(peers[3]
            .reconcile(&mut join, &|_| true, now + 2_000)
            .is_empty());
        now += 5_000;
    }
    // Both unanswered, each three times: no origin left but itself.
    assert_eq!(asked(&mut peers, now), None);
    assert!(peers[3].conflicts().is_empty());
    assert_eq!(peers[3].get("doc/q"), Some(j!("four+one+two")));
}

/// A slow resolver, whose answer to the first ask comes after the second
/// and third (each a retry time apart) but before the requester passes it
/// over: one resolution in all. The asks it answers late find the conflict
/// settled and answer with the same resolution, and the requester asks no
/// one else.
#[test]
fn a_slow_resolver_answered_in_time_makes_the_only_resolution() {
    let mut peers = reconcile_peers(4);
    let e1 = peers[0].set("doc/s", json("\"one\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/s", json("\"two\""), 1_000).unwrap();
    let e4 = peers[3].set("doc/s", json("\"four\""), 1_000).unwrap();
    let written = [e1, e2, e4];
    deliver(&mut peers[3], &written[..2], 1_000);
    let mut requests = Vec::new();
    for now in [1_000, 6_000, 11_000] {
        match peers[3].reconcile(&mut join, &|_| true, now).as_slice() {
            [ReconcileStep::Request(r)] => requests.push(r.clone()),
            steps => panic!("at {now} ms: {steps:?}"),
        }
    }
    assert!(requests.iter().all(|r| r.target_peer_id == PeerId(1)));
    // The resolver takes each ask only now, in order; the first answer
    // reaches the requester before its pass-over time (16,000 ms).
    let answers: Vec<ReconciliationResponse> = requests
        .iter()
        .map(|r| {
            peers[0]
                .handle_reconciliation_request(r, &mut join, 12_000)
                .unwrap()
                .expect("answered")
        })
        .collect();
    let resolutions = |answers: &[ReconciliationResponse]| {
        let mut ids: Vec<_> = answers
            .iter()
            .flat_map(|a| &a.resolution_events)
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(
        resolutions(&answers).len(),
        1,
        "one resolution: {answers:?}"
    );
    peers[3]
        .handle_reconciliation_response(&answers[0], 13_000)
        .unwrap();
    assert!(peers[3].conflicts().is_empty());
    for later in &answers[1..] {
        assert_eq!(
            peers[3].handle_reconciliation_response(later, 14_000),
            Ok(0)
        );
    }
    for now in [16_000, 21_000, 26_000] {
        assert!(
            peers[3].reconcile(&mut join, &|_| true, now).is_empty(),
            "at {now} ms"
        );
    }
    assert_eq!(peers[3].get("doc/s"), Some(j!("four+one+two")));
    // The others converge on it with no round more.
    let answer = answers[0].resolution_events.clone();
    for p in [1, 2] {
        deliver(&mut peers[p], &written, 30_000);
        deliver(&mut peers[p], &answer, 30_000);
        assert!(peers[p].conflicts().is_empty());
        assert!(peers[p].reconcile(&mut join, &|_| true, 30_000).is_empty());
        assert_eq!(peers[p].get("doc/s"), Some(j!("four+one+two")));
    }
}

/// Two requesters that each settle a conflict themselves (its writers out
/// of reach, or passed over) write concurrent resolutions: once each has
/// the other's, the lowest resolver's stands everywhere, with no round
/// more and no conflict left.
#[test]
fn requesters_that_settle_themselves_converge_without_another_round() {
    let mut peers = reconcile_peers(4);
    let e1 = peers[0].set("doc/r", json("\"one\""), 1_000).unwrap();
    let e2 = peers[1].set("doc/r", json("\"two\""), 1_000).unwrap();
    let mut resolutions = Vec::new();
    for at in [2, 3] {
        deliver(&mut peers[at], &[e1.clone(), e2.clone()], 1_000);
        let mut mine = |_: &str, _: &[Candidate]| {
            Some(JsonValue::from(&serde_json::Value::String(format!(
                "by {}",
                at + 1
            ))))
        };
        match peers[at].reconcile(&mut mine, &|_| false, 2_000).as_slice() {
            [ReconcileStep::Resolved(r)] => resolutions.push(r.clone()),
            steps => panic!("{steps:?}"),
        }
    }
    for p in peers.iter_mut() {
        deliver(p, &[e1.clone(), e2.clone()], 3_000);
        deliver(p, &resolutions, 3_000);
        assert!(p.conflicts().is_empty(), "peer {}", p.peer());
        assert!(p.pending_reconciliations(9_000).is_empty());
        assert_eq!(p.get("doc/r"), Some(j!("by 3")), "the lowest resolver's");
    }
    assert_converged(&mut peers);
}
