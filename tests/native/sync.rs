//! Two sync nodes over a direct, lossless pipe: what anti-entropy sends,
//! how many round trips it takes, and how it repairs and refuses.

use crate::common;

use common::json;
use cpc_sync::protocol::sync::wire::{self, Message};
use cpc_sync::protocol::sync::{Output, Persist, Relay, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, P2PEvent, PeerId, ReconciliationEngine};

fn node(id: u64) -> SyncNode {
    let engine = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
    SyncNode::new(engine, SyncConfig::default())
}

/// Frames each way and the number of message exchanges until both sides
/// go quiet. A "round" is one batch of frames crossing in each direction.
/// Round-trip probes (`Ping`/`Pong`, on connect and every 10 s) are counted
/// apart: they are not anti-entropy.
#[derive(Debug, Default)]
struct Traffic {
    bytes: [usize; 2],
    frames: [usize; 2],
    rounds: usize,
    probes: usize,
    /// Every output that is not a `Send`, by node, in order: routing takes
    /// all outputs, so checks of what a node persisted or refused during
    /// an exchange look here, not at `take_outputs` afterwards.
    others: Others,
}

#[derive(Default)]
struct Others(Vec<(PeerId, Output)>);

/// Only the count: outputs carry whole snapshots.
impl std::fmt::Debug for Others {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} other outputs", self.0.len())
    }
}

impl Traffic {
    fn others_of(&self, peer: PeerId) -> impl Iterator<Item = &Output> {
        self.others
            .0
            .iter()
            .filter(move |(p, _)| *p == peer)
            .map(|(_, o)| o)
    }
}

fn is_probe(frame: &[u8]) -> bool {
    matches!(
        wire::decode(frame),
        Ok(wire::Decoded::Message(
            Message::Ping { .. } | Message::Pong { .. }
        ))
    )
}

/// Connects `a` and `b` and shuttles frames until neither says more.
fn sync(a: &mut SyncNode, b: &mut SyncNode, now: u64) -> Traffic {
    let (ida, idb) = (a.peer(), b.peer());
    a.connect(idb, now);
    b.connect(ida, now);
    exchange(a, b, now)
}

fn exchange(a: &mut SyncNode, b: &mut SyncNode, now: u64) -> Traffic {
    route(&mut [a, b], now)
}

/// Delivers every frame to the node it is addressed to, in rounds, until
/// no node has anything more to send; a durable node's storage commits at
/// once. Direction 0 counts frames to the second node, direction 1 frames
/// to the first.
fn route(nodes: &mut [&mut SyncNode], now: u64) -> Traffic {
    let mut traffic = Traffic::default();
    loop {
        let mut frames = Vec::new();
        let mut committed = false;
        for n in nodes.iter_mut() {
            let from = n.peer();
            let mut last_token = None;
            for output in n.take_outputs() {
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    other => {
                        if let Output::Persist { token, .. } = &other {
                            last_token = Some(*token);
                        }
                        traffic.others.0.push((from, other));
                    }
                }
            }
            if let Some(token) = last_token {
                n.persisted(token);
                committed = true;
            }
        }
        if frames.is_empty() {
            if committed {
                continue;
            }
            return traffic;
        }
        if !frames.iter().all(|(_, _, f)| is_probe(f)) {
            traffic.rounds += 1;
        }
        assert!(traffic.rounds < 50, "the exchange does not end");
        for (from, to, frame) in frames {
            let dir = usize::from(to == nodes[0].peer());
            if is_probe(&frame) {
                traffic.probes += 1;
            } else {
                traffic.frames[dir] += 1;
                traffic.bytes[dir] += frame.len();
            }
            if let Some(n) = nodes.iter_mut().find(|n| n.peer() == to) {
                n.receive_frame(from, &frame, now);
            }
        }
    }
}

/// The frames a node wants to send.
fn sends(outputs: Vec<Output>) -> Vec<Vec<u8>> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect()
}

fn write_many(n: &mut SyncNode, count: usize, now: u64) {
    for i in 0..count {
        n.write(|e| e.set(&format!("k{i}"), json(&i.to_string()), now).map(Some))
            .unwrap();
    }
    n.take_outputs();
}

#[test]
fn equal_peers_exchange_only_digests() {
    let (mut a, mut b) = (node(1), node(2));
    write_many(&mut a, 100, 1_000);
    sync(&mut a, &mut b, 2_000);
    let traffic = exchange_again(&mut a, &mut b, 3_000);
    assert_eq!(traffic.frames, [1, 1], "{traffic:?}");
    assert!(
        traffic.bytes[0] <= 100 && traffic.bytes[1] <= 100,
        "{traffic:?}"
    );
}

fn exchange_again(a: &mut SyncNode, b: &mut SyncNode, now: u64) -> Traffic {
    a.disconnect(b.peer());
    b.disconnect(a.peer());
    sync(a, b, now)
}

#[test]
fn missing_events_arrive_in_one_round_trip() {
    let (mut a, mut b) = (node(1), node(2));
    write_many(&mut a, 500, 1_000);
    sync(&mut a, &mut b, 2_000);
    a.disconnect(PeerId(2));
    b.disconnect(PeerId(1));
    write_many(&mut a, 100, 2_500);
    let traffic = sync(&mut a, &mut b, 3_000);
    // Round 1: digests cross; round 2: the events come back. Nothing after.
    assert_eq!(traffic.rounds, 2, "{traffic:?}");
    assert_eq!(b.engine().clock(), a.engine().clock());
    assert_eq!(b.engine_mut().digest(), a.engine_mut().digest());
}

