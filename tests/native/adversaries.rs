//! Hostile peers against honest ones in a signed room: forged origins,
//! altered relays, junk, giant clocks, dependency bombs, oversized
//! snapshots. Honest peers refuse and count what is bad, cut repeat
//! offenders off, keep their memory bounded, and still converge with each
//! other, losing nothing.

use crate::common;

use common::{json, register_write, Rng};
use cpc_sync::protocol::clock::MAX_CLOCK_ENTRIES;
use cpc_sync::protocol::digest;
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::reconciliation::{
    ReconciliationRequest, ReconciliationResponse, ResponseType,
};
use cpc_sync::protocol::seal;
use cpc_sync::protocol::sync::session::LeafPairs;
use cpc_sync::protocol::sync::transfer::WINDOW_BYTES;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message, WireError, MAX_MESSAGE_EVENTS};
use cpc_sync::protocol::sync::{
    IntakeBudget, Output, Refusal, Relay, SyncConfig, SyncNode, MAX_LEAF_BYTES_PER_INTERVAL,
    MAX_MERKLE_ANSWERS_PER_INTERVAL, MAX_REQUESTS_PER_INTERVAL, MAX_RESENT_BYTES_PER_INTERVAL,
    PENALTY_LIMIT,
};
use cpc_sync::protocol::{
    EngineConfig, EventId, Hash32, Identity, JsonValue, Operation, P2PEvent, PeerId, Receipt,
    ReceiveError, ReconciliationEngine, SnapshotError, StateSnapshot, Trust, VectorClock,
};

const NOW: u64 = 1_700_000_000_000;

fn signed_relaying(seed: u64, config: EngineConfig, relay: Relay) -> SyncNode {
    signed_with(seed, config, relay, IntakeBudget::default())
}

fn signed_with(seed: u64, config: EngineConfig, relay: Relay, intake: IntakeBudget) -> SyncNode {
    let identity = Identity::from_seed(seed);
    let engine = ReconciliationEngine::new(identity.peer(), config);
    SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            relay,
            intake,
            ..SyncConfig::default()
        },
    )
}

/// Two honest peers, connected and in sync, and the id Mallory uses; both
/// honest peers have a connection open to her.
struct Room {
    a: SyncNode,
    b: SyncNode,
    mallory: SyncNode,
}

impl Room {
    fn new(config: EngineConfig) -> Room {
        Room::relaying(config, Relay::default())
    }

    /// `a`'s next gossip interval (its per-peer budgets start again);
    /// what it sent on the tick is dropped.
    fn next_interval(&mut self) {
        self.a.tick(NOW + 60_000);
        let _ = self.a.take_outputs();
    }

    /// A room where `a` wrote `"honest"` to "doc" and `b` has it.
    fn with_doc() -> Room {
        let mut room = Room::new(EngineConfig::default());
        room.a
            .write(|e| e.set("doc", json("\"honest\""), NOW).map(Some))
            .unwrap();
        room.pump();
        room
    }

    fn relaying(config: EngineConfig, relay: Relay) -> Room {
        Room::taking_in(config, relay, IntakeBudget::default())
    }

    /// A room where `a` takes snapshots in within `intake`.
    fn taking_in(config: EngineConfig, relay: Relay, intake: IntakeBudget) -> Room {
        let mut room = Room {
            a: signed_with(1, config.clone(), relay, intake),
            b: signed_relaying(2, config.clone(), relay),
            mallory: signed_relaying(666, config, relay),
        };
        let (a, b, m) = (room.a.peer(), room.b.peer(), room.mallory.peer());
        room.a.connect(b, NOW);
        room.b.connect(a, NOW);
        room.a.connect(m, NOW);
        room.b.connect(m, NOW);
        room.pump();
        room
    }

    /// Carries frames between the honest peers until they are quiet;
    /// whatever they send Mallory is dropped. Returns the peers the
    /// honest ones closed.
    fn pump(&mut self) -> Vec<(PeerId, PeerId)> {
        self.pump_at(NOW, &mut Vec::new())
    }

    /// [`Self::pump`] with frames arriving at `now_ms`; what `a` sends
    /// Mallory goes to `to_mallory`.
    fn pump_at(&mut self, now_ms: u64, to_mallory: &mut Vec<Message>) -> Vec<(PeerId, PeerId)> {
        let mut closed = Vec::new();
        for _ in 0..100 {
            let mut frames = Vec::new();
            for node in [&mut self.a, &mut self.b] {
                let from = node.peer();
                for output in node.take_outputs() {
                    match output {
                        Output::Send { to, frame } => frames.push((from, to, frame)),
                        Output::Close { peer, .. } => closed.push((from, peer)),
                        _ => {}
                    }
                }
            }
            if frames.is_empty() {
                return closed;
            }
            for (from, to, frame) in frames {
                if to == self.a.peer() {
                    self.a.receive_frame(from, &frame, now_ms);
                } else if to == self.b.peer() {
                    self.b.receive_frame(from, &frame, now_ms);
                } else if (from, to) == (self.a.peer(), self.mallory.peer()) {
                    if let Ok(Decoded::Message(message)) = wire::decode(&frame) {
                        to_mallory.push(message);
                    }
                }
            }
        }
        panic!("the honest peers do not go quiet");
    }

    /// Mallory sends `message` to `a`.
    fn mallory_sends(&mut self, message: &Message) {
        self.mallory_sends_at(message, NOW);
    }

    /// Mallory sends `message` to `a`, arriving at `now_ms`.
    fn mallory_sends_at(&mut self, message: &Message, now_ms: u64) {
        let from = self.mallory.peer();
        for frame in wire::encode(message, 7) {
            self.a.receive_frame(from, &frame, now_ms);
        }
    }

    /// Both honest peers fold everything they applied into their state:
    /// what superseded a value is kept only as evidence.
    fn fold_all(&mut self) {
        for node in [&mut self.a, &mut self.b] {
            let clock = node.engine().clock().clone();
            node.engine_mut().compact(&clock);
            assert!(node.engine().log().is_empty());
        }
    }

    /// What Mallory's own node would send for her writes: valid, sealed
    /// events of her own origin.
    fn mallory_writes(&mut self, writes: impl FnOnce(&mut ReconciliationEngine)) -> Vec<P2PEvent> {
        self.mallory
            .write(|e| {
                writes(e);
                Ok(None)
            })
            .unwrap();
        let before = self.mallory.engine().log().len();
        let _ = self.mallory.take_outputs();
        assert!(before > 0);
        self.mallory.engine().log().iter().cloned().collect()
    }

    fn converged(&mut self) -> bool {
        self.a.engine().state_json() == self.b.engine().state_json()
            && self.a.engine().clock() == self.b.engine().clock()
    }

    fn a_rejected_from_mallory(&self) -> u64 {
        self.a.stats(self.mallory.peer()).map_or(0, |s| s.rejected)
    }

    /// The honest peers still work: a write on each reaches the other.
    fn still_converge(&mut self, round: u64) {
        let (ka, kb) = (format!("after/{round}/a"), format!("after/{round}/b"));
        self.a
            .write(|e| e.set(&ka, json("1"), NOW).map(Some))
            .unwrap();
        self.b
            .write(|e| e.set(&kb, json("2"), NOW).map(Some))
            .unwrap();
        // A gossip round too: digests repair what a test dropped.
        let later = NOW + 10_000 * (round + 1);
        self.a.tick(later);
        self.b.tick(later);
        self.pump();
        assert!(
            self.converged(),
            "honest peers diverged: {} vs {} origins, {:?} / {:?}",
            self.a.engine().clock().len(),
            self.b.engine().clock().len(),
            self.a.engine().stats(),
            self.b.engine().stats()
        );
        let state = self.a.engine().state_json();
        assert!(state.contains(&ka) && state.contains(&kb), "{state}");
    }
}

fn value_of(event: &P2PEvent) -> Option<&JsonValue> {
    match &event.op {
        Operation::Register(RegisterOp::Write { value, .. }) => Some(value),
        _ => None,
    }
}

#[test]
fn forged_origins_are_refused_and_the_forger_is_cut_off() {
    let mut room = Room::new(EngineConfig::default());
    let b = room.b.peer();
    let mut closed = false;
    for round in 0..10 {
        // Mallory's genuine, sealed event, renamed to be b's.
        let mut events = room.mallory_writes(|e| {
            e.set(&format!("forged/{round}"), json("\"evil\""), NOW)
                .unwrap();
        });
        events.retain(|e| e.key.starts_with(&format!("forged/{round}")));
        for e in &mut events {
            e.id.peer = b;
        }
        room.mallory_sends(&Message::Events(events));
        if room
            .a
            .take_outputs()
            .iter()
            .any(|o| matches!(o, Output::Close { peer, .. } if *peer == room.mallory.peer()))
        {
            closed = true;
            // Four forgeries at 25 points each reach the limit of 100.
            assert_eq!(round, 3, "cut off after the fourth forgery");
            break;
        }
    }
    assert!(closed, "the forger was never disconnected");
    assert!(!room.a.engine().state_json().contains("forged/"));
    assert_eq!(room.a.engine().stats().refused_seal, 4);
    assert_eq!(room.a_rejected_from_mallory(), 4);
    room.still_converge(0);
}

#[test]
fn an_altered_relay_is_refused_and_the_genuine_run_accepted() {
    let mut room = Room::new(EngineConfig::default());
    let (a, b) = (room.a.peer(), room.b.peer());
    room.b
        .write(|e| e.set("x", json("\"genuine\""), NOW).map(Some))
        .unwrap();
    let frames: Vec<Vec<u8>> = room
        .b
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, frame } if to == a => Some(frame),
            _ => None,
        })
        .collect();
    // Mallory saw b's run go by, relays it with another value.
    let Ok(Decoded::Message(Message::Events(mut events))) = wire::decode(&frames[0]) else {
        panic!("b sent its write first");
    };
    assert!(events.last().and_then(|e| e.seal.as_ref()).is_some());
    if let Operation::Register(cpc_sync::protocol::event::RegisterOp::Write { value, .. }) =
        &mut events[0].op
    {
        *value = json("\"evil\"");
    }
    room.mallory_sends(&Message::Events(events));
    assert!(!room.a.engine().state_json().contains("\"x\""));
    assert_eq!(room.a_rejected_from_mallory(), 1);
    // A replay with the seal stripped is refused too.
    let Ok(Decoded::Message(Message::Events(mut stripped))) = wire::decode(&frames[0]) else {
        unreachable!()
    };
    stripped.iter_mut().for_each(|e| e.seal = None);
    room.mallory_sends(&Message::Events(stripped));
    assert!(!room.a.engine().state_json().contains("\"x\""));
    // The genuine run, from b, goes in.
    for frame in &frames {
        room.a.receive_frame(b, frame, NOW);
    }
    room.pump();
    let x = room
        .a
        .engine()
        .log()
        .iter()
        .find(|e| &*e.key == "x")
        .cloned();
    assert_eq!(value_of(&x.unwrap()), Some(&json("\"genuine\"")));
    room.still_converge(0);
}

#[test]
fn junk_frames_are_counted_then_the_sender_cut_off() {
    let seed = common::seed("junk_frames");
    let mut rng = Rng::new(seed);
    let mut room = Room::new(EngineConfig::default());
    let m = room.mallory.peer();
    let mut closed_after = None;
    for i in 0..200 {
        let len = 1 + rng.below(2000);
        // Our protocol's version byte, then junk (a frame of another
        // version closes the connection at once, without penalty).
        let junk: Vec<u8> = std::iter::once(wire::PROTOCOL_VERSION)
            .chain((1..len).map(|_| rng.below(256) as u8))
            .collect();
        room.a.receive_frame(m, &junk, NOW);
        if room
            .a
            .take_outputs()
            .iter()
            .any(|o| matches!(o, Output::Close { peer, .. } if *peer == m))
        {
            closed_after = Some(i + 1);
            break;
        }
    }
    assert_eq!(closed_after, Some(PENALTY_LIMIT as usize), "seed {seed}");
    // Frames from a closed session are ignored, not counted again.
    room.a.receive_frame(m, b"more junk", NOW);
    assert_eq!(room.a_rejected_from_mallory(), u64::from(PENALTY_LIMIT));
    room.still_converge(0);
}

/// A peer speaking another protocol version (a page not reloaded since a
/// release) is closed at once, at no cost to it, and the app is told once
/// which peer that is and what it speaks, however often it comes back.
#[test]
fn a_peer_of_another_version_is_closed_and_the_app_told_once() {
    let mut room = Room::new(EngineConfig::default());
    let m = room.mallory.peer();
    let old = wire::PROTOCOL_VERSION - 1;
    for round in 0..3 {
        if round > 0 {
            room.a.connect(m, NOW);
            let _ = room.a.take_outputs();
        }
        room.a.receive_frame(m, &[old, 0, 0], NOW);
        let outputs = room.a.take_outputs();
        assert!(outputs
            .iter()
            .any(|o| matches!(o, Output::Close { peer, .. } if *peer == m)));
        let told = (outputs.iter())
            .filter(|o| matches!(o, Output::OtherVersion { peer, version } if (*peer, *version) == (m, old)))
            .count();
        assert_eq!(told, usize::from(round == 0), "round {round}");
    }
    room.still_converge(0);
}

/// Mallory signs each of 120 of her events in two versions, one sealed
/// run each, and hands one version to `a` and the other to `b`. Each
/// honest peer relays what it took first to the other, which refuses it
/// as an equivocation: charged a point a run to the honest relay, the two
/// cut each other off (a review). Only the origin pays for its own.
#[test]
fn equivocations_relayed_by_honest_peers_cut_no_one_off() {
    for relay in [Relay::Pull, Relay::Flood, Relay::Tree] {
        let mut room = Room::relaying(EngineConfig::default(), relay);
        let (to_a, to_b) = two_versions(&mut room, 120);
        room.mallory_sends(&Message::Events(to_a));
        let m = room.mallory.peer();
        for frame in wire::encode(&Message::Events(to_b), 7) {
            room.b.receive_frame(m, &frame, NOW);
        }
        let closed = room.pump();
        let (a, b) = (room.a.peer(), room.b.peer());
        assert!(
            !closed.contains(&(a, b)) && !closed.contains(&(b, a)),
            "{relay:?}: honest peers cut each other off: {closed:?}"
        );
    }
}

