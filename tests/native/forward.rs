//! A relay forwards an `Events` frame whose events all applied, each on
//! its own, as it came: the same bytes to every peer it pushes all of
//! them to (flood, as the room peer relays, or PlumTree's eager links),
//! not the events encoded again once a link. A frame that applied in
//! part (a run refused, an event known already) is not: the peers get
//! what did apply, encoded here.

use crate::common::{json, signed_node};

use std::collections::VecDeque;

use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::seal;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message, WireError};
use cpc_sync::protocol::sync::{Output, Relay, SyncConfig, SyncNode};
use cpc_sync::protocol::{blake3, EventId, JsonValue, Operation, P2PEvent, PeerId};

const NOW: u64 = 1_700_000_000_000;

fn connect(nodes: &mut [SyncNode], x: usize, y: usize) {
    let (px, py) = (nodes[x].peer(), nodes[y].peer());
    nodes[x].connect(py, NOW);
    nodes[y].connect(px, NOW);
}

/// Delivers every frame the nodes send, in order, until none is left
/// (frames to a peer not among `nodes` are dropped, writes to storage
/// acknowledged, seals handed out verified); returns them all, as
/// delivered. Frames of `respell`'s are [`respelled`] on their way.
fn pump(nodes: &mut [SyncNode], respell: Option<PeerId>) -> Vec<(PeerId, PeerId, Vec<u8>)> {
    let mut log = Vec::new();
    let mut queue = VecDeque::new();
    loop {
        let mut committed = false;
        for node in nodes.iter_mut() {
            node.verify_received(NOW);
            let from = node.peer();
            for output in node.take_outputs() {
                match output {
                    Output::Send { to, frame } => queue.push_back((from, to, frame)),
                    // Committed at once: what waited for it leaves at the
                    // next take.
                    Output::Persist { token, .. } => {
                        node.persisted(token);
                        committed = true;
                    }
                    // Verified at once, as a page's workers would.
                    Output::Verify { batch, seals } => {
                        node.verified(batch, &seal::verify_packed(&seals), NOW);
                        committed = true;
                    }
                    _ => {}
                }
            }
        }
        if committed {
            continue;
        }
        let Some((from, to, mut frame)) = queue.pop_front() else {
            return log;
        };
        if Some(from) == respell && events_of(&frame).is_some() {
            frame = respelled(&frame);
        }
        if let Some(node) = nodes.iter_mut().find(|n| n.peer() == to) {
            node.receive_frame(from, &frame, NOW);
        }
        log.push((from, to, frame));
    }
}

/// The same `Events` frame spelled otherwise: its batch's `coded` field
/// (the varint after the format byte) a byte longer than it needs, which
/// the codec reads the same on every target (its varints are `u64`s). A
/// node never spells a batch so, so a frame that leaves a node in this
/// spelling left as it came.
fn respelled(frame: &[u8]) -> Vec<u8> {
    let batch = wire::event_batch(frame).expect("a whole Events frame");
    let end = 1 + batch[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a coded field");
    let mut longer = batch[..end].to_vec();
    longer.extend_from_slice(&[batch[end] | 0x80, 0x00]);
    longer.extend_from_slice(&batch[end + 1..]);
    let out = wire::events_frame(&longer).expect("a frame");
    assert_eq!(events_of(&out), events_of(frame), "read the same");
    out
}

/// `frame` with its batch's length spelled in `width` bytes: postcard
/// reads a `usize` varint in up to ten bytes natively, five on wasm32.
fn length_spelled(frame: &[u8], width: usize) -> Vec<u8> {
    let batch = wire::event_batch(frame).expect("a whole Events frame");
    let mut out = frame[..3].to_vec();
    let mut n = batch.len();
    for _ in 1..width {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(batch);
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..4]);
    out
}

/// Whether a 32-bit peer reads the length of `frame`'s batch: a varint of
/// at most five bytes, as postcard reads a `usize` on wasm32.
fn length_reads_on_wasm32(frame: &[u8]) -> bool {
    frame[3..].iter().take(5).any(|b| b & 0x80 == 0)
}

/// The events of a frame, if it is a whole `Events` frame.
fn events_of(frame: &[u8]) -> Option<Vec<P2PEvent>> {
    match wire::decode(frame) {
        Ok(Decoded::Message(Message::Events(events))) => Some(events),
        _ => None,
    }
}

/// The `Events` frames sent from `from` to `to`.
fn event_frames(log: &[(PeerId, PeerId, Vec<u8>)], from: PeerId, to: PeerId) -> Vec<&[u8]> {
    log.iter()
        .filter(|(f, t, frame)| *f == from && *t == to && events_of(frame).is_some())
        .map(|(_, _, frame)| frame.as_slice())
        .collect()
}