/// Relaying to every link or down PlumTree's tree, a to b then b to c;
/// by pull (the default), b announces to c, which asks and gets it.
#[test]
fn relayed_events_reach_peers_that_are_not_connected() {
    for (relay, rounds) in [(Relay::Flood, 2), (Relay::Tree, 2), (Relay::Pull, 4)] {
        let node = |id| {
            let engine = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
            let config = SyncConfig {
                relay,
                ..SyncConfig::default()
            };
            SyncNode::new(engine, config)
        };
        let (mut a, mut b, mut c) = (node(1), node(2), node(3));
        sync(&mut a, &mut b, 1_000);
        b.connect(PeerId(3), 1_000);
        c.connect(PeerId(2), 1_000);
        route(&mut [&mut a, &mut b, &mut c], 1_000);
        a.write(|e| e.set("k", json("1"), 1_100).map(Some)).unwrap();
        let traffic = route(&mut [&mut a, &mut b, &mut c], 1_100);
        assert_eq!(traffic.rounds, rounds, "{relay:?}: {traffic:?}");
        assert_eq!(c.engine().get("k"), Some(serde_json::json!(1)));
    }
}

#[test]
fn equal_clocks_with_different_states_are_repaired_by_merkle_descent() {
    let (mut a, mut b) = (node(1), node(2));
    write_many(&mut a, 300, 1_000);
    sync(&mut a, &mut b, 2_000);
    // A third peer's event reaches a intact and b altered in transit
    // (bypassing frame checksums): clocks agree, states do not.
    let mut c = ReconciliationEngine::new(PeerId(3), EngineConfig::default());
    let event = c.set("k7", json("\"from c\""), 2_500).unwrap();
    let mut altered = event.clone();
    if let cpc_sync::protocol::Operation::Register(cpc_sync::protocol::event::RegisterOp::Write {
        value,
        ..
    }) = &mut altered.op
    {
        *value = json("\"altered\"");
    }
    a.engine_mut().receive(event, 2_500).unwrap();
    b.engine_mut().receive(altered, 2_500).unwrap();
    assert_eq!(a.engine().clock(), b.engine().clock());
    assert_ne!(a.engine_mut().digest(), b.engine_mut().digest());
    let traffic = exchange_again(&mut a, &mut b, 3_000);
    assert_eq!(
        a.engine_mut().digest(),
        b.engine_mut().digest(),
        "{traffic:?}"
    );
    assert_eq!(a.engine().state_json(), b.engine().state_json());
}

/// `a`, its log folded into a snapshot of several windows, and `b`,
/// durable, connected to it and partway through receiving the snapshot:
/// `(a, b, received, total)`.
fn partway_through_a_snapshot() -> (SyncNode, SyncNode, u64, u64) {
    let config = SyncConfig {
        compact_after: 10,
        keep_unacked: 0,
        snapshot_chunk: 1024,
        ..SyncConfig::default()
    };
    let mut a = SyncNode::new(
        ReconciliationEngine::new(PeerId(1), EngineConfig::default()),
        config,
    );
    let mut b = SyncNode::new(
        ReconciliationEngine::new(PeerId(2), EngineConfig::default()),
        SyncConfig {
            durable: true,
            ..SyncConfig::default()
        },
    );
    for i in 0..3000 {
        let value = json(&format!("\"{}\"", "v".repeat(i % 800)));
        a.write(|e| e.set(&format!("key/{i}"), value, 1_000).map(Some))
            .unwrap();
    }
    a.tick(1_000); // compacts: nobody else is known
    a.take_outputs();
    assert!(a.engine().log().is_empty());
    let total = a.engine().encode_snapshot().len();
    assert!(
        total > 1024 * 1024,
        "a snapshot of several windows ({total} bytes)"
    );

    // Connect; deliver frames until part of the snapshot is in, then drop.
    a.connect(PeerId(2), 2_000);
    b.connect(PeerId(1), 2_000);
    let mut to_b = sends(a.take_outputs());
    let mut to_a = sends(b.take_outputs());
    while b.snapshot_progress().is_none_or(|(_, got, _)| got == 0) {
        for f in std::mem::take(&mut to_b) {
            b.receive_frame(PeerId(1), &f, 2_000);
        }
        for f in std::mem::take(&mut to_a) {
            a.receive_frame(PeerId(2), &f, 2_000);
        }
        to_b = sends(a.take_outputs());
        to_a = sends(b.take_outputs());
    }
    let (_, got, all) = b.snapshot_progress().unwrap();
    assert!(got < all);
    (a, b, got, all)
}

#[test]
fn a_peer_behind_the_horizon_gets_a_snapshot_that_resumes_after_a_disconnect() {
    let (mut a, mut b, got, _) = partway_through_a_snapshot();
    a.disconnect(PeerId(2));
    b.disconnect(PeerId(1));

    // Reconnect: the first request resumes from where it stopped.
    b.connect(PeerId(1), 3_000);
    let resume = sends(b.take_outputs())
        .into_iter()
        .find_map(|f| match wire::decode(&f) {
            Ok(wire::Decoded::Message(Message::SnapshotRequest { offset, .. })) => Some(offset),
            _ => None,
        });
    assert_eq!(resume, Some(got));
    a.disconnect(PeerId(2));
    b.disconnect(PeerId(1));
    let traffic = sync(&mut a, &mut b, 3_000);
    assert!(b.snapshot_progress().is_none());
    assert_eq!(b.engine().state_json(), a.engine().state_json());
    assert_eq!(b.engine_mut().digest(), a.engine_mut().digest());
    // b refused nothing, and persisted what it loaded: a b restarted from
    // its storage shows a's state.
    let refused: Vec<&Output> = traffic
        .others_of(PeerId(2))
        .filter(|o| matches!(o, Output::Rejected { .. }))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    // It stores what it loaded at its next timer, due at once (encoding
    // the state is a task of its own).
    assert!(b.next_timer() <= 3_000);
    b.tick(3_000);
    let stored = b
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Persist {
                write: Persist::Snapshot(bytes),
                ..
            } => Some(bytes),
            _ => None,
        })
        .last()
        .expect("b persisted a snapshot");
    let restarted = SyncNode::restore(
        PeerId(2),
        EngineConfig::default(),
        SyncConfig::default(),
        Some(&stored),
        Vec::new(),
    )
    .expect("b's own snapshot restores");
    assert_eq!(restarted.engine().state_json(), a.engine().state_json());
}