/// The same between a page (pulling) and the room peer (flooding): the
/// page kept the room peer, where it cut it off.
#[test]
fn equivocations_relayed_by_the_room_peer_do_not_cut_it_off() {
    let mut room = Room {
        a: signed_relaying(1, EngineConfig::default(), Relay::Pull),
        b: signed_relaying(2, EngineConfig::default(), Relay::Flood),
        mallory: signed_relaying(666, EngineConfig::default(), Relay::Pull),
    };
    let (a, b, m) = (room.a.peer(), room.b.peer(), room.mallory.peer());
    for (from, to) in [(a, b), (b, a), (a, m), (b, m)] {
        let node = if from == a { &mut room.a } else { &mut room.b };
        node.connect(to, NOW);
    }
    room.pump();
    let (to_a, to_b) = two_versions(&mut room, 120);
    room.mallory_sends(&Message::Events(to_a));
    for frame in wire::encode(&Message::Events(to_b), 7) {
        room.b.receive_frame(m, &frame, NOW);
    }
    let closed = room.pump();
    assert!(
        !closed.contains(&(a, b)),
        "the page cut the room peer off: {closed:?}"
    );
}

/// `count` of Mallory's events, each sealed alone in two versions (a
/// write of 1 and a write of 2 of the same dot): one for each honest peer.
fn two_versions(room: &mut Room, count: usize) -> (Vec<P2PEvent>, Vec<P2PEvent>) {
    let mallory = Identity::from_seed(666);
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for event in mallorys_unsealed(room, count) {
        let mut other = event.clone();
        other.op = Operation::Register(RegisterOp::Write {
            value: json("2"),
            observed: VectorClock::new(),
            resolution: false,
        });
        for (version, to) in [(event, &mut to_a), (other, &mut to_b)] {
            let mut run = vec![version];
            seal::seal(&mallory, &mut run);
            to.extend(run);
        }
    }
    (to_a, to_b)
}

#[test]
fn giant_clocks_are_refused_or_harmless() {
    let mut room = Room::new(EngineConfig::default());
    // More entries than any clock may have: refused when decoded.
    let giant: VectorClock = (1..=MAX_CLOCK_ENTRIES as u64 + 1)
        .map(|p| (PeerId(p), 1))
        .collect();
    room.mallory_sends(&Message::Digest {
        clock: giant,
        root: Hash32::ZERO,
    });
    assert_eq!(room.a_rejected_from_mallory(), 1);
    // Counters at u64::MAX: she claims to be far ahead; nothing breaks.
    let huge: VectorClock = (1..=1000).map(|p| (PeerId(p), u64::MAX)).collect();
    room.mallory_sends(&Message::Digest {
        clock: huge.clone(),
        root: Hash32::ZERO,
    });
    let _ = room.a.take_outputs();
    room.a.tick(NOW + 5_000);
    room.still_converge(0);
    assert!(room.a.engine().holding().is_empty());
}

#[test]
fn dependency_bombs_fill_only_their_share_and_far_ones_are_refused() {
    let config = EngineConfig {
        holding_per_origin: 500,
        ..EngineConfig::default()
    };
    let mut room = Room::new(config);
    // Mallory's own, validly sealed events 2..=2001, all waiting for her
    // event 1, which she never sends.
    let events = room.mallory_writes(|e| {
        for i in 0..2001 {
            e.set(&format!("bomb/{i}"), json("0"), NOW).unwrap();
        }
    });
    // Whole runs only: the first run is 1..=1024, so she sends the rest,
    // sealed again as runs of 100. A run is held whole or refused: five
    // fill her share, the other five (the last of 77) are refused.
    let mut rest: Vec<P2PEvent> = events.into_iter().filter(|e| e.id.seq > 1024).collect();
    assert_eq!(rest.len(), 977);
    rest.iter_mut().for_each(|e| e.seal = None);
    let mallory = Identity::from_seed(666);
    rest.chunks_mut(100)
        .for_each(|run| seal::seal(&mallory, run));
    room.mallory_sends(&Message::Events(rest));
    let held = room.a.engine().holding().len();
    assert_eq!(held, 500, "one origin holds at most its share");
    assert_eq!(room.a.engine().stats().refused_queue_full, 5);
    // One depending on something a billion events ahead is refused
    // outright, even validly sealed: it could only sit in the queue.
    let mut far = vec![P2PEvent {
        id: EventId::new(room.mallory.peer(), 5000),
        ..room.mallory.engine().log().iter().next().unwrap().clone()
    }];
    far[0].deps.set(room.b.peer(), 1_000_000_000);
    far[0].seal = None;
    seal::seal(&Identity::from_seed(666), &mut far);
    room.mallory_sends(&Message::Events(far));
    assert_eq!(room.a.engine().stats().refused_far_ahead, 1);
    assert_eq!(room.a.engine().holding().len(), 500);
    // Honest events keep flowing past the bomb.
    room.still_converge(1);
    assert_eq!(room.a.engine().holding().len(), 500);
}

#[test]
fn a_far_ahead_dependency_is_a_typed_refusal() {
    let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let mut other = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
    let mut event = other.set("k", json("1"), NOW).unwrap();
    event.deps.set(PeerId(3), 5_000_000);
    let error = engine.receive(event, NOW).unwrap_err();
    assert!(
        matches!(
            error,
            cpc_sync::protocol::ReceiveError::DependencyTooFar { .. }
        ),
        "{error}"
    );
    assert_eq!(engine.stats().refused_far_ahead, 1);
    assert!(engine.holding().is_empty());
}

/// The gap is counted from what is applied of the dependency's origin,
/// for deps and observed dots alike: a dependency past the gap alone
/// (nothing of its origin applied) is refused, and the same one within
/// the gap of what is applied is held. (The check skips the lookup of a
/// dependency no greater than the gap: this holds it to the rule.)
#[test]
fn the_dependency_gap_counts_from_what_is_applied() {
    let config = EngineConfig {
        max_dependency_gap: 10,
        ..EngineConfig::default()
    };
    let far = |deps: u64, observed: u64| {
        let mut event = register_write(EventId::new(PeerId(2), 1), "k", "1", NOW);
        event.deps.set(PeerId(3), deps);
        if let Operation::Register(RegisterOp::Write { observed: o, .. }) = &mut event.op {
            o.set(PeerId(4), observed);
        }
        event
    };
    let refused = |engine: &mut ReconciliationEngine, event: P2PEvent| {
        let error = engine.receive(event, NOW).unwrap_err();
        assert!(
            matches!(error, ReceiveError::DependencyTooFar { .. }),
            "{error}"
        );
    };
    let mut engine = ReconciliationEngine::new(PeerId(1), config.clone());
    // At the gap: held. One past it, in the deps or an observed dot: refused.
    assert_eq!(engine.receive(far(10, 10), NOW), Ok(Receipt::Held));
    let mut engine = ReconciliationEngine::new(PeerId(1), config.clone());
    refused(&mut engine, far(11, 1));
    refused(&mut engine, far(1, 11));
    assert_eq!(engine.stats().refused_far_ahead, 2);
    // With 5 of each origin applied, 15 is within the gap and 16 is not.
    for seq in 1..=5 {
        for origin in [3, 4] {
            let write = register_write(EventId::new(PeerId(origin), seq), "x", "1", NOW);
            assert!(engine.receive(write, NOW).is_ok());
        }
    }
    refused(&mut engine, far(16, 1));
    refused(&mut engine, far(1, 16));
    assert_eq!(engine.receive(far(15, 15), NOW), Ok(Receipt::Held));
    assert_eq!(engine.holding().len(), 1);
}

#[test]
fn an_oversized_snapshot_offer_is_refused_before_any_transfer() {
    let mut room = Room::new(EngineConfig::default());
    let mut ahead = VectorClock::new();
    ahead.set(room.mallory.peer(), 5);
    room.mallory_sends(&Message::SnapshotOffer {
        id: Hash32([7; 32]),
        total: u64::MAX,
        clock: ahead,
        gzip: None,
    });
    assert_eq!(room.a_rejected_from_mallory(), 1);
    assert!(room.a.snapshot_progress().is_none());
    let asked = room.a.take_outputs().into_iter().any(|o| {
        matches!(&o, Output::Send { frame, .. }
            if matches!(wire::decode(frame), Ok(Decoded::Message(Message::SnapshotRequest { .. }))))
    });
    assert!(!asked, "no snapshot was requested");
    room.still_converge(0);
}

/// A signed request carries whole runs, which may hold several keys, so
/// it must name the one in conflict: one that names none is refused
/// (counted), its runs not taken, and the peer keeps working.
#[test]
fn a_signed_request_that_names_no_key_is_refused() {
    let mut room = Room::new(EngineConfig::default());
    let (a, m) = (room.a.peer(), room.mallory.peer());
    let events = room.mallory_writes(|e| {
        e.set("rq/1", json("1"), NOW).unwrap();
        e.set("rq/2", json("2"), NOW).unwrap();
    });
    room.mallory_sends(&Message::ReconciliationRequest(ReconciliationRequest {
        message_type: Default::default(),
        source_peer_id: m,
        target_peer_id: a,
        key: None,
        conflicting_events: events,
    }));
    assert_eq!(room.a_rejected_from_mallory(), 1);
    assert_eq!(room.a.engine().clock().get(m), 0, "its runs not taken");
    room.still_converge(0);
}

#[test]
fn reconciliation_requests_are_answered_at_most_so_many_per_interval() {
    let mut room = Room::new(EngineConfig::default());
    room.a
        .engine_mut()
        .set_policy("rc/", cpc_sync::protocol::ConflictPolicy::Reconcile);
    let (a, m) = (room.a.peer(), room.mallory.peer());
    // Her writes, each a run of its own, each the subject of a request.
    let mut requests = Vec::new();
    for i in 0..100 {
        let key = format!("rc/{i}");
        room.mallory
            .write(|e| e.set(&key, json("1"), NOW).map(Some))
            .unwrap();
        let _ = room.mallory.take_outputs();
        let event = room.mallory.engine().log().iter().last().unwrap().clone();
        requests.push(Message::ReconciliationRequest(ReconciliationRequest {
            message_type: Default::default(),
            source_peer_id: m,
            target_peer_id: a,
            key: Some(key.as_str().into()),
            conflicting_events: vec![event],
        }));
    }
    // Each request answered is shown to the app as it came (`Output::
    // Reconciliation`, its JSON made); one refused is not.
    let answers = |room: &mut Room| {
        let outputs = room.a.take_outputs();
        let shown = (outputs.iter())
            .filter(|o| {
                matches!(
                    o,
                    Output::Reconciliation {
                        outgoing: false,
                        ..
                    }
                )
            })
            .count();
        let answered = (outputs.iter())
            .filter(|o| {
                matches!(o, Output::Send { to, frame } if *to == m
                    && matches!(wire::decode(frame), Ok(Decoded::Message(Message::ReconciliationResponse(_)))))
            })
            .count();
        assert_eq!(shown, answered, "requests shown and answered");
        answered
    };
    for request in &requests {
        room.mallory_sends(request);
    }
    let limit = MAX_REQUESTS_PER_INTERVAL as usize;
    assert_eq!(answers(&mut room), limit);
    assert_eq!(room.a_rejected_from_mallory(), (100 - limit) as u64);
    // The next interval answers again.
    room.a.tick(NOW + 2_000);
    let _ = room.a.take_outputs();
    for request in &requests[limit..] {
        room.mallory_sends(request);
    }
    assert_eq!(answers(&mut room), 100 - limit);
    room.still_converge(0);
}

// --- State that arrives whole: snapshots and Merkle leaves -----------------

/// A register write Mallory makes up in another peer's name: a value, a dot
/// far ahead, a timestamp in the year ~10889, under a seal of her key.
fn made_up_write(victim: PeerId, mallory: &Identity, key: &str, value: &str) -> P2PEvent {
    let id = EventId::new(victim, 5_000_000);
    let mut event = register_write(id, key, value, 280_000_000_000_000);
    event.seal = Some(Box::new(seal::Seal::new(
        5_000_000,
        mallory.public_key(),
        mallory.sign(&[0; 32]),
    )));
    event
}

/// Mallory sends `bytes` as a whole snapshot she offers with `clock`.
fn offer_snapshot(room: &mut Room, clock: VectorClock, bytes: Vec<u8>) {
    let id = Hash32(*blake3::hash(&bytes).as_bytes());
    let total = bytes.len() as u64;
    room.mallory_sends(&Message::SnapshotOffer {
        id,
        total,
        clock,
        gzip: None,
    });
    room.mallory_sends(&Message::SnapshotChunk {
        id,
        offset: 0,
        total,
        bytes,
    });
}

#[test]
fn unasked_leaf_entities_are_refused_and_change_nothing() {
    let mut room = Room::with_doc();
    let b = room.b.peer();
    let poison = made_up_write(b, &Identity::from_seed(666), "doc", "\"pwned\"");
    let mut everyone_ahead = room.a.engine().clock().clone();
    everyone_ahead.set(b, 5_000_000);
    let state = StateSnapshot {
        version_vector: everyone_ahead,
        events: vec![poison],
        live: vec![true],
    };
    let index = u32::from(digest::leaf_of("doc"));
    room.mallory_sends(&Message::LeafState {
        index,
        state: state.encode(),
    });
    assert_eq!(room.a_rejected_from_mallory(), 1);
    assert_eq!(room.a.engine().stats().refused_state, 1);
    // Even had a asked, the copy would not verify: wrong seal, a dot and a
    // clock beyond what b signed, a timestamp far ahead.
    let trust = Trust {
        signed: true,
        now_ms: Some(NOW),
    };
    let leaf = digest::leaf_of("doc");
    assert!(room
        .a
        .engine_mut()
        .join_leaf(leaf, state, trust)
        .is_ok_and(|joined| !joined));
    let mut equal_clock = StateSnapshot {
        version_vector: room.a.engine().clock().clone(),
        events: vec![made_up_write(
            b,
            &Identity::from_seed(666),
            "doc",
            "\"pwned\"",
        )],
        live: vec![true],
    };
    assert!(room
        .a
        .engine_mut()
        .join_leaf(leaf, equal_clock.clone(), trust)
        .is_err());
    equal_clock.events[0].id.seq = 1;
    assert!(room
        .a
        .engine_mut()
        .join_leaf(leaf, equal_clock, trust)
        .is_err());
    // Nothing moved: the value, its writer, the clock and the next write's
    // timestamp; the poison spreads nowhere and the peers keep working.
    room.a.tick(NOW + 1_000);
    room.pump();
    for node in [&room.a, &room.b] {
        assert_eq!(node.engine().get("doc"), Some(serde_json::json!("honest")));
        assert!(!node.engine().state_json().contains("pwned"));
        assert!(node.engine().clock().get(b) < 5_000_000);
    }
    let next = room
        .a
        .write(|e| e.set("doc", json("\"later\""), NOW + 2_000).map(Some))
        .unwrap()
        .unwrap();
    assert!(next.hlc.millis() <= NOW + 2_000);
    room.still_converge(0);
}

