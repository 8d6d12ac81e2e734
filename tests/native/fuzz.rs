//! Fuzzing the decoders that face the network and storage: arbitrary bytes
//! and mutations of valid frames and snapshots. Nothing may panic, and a
//! node fed garbage keeps working.
//!
//! Runs a short fuzz in `npm test`; `CPC_FUZZ_CASES=n` for a longer one. The
//! proptest seed is printed; `CPC_SEED=n` replays it.

use crate::common;

use common::json;
use cpc_sync::protocol::snapshot::SnapshotError;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message, Reassembler};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::mutate;
use cpc_sync::protocol::{
    EngineConfig, EventId, P2PEvent, PeerId, ReconciliationEngine, StateSnapshot,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::HashMap;

fn config() -> Config {
    common::fuzz_config("fuzz", 2_000)
}

/// A valid snapshot of a few writers' runs, to mutate.
fn sample_snapshot() -> Vec<u8> {
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let mut b = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
    for i in 0..12u64 {
        let event = b
            .set(&format!("b{}", i % 5), json(&i.to_string()), 20 + i)
            .unwrap();
        a.receive(event, 100).unwrap();
        a.increment("c", 1, 40 + i).unwrap();
        a.add("s", json(&format!("\"m{i}\"")), 60 + i).unwrap();
    }
    a.encode_snapshot()
}

/// Valid frames of every message kind, to mutate.
pub(crate) fn sample_frames() -> Vec<Vec<u8>> {
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let events = vec![
        a.set("r", json("{\"x\":[1,2,3]}"), 10).unwrap(),
        a.increment("c", -4, 11).unwrap(),
        a.add("s", json("\"m\""), 12).unwrap(),
        a.delete("c", 13).unwrap().unwrap(),
    ];
    let snapshot = a.encode_snapshot();
    let messages = [
        Message::Digest {
            clock: a.clock().clone(),
            root: a.digest(),
        },
        Message::Events(events),
        Message::SnapshotOffer {
            id: a.digest(),
            total: snapshot.len() as u64,
            clock: a.clock().clone(),
            gzip: Some(wire::Gzipped {
                id: a.digest(),
                total: 17,
            }),
        },
        Message::SnapshotChunk {
            id: a.digest(),
            offset: 0,
            total: snapshot.len() as u64,
            bytes: snapshot,
        },
        Message::MerkleQuery { depth: 1, index: 3 },
        Message::LeafQuery { index: 7 },
        Message::LeafState {
            index: 7,
            state: a.leaf_state(7).encode(),
        },
    ];
    messages.iter().flat_map(|m| wire::encode(m, 1)).collect()
}

/// Connects `a` and `b` (each sends a digest) and carries frames between
/// them until both are quiet; whether they got there.
fn settle(a: &mut SyncNode, b: &mut SyncNode, now: u64) -> bool {
    let (pa, pb) = (a.peer(), b.peer());
    a.connect(pb, now);
    b.connect(pa, now);
    for round in 0..50 {
        let to_b = frames_to(a.take_outputs(), pb);
        let to_a = frames_to(b.take_outputs(), pa);
        if to_a.is_empty() && to_b.is_empty() && round > 0 {
            return true;
        }
        for frame in to_b {
            b.receive_frame(pa, &frame, now);
        }
        for frame in to_a {
            a.receive_frame(pb, &frame, now);
        }
    }
    false
}

fn frames_to(outputs: Vec<Output>, to: PeerId) -> Vec<Vec<u8>> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to: t, frame } if t == to => Some(frame),
            _ => None,
        })
        .collect()
}

fn node() -> SyncNode {
    let mut n = SyncNode::new(
        ReconciliationEngine::new(PeerId(9), EngineConfig::default()),
        SyncConfig::default(),
    );
    n.connect(PeerId(1), 0);
    n.take_outputs();
    n
}