#[test]
fn bad_frames_are_refused_counted_and_the_session_goes_on() {
    let (mut a, mut b) = (node(1), node(2));
    sync(&mut a, &mut b, 1_000);
    let bad = [wire::PROTOCOL_VERSION, 0, 0xde, 0xad, 0xbe, 0xef];
    b.receive_frame(PeerId(1), &bad, 1_100);
    let outputs = b.take_outputs();
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Rejected { .. })),
        "{outputs:?}"
    );
    let stats = b
        .sessions()
        .find(|(p, _)| *p == PeerId(1))
        .unwrap()
        .1
        .clone();
    assert_eq!(stats.rejected, 1);
    assert!(stats.last_error.unwrap().contains("checksum"));
    // Still syncing.
    a.write(|e| e.increment("n", 1, 1_200).map(Some)).unwrap();
    exchange(&mut a, &mut b, 1_200);
    assert_eq!(b.engine().get("n"), Some(serde_json::json!(1)));
    // An oversized frame closes the connection.
    b.receive_frame(PeerId(1), &vec![1; wire::MAX_FRAME + 1], 1_300);
    assert!(b
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Close { .. })));
    assert_eq!(b.sessions().count(), 0);
}

/// A peer of the previous protocol is told
/// apart from a malformed one: its first frame closes the connection with
/// a reason naming both versions, and costs it no penalty.
#[test]
fn a_peer_of_another_protocol_version_is_closed_with_a_clear_reason() {
    let (mut a, mut b) = (node(1), node(2));
    sync(&mut a, &mut b, 1_000);
    let mut old = wire::encode(&Message::Events(vec![]), 1).remove(0);
    old[0] = wire::PROTOCOL_VERSION - 1;
    b.receive_frame(PeerId(1), &old, 1_100);
    let reason = b.take_outputs().into_iter().find_map(|o| match o {
        Output::Close { reason, .. } => Some(reason),
        _ => None,
    });
    let reason = reason.expect("closed");
    assert!(
        reason.contains(&format!("protocol version {}", wire::PROTOCOL_VERSION - 1))
            && reason.contains(&format!("speaks {}", wire::PROTOCOL_VERSION)),
        "{reason}"
    );
}

/// A transfer whose source went quiet is given up after `MAX_STALLS`
/// asks, and the app is told where it stood (`dropped`): the page's bar of
/// a snapshot arriving stayed on screen for good when its sender went away.
#[test]
fn a_snapshot_transfer_given_up_is_told_as_dropped() {
    use cpc_sync::protocol::sync::transfer::MAX_STALLS;
    let (_a, mut b, got, all) = partway_through_a_snapshot();
    b.take_outputs();
    let mut told = Vec::new();
    for i in 1..=(MAX_STALLS as u64 + 2) * 10 {
        b.tick(2_000 + i * 1_000);
        told.extend(b.take_outputs().into_iter().filter_map(|o| match o {
            Output::SnapshotProgress {
                from,
                received,
                total,
                dropped,
            } => Some((from, received, total, dropped)),
            _ => None,
        }));
    }
    assert_eq!(told, [(PeerId(1), got, all, true)]);
    assert!(b.snapshot_progress().is_none());
}

#[test]
fn a_large_change_is_hashed_in_slices_without_stalling_sync() {
    let (mut a, mut b) = (node(1), node(2));
    write_many(&mut a, 5_000, 1_000);
    // b takes 5,000 events; while their hashes wait, its digests carry no
    // root and roots are not compared, yet the clocks settle.
    sync(&mut a, &mut b, 2_000);
    assert_eq!(b.engine().clock(), a.engine().clock());
    let mut slices = 1;
    while !b.refresh_digest() {
        slices += 1;
    }
    assert!(slices >= 3, "{slices} slices of at most 2,000 entities");
    assert_eq!(b.engine_mut().digest(), a.engine_mut().digest());
    // With both digests fresh, equal states exchange digests and nothing else.
    let traffic = exchange_again(&mut a, &mut b, 3_000);
    assert_eq!(traffic.frames, [1, 1], "{traffic:?}");
}

#[test]
fn standing_compares_clocks_then_roots() {
    use cpc_sync::protocol::sync::Standing;
    let (mut a, mut b) = (node(1), node(2));
    write_many(&mut a, 10, 1_000);
    assert_eq!(a.standing(PeerId(2)), None, "not connected yet");
    a.connect(PeerId(2), 2_000);
    b.connect(PeerId(1), 2_000);
    // b's (empty) digest reaches a, which answers with its events: a
    // counts them as b's, so the clocks agree while the roots do not yet.
    for frame in sends(b.take_outputs()) {
        a.receive_frame(PeerId(2), &frame, 2_000);
    }
    assert_eq!(a.standing(PeerId(2)), Some(Standing::Syncing));
    exchange(&mut a, &mut b, 2_000);
    let t = exchange_again(&mut a, &mut b, 3_000);
    assert!(t.rounds >= 1);
    assert_eq!(a.standing(PeerId(2)), Some(Standing::InSync));
    assert_eq!(b.standing(PeerId(1)), Some(Standing::InSync));
}