fn ids(frames: &[&[u8]]) -> Vec<EventId> {
    let events = frames.iter().filter_map(|f| events_of(f)).flatten();
    events.map(|e| e.id).collect()
}

#[test]
fn a_frame_applied_whole_goes_on_as_it_came() {
    let flood = SyncConfig {
        relay: Relay::Flood,
        ..SyncConfig::default()
    };
    let configs = [
        flood.clone(),
        // As the room peer relays: seals verified together, a window at a
        // time, and the events stored.
        SyncConfig {
            verify_window_ms: Some(50),
            durable: true,
            ..flood.clone()
        },
        // As a page relays: seals handed out to be verified elsewhere.
        SyncConfig {
            verify_window_ms: Some(50),
            offload_seals: true,
            durable: true,
            ..flood
        },
        SyncConfig {
            relay: Relay::Tree,
            ..SyncConfig::default()
        },
    ];
    for config in configs {
        // a writes; b relays to c and d.
        let mut nodes: Vec<SyncNode> = (1..=4).map(|s| signed_node(s, config.clone())).collect();
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| nodes[i].peer());
        connect(&mut nodes, 0, 1);
        connect(&mut nodes, 1, 2);
        connect(&mut nodes, 1, 3);
        pump(&mut nodes, None);
        for round in 0..3 {
            nodes[0]
                .write(|e| {
                    for i in 0..=round {
                        e.set(&format!("k/{round}/{i}"), json("1"), NOW)?;
                    }
                    Ok(None)
                })
                .expect("writes");
        }
        let log = pump(&mut nodes, Some(a));
        let came = event_frames(&log, a, b);
        assert!(!came.is_empty(), "{:?}", config.relay);
        for to in [c, d] {
            let went = event_frames(&log, b, to);
            assert_eq!(went, came, "b forwards a's frames to {to:?} as they came");
        }
        let state = nodes[0].engine().state_json();
        assert!(state.contains("k/2/2"));
        for node in &nodes[1..] {
            assert_eq!(node.engine().state_json(), state);
            assert_eq!(node.engine().clock(), nodes[0].engine().clock());
        }
        // b booked them as c's: a digest round sends c nothing again.
        let later = NOW + 10_000;
        nodes.iter_mut().for_each(|n| n.tick(later));
        let log = pump(&mut nodes, None);
        assert!(event_frames(&log, b, c).is_empty());
        let stats = nodes[1].stats(c).expect("a session");
        assert_eq!(stats.events_out, 6);
    }
}

/// Mallory's first `count` writes (one event each, each its own sealed
/// run), made by her node: valid and signed.
fn mallory_runs(count: usize) -> (PeerId, Vec<P2PEvent>) {
    let mut mallory = signed_node(666, SyncConfig::default());
    for n in 0..count {
        mallory
            .write(|e| e.set(&format!("m/{n}"), json("1"), NOW).map(Some))
            .expect("a write");
        mallory.take_outputs();
    }
    let mut events: Vec<P2PEvent> = mallory.engine().log().iter().cloned().collect();
    events.sort_by_key(|e| e.id.seq);
    assert!(events.iter().all(|e| e.seal.is_some()), "one run a write");
    (mallory.peer(), events)
}

#[test]
fn a_frame_applied_in_part_is_not_forwarded_as_it_came() {
    let (mallory, runs) = mallory_runs(2);
    let flood = SyncConfig {
        relay: Relay::Flood,
        ..SyncConfig::default()
    };
    let mut nodes = vec![signed_node(2, flood.clone()), signed_node(3, flood)];
    let (b, c) = (nodes[0].peer(), nodes[1].peer());
    connect(&mut nodes, 0, 1);
    nodes[0].connect(mallory, NOW);
    pump(&mut nodes, None);

    // Her first run, and her second with its value changed under its seal.
    let mut forged = runs[1].clone();
    if let Operation::Register(RegisterOp::Write { value, .. }) = &mut forged.op {
        *value = JsonValue::parse("\"evil\"").expect("json");
    }
    let frame = wire::encode(&Message::Events(vec![runs[0].clone(), forged]), 1).remove(0);
    nodes[0].receive_frame(mallory, &frame, NOW);
    let log = pump(&mut nodes, None);
    assert_eq!(nodes[0].engine().stats().refused_seal, 1);
    let went = event_frames(&log, b, c);
    assert!(went.iter().all(|f| *f != frame.as_slice()));
    assert_eq!(ids(&went), vec![runs[0].id], "only what applied goes on");

    // Her first run again, with her genuine second: the known one is not
    // sent twice.
    let frame = wire::encode(&Message::Events(runs[..2].to_vec()), 2).remove(0);
    nodes[0].receive_frame(mallory, &frame, NOW);
    let log = pump(&mut nodes, None);
    let went = event_frames(&log, b, c);
    assert!(went.iter().all(|f| *f != frame.as_slice()));
    assert_eq!(ids(&went), vec![runs[1].id]);

    let state = nodes[1].engine().state_json();
    assert!(state.contains("m/1") && !state.contains("evil"), "{state}");
    assert_eq!(state, nodes[0].engine().state_json());
}