/// `bytes` decoded as a snapshot `slice` events at a time.
fn in_slices(bytes: &[u8], slice: usize) -> Result<StateSnapshot, SnapshotError> {
    let mut decoding = StateSnapshot::decoding(bytes.to_vec(), usize::MAX)?;
    loop {
        if let Some(snapshot) = decoding.step(slice)? {
            return Ok(snapshot);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode(&bytes);
        let mut with_version = vec![wire::PROTOCOL_VERSION];
        with_version.extend_from_slice(&bytes);
        let _ = wire::decode(&with_version);
    }

    #[test]
    fn snapshot_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), slice in 1usize..4) {
        let _ = StateSnapshot::decode(&bytes);
        let mut with_magic = b"CPCS\x03".to_vec();
        with_magic.extend_from_slice(&bytes);
        // Decoded a slice at a time: the same snapshot, the same refusal.
        prop_assert_eq!(in_slices(&with_magic, slice), StateSnapshot::decode(&with_magic));
    }

    /// Mutated valid frames, fed to a live node, which must then still sync.
    #[test]
    fn a_node_survives_mutated_frames(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let frames = sample_frames();
        let mut frame = frames[which.index(frames.len())].clone();
        for (at, xor) in flips {
            let i = at.index(frame.len());
            frame[i] ^= xor;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        let mut n = node();
        n.receive_frame(PeerId(1), &frame, 100);
        // Bypassing the checksum: the same mutation inside a well-formed frame.
        if frame.len() > 6 {
            let body = &frame[2..frame.len() - 4];
            if let Ok(message) = postcard::from_bytes::<Message>(body) {
                for f in wire::encode(&message, 2) {
                    n.receive_frame(PeerId(1), &f, 100);
                }
            }
        }
        n.take_outputs();
        n.write(|e| e.increment("still-works", 1, 200).map(Some)).expect("node still works");
        // And it still syncs: an honest peer it never met catches up with
        // everything it applied, and the two end equal.
        let mut honest = SyncNode::new(
            ReconciliationEngine::new(PeerId(2), EngineConfig::default()),
            SyncConfig::default(),
        );
        prop_assert!(settle(&mut n, &mut honest, 300), "never went quiet");
        prop_assert_eq!(honest.engine().get("still-works"), Some(serde_json::json!(1)));
        prop_assert_eq!(n.engine().clock(), honest.engine().clock());
        prop_assert_eq!(n.engine_mut().digest(), honest.engine_mut().digest());
    }

    /// A valid snapshot mutated or cut, decoded whole and a slice at a
    /// time: the same snapshot or the same refusal.
    #[test]
    fn mutated_snapshots_decode_alike_in_slices(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<Option<prop::sample::Index>>(),
        slice in 1usize..6,
    ) {
        let mut bytes = sample_snapshot();
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        prop_assert_eq!(in_slices(&bytes, slice), StateSnapshot::decode(&bytes));
    }

    #[test]
    fn reassembler_never_panics(chunks in prop::collection::vec((0u32..3, 0u32..5, 0u32..5, prop::collection::vec(any::<u8>(), 0..64)), 0..16)) {
        let mut r = Reassembler::default();
        for (message_id, index, count, bytes) in chunks {
            let _ = r.push(wire::Chunk { message_id, index, count, bytes });
        }
    }
}

#[test]
fn sample_frames_decode() {
    for f in sample_frames() {
        assert!(matches!(wire::decode(&f), Ok(Decoded::Message(_))));
    }
}

/// A node of a room with a secret, connected to peer 1, its `Hello` sent.
fn secret_node() -> SyncNode {
    let identity = cpc_sync::protocol::Identity::from_seed(9);
    let mut n = SyncNode::new(
        ReconciliationEngine::new(identity.peer(), EngineConfig::default()),
        SyncConfig {
            identity: Some(identity),
            room: Some(cpc_sync::protocol::room::RoomSecret::with_cost(
                "r",
                "k",
                cpc_sync::protocol::room::KdfCost::TEST,
            )),
            ..SyncConfig::default()
        },
    );
    n.connect(PeerId(1), 0);
    n.take_outputs();
    n
}

proptest! {
    #![proptest_config(config())]

    /// Handshake fuzz: any sequence of hellos, proofs (random bytes) and
    /// other messages from a peer without the secret never panics and
    /// never opens the session: the node sends nothing but one proof.
    #[test]
    fn the_handshake_never_opens_to_a_stranger(
        steps in prop::collection::vec((0u8..3, any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>()), 1..6),
        which in any::<prop::sample::Index>(),
    ) {
        let mut n = secret_node();
        let others = sample_frames();
        for (step, a, b, c) in steps {
            let message = match step {
                0 => Message::Hello { nonce: a },
                1 => Message::Proof(cpc_sync::protocol::room::Proof { key: a, mac: b, signature: [c, a], channel: b }),
                _ => match wire::decode(&others[which.index(others.len())]) {
                    Ok(Decoded::Message(m)) => m,
                    _ => Message::Hello { nonce: c },
                },
            };
            for f in wire::encode(&message, 3) {
                n.receive_frame(PeerId(1), &f, 100);
            }
            for output in n.take_outputs() {
                if let cpc_sync::protocol::sync::Output::Send { frame, .. } = output {
                    let decoded = wire::decode(&frame);
                    prop_assert!(
                        matches!(decoded, Ok(Decoded::Message(Message::Proof(_)))),
                        "sent {decoded:?} before the peer proved the secret"
                    );
                }
            }
        }
    }
}

pub(crate) use cpc_sync::protocol::testing::wire::signed_stream;