/// A room policy set on one node reaches a node it is not connected to
/// (relayed like any write), and there the conflict it governs shows and
/// gets reconciled, though that node had a different local default.
#[test]
fn a_room_policy_reaches_other_peers_through_sync() {
    use cpc_sync::protocol::ConflictPolicy;
    let (mut a, mut b, mut c) = (node(1), node(2), node(3));
    c.engine_mut().set_policy("doc/", ConflictPolicy::Lww);
    sync(&mut a, &mut b, 1_000);
    b.connect(PeerId(3), 1_000);
    c.connect(PeerId(2), 1_000);
    route(&mut [&mut a, &mut b, &mut c], 1_000);
    a.write(|e| e.set("doc/x", json("\"a\""), 1_100).map(Some))
        .unwrap();
    c.write(|e| e.set("doc/x", json("\"c\""), 1_100).map(Some))
        .unwrap();
    route(&mut [&mut a, &mut b, &mut c], 1_100);
    assert!(c.engine().conflicts().is_empty(), "lww: nothing shown yet");

    a.write(|e| {
        e.set_room_policy("doc/", ConflictPolicy::Reconcile, 1_200)
            .map(Some)
    })
    .unwrap();
    route(&mut [&mut a, &mut b, &mut c], 1_200);
    for n in [&a, &b, &c] {
        let e = n.engine();
        assert_eq!(e.room_policy("doc/"), Some(ConflictPolicy::Reconcile));
        assert_eq!(e.conflicts().len(), 1, "peer {}", e.peer());
    }
    // Reconcile ticks settle it; every node ends equal and unconflicted.
    for round in 0..5u64 {
        let now = 2_000 + round * 1_000;
        for n in [&mut a, &mut b, &mut c] {
            n.tick(now);
        }
        route(&mut [&mut a, &mut b, &mut c], now);
    }
    let digest = a.engine_mut().digest();
    for n in [&mut a, &mut b, &mut c] {
        assert!(n.engine().conflicts().is_empty());
        assert_eq!(n.engine_mut().digest(), digest);
        assert_eq!(n.engine().state_json(), r#"{"doc/x":"c"}"#);
    }
}

/// A peer behind the compaction horizon learns the room's policies from
/// the snapshot it is sent, and a node restored from its own storage
/// (snapshot, then events) keeps them.
#[test]
fn room_policies_cross_in_snapshot_transfers_and_restores() {
    use cpc_sync::protocol::ConflictPolicy;
    let config = SyncConfig {
        compact_after: 10,
        keep_unacked: 0,
        ..SyncConfig::default()
    };
    let mut a = SyncNode::new(
        ReconciliationEngine::new(PeerId(1), EngineConfig::default()),
        config.clone(),
    );
    a.write(|e| {
        e.set_room_policy("m/", ConflictPolicy::MultiValue, 1_000)
            .map(Some)
    })
    .unwrap();
    write_many(&mut a, 50, 1_000);
    a.tick(1_000);
    a.take_outputs();
    assert!(a.engine().log().is_empty(), "compacted");
    let mut b = node(2);
    sync(&mut a, &mut b, 2_000);
    assert_eq!(
        b.engine().room_policies(),
        [("m/".to_string(), ConflictPolicy::MultiValue)]
    );
    assert_eq!(b.engine_mut().digest(), a.engine_mut().digest());

    // c restores from a snapshot of what it synced, then its own later
    // events (as storage keeps them).
    let mut c = SyncNode::new(
        ReconciliationEngine::new(PeerId(3), EngineConfig::default()),
        SyncConfig {
            durable: true,
            ..config.clone()
        },
    );
    sync(&mut b, &mut c, 3_000);
    // Its timer stores what it loaded (a write before it would store the
    // snapshot with itself).
    c.tick(3_000);
    c.take_outputs();
    let snapshot = Some(c.engine().encode_snapshot());
    c.write(|e| {
        e.set_room_policy("rc/", ConflictPolicy::Reconcile, 3_100)
            .map(Some)
    })
    .unwrap();
    let mut events = Vec::new();
    for o in c.take_outputs() {
        if let Output::Persist {
            write: Persist::Events { record, .. },
            ..
        } = o
        {
            events.extend(P2PEvent::decode_batch(&record).unwrap());
        }
    }
    assert_eq!(events.len(), 1);
    let restored = SyncNode::restore(
        PeerId(3),
        EngineConfig::default(),
        config,
        snapshot.as_deref(),
        events,
    )
    .unwrap();
    assert_eq!(
        restored.engine().room_policies(),
        c.engine().room_policies()
    );
    assert_eq!(restored.engine().room_policies().len(), 2);
}

/// A receiver takes an `Events` message in one task, so a message carries
/// at most a run's worth of events: whole runs, as many as fit, never a
/// run more (four bursts of 700 writes: a message each, not 1,400 twice).
#[test]
fn an_events_message_carries_at_most_a_runs_worth() {
    use cpc_sync::protocol::seal::MAX_RUN;
    let mut a = common::signed_node(1, SyncConfig::default());
    let mut b = common::signed_node(2, SyncConfig::default());
    for burst in 0..4 {
        for i in 0..700 {
            let key = format!("k{burst}-{i}");
            a.write(|e| e.set(&key, json("1"), 1_000).map(Some))
                .unwrap();
        }
        a.take_outputs();
    }
    let (ida, idb) = (a.peer(), b.peer());
    a.connect(idb, 2_000);
    b.connect(ida, 2_000);
    let mut sizes = Vec::new();
    for _ in 0..20 {
        let mut quiet = true;
        for frame in sends(a.take_outputs()) {
            quiet = false;
            if let Ok(wire::Decoded::Message(Message::Events(events))) = wire::decode(&frame) {
                sizes.push(events.len());
            }
            b.receive_frame(ida, &frame, 2_000);
        }
        for frame in sends(b.take_outputs()) {
            quiet = false;
            a.receive_frame(idb, &frame, 2_000);
        }
        if quiet {
            break;
        }
    }
    b.verify_received(2_000);
    assert_eq!(sizes, [700; 4], "one run a message");
    assert!(sizes.iter().all(|&n| n <= MAX_RUN));
    assert_eq!(b.engine().clock(), a.engine().clock(), "everything arrived");
}

/// Three signed nodes that reconcile conflicts under `doc/`.
fn reconciling_signed_room() -> Vec<SyncNode> {
    reconciling_room((1..=3).map(|seed| common::signed_node(seed, SyncConfig::default())))
}

/// `nodes`, reconciling conflicts under `doc/`.
fn reconciling_room(nodes: impl Iterator<Item = SyncNode>) -> Vec<SyncNode> {
    use cpc_sync::protocol::ConflictPolicy;
    let mut nodes: Vec<SyncNode> = nodes.collect();
    for n in &mut nodes {
        n.engine_mut().set_policy("doc/", ConflictPolicy::Reconcile);
    }
    nodes
}

/// Connects each of `nodes` to every other.
fn connect_all(nodes: &mut [SyncNode], now: u64) {
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer()).collect();
    for n in nodes.iter_mut() {
        for &id in &ids {
            if id != n.peer() {
                n.connect(id, now);
            }
        }
    }
}