/// How many of `messages` are `what`.
fn count(messages: &[Message], what: impl Fn(&Message) -> bool) -> usize {
    messages.iter().filter(|m| what(m)).count()
}

/// The frames `node` sent `to` since the last look, decoded.
fn sent_to(node: &mut SyncNode, to: PeerId) -> Vec<Message> {
    let frames = node
        .take_outputs()
        .into_iter()
        .filter_map(|output| match output {
            Output::Send { to: peer, frame } if peer == to => Some(frame),
            _ => None,
        });
    frames
        .filter_map(|frame| match wire::decode(&frame) {
            Ok(Decoded::Message(message)) => Some(message),
            _ => None,
        })
        .collect()
}

/// Merkle nodes no one asked for are refused and make us ask for nothing;
/// a leaf we did ask for, answered with bytes that are no state at all,
/// is a typed refusal, counted by the engine and against the sender, and
/// nothing changes. (Mallory makes us ask: a digest with our clock and
/// another root, then at each depth our own node with the child on the
/// way to the leaf changed.)
#[test]
fn unasked_merkle_nodes_and_an_undecodable_leaf_are_refused_and_counted() {
    let mut room = Room::with_doc();
    let mallory = room.mallory.peer();
    let leaf = usize::from(digest::leaf_of("doc"));
    let altered = |room: &mut Room, depth: u32| altered_node(room, leaf, depth);
    let _ = room.a.take_outputs();
    let unasked = altered(&mut room, digest::LEAF_DEPTH - 1);
    room.mallory_sends(&unasked);
    assert_eq!(room.a_rejected_from_mallory(), 1);
    assert!(
        sent_to(&mut room.a, mallory).is_empty(),
        "a asks for nothing"
    );

    let clock = room.a.engine().clock().clone();
    room.mallory_sends(&Message::Digest {
        clock,
        root: Hash32([9; 32]),
    });
    for depth in 0..digest::LEAF_DEPTH {
        let asked = sent_to(&mut room.a, mallory);
        assert!(
            matches!(asked[..], [Message::MerkleQuery { depth: d, .. }] if u32::from(d) == depth),
            "a asks for the node at depth {depth}: {asked:?}"
        );
        let answer = altered(&mut room, depth);
        room.mallory_sends(&answer);
    }
    let asked = sent_to(&mut room.a, mallory);
    assert!(
        matches!(asked[..], [Message::LeafQuery { index }] if index as usize == leaf),
        "a asks for the leaf: {asked:?}"
    );
    assert_eq!(
        room.a_rejected_from_mallory(),
        1,
        "the answers were asked for"
    );

    let (state_before, clock_before) = (
        room.a.engine().state_json(),
        room.a.engine().clock().clone(),
    );
    for junk in [Vec::new(), vec![0xff; 64], b"not a snapshot".to_vec()] {
        room.mallory_sends(&Message::LeafState {
            index: leaf as u32,
            state: junk,
        });
    }
    // The first answer was asked for and does not decode; the two after
    // it were not asked for. Each is refused, and counted.
    assert_eq!(room.a_rejected_from_mallory(), 4);
    assert_eq!(room.a.engine().stats().refused_state, 3);
    let refusals: Vec<String> = room
        .a
        .take_outputs()
        .into_iter()
        .filter_map(|output| match output {
            Output::Rejected { refusal, .. } => Some(refusal.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(
        refusals[1..].iter().all(|r| r == &refusals[1]) && refusals[0] != refusals[1],
        "the undecodable answer is refused for what it is: {refusals:?}"
    );
    assert_eq!(room.a.engine().state_json(), state_before);
    assert_eq!(*room.a.engine().clock(), clock_before);
    room.still_converge(0);
}

/// Mallory answers the leaf query she made `a` send with a copy of `a`'s
/// own clock holding `event`'s sealed run, `event` marked live and the
/// rest of the run not: every part of it signed and within the clock.
fn leaf_copy_of(room: &mut Room, event: EventId) {
    let key = room
        .a
        .engine()
        .kept_event(event)
        .expect("a keeps the event")
        .key
        .to_string();
    let leaf = make_a_ask_for_the_leaf_of(room, &key);
    let run = room
        .a
        .engine()
        .sealed_run_of(event)
        .expect("a keeps its run")
        .to_vec();
    let live = run.iter().map(|e| e.id == event).collect();
    let copy = StateSnapshot {
        version_vector: room.a.engine().clock().clone(),
        events: run,
        live,
    };
    room.mallory_sends(&Message::LeafState {
        index: leaf,
        state: copy.encode(),
    });
}

/// [`Room::with_doc`], and the id of `a`'s write of "doc".
fn room_with_doc_write() -> (Room, EventId) {
    let room = Room::with_doc();
    let write = room.a.engine().log().iter().last().expect("doc").id;
    (room, write)
}

/// `node` writes the string `value` to "doc".
fn writes_doc(node: &mut SyncNode, value: &str, at: u64) {
    let value = json(&serde_json::json!(value).to_string());
    node.write(|e| e.set("doc", value, at).map(Some)).unwrap();
}

/// `event`, one of Mallory's (its seal dropped, to be sealed again),
/// made a delete of "doc" that observed `write`.
fn as_delete_of_doc(event: &mut P2PEvent, write: EventId) {
    event.seal = None;
    event.key = "doc".into();
    event.op = Operation::Register(RegisterOp::Delete {
        observed: [(write.peer, write.seq)].into_iter().collect(),
    });
}

/// Another version of Mallory's `event`, a delete of "doc" that observed
/// `write`, sealed by her as a run of its own.
fn resigned_as_delete_of_doc(event: &P2PEvent, write: EventId, mallory: &Identity) -> P2PEvent {
    let mut run = vec![event.clone()];
    as_delete_of_doc(&mut run[0], write);
    seal::seal(mallory, &mut run);
    run.remove(0)
}

/// Mallory's two writes ("hers", "hers/2"), each sealed as a run of its
/// own, not sent: her key, the events and the runs.
fn mallorys_two_writes(room: &mut Room) -> (Identity, Vec<P2PEvent>, Vec<Vec<P2PEvent>>) {
    let mallory = Identity::from_seed(666);
    let mut events = room.mallory_writes(|e| {
        e.set("hers", json("1"), NOW).unwrap();
        e.set("hers/2", json("2"), NOW).unwrap();
    });
    let runs = sealed_one_by_one(&mut events, &mallory);
    (mallory, events, runs)
}

/// "doc" still shows `a`'s honest write at `a`, and after a round of
/// writes and gossip at `b` too.
fn doc_still_honest(room: &mut Room) {
    let honest = Some(serde_json::json!("honest"));
    assert_eq!(room.a.engine().get("doc"), honest);
    room.still_converge(0);
    assert_eq!(room.b.engine().get("doc"), honest);
}

/// [`leaf_copy_of`] `event` changes nothing at `a`, where "doc" still
/// shows `shown` (`None`: deleted): not its state, not its root (a
/// sibling brought back would not show under LWW), and nothing is
/// refused (every part of the copy verifies). The peers still converge.
fn leaf_copy_changes_nothing(room: &mut Room, event: EventId, shown: Option<&str>) {
    let shown = shown.map(|s| serde_json::json!(s));
    let before = (room.a.engine().state_json(), room.a.digest());
    leaf_copy_of(room, event);
    assert_eq!(room.a_rejected_from_mallory(), 0);
    assert_eq!(room.a.engine().get("doc"), shown);
    assert_eq!((room.a.engine().state_json(), room.a.digest()), before);
    room.still_converge(0);
    assert_eq!(room.b.engine().get("doc"), shown);
}

/// A leaf copy is a claim about which values live, and a leaf's repair
/// runs under equal clocks, where neither side can tell from the clocks
/// who holds what the other lacks. Joined as the version vectors say
/// (the intersection), a copy that left a value out deleted it: Mallory,
/// answering a leaf query she caused with a stale write of "doc" as its
/// only live event (the write that superseded it left out), deleted
/// "doc" at `a`, and `b`'s repairs against `a` then deleted it there too.
/// Joined by evidence, a value stays unless a signed event supersedes it,
/// and the stale write stays superseded by the write that did.
#[test]
fn a_leaf_copy_that_leaves_a_value_out_does_not_delete_it() {
    let (mut room, stale) = room_with_doc_write();
    writes_doc(&mut room.a, "newer", NOW + 1);
    room.pump();
    leaf_copy_changes_nothing(&mut room, stale, Some("newer"));
}

/// A leaf copy cannot bring back a value whose superseding write neither
/// side keeps, when its own writer wrote the key again: `a` wrote "doc",
/// `b` overwrote it, `a` overwrote `b`'s. `a`'s state rests on its last
/// write (which observed `b`'s only) and its first (the key's first
/// operation); `b`'s write is kept nowhere a leaf carries. Mallory's copy
/// marks `a`'s first write live: no event of the two leaves supersedes it
/// by what it observed, but its writer's later write did.
#[test]
fn a_leaf_copy_cannot_bring_back_a_value_its_writer_wrote_over() {
    let (mut room, first) = room_with_doc_write();
    writes_doc(&mut room.b, "b's", NOW + 1);
    room.pump();
    writes_doc(&mut room.a, "a's again", NOW + 2);
    room.pump();
    leaf_copy_changes_nothing(&mut room, first, Some("a's again"));
}

/// A copy carries a key's first operation for good, so a deleted key's
/// first value was one live mark away from coming back: Mallory marked
/// it live, the join found nothing either copy carried to supersede it,
/// and honest repairs carried it on. The events that superseded a value
/// (for each origin, the one that observed the most of it) now travel
/// with every copy, so both sides hold the delete.
#[test]
fn a_leaf_copy_cannot_bring_back_a_deleted_value() {
    let (mut room, first) = room_with_doc_write();
    room.b
        .write(|e| e.delete("doc", NOW + 1).map(|_| None))
        .unwrap();
    room.pump();
    room.fold_all();
    leaf_copy_changes_nothing(&mut room, first, None);
}

/// The same for a first value another writer overwrote twice: its second
/// write observed only its first, and neither is what the state rests
/// on now; the first write, which observed `a`'s, travels with the key.
#[test]
fn a_leaf_copy_cannot_bring_back_a_value_another_writer_wrote_over_twice() {
    let (mut room, first) = room_with_doc_write();
    writes_doc(&mut room.b, "b's", NOW + 1);
    room.pump();
    writes_doc(&mut room.b, "b's again", NOW + 2);
    room.pump();
    room.fold_all();
    leaf_copy_changes_nothing(&mut room, first, Some("b's again"));
}

/// Nothing checks an event's timestamp against what it observed: Mallory
/// signs a delete of `a`'s "doc" dated before the write it deletes, and
/// every peer applies it (it observed the write, so the write goes).
/// Rebuilt in timestamp order, a leaf's join applied her delete first,
/// where it superseded nothing, and her copy marking the write live
/// brought "doc" back, though both copies carried the delete. A dot is
/// superseded by whatever observed it, in any order.
#[test]
fn a_delete_dated_before_its_value_still_covers_it_in_a_leaf_join() {
    let (mut room, first) = room_with_doc_write();
    let doc = room
        .a
        .engine()
        .kept_event(first)
        .expect("a's write")
        .clone();
    let mallory = Identity::from_seed(666);
    let mut delete = room.mallory_writes(|e| {
        e.set("hers", json("1"), NOW).unwrap();
    });
    delete.truncate(1);
    as_delete_of_doc(&mut delete[0], first);
    delete[0].hlc = cpc_sync::protocol::clock::Timestamp(doc.hlc.0 - 1);
    seal::seal(&mallory, &mut delete);
    room.mallory_sends(&Message::Events(delete));
    room.pump();
    assert_eq!(room.a.engine().get("doc"), None, "her delete is a delete");
    assert_eq!(room.b.engine().get("doc"), None);
    leaf_copy_changes_nothing(&mut room, first, None);
}

/// Any member is "ahead" of a peer with one write of its own not yet
/// gossiped, so it may offer that peer a snapshot, which the peer joins
/// into its state. Joined by the version vectors alone, every dot the
/// snapshot's clock covered and its state lacked was dropped: Mallory
/// left `a`'s "doc" out (its run carried, as its origin's head, but not
/// marked live) and deleted it at `a`, and, offered to every peer, room-
/// wide. A dot of ours now goes only if an event the snapshot carries
/// supersedes it; this one is kept, and counted.
#[test]
fn a_pushed_snapshot_that_leaves_a_value_out_does_not_delete_it() {
    let (mut room, write) = room_with_doc_write();
    let mut snapshot = room.a.engine().snapshot();
    let mine = room.mallory_writes(|e| {
        e.set("hers", json("1"), NOW).unwrap();
    });
    let mut clock = snapshot.version_vector.clone();
    clock.set(room.mallory.peer(), mine.len() as u64);
    for (event, live) in snapshot.events.iter().zip(&mut snapshot.live) {
        *live &= event.id != write;
    }
    snapshot.events.extend(mine);
    snapshot.live.resize(snapshot.events.len(), true);
    snapshot.version_vector = clock.clone();
    let before = room.a.digest();
    offer_snapshot(&mut room, clock.clone(), snapshot.encode());
    room.pump();
    assert_eq!(*room.a.engine().clock(), clock, "the snapshot was taken");
    assert_eq!(room.a.engine().get("hers"), Some(serde_json::json!(1)));
    assert_eq!(
        room.a.engine().get("doc"),
        Some(serde_json::json!("honest"))
    );
    assert_eq!(room.a.engine().stats().kept_unsuperseded, 1);
    assert_ne!(room.a.digest(), before, "her write joined");
    room.still_converge(0);
    assert_eq!(
        room.b.engine().get("doc"),
        Some(serde_json::json!("honest"))
    );
}

/// Mallory signs a second version of one of her own events (a write of
/// "m/…", another leaf's key, taken by both honest peers) as a write of
/// "doc" that observes `a`'s, and answers the leaf query she caused with
/// it. Compared by content alone, the join took it as a dot of "doc":
/// a value she made up shown at `a`, and `a`'s next copies of the leaf
/// carried the version it logged, live in another leaf, which `b`
/// refused as lies until it cut `a` off. A copy holding another version
/// of an event kept here is refused, not as a lie (its sender may have
/// taken that version first), and counted as an equivocation; nothing
/// changes, and nobody is cut off however often she does it. (A helper's
/// review.) Nor is the leaf asked for again while both sides' copies of
/// it stay as they were, and the equivocation is counted once.
#[test]
fn a_leaf_copy_with_another_version_of_a_kept_event_is_refused() {
    let mut room = Room::with_doc();
    let mallory = Identity::from_seed(666);
    let key = (0..)
        .map(|i| format!("m/{i}"))
        .find(|k| digest::leaf_of(k) != digest::leaf_of("doc"))
        .expect("a key of another leaf");
    let mut events = room.mallory_writes(|e| {
        e.set(&key, json("1"), NOW).unwrap();
    });
    events[0].seal = None;
    let mut original = events.clone();
    seal::seal(&mallory, &mut original);
    room.mallory_sends(&Message::Events(original));
    room.pump();
    let doc = room.a.engine().log().iter().find(|e| &*e.key == "doc");
    let doc = doc.expect("a's write").clone();
    let mut forged = events;
    forged[0].key = "doc".into();
    forged[0].op = Operation::Register(RegisterOp::Write {
        value: json("\"forged\""),
        observed: [(doc.id.peer, doc.id.seq)].into_iter().collect(),
        resolution: false,
    });
    forged[0].hlc = cpc_sync::protocol::clock::Timestamp(doc.hlc.0 + 1);
    seal::seal(&mallory, &mut forged);
    let before = (room.a.engine().state_json(), room.a.digest());
    let mut closed = Vec::new();
    let copy = |room: &Room| StateSnapshot {
        version_vector: room.a.engine().clock().clone(),
        events: forged.clone(),
        live: vec![true],
    };
    for round in 0..6u64 {
        // Asked once: with both leaves as they were, not again (each side
        // would refuse the other's copy every interval, for good).
        let (leaf, asked) = lead_a_to_the_leaf_of(&mut room, "doc");
        assert_eq!(asked, round == 0, "round {round}");
        if asked {
            room.mallory_sends(&Message::LeafState {
                index: leaf,
                state: copy(&room).encode(),
            });
            let refused = refusals(&mut room.a);
            assert!(
                matches!(&refused[..], [Refusal::State(SnapshotError::OtherVersion(id))] if *id == forged[0].id),
                "{refused:?}"
            );
        }
        let later = NOW + 10_000 * (round + 1);
        room.a.tick(later);
        room.b.tick(later);
        closed.extend(room.pump());
    }
    assert!(closed.is_empty(), "an honest peer was cut off: {closed:?}");
    assert_eq!((room.a.engine().state_json(), room.a.digest()), before);
    assert_eq!(room.a.engine().stats().equivocations, 1);
    assert!(room.a.stats(room.mallory.peer()).is_some(), "no points");
    // Nor for good: what made the copy refused may lie outside the leaf
    // (an event kept for another), so after a while it is asked again.
    let after_a_while = NOW + LeafPairs::SPLIT_MS + 60_000;
    room.a.tick(after_a_while);
    let (_, asked) = lead_a_to_the_leaf_of_at(&mut room, "doc", after_a_while);
    assert!(asked, "asked again after a while");
    // Once "doc"'s leaf changes here, it is asked for again; the same
    // equivocation is counted once.
    writes_doc(&mut room.a, "newer", NOW + 1);
    room.pump();
    let leaf = make_a_ask_for_the_leaf_of(&mut room, "doc");
    room.mallory_sends(&Message::LeafState {
        index: leaf,
        state: copy(&room).encode(),
    });
    assert!(matches!(
        &refusals(&mut room.a)[..],
        [Refusal::State(SnapshotError::OtherVersion(_))]
    ));
    assert_eq!(room.a.engine().stats().equivocations, 1);
    room.still_converge(0);
}

/// Mallory's `events` (their seals dropped), each sealed again as a run
/// of its own.
fn sealed_one_by_one(events: &mut [P2PEvent], mallory: &Identity) -> Vec<Vec<P2PEvent>> {
    (events.iter_mut())
        .map(|event| {
            event.seal = None;
            let mut run = vec![event.clone()];
            seal::seal(mallory, &mut run);
            run
        })
        .collect()
}

/// Mallory's push: `a`'s own snapshot with `write` no longer marked live
/// (its run still there, as its origin's head), Mallory's own events of
/// `extra` (id order, marked as given, her own previous ones left out)
/// and her clock entry at `upto`, offered to `a`, then gossip. The
/// snapshot's clock.
fn push_snapshot_leaving_out(
    room: &mut Room,
    write: EventId,
    extra: Vec<(P2PEvent, bool)>,
    upto: u64,
) -> VectorClock {
    let mallory = room.mallory.peer();
    let snapshot = room.a.engine().snapshot();
    let mut pairs: Vec<(P2PEvent, bool)> = (snapshot.events.into_iter())
        .zip(snapshot.live)
        .filter(|(event, _)| event.id.peer != mallory)
        .map(|(event, live)| {
            let live = live && event.id != write;
            (event, live)
        })
        .collect();
    pairs.extend(extra);
    pairs.sort_by_key(|(event, _)| event.id);
    let mut clock = snapshot.version_vector;
    clock.set(mallory, upto);
    let (events, live) = pairs.into_iter().unzip();
    let snapshot = StateSnapshot {
        version_vector: clock.clone(),
        events,
        live,
    };
    offer_snapshot(room, clock.clone(), snapshot.encode());
    room.pump();
    clock
}

/// A snapshot now needs an event that covers a value to drop it, and
/// Mallory has one to give: a second version of one of her own events
/// (taken by both honest peers as a write of another key), re-signed as
/// a delete of "doc". Pushed in a snapshot to `a`, which keeps the first
/// version, it was evidence enough: "doc" gone at `a`, by an event no
/// other peer would apply. A snapshot holding another version of an
/// event kept here is refused, as a leaf's copy is, and the
/// equivocation counted.
#[test]
fn a_pushed_snapshot_cannot_delete_with_another_version_of_a_kept_event() {
    let (mut room, write) = room_with_doc_write();
    // Runs of one event each: the same bounds as the version `a` keeps.
    let (mallory, events, runs) = mallorys_two_writes(&mut room);
    room.mallory_sends(&Message::Events(runs[0].clone()));
    room.pump();
    assert_eq!(room.a.engine().get("hers"), Some(serde_json::json!(1)));
    let other = resigned_as_delete_of_doc(&events[0], write, &mallory);
    let extra = vec![(other, false), (runs[1][0].clone(), true)];
    push_snapshot_leaving_out(&mut room, write, extra, 2);
    assert_eq!(room.a.engine().stats().equivocations, 1);
    doc_still_honest(&mut room);
}

/// An event of Mallory's own that every peer folded away has nothing
/// left to be compared with: she re-signs it as a delete of "doc" and
/// pushes `a` a snapshot carrying it (one new write of hers makes her
/// ahead). Evidence within our clock is not taken: an event we applied
/// that covered a dot of ours removed it then, so one that covers a dot
/// we still hold is not the version we applied.
#[test]
fn a_pushed_snapshot_cannot_delete_with_a_re_signed_event_every_peer_folded() {
    let (mut room, write) = room_with_doc_write();
    let mallory = Identity::from_seed(666);
    let mut events = room.mallory_writes(|e| {
        for value in ["1", "2", "3"] {
            e.set("x", json(value), NOW).unwrap();
        }
        e.set("hers", json("4"), NOW).unwrap();
    });
    let runs = sealed_one_by_one(&mut events, &mallory);
    room.mallory_sends(&Message::Events(runs[..3].concat()));
    room.pump();
    room.fold_all();
    let folded = events[1].id;
    assert!(
        room.a.engine().kept_event(folded).is_none(),
        "x's second write folded away"
    );
    let forged = resigned_as_delete_of_doc(&events[1], write, &mallory);
    let extra = vec![(forged, false), (runs[3][0].clone(), true)];
    let clock = push_snapshot_leaving_out(&mut room, write, extra, 4);
    assert_eq!(*room.a.engine().clock(), clock, "the snapshot was taken");
    assert_eq!(room.a.engine().stats().kept_unsuperseded, 1);
    // Nor is it kept as evidence: no snapshot or leaf copy of `a`'s
    // carries it on.
    let carried = room.a.engine().snapshot().events;
    assert!(carried.iter().all(|e| e.id != folded), "{carried:?}");
    doc_still_honest(&mut room);
}

/// The version `a` holds counts too: Mallory's second event reaches `a`
/// before her first (held, waiting on it); her snapshot then brings the
/// first and another version of the second, a delete of "doc". Compared
/// only with what is logged or archived, it was evidence enough, and the
/// held version was dropped as a duplicate, uncounted. It is counted now,
/// and not taken as evidence; the snapshot itself is taken (refused, a
/// peer made to hold one version of a member's head while every other
/// peer has the other would refuse every snapshot for good: a review).
/// Her delete is her head, though, and reaches `b` with `a`'s next
/// snapshot, as any signed delete of hers would: the room ends agreeing.
#[test]
fn a_pushed_snapshot_cannot_delete_with_another_version_of_a_held_event() {
    let (mut room, write) = room_with_doc_write();
    let (mallory, events, runs) = mallorys_two_writes(&mut room);
    room.mallory_sends(&Message::Events(runs[1].clone()));
    let held = room.a.engine().stats().held;
    assert_eq!(held, 1, "the second waits on the first");
    let other = resigned_as_delete_of_doc(&events[1], write, &mallory);
    let extra = vec![(runs[0][0].clone(), true), (other, false)];
    let clock = push_snapshot_leaving_out(&mut room, write, extra, 2);
    assert_eq!(*room.a.engine().clock(), clock, "the snapshot was taken");
    assert_eq!(room.a.engine().stats().equivocations, 1);
    assert_eq!(room.a.engine().stats().kept_unsuperseded, 1);
    assert_eq!(
        room.a.engine().get("doc"),
        Some(serde_json::json!("honest"))
    );
    room.still_converge(0);
}

#[test]
fn a_forged_snapshot_cannot_inflate_an_honest_origins_clock() {
    let mut room = Room::new(EngineConfig::default());
    let b = room.b.peer();
    // Mallory's snapshot: her genuine events, and a clock claiming b is at
    // a billion (she holds nothing b signed there).
    let mine = room.mallory_writes(|e| {
        e.set("hers", json("1"), NOW).unwrap();
    });
    let mut clock = VectorClock::new();
    clock.set(room.mallory.peer(), mine.len() as u64);
    clock.set(b, 1_000_000_000);
    let forged = StateSnapshot {
        version_vector: clock.clone(),
        live: vec![true; mine.len()],
        events: mine,
    };
    offer_snapshot(&mut room, clock, forged.encode());
    assert!(room.a_rejected_from_mallory() >= 1);
    assert_eq!(room.a.engine().stats().refused_state, 1);
    assert_eq!(room.a.engine().clock().get(b), 0);
    // b's genuine write still reaches a, and a offers no poison to anyone.
    room.b
        .write(|e| e.set("from-b", json("\"genuine\""), NOW).map(Some))
        .unwrap();
    room.pump();
    assert_eq!(
        room.a.engine().get("from-b"),
        Some(serde_json::json!("genuine"))
    );
    assert_eq!(room.a.engine().horizon().get(b), 0);
    room.still_converge(0);
}

#[test]
fn no_snapshot_can_raise_our_own_count() {
    let mut room = Room::new(EngineConfig::default());
    let a = room.a.peer();
    room.a
        .write(|e| e.set("x", json("1"), NOW).map(Some))
        .unwrap();
    room.pump();
    let mut clock = VectorClock::new();
    clock.set(a, u64::MAX);
    offer_snapshot(&mut room, clock.clone(), Vec::new());
    assert!(room.a_rejected_from_mallory() >= 1);
    // Refused at the offer: nothing was asked for.
    assert!(room.a.snapshot_progress().is_none());
    // The engine refuses it too, whatever the sync layer lets through.
    let snapshot = StateSnapshot {
        version_vector: clock,
        ..StateSnapshot::default()
    };
    let trust = Trust {
        signed: true,
        now_ms: Some(NOW),
    };
    let err = room
        .a
        .engine_mut()
        .load_snapshot(snapshot, trust)
        .unwrap_err();
    assert!(matches!(err, SnapshotError::RaisesOwnClock { .. }), "{err}");
    // A remote event in our name beyond what we wrote is refused too.
    let mut fake = made_up_write(a, &Identity::from_seed(666), "x", "2");
    fake.seal = None;
    let err = room.a.engine_mut().receive(fake, NOW).unwrap_err();
    assert!(matches!(err, ReceiveError::NotOurs { .. }), "{err}");
    // Our sequence keeps rising, and every peer takes the next write.
    let next = room
        .a
        .write(|e| e.set("x", json("3"), NOW).map(Some))
        .unwrap()
        .unwrap();
    assert_eq!(next.id.seq, 2);
    room.still_converge(0);
    assert_eq!(room.b.engine().get("x"), Some(serde_json::json!(3)));
}

#[test]
fn an_origin_flood_stops_at_the_bound_and_the_victim_still_restarts() {
    let limit = 300;
    let config = EngineConfig {
        max_origins: limit,
        ..EngineConfig::default()
    };
    // By pull (the default), b takes a's next write (pushed) before the
    // flood origins it depends on (pulled): an origin both applied and
    // held counts once against `max_origins`, or b would refuse the last
    // one at this exact bound and hold a's write for ever.
    let mut room = Room::relaying(config.clone(), Relay::Pull);
    // The members write before the flood: it fills the room's remaining
    // places for origins (newcomers are refused once it is full; a room
    // secret keeps strangers out), but cannot break the members.
    room.still_converge(0);
    // Throwaway identities, one validly sealed event each.
    let flood: Vec<P2PEvent> = (0..limit as u64 + 100)
        .map(|i| {
            let identity = Identity::from_seed(100_000 + i);
            let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
            let mut run = vec![engine.set("spam", json("1"), NOW).unwrap()];
            seal::seal(&identity, &mut run);
            run.remove(0)
        })
        .collect();
    for batch in flood.chunks(100) {
        room.mallory_sends(&Message::Events(batch.to_vec()));
    }
    let a = room.a.engine();
    assert!(a.clock().len() <= limit, "{} origins", a.clock().len());
    assert!(a.stats().refused_origins >= 100);
    // The victim's own digest and snapshot still decode, and it restarts
    // from its own snapshot.
    let digest = Message::Digest {
        clock: a.clock().clone(),
        root: Hash32::ZERO,
    };
    for frame in wire::encode(&digest, 1) {
        assert!(wire::decode(&frame).is_ok());
    }
    let bytes = a.encode_snapshot();
    let identity = Identity::from_seed(1);
    let restored = SyncNode::restore(
        identity.peer(),
        config,
        SyncConfig {
            identity: Some(identity),
            ..SyncConfig::default()
        },
        Some(&bytes),
        Vec::new(),
    )
    .expect("restarts from its own snapshot");
    assert_eq!(restored.engine().clock(), room.a.engine().clock());
    room.still_converge(1);
    assert!(room.a.engine().clock().len() <= limit);
}

// --- Room state ---------------------------------------------------------------

/// Mallory, a member, may set the room's policies (a write like any), and
/// it reaches everyone. A sealed run of hers that turns a policy key into
/// a counter (whose earlier first operation would hide the policy) is
/// refused by every honest peer alike: the policy stays, the honest peers
/// still converge, and the refusal is counted against her connection.
#[test]
fn a_member_sets_policies_but_cannot_forge_room_state() {
    use cpc_sync::protocol::engine::policy_key;
    use cpc_sync::protocol::event::CounterOp;
    use cpc_sync::protocol::ConflictPolicy;
    let mut room = Room::new(EngineConfig::default());
    let mallory = room.mallory.peer();
    let genuine = room.mallory_writes(|e| {
        e.set_room_policy("doc/", ConflictPolicy::MultiValue, NOW)
            .unwrap();
    });
    room.mallory_sends(&Message::Events(genuine.clone()));
    room.pump();
    for node in [&room.a, &room.b] {
        assert_eq!(
            node.engine().room_policy("doc/"),
            Some(ConflictPolicy::MultiValue)
        );
    }

    let mut run = room.mallory_writes(|e| {
        e.set("scratch", json("0"), NOW).unwrap();
    });
    let mut forged = run.pop().expect("her second run");
    forged.key = policy_key("doc/").into();
    forged.op = Operation::Counter(CounterOp::Increment { by: 1, sum: 1 });
    forged.hlc = genuine[0].hlc;
    forged.seal = None;
    seal::seal(&Identity::from_seed(666), std::slice::from_mut(&mut forged));
    let rejected = room.a_rejected_from_mallory();
    room.mallory_sends(&Message::Events(vec![forged]));
    room.pump();
    assert!(room.a_rejected_from_mallory() > rejected);
    assert_eq!(room.a.engine().stats().refused_malformed, 1);
    assert_eq!(room.a.engine().clock().get(mallory), 1);
    for node in [&room.a, &room.b] {
        assert_eq!(
            node.engine().room_policy("doc/"),
            Some(ConflictPolicy::MultiValue)
        );
    }
    room.still_converge(0);
}

// --- Overlapping runs -----------------------------------------------------------

/// Mallory's own events 1..=`count` (a key each), their seals taken
/// off: hers to seal as she likes.
fn mallorys_unsealed(room: &mut Room, count: usize) -> Vec<P2PEvent> {
    let mut events = room.mallory_writes(|e| {
        for i in 1..=count {
            e.set(&format!("m/{i}"), json("1"), NOW).unwrap();
        }
    });
    assert_eq!(events.len(), count);
    events.iter_mut().for_each(|e| e.seal = None);
    events
}

/// The snapshot `node` offers verifies in a fresh peer and shows its state.
fn offers_what_it_shows(node: &SyncNode) {
    let snapshot = StateSnapshot::decode(&node.engine().encode_snapshot()).expect("decodes");
    let mut fresh = ReconciliationEngine::new(PeerId(7), EngineConfig::default());
    let trust = Trust {
        signed: true,
        now_ms: Some(NOW),
    };
    fresh
        .load_snapshot(snapshot, trust)
        .expect("what we offer verifies");
    assert_eq!(fresh.state_json(), node.engine().state_json());
}

/// Mallory seals her events 1..=10, then 5..=12 again as a run of its own,
/// and sends both. Were both kept, every snapshot and leaf an honest peer
/// offers would be refused as a broken run. The second is refused (an
/// equivocation, at no cost to the sender: an honest relay may have taken
/// it first); what the honest peers offer still verifies, and they still
/// converge. (A helper's review.)
#[test]
fn a_signers_overlapping_runs_cannot_break_what_honest_peers_offer() {
    let mut room = Room::new(EngineConfig::default());
    let mallory = Identity::from_seed(666);
    let events = mallorys_unsealed(&mut room, 12);
    let run = |first: usize, last: usize| {
        let mut run = events[first - 1..last].to_vec();
        seal::seal(&mallory, &mut run);
        run
    };
    room.mallory_sends(&Message::Events(run(1, 10)));
    room.pump();
    room.mallory_sends(&Message::Events(run(5, 12)));
    room.mallory_sends(&Message::Events([run(11, 11), run(11, 12)].concat()));
    room.pump();
    let a = room.a.engine();
    assert_eq!(a.clock().get(mallory.peer()), 11, "the run 11..=11 only");
    assert_eq!(a.stats().equivocations, 2);
    assert!(room.a.stats(room.mallory.peer()).is_some(), "not cut off");
    offers_what_it_shows(&room.a);
    offers_what_it_shows(&room.b);
    room.still_converge(0);
}

/// Mallory's run 1..=10 is taken; then she asks for reconciliation with
/// another version of 9..=10 (both writes to "m/10", other values) as the
/// conflicting run. The run is refused, one equivocation; its events are
/// not handed on to the handling as siblings, where each was charged
/// again (the forty-sixth session's open finding).
#[test]
fn a_refused_run_in_a_reconciliation_request_is_charged_once() {
    let mut room = Room::new(EngineConfig::default());
    let (a, m) = (room.a.peer(), room.mallory.peer());
    let mallory = Identity::from_seed(666);
    let events = mallorys_unsealed(&mut room, 10);
    let mut taken = events.clone();
    seal::seal(&mallory, &mut taken);
    room.mallory_sends(&Message::Events(taken));
    room.pump();
    assert_eq!(room.a.engine().clock().get(mallory.peer()), 10);
    let mut other: Vec<P2PEvent> = events[8..]
        .iter()
        .map(|e| {
            let mut other = register_write(e.id, "m/10", "2", 0);
            other.hlc = e.hlc;
            other
        })
        .collect();
    seal::seal(&mallory, &mut other);
    let rejected = room.a_rejected_from_mallory();
    room.mallory_sends(&Message::ReconciliationRequest(ReconciliationRequest {
        message_type: Default::default(),
        source_peer_id: m,
        target_peer_id: a,
        key: Some("m/10".into()),
        conflicting_events: other,
    }));
    assert_eq!(room.a.engine().stats().equivocations, 1);
    assert_eq!(room.a_rejected_from_mallory(), rejected + 1);
    offers_what_it_shows(&room.a);
    room.still_converge(0);
}

/// Mallory seals 1..=3 with event 2 stamped a year ahead, then 2..=2
/// alone, honestly stamped. Honest peers refuse the first run whole (at
/// no cost: a clock may be ahead), where they applied 1 and held 3, and
/// every snapshot they offered carried 1 unsealed, refused as a lie; the
/// second waits for 1. What they offer verifies. (A helper's review.)
#[test]
fn a_run_with_one_refused_event_is_refused_whole() {
    use cpc_sync::protocol::clock::Timestamp;
    let mut room = Room::new(EngineConfig::default());
    let mallory = Identity::from_seed(666);
    let mut events = mallorys_unsealed(&mut room, 3);
    let mut gap = vec![events[1].clone()];
    seal::seal(&mallory, &mut gap);
    events[1].hlc = Timestamp::new(NOW + 365 * 24 * 3_600_000, 0);
    seal::seal(&mallory, &mut events);
    room.mallory_sends(&Message::Events(events));
    room.pump();
    room.mallory_sends(&Message::Events(gap));
    room.pump();
    assert_eq!(room.a.engine().clock().get(mallory.peer()), 0);
    assert_eq!(room.a.engine().holding().len(), 1);
    assert!(room.a.stats(room.mallory.peer()).is_some(), "not cut off");
    offers_what_it_shows(&room.a);
    offers_what_it_shows(&room.b);
    room.still_converge(0);
}

/// A sweep of every Merkle leaf asks for little and would be answered with
/// much: each leaf's copy carries every sealed run resting on its keys,
/// whole, and a burst over many keys rests in nearly every leaf. Answers
/// stop at a byte budget each gossip interval (past the first leaf); the
/// rest are refused, counted, and answered after the interval.
#[test]
fn a_sweep_of_leaf_queries_is_answered_within_a_budget() {
    let mut room = Room::new(EngineConfig::default());
    // 4 bursts of 1,024 writes, each over 1,024 keys.
    for burst in 0..4 {
        room.a
            .write(|e| {
                for k in 0..1024 {
                    e.set(&format!("k{burst}/{k}"), json("1"), NOW)?;
                }
                Ok(None)
            })
            .unwrap();
    }
    room.pump();
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    // Sweeps the leaves: (bytes asked, bytes answered, leaves answered).
    let sweep = |room: &mut Room| {
        let (mut asked, mut answered, mut leaves) = (0, 0, 0);
        for index in 0..digest::LEAVES as u32 {
            let query = Message::LeafQuery { index };
            asked += wire::encode(&query, 7).iter().map(Vec::len).sum::<usize>();
            room.mallory_sends(&query);
            for message in sent_to(&mut room.a, mallory) {
                if let Message::LeafState { state, .. } = message {
                    answered += state.len();
                    leaves += 1;
                }
            }
        }
        (asked, answered, leaves)
    };
    let (asked, answered, leaves) = sweep(&mut room);
    let largest_leaf = answered / leaves.max(1) * 2;
    println!("a sweep: {asked} B asked, {answered} B in {leaves} leaves answered");
    assert!(leaves >= 1, "the first leaf is answered");
    assert!(
        answered <= MAX_LEAF_BYTES_PER_INTERVAL + largest_leaf,
        "{answered} B answered"
    );
    assert!(leaves < digest::LEAVES / 4, "{leaves} leaves answered");
    let refused = room.a_rejected_from_mallory();
    assert_eq!(refused, (digest::LEAVES - leaves) as u64);
    // The next interval answers again, within the budget again.
    room.next_interval();
    let (_, again, more) = sweep(&mut room);
    assert!(more >= 1 && again <= MAX_LEAF_BYTES_PER_INTERVAL + largest_leaf);
    room.still_converge(0);
}

/// A leaf rests on whole signed runs, and three runs of 6 MB values in
/// one leaf make a copy larger than a message: it is not sent, where it
/// was sent as a message the asker refused (a point) at every ask. Its
/// encoding is charged to the asker's leaf budget all the same: asked
/// again in the interval, it is refused before any work.
#[test]
fn a_leaf_too_large_for_a_message_is_not_sent() {
    let mut room = Room::new(EngineConfig::default());
    let leaf = digest::leaf_of("doc");
    let keys: Vec<String> = (0..)
        .map(|i| format!("big{i}"))
        .filter(|k| digest::leaf_of(k) == leaf)
        .take(3)
        .collect();
    let big = json(&format!("\"{}\"", "v".repeat(6 << 20)));
    for key in &keys {
        room.a
            .write(|e| e.set(key, big.clone(), NOW).map(Some))
            .unwrap();
    }
    room.a
        .write(|e| e.set("doc", json("1"), NOW).map(Some))
        .unwrap();
    room.pump();
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    room.mallory_sends(&Message::LeafQuery {
        index: u32::from(leaf),
    });
    // In chunks, which `sent_to` leaves out: counted as bytes.
    let sent: usize = (room.a.take_outputs().into_iter())
        .filter_map(|output| match output {
            Output::Send { to, frame } if to == mallory => Some(frame.len()),
            _ => None,
        })
        .sum();
    assert!(sent < 1 << 20, "{sent} B went: a leaf over 16 MiB");
    let refused = room.a_rejected_from_mallory();
    room.mallory_sends(&Message::LeafQuery {
        index: u32::from(leaf),
    });
    assert_eq!(room.a_rejected_from_mallory(), refused + 1, "over budget");
    room.next_interval();
    // A leaf of small values is answered as ever.
    let small = (0..)
        .map(|i| format!("s{i}"))
        .find(|k| digest::leaf_of(k) != leaf)
        .unwrap();
    room.a
        .write(|e| e.set(&small, json("1"), NOW).map(Some))
        .unwrap();
    room.pump();
    let _ = room.a.take_outputs();
    room.mallory_sends(&Message::LeafQuery {
        index: u32::from(digest::leaf_of(&small)),
    });
    assert!(sent_to(&mut room.a, mallory)
        .into_iter()
        .any(|m| matches!(m, Message::LeafState { .. })));
}

/// A snapshot window asked for again and again (a request of ~60 bytes
/// answered with up to 1 MiB) goes again only within a byte budget each
/// gossip interval; every byte of the snapshot still goes once as a
/// transfer moves on.
#[test]
fn a_window_asked_for_over_and_over_is_sent_again_within_a_budget() {
    let mut room = Room::new(EngineConfig::default());
    let value = json(&format!("\"{}\"", "a long value ".repeat(12)));
    room.a
        .write(|e| {
            for k in 0..20_000 {
                e.set(&format!("key/{k}"), value.clone(), NOW)?;
            }
            Ok(None)
        })
        .unwrap();
    room.pump();
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    // An id no snapshot has: answered with an offer of ours.
    room.mallory_sends(&Message::SnapshotRequest {
        id: Hash32([1; 32]),
        offset: 0,
    });
    let offer = sent_to(&mut room.a, mallory)
        .into_iter()
        .find_map(|m| match m {
            Message::SnapshotOffer { id, total, .. } => Some((id, total)),
            _ => None,
        });
    let (id, total) = offer.expect("a offers its snapshot");
    assert!(
        total > 2 * WINDOW_BYTES,
        "a snapshot of several windows: {total} B"
    );
    let answered = |room: &mut Room| -> u64 {
        sent_to(&mut room.a, mallory)
            .into_iter()
            .map(|m| match m {
                Message::SnapshotChunk { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum()
    };
    // The whole of it, a window at a time: each byte once.
    let mut offset = 0;
    while offset < total {
        room.mallory_sends(&Message::SnapshotRequest { id, offset });
        offset += WINDOW_BYTES;
    }
    assert_eq!(answered(&mut room), total);
    // Then the first window, a hundred times.
    for _ in 0..100 {
        room.mallory_sends(&Message::SnapshotRequest { id, offset: 0 });
    }
    let again = answered(&mut room);
    assert_eq!(again, MAX_RESENT_BYTES_PER_INTERVAL);
    assert_eq!(room.a_rejected_from_mallory(), 98);
    // The next interval, as much again.
    room.next_interval();
    for _ in 0..10 {
        room.mallory_sends(&Message::SnapshotRequest { id, offset: 0 });
    }
    assert_eq!(answered(&mut room), MAX_RESENT_BYTES_PER_INTERVAL);
    room.still_converge(0);
}

/// Merkle queries are answered up to twice a whole descent's worth each
/// gossip interval; a flood past that is refused and counted.
#[test]
fn a_flood_of_merkle_queries_is_answered_within_a_budget() {
    let mut room = Room::with_doc();
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let answers = |room: &mut Room| {
        let sent = sent_to(&mut room.a, mallory);
        count(&sent, |m| matches!(m, Message::MerkleNodes { .. })) as u32
    };
    for _ in 0..2_000 {
        room.mallory_sends(&Message::MerkleQuery { depth: 0, index: 0 });
    }
    assert_eq!(answers(&mut room), MAX_MERKLE_ANSWERS_PER_INTERVAL);
    let refused = u64::from(2_000 - MAX_MERKLE_ANSWERS_PER_INTERVAL);
    assert_eq!(room.a_rejected_from_mallory(), refused);
    room.next_interval();
    room.mallory_sends(&Message::MerkleQuery { depth: 1, index: 3 });
    assert_eq!(answers(&mut room), 1);
    room.still_converge(0);
}

/// A request for a snapshot we do not keep is answered with our offer,
/// which carries our whole version vector: once a gossip interval.
#[test]
fn requests_for_unknown_snapshots_get_one_offer_an_interval() {
    let mut room = Room::with_doc();
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let offers = |room: &mut Room| {
        let sent = sent_to(&mut room.a, mallory);
        count(&sent, |m| matches!(m, Message::SnapshotOffer { .. }))
    };
    for i in 0..10 {
        room.mallory_sends(&Message::SnapshotRequest {
            id: Hash32([i; 32]),
            offset: 0,
        });
    }
    assert_eq!(offers(&mut room), 1);
    assert_eq!(room.a_rejected_from_mallory(), 9);
    room.next_interval();
    room.mallory_sends(&Message::SnapshotRequest {
        id: Hash32([1; 32]),
        offset: 0,
    });
    assert_eq!(offers(&mut room), 1);
    room.still_converge(0);
}

// --- What a member makes a peer hold ------------------------------------------

/// `count` events of `identity`'s own, each a write of `value` to a key
/// of its own, sealed each as a run of one; event 1, which every other
/// waits for (its origin's previous), is left out: never sent.
fn held_for_good(identity: &Identity, count: u64, value: &JsonValue) -> Vec<P2PEvent> {
    let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut events: Vec<P2PEvent> = (0..=count)
        .map(|i| {
            engine
                .set(&format!("held/{i}"), value.clone(), NOW)
                .expect("a write")
        })
        .collect();
    events.remove(0);
    for event in &mut events {
        seal::seal(identity, std::slice::from_mut(event));
    }
    events
}

/// The bytes of the events `node` holds, by their estimate.
fn held_bytes(node: &SyncNode) -> usize {
    let holding = node.engine().holding();
    holding.iter().map(P2PEvent::approx_size).sum()
}

/// Mallory's own sealed events, each a value of 100 KB, all waiting for
/// her event 1, which she never sends. The counts alone let her hold her
/// 25,000 events' share of the queue, 2.5 GB of values, for as long as
/// the peer runs; now the queue holds her share of bytes
/// (`HOLDING_BYTES_PER_ORIGIN`), and refuses the rest, typed and counted,
/// at no cost to her (an honest peer's events may wait too).
#[test]
fn held_events_of_large_values_fill_only_their_share_of_bytes() {
    use cpc_sync::protocol::engine::HOLDING_BYTES_PER_ORIGIN;
    let mut room = Room::new(EngineConfig::default());
    let value = json(&format!("\"{}\"", "x".repeat(100_000)));
    let events = held_for_good(&Identity::from_seed(666), 300, &value);
    let sent: usize = events.iter().map(P2PEvent::approx_size).sum();
    for batch in events.chunks(50) {
        room.mallory_sends(&Message::Events(batch.to_vec()));
    }
    let (held, bytes) = (room.a.engine().holding().len(), held_bytes(&room.a));
    println!("{sent} B sent; {held} events of {bytes} B held");
    assert!(bytes <= HOLDING_BYTES_PER_ORIGIN, "{bytes} B held");
    assert!(bytes + 2 * events[0].approx_size() > HOLDING_BYTES_PER_ORIGIN);
    assert_eq!(room.a.engine().holding().bytes(), bytes);
    let refused = refusals(&mut room.a);
    assert_eq!(refused.len(), events.len() - held);
    assert!(refused.iter().all(|r| matches!(r,
        Refusal::Event(ReceiveError::HoldingQueueBytes { capacity, .. })
            if *capacity == HOLDING_BYTES_PER_ORIGIN)));
    let refused = refused.len() as u64;
    assert_eq!(room.a.engine().stats().refused_queue_full, refused);
    assert_eq!(room.a_rejected_from_mallory(), refused);
    assert!(room.a.stats(room.mallory.peer()).is_some(), "not cut off");
    room.still_converge(0);
}

/// With throwaway identities, a member holds at most the queue's bytes
/// (`holding_bytes`), each identity at most its share: an honest origin's
/// events that must wait are refused only once the queue is full, and
/// come again once their dependencies are in.
#[test]
fn several_identities_hold_at_most_the_queues_bytes() {
    let config = EngineConfig {
        holding_bytes: 4 << 20,
        holding_bytes_per_origin: 1 << 20,
        ..EngineConfig::default()
    };
    let mut room = Room::new(config.clone());
    let value = json(&format!("\"{}\"", "x".repeat(10_000)));
    let mut refused = Vec::new();
    for seed in 0..6 {
        let identity = Identity::from_seed(100_000 + seed);
        let events = held_for_good(&identity, 150, &value);
        room.mallory_sends(&Message::Events(events));
        refused.extend(refusals(&mut room.a));
        let holding = room.a.engine().holding();
        let theirs: usize = (holding.iter())
            .filter(|e| e.id.peer == identity.peer())
            .map(P2PEvent::approx_size)
            .sum();
        assert!(theirs <= config.holding_bytes_per_origin, "{theirs} B");
    }
    let bytes = held_bytes(&room.a);
    println!("{bytes} B held of 6 identities");
    assert!(bytes <= config.holding_bytes, "{bytes} B held");
    assert!(bytes + 2 * (10_000 + 100) > config.holding_bytes);
    // Refused at each identity's share, then at the queue's.
    for bound in [config.holding_bytes_per_origin, config.holding_bytes] {
        assert!(refused.iter().any(|r| matches!(r,
            Refusal::Event(ReceiveError::HoldingQueueBytes { capacity, .. }) if *capacity == bound)));
    }
    let counted = room.a.engine().stats().refused_queue_full;
    assert_eq!(counted, refused.len() as u64);
    room.still_converge(0);
}

/// An `IHave` names origins of its sender's choosing, and a session noted
/// each in what its peer has: a 16-byte entry for ~9 bytes of hers, until
/// her next digest, which she need not send. A session notes at most
/// `MAX_THEIR_ORIGINS` (as many as a digest may name); the rest are
/// refused, counted, at no cost.
#[test]
fn ihaves_of_made_up_origins_grow_a_session_only_to_its_bound() {
    use cpc_sync::protocol::sync::MAX_ANNOUNCED;
    let mut room = Room::with_doc();
    let mallory = room.mallory.peer();
    room.mallory_sends(&Message::Digest {
        clock: VectorClock::new(),
        root: Hash32::ZERO,
    });
    let _ = room.a.take_outputs();
    let named = MAX_CLOCK_ENTRIES + 10 * MAX_ANNOUNCED;
    let mut refused = 0;
    for first in (0..named).step_by(MAX_ANNOUNCED) {
        let origins = first as u64..(first + MAX_ANNOUNCED) as u64;
        let entries = origins.map(|i| (PeerId(1 << 40 | i), 1)).collect();
        room.mallory_sends(&Message::IHave(entries));
        let past = |r: &Refusal| matches!(r, Refusal::TooManyOrigins(_));
        refused += refusals(&mut room.a).iter().filter(|r| past(r)).count();
    }
    let (clock, _) = room.a.remote_view(mallory).expect("she sent a digest");
    assert!(clock.len() <= MAX_CLOCK_ENTRIES, "{} origins", clock.len());
    assert!(refused >= 10, "each IHave past the bound: {refused}");
    assert!(room.a.stats(mallory).is_some(), "not cut off");
    room.still_converge(0);
}

/// `count` register deletes of Mallory's, of one key, at one time,
/// unsealed: each a byte of a batch (its op; its key and time run-coded).
fn deletes(mallory: PeerId, count: u64) -> Vec<P2PEvent> {
    use cpc_sync::protocol::clock::Timestamp;
    (1..=count)
        .map(|seq| P2PEvent {
            id: EventId::new(mallory, seq),
            key: "k".into(),
            op: Operation::Register(RegisterOp::Delete {
                observed: VectorClock::new(),
            }),
            deps: VectorClock::new(),
            hlc: Timestamp::new(NOW, 0),
            seal: None,
        })
        .collect()
}

/// The refusals `node` reported since the last look.
fn refusals(node: &mut SyncNode) -> Vec<Refusal> {
    (node.take_outputs().into_iter())
        .filter_map(|output| match output {
            Output::Rejected { refusal, .. } => Some(refusal),
            _ => None,
        })
        .collect()
}

/// What `node` refused since the last look, asserting it showed the app
/// no reconciliation message.
fn refused_unshown(node: &mut SyncNode) -> Vec<Refusal> {
    let outputs = node.take_outputs();
    assert!(!outputs
        .iter()
        .any(|o| matches!(o, Output::Reconciliation { .. })));
    (outputs.into_iter())
        .filter_map(|output| match output {
            Output::Rejected { refusal, .. } => Some(refusal),
            _ => None,
        })
        .collect()
}

/// State (a snapshot or a leaf's copy) of Mallory's `count` deletes
/// under `clock`, encoded: a byte or so an event.
fn deletes_state(mallory: PeerId, count: u64, clock: VectorClock) -> Vec<u8> {
    StateSnapshot {
        version_vector: clock,
        events: deletes(mallory, count),
        live: vec![false; count as usize],
    }
    .encode()
}

/// `a` refused Mallory's state of `count` events, of which it takes at
/// most `limit`, before decoding it, and counted it.
fn refused_as_too_many(room: &mut Room, count: u64, limit: u64) {
    let refused = refusals(&mut room.a);
    let expected = SnapshotError::TooManyEvents { count, limit };
    assert!(
        matches!(&refused[..], [Refusal::State(e)] if *e == expected),
        "refused before decoding: {refused:?}"
    );
    assert_eq!(room.a.engine().stats().refused_state, 1);
}

/// A batch may spell an event in a byte, and a decoded event takes 160
/// bytes: 200,000 deletes, ~200 KB in a few frames, were decoded to 32 MB,
/// their room reserved at once (a message of 16 MiB: 2.7 GB, more than a
/// page's wasm memory holds), before anything was checked. A message's
/// batch of more than `MAX_MESSAGE_EVENTS` events is refused before any
/// is decoded (typed, counted, at no cost: it cost us nothing).
#[test]
fn a_message_of_more_events_than_a_batch_holds_is_refused_before_decoding() {
    let mut room = Room::new(EngineConfig::default());
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let events = deletes(mallory, 200_000);
    let decoded = events.len() * std::mem::size_of::<P2PEvent>();
    let frames = wire::encode(&Message::Events(events), 7);
    let sent: usize = frames.iter().map(Vec::len).sum();
    println!(
        "{sent} B sent in {} frames, {decoded} B decoded",
        frames.len()
    );
    assert!(sent * 100 < decoded, "{sent} B for {decoded} B");
    for frame in &frames {
        room.a.receive_frame(mallory, frame, NOW);
    }
    let refused = refusals(&mut room.a);
    assert!(
        matches!(&refused[..], [Refusal::Frame(WireError::TooManyEvents { count: 200_000, limit })]
            if *limit == MAX_MESSAGE_EVENTS as u64),
        "refused before decoding: {refused:?}"
    );
    assert_eq!(refused[0].points(), 0);
    assert_eq!(room.a_rejected_from_mallory(), 1);
    assert!(room.a.engine().holding().is_empty());
    room.still_converge(0);
}

/// A snapshot may spell an event in a byte too: 200,000 deletes under a
/// clock counting three events, ~200 KB (a few KB gzipped), were decoded
/// to 32 MB before its clock was checked against them (a snapshot of 16
/// MiB: 2.7 GB, their room reserved at once, which aborted a page and the
/// room peer with every room in it). A snapshot of more events than its
/// clock counts, or than `max_snapshot_events`, is refused before any is
/// decoded or reserved (typed, counted).
#[test]
fn a_snapshot_of_more_events_than_its_clock_counts_is_refused_before_decoding() {
    let mut room = Room::new(EngineConfig::default());
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let mut clock = VectorClock::new();
    clock.set(mallory, 3);
    let bomb = deletes_state(mallory, 200_000, clock.clone());
    println!("{} B of snapshot", bomb.len());
    offer_snapshot(&mut room, clock, bomb);
    refused_as_too_many(&mut room, 200_000, 3);
    assert!(room.a.snapshot_progress().is_none());
    assert_eq!(room.a.engine().clock().get(mallory), 0);
    room.still_converge(0);
}

/// A snapshot's events are decoded before its seals can be checked, and a
/// member's may spell each in a byte: a few KB gzipped made a node hold
/// up to 512 MiB inflated and 640 MiB decoded. One node, one snapshot at
/// a time, but the room peer runs every room in one process, and a member
/// could make each of 125 rooms take one at once (~140 GB). Nodes given
/// one `IntakeBudget` (the room peer's rooms) hold no more than it
/// between them: a snapshot that does not fit is refused at no cost
/// (`IntakeFull`) and taken from a later offer, once the budget is back.
#[test]
fn rooms_sharing_an_intake_budget_hold_no_more_of_snapshots_than_it() {
    const EVENTS: u64 = 200_000;
    let decoded = EVENTS * std::mem::size_of::<P2PEvent>() as u64;
    let budget = IntakeBudget::new(decoded + decoded / 2);
    let mut rooms: Vec<Room> = (0..2)
        .map(|_| Room::taking_in(EngineConfig::default(), Relay::default(), budget.clone()))
        .collect();
    let mallory = rooms[0].mallory.peer();
    let mut clock = VectorClock::new();
    clock.set(mallory, EVENTS);
    let bomb = deletes_state(mallory, EVENTS, clock.clone());
    println!("{} B of snapshot, {decoded} B decoded", bomb.len());
    for room in &mut rooms {
        let _ = room.a.take_outputs();
        offer_snapshot(room, clock.clone(), bomb.clone());
    }
    // The first room decodes it a slice at a time, holding its bytes and
    // its events; the second has no room for its events.
    assert!(budget.left() < decoded / 2, "{} left", budget.left());
    let refused = refusals(&mut rooms[1].a);
    assert!(
        matches!(&refused[..], [Refusal::IntakeFull { needed, .. }]
            if *needed == bomb.len() as u64 + decoded),
        "{refused:?}"
    );
    assert_eq!(refused[0].points(), 0, "not the sender's fault");
    assert!(rooms[1].a.snapshot_progress().is_none());
    // Once the first is through (refused: its events carry no seals),
    // the budget is whole again, and the second takes a later offer.
    for at in 1..1_000 {
        rooms[0].a.tick(NOW + at);
    }
    let refused = refusals(&mut rooms[0].a);
    assert!(
        matches!(&refused[..], [Refusal::State(_) | Refusal::Seal(_)]),
        "{refused:?}"
    );
    assert_eq!(budget.left(), decoded + decoded / 2);
    offer_snapshot(&mut rooms[1], clock, bomb);
    assert!(
        budget.left() < decoded / 2,
        "the second room decodes it now"
    );
    for room in &mut rooms {
        room.still_converge(0);
    }
}

/// An offer's claims held the budget: one offer of 512 MiB, gzipped to a
/// byte less, reserved 1 GiB at once, and a member that offered and hung
/// up (another connection of hers keeping the room loaded) held the room
/// peer's whole shared budget for good, as its transfer was never given
/// up without its source (a review's test). What a transfer holds grows
/// with what arrives; one whose source went quiet, connected or not, is
/// given up after `MAX_STALLS` patience periods, told as dropped, and
/// what it held goes back.
#[test]
fn an_offer_holds_the_intake_budget_only_as_its_bytes_arrive_and_not_once_its_source_is_gone() {
    use cpc_sync::protocol::sync::wire::Gzipped;
    const GIB: u64 = 1 << 30;
    let budget = IntakeBudget::new(GIB);
    let mut room = Room::taking_in(EngineConfig::default(), Relay::default(), budget.clone());
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let mut clock = VectorClock::new();
    clock.set(mallory, 1_000_000);
    let total = 512 * 1024 * 1024;
    let gz = Hash32([9; 32]);
    room.mallory_sends(&Message::SnapshotOffer {
        id: Hash32([8; 32]),
        total,
        clock,
        gzip: Some(Gzipped {
            id: gz,
            total: total - 1,
        }),
    });
    assert!(room.a.snapshot_progress().is_some(), "taken");
    assert_eq!(budget.left(), GIB, "nothing held for a claim");
    room.mallory_sends(&Message::SnapshotChunk {
        id: gz,
        offset: 0,
        total: total - 1,
        bytes: vec![0; 16 * 1024],
    });
    let held = GIB - budget.left();
    assert!(held <= 64 * 1024, "what came, as the buffer grows: {held}");
    room.a.disconnect(mallory);
    let mut told = Vec::new();
    for s in 1..=60 {
        room.a.tick(NOW + s * 1_000);
        told.extend(room.a.take_outputs().into_iter().filter_map(|o| match o {
            Output::SnapshotProgress { dropped, .. } => Some(dropped),
            _ => None,
        }));
    }
    assert_eq!(told, [true], "given up, and told");
    assert!(room.a.snapshot_progress().is_none());
    assert_eq!(budget.left(), GIB, "what it held is back");
}

/// A chunk that does not continue the transfer (another sender, another
/// snapshot) was sized against the intake budget before it was found not
/// to belong, and one too large dropped the transfer under way (a
/// review's test). It is ignored as before, whatever its size.
#[test]
fn a_stray_chunk_does_not_cancel_a_transfer_under_way() {
    let budget = IntakeBudget::new(80 * 1024);
    let mut room = Room::taking_in(EngineConfig::default(), Relay::default(), budget.clone());
    let mallory = room.mallory.peer();
    let _ = room.a.take_outputs();
    let mut clock = VectorClock::new();
    clock.set(mallory, 3);
    let id = Hash32([8; 32]);
    room.mallory_sends(&Message::SnapshotOffer {
        id,
        total: 64 * 1024,
        clock,
        gzip: None,
    });
    room.mallory_sends(&Message::SnapshotChunk {
        id,
        offset: 0,
        total: 64 * 1024,
        bytes: vec![0; 1024],
    });
    let _ = room.a.take_outputs();
    let stray = Message::SnapshotChunk {
        id: Hash32([1; 32]),
        offset: 0,
        total: 100 * 1024,
        bytes: vec![0; 60 * 1024],
    };
    let b = room.b.peer();
    for frame in wire::encode(&stray, 7) {
        room.a.receive_frame(b, &frame, NOW);
    }
    let outputs = room.a.take_outputs();
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::SnapshotProgress { dropped: true, .. } | Output::Rejected { .. }
        )),
        "{outputs:?}"
    );
    assert_eq!(
        room.a.snapshot_progress().map(|(_, got, _)| got),
        Some(1024)
    );
}

/// The Merkle node at `depth` on the way to `leaf`, as `a` has it but
/// for the child on the way: what makes `a` ask one level further down.
fn altered_node(room: &mut Room, leaf: usize, depth: u32) -> Message {
    let below = digest::FANOUT.pow(digest::LEAF_DEPTH - 1 - depth);
    let index = leaf / (below * digest::FANOUT);
    let mut children = (room.a.engine_mut().merkle())
        .children(depth, index)
        .expect("a node on the way");
    children[(leaf / below) % digest::FANOUT] = Hash32([7; 32]);
    Message::MerkleNodes {
        depth: depth as u8,
        index: index as u32,
        children: children.to_vec(),
    }
}

/// Makes `a` ask Mallory for the Merkle leaf of `key`: a digest of a's
/// own clock and another root, then at each depth a's own node with the
/// child on the way to the leaf changed. The leaf's index.
fn make_a_ask_for_the_leaf_of(room: &mut Room, key: &str) -> u32 {
    let (leaf, asked) = lead_a_to_the_leaf_of(room, key);
    assert!(asked, "a asks for the leaf");
    leaf
}

/// Mallory's digest and Merkle nodes lead `a` down to the leaf of `key`:
/// the leaf, and whether `a` asked her for it.
fn lead_a_to_the_leaf_of(room: &mut Room, key: &str) -> (u32, bool) {
    lead_a_to_the_leaf_of_at(room, key, NOW)
}

/// [`lead_a_to_the_leaf_of`], Mallory's frames arriving at `now_ms` (a
/// frame dated before `a`'s last tick is a clock set back, which brings
/// `a`'s times back with it).
fn lead_a_to_the_leaf_of_at(room: &mut Room, key: &str, now_ms: u64) -> (u32, bool) {
    let mallory = room.mallory.peer();
    let leaf = usize::from(digest::leaf_of(key));
    let _ = room.a.take_outputs();
    let clock = room.a.engine().clock().clone();
    room.mallory_sends_at(
        &Message::Digest {
            clock,
            root: Hash32([9; 32]),
        },
        now_ms,
    );
    for depth in 0..digest::LEAF_DEPTH {
        let answer = altered_node(room, leaf, depth);
        room.mallory_sends_at(&answer, now_ms);
    }
    let asked = sent_to(&mut room.a, mallory)
        .iter()
        .any(|m| matches!(m, Message::LeafQuery { index } if *index as usize == leaf));
    (leaf as u32, asked)
}

/// A leaf's copy is a snapshot, and its batch may spell an event in a
/// byte too: 200,000 deletes were decoded to 32 MB (a leaf of 16 MiB:
/// 2.7 GB) before its clock was found not to be ours. A copy is joined
/// only under a clock equal to ours, its events distinct and within it,
/// so one of more events than our clock counts is refused before any is
/// decoded.
#[test]
fn a_leaf_of_more_events_than_our_clock_counts_is_refused_before_decoding() {
    let mut room = Room::with_doc();
    let leaf = make_a_ask_for_the_leaf_of(&mut room, "doc");
    let clock = room.a.engine().clock().clone();
    let state = deletes_state(room.mallory.peer(), 200_000, clock);
    println!("a leaf of 200,000 events in {} B", state.len());
    let before = room.a.engine().state_json();
    room.mallory_sends(&Message::LeafState { index: leaf, state });
    // a's clock counts the one event it wrote.
    refused_as_too_many(&mut room, 200_000, 1);
    assert_eq!(room.a.engine().state_json(), before);
    room.still_converge(0);
}

/// A refusal may quote what its sender sent: a key of room state no one
/// may write was quoted whole, its control characters escaped at five
/// bytes each (5 MiB for a key of 1 MiB, in the refusal the app is given),
/// and a session kept the text as its last error, and kept it after the
/// peer left (the counters of 1,024 peers are kept): each of a member's
/// identities held ~5 times the largest key it sent, for good. A refusal
/// quotes 64 bytes of a key, and a session keeps at most `MAX_LAST_ERROR`
/// bytes of a refusal's text.
#[test]
fn a_refusal_quoting_a_huge_key_is_kept_short() {
    use cpc_sync::protocol::engine::RESERVED_PREFIX;
    use cpc_sync::protocol::sync::MAX_LAST_ERROR;
    let mut room = Room::new(EngineConfig::default());
    let mallory = room.mallory.peer();
    let mut run = room.mallory_writes(|e| {
        e.set("scratch", json("0"), NOW).unwrap();
    });
    let key = format!("{RESERVED_PREFIX}{}", "\u{1}".repeat(1 << 20));
    run[0].key = key.as_str().into();
    run[0].seal = None;
    seal::seal(&Identity::from_seed(666), &mut run);
    room.mallory_sends(&Message::Events(run));
    let quoted = refusals(&mut room.a);
    assert!(
        matches!(&quoted[..], [one] if one.to_string().len() < 512),
        "the refusal quotes a few bytes of the key: {quoted:?}"
    );
    let kept = |room: &Room| {
        let stats = room.a.stats(mallory).expect("her counters");
        stats.last_error.as_ref().map_or(0, String::len)
    };
    assert!(
        kept(&room) <= MAX_LAST_ERROR + '…'.len_utf8(),
        "{} B",
        kept(&room)
    );
    room.a.disconnect(mallory);
    assert!(
        kept(&room) <= MAX_LAST_ERROR + '…'.len_utf8(),
        "{} B",
        kept(&room)
    );
    room.still_converge(0);
}

/// `peer` (an honest one, or Mallory) sends `message` to `a` at `now_ms`.
fn sends_to_a(room: &mut Room, peer: PeerId, message: &Message, now_ms: u64) {
    for frame in wire::encode(message, 9) {
        room.a.receive_frame(peer, &frame, now_ms);
    }
}

/// A room where `b` wrote what `a` did not hear of, and the snapshot `b`
/// would offer of it.
struct Ahead {
    room: Room,
    id: Hash32,
    total: u64,
    bytes: Vec<u8>,
    clock: VectorClock,
    /// `b`'s offer of it.
    offer: Message,
}

fn b_ahead_of_a() -> Ahead {
    let mut room = Room::new(EngineConfig::default());
    room.b
        .write(|e| {
            for i in 0..40 {
                e.set(&format!("b/{i}"), json("\"from b\""), NOW).unwrap();
            }
            Ok(None)
        })
        .unwrap();
    let _ = room.b.take_outputs();
    let bytes = room.b.engine().encode_snapshot();
    let id = Hash32(*blake3::hash(&bytes).as_bytes());
    let clock = room.b.engine().clock().clone();
    let total = bytes.len() as u64;
    let offer = Message::SnapshotOffer {
        id,
        total,
        clock: clock.clone(),
        gzip: None,
    };
    Ahead {
        room,
        id,
        total,
        bytes,
        clock,
        offer,
    }
}

/// Mallory splices a chunk of her own (an honest snapshot's bytes,
/// altered) into `b`'s transfer to `a`, just before `b`'s own chunk at
/// that offset: it is not taken, `b`'s is, `a` loads `b`'s genuine
/// snapshot, and `b`, whose last chunk completes it, is not blamed (it
/// was charged with a forgery, and after four cut off).
#[test]
fn chunks_from_anyone_but_the_source_are_not_taken_into_its_snapshot() {
    let Ahead {
        mut room,
        id,
        total,
        bytes,
        clock,
        offer,
    } = b_ahead_of_a();
    let (b, mallory) = (room.b.peer(), room.mallory.peer());
    sends_to_a(&mut room, b, &offer, NOW);
    let third = bytes.len() / 3;
    let chunk = |from: usize, to: usize, bytes: &[u8]| Message::SnapshotChunk {
        id,
        offset: from as u64,
        total,
        bytes: bytes[from..to].to_vec(),
    };
    let mut altered = bytes.clone();
    altered[third..2 * third]
        .iter_mut()
        .for_each(|b| *b ^= 0x55);
    sends_to_a(&mut room, b, &chunk(0, third, &bytes), NOW);
    sends_to_a(&mut room, mallory, &chunk(third, 2 * third, &altered), NOW);
    sends_to_a(&mut room, b, &chunk(third, 2 * third, &bytes), NOW);
    sends_to_a(&mut room, b, &chunk(2 * third, bytes.len(), &bytes), NOW);
    for ms in 1..20 {
        room.a.tick(NOW + ms);
    }
    assert_eq!(
        room.a.stats(b).map_or(0, |s| s.rejected),
        0,
        "b is not blamed"
    );
    assert!(
        room.a.engine().clock().descends(&clock),
        "a took b's snapshot"
    );
    assert_eq!(
        room.a.engine().get("b/39"),
        Some(serde_json::json!("from b"))
    );
}

/// Mallory offers a snapshot and then keeps its transfer "progressing"
/// with empty chunks, or a byte at a time, just within `a`'s patience:
/// neither counts as progress, so `a` gives her transfer up and takes
/// `b`'s offer (it ignored every other offer while hers progressed).
#[test]
fn a_source_sending_nothing_or_a_byte_at_a_time_does_not_hold_the_transfer() {
    for trickle in [0usize, 1] {
        let Ahead {
            mut room,
            id,
            clock,
            offer,
            ..
        } = b_ahead_of_a();
        let (b, mallory) = (room.b.peer(), room.mallory.peer());
        let (fake, fake_total) = (Hash32([9; 32]), 1 << 20);
        let fake_offer = Message::SnapshotOffer {
            id: fake,
            total: fake_total,
            clock,
            gzip: None,
        };
        sends_to_a(&mut room, mallory, &fake_offer, NOW);
        let patience = 2 * SyncConfig::default().gossip_interval_ms;
        let (mut now, mut sent) = (NOW, 0);
        for _ in 0..20 {
            now += patience - 1;
            let chunk = Message::SnapshotChunk {
                id: fake,
                offset: sent,
                total: fake_total,
                bytes: vec![0; trickle],
            };
            sends_to_a(&mut room, mallory, &chunk, now);
            sent += trickle as u64;
            room.a.tick(now);
            let _ = room.a.take_outputs();
        }
        sends_to_a(&mut room, b, &offer, now);
        let asked_b = sent_to(&mut room.a, b)
            .iter()
            .any(|m| matches!(m, Message::SnapshotRequest { id: asked, .. } if *asked == id));
        assert!(asked_b, "chunks of {trickle} bytes held a's transfer");
    }
}

/// Mallory offers `b`'s snapshot under its own id (learnt from `b`),
/// sends an altered first third and goes quiet; `b` offers the same id:
/// `a` starts over from `b` rather than resuming on Mallory's bytes, so
/// it loads the genuine snapshot and `b` is not blamed.
#[test]
fn a_transfer_resumed_from_another_source_starts_over() {
    let Ahead {
        mut room,
        id,
        total,
        bytes,
        clock,
        offer,
    } = b_ahead_of_a();
    let (b, mallory) = (room.b.peer(), room.mallory.peer());
    let third = bytes.len() / 3;
    let mut altered = bytes[..third].to_vec();
    altered.iter_mut().for_each(|b| *b ^= 0x55);
    sends_to_a(&mut room, mallory, &offer, NOW);
    let first = Message::SnapshotChunk {
        id,
        offset: 0,
        total,
        bytes: altered,
    };
    sends_to_a(&mut room, mallory, &first, NOW);
    let later = NOW + 3 * SyncConfig::default().gossip_interval_ms;
    sends_to_a(&mut room, b, &offer, later);
    let asked: Vec<u64> = sent_to(&mut room.a, b)
        .iter()
        .filter_map(|m| match m {
            Message::SnapshotRequest { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![0], "b is asked from the start");
    let whole = Message::SnapshotChunk {
        id,
        offset: 0,
        total,
        bytes: bytes.clone(),
    };
    sends_to_a(&mut room, b, &whole, later);
    for ms in 1..20 {
        room.a.tick(later + ms);
    }
    assert_eq!(
        room.a.stats(b).map_or(0, |s| s.rejected),
        0,
        "b is not blamed"
    );
    assert!(room.a.engine().clock().descends(&clock));
}

/// A room where `a` reconciles "rc/" keys, and Mallory's events, unsealed,
/// that make her the resolver of "rc/x": two writes of hers, the second
/// not observing the first (a conflict whose siblings are all hers), then
/// a write of "1" to each of `more`.
fn mallory_resolving(more: &[&str]) -> (Room, Vec<P2PEvent>) {
    let mut room = Room::new(EngineConfig::default());
    room.a
        .engine_mut()
        .set_policy("rc/", cpc_sync::protocol::ConflictPolicy::Reconcile);
    let mut events = room.mallory_writes(|e| {
        e.set("rc/x", json("1"), NOW).unwrap();
        e.set("rc/x", json("2"), NOW).unwrap();
        for key in more {
            e.set(key, json("1"), NOW).unwrap();
        }
    });
    events.iter_mut().for_each(|e| e.seal = None);
    if let Operation::Register(RegisterOp::Write { observed, .. }) = &mut events[1].op {
        *observed = VectorClock::new();
    }
    (room, events)
}

/// Mallory answers a request of ours with runs we refuse: each is charged
/// to her, as each refused run of an `Events` message is (a response was
/// charged its first refusal only). She made herself the resolver: two
/// writes of hers to a `reconcile` key, the second not observing the
/// first, are a conflict whose siblings are all hers.
#[test]
fn each_refused_run_of_a_reconciliation_response_is_charged() {
    use cpc_sync::protocol::clock::Timestamp;
    let (mut room, events) = mallory_resolving(&["m/3", "m/4"]);
    let (a, m) = (room.a.peer(), room.mallory.peer());
    let mallory = Identity::from_seed(666);
    let mut conflict = events[..2].to_vec();
    seal::seal(&mallory, &mut conflict);
    room.mallory_sends(&Message::Events(conflict));
    assert_eq!(room.a.engine().resolver("rc/x"), Some(m));
    room.a.tick(NOW + 1_000);
    let asked = sent_to(&mut room.a, m);
    assert!(
        asked
            .iter()
            .any(|msg| matches!(msg, Message::ReconciliationRequest(_))),
        "a asks her: {asked:?}"
    );
    // Two runs of one event each, stamped a year ahead: refused at no cost.
    let ahead = |event: &P2PEvent| {
        let mut run = vec![event.clone()];
        run[0].hlc = Timestamp::new(NOW + 365 * 86_400_000, 0);
        seal::seal(&mallory, &mut run);
        run
    };
    let before = room.a_rejected_from_mallory();
    let response = ReconciliationResponse {
        message_type: ResponseType::ReconciliationResponse,
        source_peer_id: m,
        target_peer_id: a,
        resolution_events: [ahead(&events[2]), ahead(&events[3])].concat(),
    };
    room.mallory_sends(&Message::ReconciliationResponse(response));
    assert_eq!(room.a_rejected_from_mallory(), before + 2);
    assert_eq!(room.a.engine().clock().get(m), 2);
    room.still_converge(0);
}

/// Mallory, the resolver of a conflict of her own making, keeps quiet
/// while `a` asks her again and again, then answers every request at
/// once, long after: a quiet peer does not bank requests, so the late
/// answers are refused before the app is shown any (each could be a
/// 16 MiB response shown as ~100 MB of JSON), and at no cost to her (a
/// late answer may be honest).
#[test]
fn a_resolver_that_keeps_quiet_banks_no_requests_to_answer_later() {
    use cpc_sync::protocol::sync::session::AwaitedResponses;
    let (mut room, mut events) = mallory_resolving(&[]);
    let (a, m) = (room.a.peer(), room.mallory.peer());
    seal::seal(&Identity::from_seed(666), &mut events);
    room.mallory_sends(&Message::Events(events.clone()));
    room.pump();
    assert_eq!(room.a.engine().resolver("rc/x"), Some(m));
    // `a` asks, and asks again each retry, for ten minutes (then settles
    // the conflict itself).
    let mut to_mallory = Vec::new();
    let mut now = NOW;
    while now < NOW + 600_000 {
        now += 1_000;
        room.a.tick(now);
        room.b.tick(now);
        room.pump_at(now, &mut to_mallory);
    }
    let asked = (to_mallory.iter())
        .filter(|msg| matches!(msg, Message::ReconciliationRequest(_)))
        .count();
    assert!(asked >= 2, "a asked her {asked} times");
    let response = Message::ReconciliationResponse(ReconciliationResponse {
        message_type: ResponseType::ReconciliationResponse,
        source_peer_id: m,
        target_peer_id: a,
        resolution_events: events,
    });
    let late = now + AwaitedResponses::ANSWERED_WITHIN_MS + 1;
    let before = room.a_rejected_from_mallory();
    for _ in 0..asked {
        room.mallory_sends_at(&response, late);
    }
    let refused = refused_unshown(&mut room.a);
    assert_eq!(refused, vec![Refusal::UnaskedResponse; asked]);
    assert_eq!(room.a_rejected_from_mallory(), before + asked as u64);
    // Its gossip round comes after `late`.
    room.still_converge((late - NOW) / 10_000);
}

/// A reconciliation request or response Mallory sends in `b`'s name, or
/// addressed to another peer, is refused before the app is shown it (the
/// reconciliation log would have put the exchange in `b`'s name), and
/// weighs a point: no honest peer sends one.
#[test]
fn a_reconciliation_message_in_another_peers_name_is_refused_unshown() {
    let mut room = Room::with_doc();
    let (a, b, m) = (room.a.peer(), room.b.peer(), room.mallory.peer());
    let _ = room.a.take_outputs();
    let old: Vec<P2PEvent> = room.a.engine().log().iter().cloned().collect();
    let messages = [
        Message::ReconciliationRequest(ReconciliationRequest {
            message_type: Default::default(),
            source_peer_id: b,
            target_peer_id: a,
            key: Some("doc".into()),
            conflicting_events: old.clone(),
        }),
        Message::ReconciliationRequest(ReconciliationRequest {
            message_type: Default::default(),
            source_peer_id: m,
            target_peer_id: b,
            key: Some("doc".into()),
            conflicting_events: old.clone(),
        }),
        Message::ReconciliationResponse(ReconciliationResponse {
            message_type: ResponseType::ReconciliationResponse,
            source_peer_id: b,
            target_peer_id: a,
            resolution_events: old,
        }),
    ];
    for message in &messages {
        room.mallory_sends(message);
    }
    let refused = refused_unshown(&mut room.a);
    let misaddressed = |sender, recipient| Refusal::Misaddressed { sender, recipient };
    assert_eq!(
        refused,
        [misaddressed(b, a), misaddressed(m, b), misaddressed(b, a)]
    );
    assert_eq!(room.a_rejected_from_mallory(), 3);
    room.still_converge(0);
}

/// A reconciliation response to no request of ours (Mallory's, of the
/// room's old valid events) is refused before anything is made of it:
/// no entry in the reconciliation log, whose JSON of a 16 MiB response
/// could run past 100 MB, and no points (an answer to a request sent on
/// a connection since replaced comes on the new one).
#[test]
fn an_unasked_reconciliation_response_is_refused_before_it_is_shown() {
    let mut room = Room::with_doc();
    let old: Vec<P2PEvent> = room.a.engine().log().iter().cloned().collect();
    let _ = room.a.take_outputs();
    let response = ReconciliationResponse {
        message_type: ResponseType::ReconciliationResponse,
        source_peer_id: room.mallory.peer(),
        target_peer_id: room.a.peer(),
        resolution_events: old,
    };
    room.mallory_sends(&Message::ReconciliationResponse(response));
    let refused = refused_unshown(&mut room.a);
    assert_eq!(refused, [Refusal::UnaskedResponse]);
    let standing = room.a.stats(room.mallory.peer()).expect("still connected");
    assert_eq!(standing.rejected, 1);
    room.still_converge(0);
}

/// Mallory fills the origin bound of two honest peers with two sets of
/// throwaway identities (one sealed event each), a set to each peer: each
/// takes its own and refuses the other's relayed at no cost. Once `b`
/// folds while `a` is away, `b`'s snapshot is its whole honest state, yet
/// joined with `a`'s origins it passes the bound. That was refused as a
/// lie (25 points) at every offer, and `a` cut `b` off (a review). Over
/// the bound joined with ours is now no lie; over it alone still is.
#[test]
fn split_origin_floods_do_not_make_an_honest_snapshot_a_lie() {
    use common::net::{honest, Net};
    let limit = 8;
    let config = EngineConfig {
        max_origins: limit,
        ..EngineConfig::default()
    };
    let nodes = [1, 2, 661, 662].map(|seed| signed_relaying(seed, config.clone(), Relay::Pull));
    let mut net = Net::new(nodes.into(), NOW);
    let (a, b, m1, m2) = (0, 1, 2, 3);
    net.link(a, b);
    net.link(a, m1);
    net.link(b, m2);
    for (node, key) in [(a, "doc/a"), (b, "doc/b")] {
        net.nodes[node]
            .write(|e| e.set(key, json("1"), NOW).map(Some))
            .unwrap();
    }
    net.run(2_000, 100, &mut honest);
    assert_eq!(net.nodes[a].engine().clock(), net.nodes[b].engine().clock());
    // A set of 4 throwaway origins to each honest peer (beside its 2
    // writers); relayed, each takes 2 of the other's and is full.
    for (node, from, seeds) in [(a, m1, 10_000), (b, m2, 20_000)] {
        let events: Vec<P2PEvent> = (0..4).map(|i| throwaway(seeds + i)).collect();
        let from = net.nodes[from].peer();
        for frame in wire::encode(&Message::Events(events), 1) {
            let now = net.now;
            net.nodes[node].receive_frame(from, &frame, now);
        }
    }
    net.run(2_000, 100, &mut honest);
    // `a` goes away; `b` folds what it has.
    net.unlink(a, b);
    net.unlink(b, m2);
    net.nodes[b].fold();
    assert!(net.nodes[b].engine().log().is_empty());
    net.run(1_000, 100, &mut honest);
    let before = net.seen[a].rejected.len();
    let (pa, pb) = (net.nodes[a].peer(), net.nodes[b].peer());
    // Nor is it downloaded again at every offer, to be refused again (a
    // second review counted 601 downloads in 10 minutes): not at all.
    let mut chunks = 0usize;
    let mut count = |from: PeerId, to: PeerId, frame: Vec<u8>| {
        if (from, to) == (pb, pa)
            && matches!(
                wire::decode(&frame),
                Ok(Decoded::Message(Message::SnapshotChunk { .. }))
            )
        {
            chunks += 1;
        }
        vec![frame]
    };
    net.link(a, b);
    net.run(600_000, 500, &mut count);
    let refused: Vec<&Refusal> = net.seen[a].rejected[before..]
        .iter()
        .filter(|(p, _)| *p == pb)
        .map(|(_, r)| r)
        .collect();
    assert!(
        matches!(
            refused[..],
            [Refusal::State(SnapshotError::TooManyOriginsJoined {
                limit: 8,
                ..
            })]
        ),
        "the snapshot offered past the bound, refused once: {refused:?}"
    );
    assert_eq!(chunks, 0, "downloaded to be refused");
    let charged: u32 = refused.iter().map(|r| r.points_from(pb)).sum();
    assert_eq!(charged, 0, "honest b charged for its snapshot: {refused:?}");
    assert!(net.linked(a, b), "a cut b off: {:?}", net.seen[a].closed);
}

/// One sealed event of a throwaway identity (free to make).
fn throwaway(seed: u64) -> P2PEvent {
    let identity = Identity::from_seed(seed);
    let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut run = vec![engine.set("spam", json("1"), NOW).unwrap()];
    seal::seal(&identity, &mut run);
    run.remove(0)
}