/// Mallory spells her frame's batch length in seven bytes. postcard
/// read that natively but not on wasm32, so a native relay (the room
/// peer) took a frame every page refused. The body is read by hand now,
/// alike everywhere: the relay refuses it as a page does, counts it,
/// and passes nothing on; her frame in the one spelling goes through.
#[test]
fn a_frame_spelled_past_what_a_page_reads_is_refused_natively_too() {
    let (mallory, runs) = mallory_runs(1);
    let room_peer = SyncConfig {
        relay: Relay::Flood,
        verify_window_ms: Some(50),
        durable: true,
        ..SyncConfig::default()
    };
    let flood = SyncConfig {
        relay: Relay::Flood,
        ..SyncConfig::default()
    };
    let mut nodes = vec![signed_node(2, room_peer), signed_node(3, flood)];
    let (b, c) = (nodes[0].peer(), nodes[1].peer());
    connect(&mut nodes, 0, 1);
    nodes[0].connect(mallory, NOW);
    pump(&mut nodes, None);

    let frame = wire::encode(&Message::Events(runs.clone()), 1).remove(0);
    assert!(length_reads_on_wasm32(&frame));
    let wide = length_spelled(&frame, 7);
    assert!(!length_reads_on_wasm32(&wide));
    assert!(matches!(wire::decode(&wide), Err(WireError::Malformed(_))));
    nodes[0].receive_frame(mallory, &wide, NOW);
    let log = pump(&mut nodes, None);
    assert!(event_frames(&log, b, c).is_empty());
    let stats = nodes[0].stats(mallory).expect("connected");
    assert_eq!(stats.rejected, 1, "{:?}", stats.last_error);
    assert_eq!(nodes[0].engine().clock().get(mallory), 0, "nothing applied");

    nodes[0].receive_frame(mallory, &frame, NOW);
    let log = pump(&mut nodes, None);
    let went = event_frames(&log, b, c);
    assert_eq!(ids(&went), vec![runs[0].id]);
    assert_eq!(went, [frame.as_slice()], "as it came");
    assert_eq!(
        nodes[1].engine().state_json(),
        nodes[0].engine().state_json()
    );
}

/// A frame of more events than a message of ours holds (two sealed runs
/// of 600) applies whole, but goes on split as our own messages are, not
/// as it came: a receiver takes a message in one task.
#[test]
fn a_frame_larger_than_our_messages_goes_on_split() {
    let mut mallory = signed_node(666, SyncConfig::default());
    for run in 0..2 {
        mallory
            .write(|e| {
                for i in 0..600 {
                    e.set(&format!("m/{run}/{i}"), json("1"), NOW)?;
                }
                Ok(None)
            })
            .expect("writes");
        mallory.take_outputs();
    }
    let mut events: Vec<P2PEvent> = mallory.engine().log().iter().cloned().collect();
    events.sort_by_key(|e| e.id.seq);
    assert_eq!(events.iter().filter(|e| e.seal.is_some()).count(), 2);
    let frames = wire::encode(&Message::Events(events), 1);
    let [frame] = &frames[..] else {
        panic!("one frame of 1,200 events");
    };

    let flood = SyncConfig {
        relay: Relay::Flood,
        ..SyncConfig::default()
    };
    // b stores, so it keeps the frame: it may store its batch as it came.
    let stores = SyncConfig {
        durable: true,
        ..flood.clone()
    };
    let mut nodes = vec![signed_node(2, stores), signed_node(3, flood)];
    let (b, c) = (nodes[0].peer(), nodes[1].peer());
    connect(&mut nodes, 0, 1);
    nodes[0].connect(mallory.peer(), NOW);
    pump(&mut nodes, None);
    nodes[0].receive_frame(mallory.peer(), frame, NOW);
    let log = pump(&mut nodes, None);
    let went = event_frames(&log, b, c);
    assert_eq!(went.len(), 2, "a run a message");
    assert!(went.iter().all(|f| *f != frame.as_slice()));
    assert_eq!(ids(&went).len(), 1_200);
    assert_eq!(
        nodes[1].engine().state_json(),
        nodes[0].engine().state_json()
    );
}