/// In a signed room a reconciliation request carries its siblings in the
/// whole runs holding them, and a run may go on past its sibling, to
/// other keys, even to a key every sibling's origin wrote: the resolver
/// still settles the conflicted key, which the request names, not the key
/// a run happens to end on, nor the first key all runs hold.
#[test]
fn a_signed_conflict_settles_when_its_siblings_runs_go_on_to_other_keys() {
    let mut nodes = reconciling_signed_room();
    let lowest = nodes.iter().map(SyncNode::peer).min().unwrap();
    // Each writes the key, then others after it, in one burst: one run.
    // All write `z/shared` too (last writer wins there, no request), the
    // lowest origin (whose run comes first in a request) before `doc/x`.
    for (i, n) in nodes.iter_mut().enumerate() {
        let value = json(&format!("\"{i}\""));
        let shared = |n: &mut SyncNode| {
            n.write(|e| e.set("z/shared", json("2"), 1_000).map(Some))
                .unwrap()
        };
        if n.peer() == lowest {
            shared(n);
        }
        n.write(|e| e.set("doc/x", value, 1_000).map(Some)).unwrap();
        if n.peer() != lowest {
            shared(n);
        }
        for k in 0..3 {
            let key = format!("z/{i}-{k}");
            n.write(|e| e.set(&key, json("1"), 1_000).map(Some))
                .unwrap();
        }
        n.take_outputs();
    }
    connect_all(&mut nodes, 1_000);
    let mut refs: Vec<&mut SyncNode> = nodes.iter_mut().collect();
    route(&mut refs, 1_000);
    for n in refs.iter_mut() {
        n.verify_received(1_000);
    }
    route(&mut refs, 1_000);
    assert!(
        refs.iter().all(|n| n.engine().conflicts().len() == 1),
        "the key is conflicted everywhere"
    );
    let mut requests = 0;
    let mut responses = Vec::new();
    for round in 0..10u64 {
        let now = 2_000 + round * 1_000;
        for n in refs.iter_mut() {
            n.tick(now);
        }
        let traffic = route(&mut refs, now);
        requests += traffic
            .others
            .0
            .iter()
            .filter(|(_, o)| matches!(o, Output::Reconciliation { outgoing: true, .. }))
            .count();
        for (_, o) in &traffic.others.0 {
            if let Output::Reconciliation {
                outgoing: true,
                json,
                ..
            } = o
            {
                if json.contains("RECONCILIATION_RESPONSE") {
                    responses.push(json.clone());
                }
            }
        }
    }
    assert!(requests > 0, "settled by the reconciliation exchange");
    // Each answer is about the conflicted key: its resolution, not the
    // last key of a sibling's run.
    assert!(!responses.is_empty());
    for response in &responses {
        assert!(
            response.contains(r#""key":"doc/x","op":{"register":{"write":{"value":"#)
                && response.contains(r#""resolution":true"#),
            "{response}"
        );
    }
    let state = refs[0].engine().state_json();
    for n in &refs {
        assert!(
            n.engine().conflicts().is_empty(),
            "peer {} still has {:?}",
            n.peer(),
            n.engine().conflicts()
        );
        assert_eq!(n.engine().state_json(), state);
    }
}

/// Connects `nodes` to each other and lets them gossip and reconcile for
/// ten intervals: none refuses anything, and all end equal, unconflicted.
fn settle_refusing_nothing(nodes: &mut [SyncNode]) {
    connect_all(nodes, 1_000);
    let mut refs: Vec<&mut SyncNode> = nodes.iter_mut().collect();
    let mut refused = Vec::new();
    for round in 0..10u64 {
        let now = 2_000 + round * 1_000;
        for n in refs.iter_mut() {
            n.tick(now);
        }
        for (at, o) in route(&mut refs, now).others.0 {
            if let Output::Rejected { refusal, .. } = o {
                refused.push(format!("{at}: {refusal}"));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused, the first {:?}",
        refused.len(),
        refused.first()
    );
    let state = refs[0].engine().state_json();
    for n in &refs {
        assert!(n.engine().conflicts().is_empty());
        assert_eq!(n.engine().state_json(), state);
    }
}

/// A signed reconciliation message carries as many of its siblings' runs
/// as one message may (16 MiB): runs of large values, three writers' of
/// ~10 MiB each, no longer make a message every receiver refuses (and
/// charges its honest sender for) at each reconcile tick. A run left out
/// arrives by anti-entropy, and the conflict settles all the same.
#[test]
fn a_reconciliation_message_stays_within_what_a_receiver_takes() {
    let mut nodes = reconciling_signed_room();
    let big = json(&format!("\"{}\"", "v".repeat(10_000)));
    for (i, n) in nodes.iter_mut().enumerate() {
        let value = json(&format!("\"{i}\""));
        n.write(|e| e.set("doc/x", value, 1_000).map(Some)).unwrap();
        for k in 0..1_000 {
            let key = format!("z/{i}-{k}");
            n.write(|e| e.set(&key, big.clone(), 1_000).map(Some))
                .unwrap();
        }
        n.take_outputs();
    }
    settle_refusing_nothing(&mut nodes);
}

/// A burst of large values seals into runs that each travel in one
/// message: 200 values of 100 KB (20 MB) reach a signed peer whole.
#[test]
fn a_burst_of_large_values_reaches_a_signed_peer() {
    let mut a = common::signed_node(1, SyncConfig::default());
    let mut b = common::signed_node(2, SyncConfig::default());
    let big = json(&format!("\"{}\"", "v".repeat(100_000)));
    a.write(|e| {
        for k in 0..200 {
            e.set(&format!("doc/{k}"), big.clone(), 1_000)?;
        }
        Ok(None)
    })
    .unwrap();
    a.take_outputs();
    let mut others = sync(&mut a, &mut b, 2_000).others.0;
    for round in 0..5 {
        let now = 3_000 + round * 1_000;
        for n in [&mut a, &mut b] {
            n.verify_received(now);
            n.tick(now);
        }
        others.extend(route(&mut [&mut a, &mut b], now).others.0);
    }
    let refused: Vec<String> = (others.iter())
        .filter_map(|(at, o)| match o {
            Output::Rejected { refusal, .. } => Some(format!("{at}: {refusal}")),
            _ => None,
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    assert_eq!(b.engine().clock(), a.engine().clock());
    assert_eq!(b.engine().state_json(), a.engine().state_json());
}

/// A write too large to travel to anyone is refused, typed, and nothing
/// is made of it; one at the limit is taken.
#[test]
fn a_write_too_large_to_travel_is_refused() {
    use cpc_sync::protocol::engine::MAX_WRITE_BYTES;
    use cpc_sync::protocol::WriteError;
    let mut a = common::signed_node(1, SyncConfig::default());
    let key = "doc/big";
    // A JSON string's bytes: its characters and two quotes.
    let value = |len: usize| json(&format!("\"{}\"", "v".repeat(len - 2)));
    let over = value(MAX_WRITE_BYTES - key.len() + 1);
    let refused = a.write(|e| e.set(key, over, 1_000).map(Some));
    assert!(
        matches!(refused, Err(WriteError::TooLarge { bytes, limit })
            if bytes == MAX_WRITE_BYTES + 1 && limit == MAX_WRITE_BYTES),
        "{refused:?}"
    );
    assert_eq!(a.engine().clock().total(), 0, "nothing made");
    let at = value(MAX_WRITE_BYTES - key.len());
    a.write(|e| e.set(key, at, 1_000).map(Some)).unwrap();
    assert_eq!(a.engine().clock().total(), 1);
}

/// The same without signatures: a conflict of three 7 MB values made a
/// 21 MB request, which the resolver refused at every reconcile tick.
#[test]
fn an_unsigned_reconciliation_message_stays_within_what_a_receiver_takes() {
    let mut nodes = reconciling_room((1..=3).map(node));
    for (i, n) in nodes.iter_mut().enumerate() {
        let value = json(&format!("\"{i}{}\"", "v".repeat(7 << 20)));
        n.write(|e| e.set("doc/x", value, 1_000).map(Some)).unwrap();
        n.take_outputs();
    }
    settle_refusing_nothing(&mut nodes);
}

/// A page whose clock is hours off had every write refused by its peers
/// (dated ahead) or refused theirs (behind), and nothing said so but a
/// counter. Each side compares the other's clock by the stamp of its
/// pings, and is told once a connection when it is off by more than the
/// skew allowed; clocks a few seconds apart say nothing.
#[test]
fn a_peer_whose_clock_is_off_beyond_the_skew_is_told_once() {
    let node = |id| {
        SyncNode::new(
            ReconciliationEngine::new(PeerId(id), EngineConfig::default()),
            SyncConfig::default(),
        )
    };
    // Its frames to send, and what it told of clocks.
    let outputs = |node: &mut SyncNode, told: &mut Vec<(PeerId, i64)>| -> Vec<Vec<u8>> {
        let outputs = node.take_outputs();
        told.extend(outputs.iter().filter_map(|o| match o {
            Output::ClockSkew { peer, offset_ms } => Some((*peer, *offset_ms)),
            _ => None,
        }));
        sends(outputs)
    };
    for (ahead, told) in [(7_200_000, true), (5_000, false)] {
        let (mut a, mut b) = (node(1), node(2));
        let mut seen = (Vec::new(), Vec::new());
        for round in 0..3 {
            // b's clock is `ahead` of a's; pings go every 10 s.
            let now = 1_000_000 + round * 10_000;
            if round == 0 {
                a.connect(PeerId(2), now);
                b.connect(PeerId(1), now + ahead);
            }
            a.tick(now);
            b.tick(now + ahead);
            for f in outputs(&mut a, &mut seen.0) {
                b.receive_frame(PeerId(1), &f, now + ahead);
            }
            for f in outputs(&mut b, &mut seen.1) {
                a.receive_frame(PeerId(2), &f, now);
            }
            outputs(&mut a, &mut seen.0);
        }
        let expected = |peer, offset: i64| {
            if told {
                vec![(PeerId(peer), offset)]
            } else {
                vec![]
            }
        };
        assert_eq!(seen.0, expected(2, ahead as i64), "a about b");
        assert_eq!(seen.1, expected(1, -(ahead as i64)), "b about a");
    }
}

/// "Once a connection" is once: a peer alternating its pings' stamps
/// (hours off, then right) had the app told at every other ping (a
/// review's test: 500 errors for 1,000 pings).
#[test]
fn a_peer_alternating_its_ping_stamps_is_told_of_once() {
    let mut a = SyncNode::new(
        ReconciliationEngine::new(PeerId(1), EngineConfig::default()),
        SyncConfig::default(),
    );
    let now = 1_700_000_000_000;
    a.connect(PeerId(666), now);
    a.take_outputs();
    let mut told = 0;
    for i in 0..100u64 {
        let sent_ms = if i % 2 == 0 { now + 36_000_000 } else { now };
        for frame in wire::encode(&Message::Ping { sent_ms }, 7) {
            a.receive_frame(PeerId(666), &frame, now);
        }
        told += (a.take_outputs().iter())
            .filter(|o| matches!(o, Output::ClockSkew { .. }))
            .count();
    }
    assert_eq!(told, 1);
}

/// A page that wrote offline and closed (a fold, alone: its whole log)
/// sent the room peer its whole state as a snapshot when it was back, and
/// the room peer, now past those events' fold, sent it on as a snapshot
/// too: 343 KB for one edit of a room of 5,000 keys (a review). A fold
/// keeps our own events no peer said it had, so the edit travels as an
/// event.
#[test]
fn an_edit_made_offline_and_folded_on_close_travels_as_an_event() {
    use common::net::{honest, Net};
    use common::signed_node;
    use std::cell::RefCell;
    let config = SyncConfig {
        durable: true,
        ..SyncConfig::default()
    };
    let now = 1_700_000_000_000u64;
    let nodes = [1, 2, 3].map(|seed| signed_node(seed, config.clone()));
    let mut net = Net::new(nodes.into(), now);
    let (a, k, q) = (0, 1, 2);
    for i in 0..5_000 {
        let key = format!("item/{i}");
        net.nodes[a]
            .write(|e| e.set(&key, json("\"a row's value\""), now).map(Some))
            .unwrap();
    }
    net.link(a, k);
    net.link(k, q);
    net.run(5_000, 10, &mut honest);
    assert_eq!(net.nodes[q].engine().clock(), net.nodes[a].engine().clock());
    net.unlink(a, k);
    let t = net.now;
    net.nodes[a]
        .write(|e| e.set("item/7", json("\"edited offline\""), t).map(Some))
        .unwrap();
    net.run(100, 10, &mut honest);
    net.nodes[a].fold();
    assert_eq!(
        net.nodes[a].engine().log().len(),
        1,
        "the unsent edit stays"
    );
    let moved = RefCell::new((0, 0));
    let mut count = |_: PeerId, _: PeerId, frame: Vec<u8>| {
        let mut moved = moved.borrow_mut();
        moved.0 += frame.len();
        if let Ok(wire::Decoded::Message(Message::SnapshotOffer { .. })) = wire::decode(&frame) {
            moved.1 += 1;
        }
        vec![frame]
    };
    net.link(a, k);
    net.run(10_000, 10, &mut count);
    assert_eq!(
        net.nodes[q].engine().get("item/7"),
        Some(serde_json::json!("edited offline"))
    );
    let (bytes, offers) = *moved.borrow();
    assert_eq!(offers, 0, "{bytes} bytes moved for one edit");
    assert!(bytes < 10_000, "{bytes} bytes moved for one edit");
    // Once a peer has it, a fold takes it.
    net.nodes[a].fold();
    assert!(net.nodes[a].engine().log().is_empty());
}

/// A page that never meets a peer still folds its own writes, keeping
/// the last `keep_unacked` of them, and never more than half of
/// `compact_after` (a page alone with a small `compactAfter` folds too).
#[test]
fn a_page_alone_still_folds_its_own_writes() {
    for config in [
        SyncConfig {
            keep_unacked: 50,
            ..SyncConfig::default()
        },
        SyncConfig {
            compact_after: 100,
            ..SyncConfig::default()
        },
    ] {
        let mut page = common::signed_node(
            1,
            SyncConfig {
                durable: true,
                ..config
            },
        );
        for i in 0..300 {
            page.write(|e| e.set(&format!("k{}", i % 7), json("1"), 1_000).map(Some))
                .unwrap();
            page.take_outputs();
        }
        page.fold();
        assert_eq!(page.engine().log().len(), 50);
    }
}

/// A peer's digest claiming more of our events than we made was taken as
/// said, and remembered past its session: every write we made later, no
/// peer having it, was folded too (a second review). A claim is held to
/// what we made.
#[test]
fn a_claim_of_our_writes_to_come_does_not_fold_them() {
    use common::signed_node;
    let config = SyncConfig {
        durable: true,
        ..SyncConfig::default()
    };
    let now = 1_700_000_000_000u64;
    let mut a = signed_node(1, config.clone());
    let mallory = signed_node(666, config);
    let (pa, pm) = (a.peer(), mallory.peer());
    a.connect(pm, now);
    a.take_outputs();
    let mut claim = cpc_sync::protocol::VectorClock::default();
    claim.set(pa, 1_000_000);
    for frame in wire::encode(
        &Message::Digest {
            clock: claim,
            root: cpc_sync::protocol::Hash32::ZERO,
        },
        1,
    ) {
        a.receive_frame(pm, &frame, now);
    }
    a.take_outputs();
    a.disconnect(pm);
    assert_eq!(
        ten_offline_writes_folded(&mut a, now),
        10,
        "writes no peer had were folded on a claim made before they existed"
    );
}

/// Ten writes no one saw, then a fold: how many events stay in the log.
fn ten_offline_writes_folded(a: &mut SyncNode, now: u64) -> usize {
    for i in 0..10 {
        a.write(|e| e.set(&format!("k{i}"), json("1"), now + 1_000).map(Some))
            .unwrap();
        a.take_outputs();
    }
    a.fold();
    a.engine().log().len()
}

/// A write made while this device's clock was a month ahead dates every
/// later write after it: once the clock is set right, peers refuse them
/// until real time reaches that date, and the pings no longer tell (a
/// review). The node tells the app so, once, until real time catches up.
#[test]
fn writes_dated_ahead_of_a_clock_set_right_are_told() {
    const DAY: u64 = 86_400_000;
    let now = 1_700_000_000_000u64;
    let mut page = common::signed_node(1, SyncConfig::default());
    let me = page.peer();
    let told = |page: &mut SyncNode, at: u64| {
        page.tick(at);
        let outputs = page.take_outputs();
        let skews: Vec<i64> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::ClockSkew { peer, offset_ms } if *peer == me => Some(*offset_ms),
                _ => None,
            })
            .collect();
        skews
    };
    page.write(|e| e.set("title", json("\"draft\""), now + 30 * DAY).map(Some))
        .unwrap();
    page.take_outputs();
    // The clock is set right: a day later, then every few seconds.
    let at = now + DAY;
    assert_eq!(told(&mut page, at), vec![(29 * DAY) as i64]);
    assert!(told(&mut page, at + 5_000).is_empty(), "once");
    page.write(|e| e.set("title", json("\"later\""), at + 6_000).map(Some))
        .unwrap();
    assert!(told(&mut page, at + 10_000).is_empty(), "still once");
    // Real time reaches the dates: nothing more to tell, and a later
    // error is told anew.
    assert!(told(&mut page, now + 31 * DAY).is_empty());
    page.write(|e| e.set("title", json("\"ahead\""), now + 40 * DAY).map(Some))
        .unwrap();
    assert_eq!(told(&mut page, now + 32 * DAY).len(), 1);
}

/// The same claim made with an events frame, in a room without
/// signatures: an event of our own origin far ahead is refused by the
/// engine, but its number was learnt into the session's clock first, and
/// then `own_acked` at the session's end (a third review).
#[test]
fn an_event_of_our_origin_from_afar_does_not_fold_our_writes_to_come() {
    use cpc_sync::protocol::EventId;
    let now = 1_700_000_000_000u64;
    let engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let mut a = SyncNode::new(
        engine,
        SyncConfig {
            durable: true,
            ..SyncConfig::default()
        },
    );
    let (pa, pm) = (a.peer(), PeerId(666));
    a.connect(pm, now);
    a.take_outputs();
    let forged = common::register_write(EventId::new(pa, 1_000_000), "x", "1", now);
    for frame in wire::encode(&Message::Events(vec![forged]), 1) {
        a.receive_frame(pm, &frame, now);
    }
    a.take_outputs();
    assert!(
        a.remote_view(pm)
            .is_none_or(|(c, _)| c.get(pa) <= a.engine().clock().get(pa)),
        "the session notes {:?} of ours, we made {}",
        a.remote_view(pm).map(|(c, _)| c.get(pa)),
        a.engine().clock().get(pa)
    );
    a.disconnect(pm);
    assert_eq!(
        ten_offline_writes_folded(&mut a, now),
        10,
        "writes no peer had were folded on an event claimed of our origin"
    );
}

/// What the node tells of our writes dated ahead, ticking at `times`.
fn told_ahead(node: &mut SyncNode, times: &[u64]) -> Vec<i64> {
    let me = node.peer();
    let mut told = Vec::new();
    for &at in times {
        node.tick(at);
        told.extend(node.take_outputs().into_iter().filter_map(|o| match o {
            Output::ClockSkew { peer, offset_ms } if peer == me => Some(offset_ms),
            _ => None,
        }));
    }
    told
}

/// What is compared is the stamp of our own last write, not the hybrid
/// clock's last, which others' stamps move too: a node took a peer's
/// write dated 59 s ahead (within the skew), its clock was stepped back
/// 2 s (NTP), and it was told its writes were dated 61 s ahead, having
/// none (a review), or having one dated after the peer's, which no peer
/// with a right clock refuses (a review of the fix): a local write counts
/// as far as the time read.
#[test]
fn a_node_whose_stamps_came_from_a_peer_within_the_skew_is_not_told() {
    use cpc_sync::protocol::EventId;
    let now = 1_700_000_000_000u64;
    for writes in [false, true] {
        let mut reader = node(1);
        let writer = PeerId(2);
        reader.connect(writer, now);
        reader.take_outputs();
        let ahead = common::register_write(EventId::new(writer, 1), "x", "1", now + 59_000);
        for frame in wire::encode(&Message::Events(vec![ahead]), 1) {
            reader.receive_frame(writer, &frame, now);
        }
        reader.take_outputs();
        assert_eq!(reader.engine().clock().get(writer), 1, "accepted");
        if writes {
            reader
                .write(|e| e.set("y", json("2"), now).map(Some))
                .unwrap();
            reader.take_outputs();
        }
        let told = told_ahead(&mut reader, &[now - 2_000, now + 8_000]);
        assert!(told.is_empty(), "writes {writes}: told {told:?} ms ahead");
    }
}

/// A page whose clock was a month ahead wrote, folded (a snapshot
/// stored), its clock was set right and it reloaded: its writes are dated
/// ahead, and it is told though its own stamps came from a snapshot (a
/// review: nothing was told until its next write).
#[test]
fn writes_folded_ahead_are_told_after_a_restore() {
    const DAY: u64 = 86_400_000;
    let now = 1_700_000_000_000u64;
    let mut page = node(1);
    page.write(|e| e.set("title", json("\"draft\""), now + 30 * DAY).map(Some))
        .unwrap();
    page.take_outputs();
    let stored = page.engine().encode_snapshot();
    let config = (EngineConfig::default(), SyncConfig::default());
    let mut restored =
        SyncNode::restore(page.peer(), config.0, config.1, Some(&stored), Vec::new())
            .expect("restores");
    let at = now + DAY;
    assert_eq!(
        told_ahead(&mut restored, &[at, at + 5_000]),
        vec![(29 * DAY) as i64]
    );
}