/// The stream through a signed node, `bad` (if any) from the same peer
/// before its `k`th frame: the final digest, or `None` when `bad` closed
/// the connection. Every other refusal of `bad` must be counted. With
/// `relaying`, the node floods what it takes to two more peers, as the
/// room peer does, and every event it sends them must be one of
/// `honest`, as the stream's writers signed it.
fn through(
    frames: &[Vec<u8>],
    k: usize,
    bad: Option<&[u8]>,
    relaying: Option<&HashMap<EventId, P2PEvent>>,
) -> Result<Option<String>, String> {
    use cpc_sync::protocol::testing::wire::{neighbour, Receiver};
    let mut r = match relaying {
        Some(_) => Receiver::relaying(2).keeping_sent(),
        None => Receiver::new(),
    };
    for f in &frames[..k] {
        r.receive(f)
            .map_err(|e| format!("a valid frame refused: {e:?}"))?;
    }
    let rejected = |r: &Receiver| r.node().stats(neighbour()).map_or(0, |s| s.rejected);
    if let Some(bad) = bad {
        let before = rejected(&r);
        match r.receive(bad) {
            Err(refusal) if refusal.closes() => return Ok(None),
            Err(refusal) if rejected(&r) <= before => {
                return Err(format!("refused uncounted: {refusal:?}"))
            }
            _ => {}
        }
    }
    for f in &frames[k..] {
        // A valid frame after a bad one may be refused (say, a duplicate
        // the bad one made look like another); the digest says if
        // anything was lost.
        let _ = r.receive(f);
    }
    let digest = match r.finish(0) {
        Ok(digest) => digest,
        // With its seals handed out, the bad frame's forgery is refused
        // when its batch is verified, at the end.
        Err(refusal) if rejected(&r) == 0 => return Err(format!("refused uncounted: {refusal:?}")),
        Err(_) => r.finish(0).map_err(|e| format!("finishing: {e:?}"))?,
    };
    for (to, frame) in r.take_sent() {
        let Some(honest) = relaying.filter(|_| to != neighbour()) else {
            continue;
        };
        let Ok(Decoded::Message(Message::Events(events))) = wire::decode(&frame) else {
            continue;
        };
        if let Some(e) = events.iter().find(|e| honest.get(&e.id) != Some(*e)) {
            return Err(format!("passed on an event no writer signed: {e:?}"));
        }
    }
    Ok(Some(digest))
}

/// Every event of `frames`, by id.
fn events_of(frames: &[Vec<u8>]) -> HashMap<EventId, P2PEvent> {
    frames
        .iter()
        .filter_map(|f| match wire::decode(f) {
            Ok(Decoded::Message(Message::Events(events))) => Some(events),
            _ => None,
        })
        .flatten()
        .map(|e| (e.id, e))
        .collect()
}

/// One edit of a frame: `(kind, where, a byte, a length, another frame's
/// place)`.
pub(crate) type Edit = (u8, prop::sample::Index, u8, usize, prop::sample::Index);

pub(crate) fn edit(frame: &mut Vec<u8>, (kind, at, byte, len, from): Edit, other: &[u8]) {
    mutate::edit(
        frame,
        kind,
        |n| at.index(n),
        byte,
        len,
        |n| from.index(n),
        other,
    );
}

proptest! {
    #![proptest_config(config())]

    /// A frame a peer mutated, in the middle of a stream of signed
    /// writers' frames (its check made right again, mostly, so the body
    /// is what is read): refused and counted, or taken as what it now
    /// says, and the node ends with exactly the state the stream alone
    /// gives; a relaying node (the room peer's) passes on no event the
    /// writers did not sign. A lying peer can make a node refuse it or
    /// drop it, never lose what honest frames bring or spread its own.
    #[test]
    fn a_mutated_frame_in_a_signed_stream_loses_nothing(
        k in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        edits in prop::collection::vec(
            (any::<u8>(), any::<prop::sample::Index>(), any::<u8>(), any::<usize>(), any::<prop::sample::Index>()),
            1..5,
        ),
        checked in prop::bool::weighted(0.8),
        versioned in any::<bool>(),
        relaying in any::<bool>(),
    ) {
        type Stream = (Vec<Vec<u8>>, String, HashMap<EventId, P2PEvent>);
        static STREAM: std::sync::OnceLock<Stream> = std::sync::OnceLock::new();
        let (frames, reference, honest) = STREAM.get_or_init(|| {
            let frames = signed_stream();
            let digest = through(&frames, 0, None, None).expect("the stream alone").expect("open");
            let honest = events_of(&frames);
            (frames, digest, honest)
        });
        let k = k.index(frames.len());
        let mut bad = frames[k].clone();
        let other = &frames[other.index(frames.len())];
        for e in edits {
            edit(&mut bad, e, other);
        }
        if versioned && !bad.is_empty() {
            bad[0] = wire::PROTOCOL_VERSION;
        }
        if checked {
            bad = mutate::checked(bad);
        }
        match through(frames, k, Some(&bad), relaying.then_some(honest)) {
            Ok(Some(digest)) => prop_assert_eq!(&digest, reference, "state lost or changed"),
            Ok(None) => {}
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
