//! The wire format: one versioned message enum, compact binary (postcard),
//! every frame at most [`MAX_FRAME`] bytes.
//!
//! A frame is `[version][kind][body][check]`, `check` being the first 4
//! bytes of the blake3 hash of what precedes it, so a corrupted or truncated
//! frame is refused instead of read as another valid message:
//! - kind 0, a whole message: `body` is the postcard encoding of [`Message`]
//!   (written and read by hand, see [`body`]);
//! - kind 1, a chunk of a message too large for one frame: `body` is a
//!   [`Chunk`]; the receiver's [`Reassembler`] joins the chunks.
//!
//! 64 KiB is the largest message every WebRTC data channel implementation
//! delivers whole. Decoding checks sizes before allocating and returns typed
//! errors; it never panics.

mod body;

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::mesh::OverlayMessage;
use super::presence::PresenceUpdate;
use crate::protocol::blake3;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::codec::varint;
use crate::protocol::event::{Hash32, P2PEvent};
use crate::protocol::reconciliation::{ReconciliationRequest, ReconciliationResponse};
use crate::protocol::room::Proof;

/// 2: events carry seals (signed rooms). 3: events travel as batches of
/// runs in columns. 4: the overlay's shuffles, PlumTree's eager and lazy
/// push (prune, `IHave`, graft) and presence
/// (a peer of 3 would take them for malformed messages and penalize the
/// sender; refusing the version says why instead). 5: a snapshot offer
/// names the snapshot gzipped too, when its sender has that form. 6: event
/// batches of format 2, whose key references, timestamps and value
/// lengths may be run-coded (a peer of 5 would refuse each batch as
/// malformed). 7: a handshake's proof names the connection it was made
/// for (`Proof::channel`; a peer of 6 would fail every handshake as if
/// the secret were wrong). 8: a reconciliation request names its key (a
/// peer of 7 would read the key's bytes as the start of its events).
pub const PROTOCOL_VERSION: u8 = 8;
/// The largest frame sent or accepted.
pub const MAX_FRAME: usize = 64 * 1024;
/// The largest message reassembled from chunks (a snapshot travels in its
/// own resumable transfer, not as one message).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Events one message's batch may hold, at most: 64 whole runs. An
/// `Events` message carries at most a run's worth (1,024) and a
/// reconciliation message the runs holding a conflict's siblings, one
/// writer's each. A decoded event takes 160 bytes, and a batch may spell
/// one in a byte (a delete of a key named before, its time run-coded):
/// a message of 16 MiB of them was decoded to 2.7 GB, their room
/// reserved at once (more than a page's wasm memory can hold). At the
/// bound, 10 MiB. Past it a message is refused
/// ([`WireError::TooManyEvents`]) at no cost to its sender: a conflict of
/// more than 64 writers' whole runs is no lie, only too large to take.
pub const MAX_MESSAGE_EVENTS: usize = 64 * crate::protocol::seal::MAX_RUN;

const WHOLE: u8 = 0;
const CHUNK: u8 = 1;
pub(crate) const HEADER: usize = 2;
pub(crate) const CHECK: usize = 4;

/// A snapshot's bytes gzipped, as offered: their id (their hash, as a
/// snapshot's) and length. They must inflate to exactly the snapshot's
/// own bytes, or the snapshot is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gzipped {
    pub id: Hash32,
    pub total: u64,
}

/// Everything two sync sessions say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// "Here is what I have": sent on connect and every gossip interval.
    /// The receiver answers with what the sender lacks: events, or a
    /// snapshot offer when the sender is behind the receiver's compaction
    /// horizon (only the side holding the log knows where that is).
    Digest {
        clock: VectorClock,
        root: Hash32,
    },
    /// Events the receiver lacks (or freshly written ones, gossiped), as
    /// one batch: runs in columns ([`crate::protocol::codec::events`]).
    Events(#[serde(with = "crate::protocol::codec::serde_events")] Vec<P2PEvent>),
    /// Asks for a snapshot transfer, from `offset` of snapshot `id` when
    /// resuming one (`id` zero: a new one).
    SnapshotRequest {
        id: Hash32,
        offset: u64,
    },
    /// Part of a snapshot: `total` bytes in all.
    SnapshotChunk {
        id: Hash32,
        offset: u64,
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Asks for the children of Merkle node `index` at `depth` (when clocks
    /// agree but roots do not).
    MerkleQuery {
        depth: u8,
        index: u32,
    },
    /// The children of a Merkle node.
    MerkleNodes {
        depth: u8,
        index: u32,
        children: Vec<Hash32>,
    },
    /// Asks for the sender's copy of a Merkle leaf that differs.
    LeafQuery {
        index: u32,
    },
    /// The answer to a `LeafQuery`: the leaf's state as an encoded
    /// [`StateSnapshot`](crate::protocol::StateSnapshot) restricted to its
    /// keys (the signed events it rests on), verified before it is joined.
    LeafState {
        index: u32,
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// A snapshot this peer can send (the receiver is behind its horizon),
    /// with the version vector it covers; `gzip`, the same bytes gzipped,
    /// when this peer has them. The receiver asks for either form by its
    /// id: gzipped, a room's snapshot is a third to a seventh of its bytes
    /// on the wire.
    SnapshotOffer {
        id: Hash32,
        total: u64,
        clock: VectorClock,
        gzip: Option<Gzipped>,
    },
    ReconciliationRequest(ReconciliationRequest),
    ReconciliationResponse(ReconciliationResponse),
    /// Measures the round trip: answered at once with a `Pong` carrying the
    /// same time (the sender's clock; the receiver only echoes it).
    Ping {
        sent_ms: u64,
    },
    Pong {
        sent_ms: u64,
    },
    /// Rooms with a secret: the first message on a connection, a fresh
    /// nonce for the other side to prove the secret over.
    Hello {
        #[serde(deserialize_with = "crate::protocol::identity::bytes::b32")]
        nonce: [u8; 32],
    },
    /// Rooms with a secret: the answer to the other side's `Hello`.
    Proof(Proof),
    /// The partial view of a big room: shuffles of known peers (see
    /// [`Mesh`](super::Mesh)). Only rooms larger than `max_connections`
    /// send it, so a small room speaks exactly as before it existed.
    Overlay(OverlayMessage),
    /// PlumTree's prune: everything of the sender's last push was already
    /// here. The link turns lazy both ways: neither side pushes events on
    /// it any more, only [`IHave`](Message::IHave)s, until a
    /// [`Graft`](Message::Graft) makes it eager again.
    Prune,
    /// Presence updates (see [`presence`](super::presence)): signed,
    /// ephemeral, at most `MAX_PRESENCE_BATCH`.
    Presence(Vec<PresenceUpdate>),
    /// PlumTree's lazy push, on a lazy link: the sender has every event of
    /// each origin up to the sequence number given (at most
    /// `MAX_ANNOUNCED` origins). A receiver that still lacks them after a
    /// timeout asks with a [`Graft`](Message::Graft).
    IHave(Vec<(PeerId, u64)>),
    /// PlumTree's graft: the sender has each origin's events up to the
    /// sequence number given and lacks the ones announced after; the
    /// receiver sends them, and the link turns eager both ways.
    Graft(Vec<(PeerId, u64)>),
}

/// A slice of a message too large for one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub message_id: u32,
    pub index: u32,
    pub count: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Why a frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("frame too short to hold a header")]
    Truncated,
    #[error("frame checksum mismatch (corrupted or truncated in transit)")]
    Checksum,
    #[error("protocol version {0} is not supported (this peer speaks {PROTOCOL_VERSION})")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message's event batch of more than [`MAX_MESSAGE_EVENTS`] events,
    /// refused before any is decoded.
    #[error("a message's event batch holds {count} events; at most {limit} are taken")]
    TooManyEvents { count: u64, limit: u64 },
    #[error("message of {0} chunks exceeds the {MAX_MESSAGE}-byte limit")]
    MessageTooLarge(u64),
    #[error("chunk {index} of {count} does not fit the message being reassembled")]
    BadChunk { index: u32, count: u32 },
}

pub(crate) fn check(bytes: &[u8]) -> [u8; CHECK] {
    let hash = blake3::hash(bytes);
    let mut out = [0; CHECK];
    out.copy_from_slice(&hash.as_bytes()[..CHECK]);
    out
}

fn frame(kind: u8, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = vec![PROTOCOL_VERSION, kind];
    body(&mut out);
    let sum = check(&out);
    out.extend_from_slice(&sum);
    out
}

impl Message {
    /// `Hello` or `Proof`: what crosses a connection of a room with a
    /// secret before the handshake succeeded.
    pub fn is_handshake(&self) -> bool {
        matches!(self, Message::Hello { .. } | Message::Proof(_))
    }
}

/// Encodes a message into frames of at most [`MAX_FRAME`] bytes (usually
/// one). `message_id` tells the chunks of different messages apart.
pub fn encode(message: &Message, message_id: u32) -> Vec<Vec<u8>> {
    let whole = frame(WHOLE, |out| body::put_message(out, message));
    if whole.len() <= MAX_FRAME {
        return vec![whole];
    }
    let body = &whole[HEADER..whole.len() - CHECK];
    // Room for the chunk header (ids and lengths as varints) in each frame.
    let per_chunk = MAX_FRAME - HEADER - CHECK - 24;
    let count = body.len().div_ceil(per_chunk) as u32;
    body.chunks(per_chunk)
        .enumerate()
        .map(|(index, bytes)| {
            let chunk = Chunk {
                message_id,
                index: index as u32,
                count,
                bytes: bytes.to_vec(),
            };
            frame(CHUNK, |out| body::put_chunk(out, &chunk))
        })
        .collect()
}

/// What one frame decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Message(Message),
    Chunk(Chunk),
}

/// Decodes one frame.
pub fn decode(frame: &[u8]) -> Result<Decoded, WireError> {
    if frame.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(frame.len()));
    }
    let [version, kind, ..] = frame else {
        return Err(WireError::Truncated);
    };
    if *version != PROTOCOL_VERSION {
        return Err(WireError::Version(*version));
    }
    if frame.len() < HEADER + CHECK {
        return Err(WireError::Truncated);
    }
    let (signed, sum) = frame.split_at(frame.len() - CHECK);
    if check(signed) != sum {
        return Err(WireError::Checksum);
    }
    let body = &signed[HEADER..];
    match *kind {
        WHOLE => decode_message(body).map(Decoded::Message),
        CHUNK => body::chunk(body).map(Decoded::Chunk),
        other => Err(WireError::Kind(other)),
    }
}

/// The event batch of a whole `Events` frame, as it came: the bytes of
/// [`P2PEvent::encode_batch`] that the frame carries (postcard writes the
/// variant's index, the batch's length, then the batch). `None` for any
/// other frame. For a frame [`decode`] took: it does not check the batch.
///
/// Only for a frame spelled as [`events_frame`] spells it, the index and
/// the length each in its shortest varint: the one spelling of the batch
/// that [`events_frame`] makes again from it. (Before [`body`] read
/// frames by hand, postcard read the length in at most 5 bytes on wasm32
/// and 10 natively, so a frame a native node took with a longer spelling
/// was malformed to a page it went on to; both now take at most 5.)
///
/// A node stores a batch it applied whole as it came, rather than
/// encoding the same events again ([`SyncNode::receive_frame`]).
///
/// [`SyncNode::receive_frame`]: super::SyncNode::receive_frame
pub fn event_batch(frame: &[u8]) -> Option<&[u8]> {
    event_batch_at(frame).map(|at| &frame[at])
}

/// Where [`event_batch`] is in `frame`.
pub fn event_batch_at(frame: &[u8]) -> Option<Range<usize>> {
    let body = frame.get(HEADER..frame.len().checked_sub(CHECK)?)?;
    if frame.get(1) != Some(&WHOLE) {
        return None;
    }
    let (variant, rest) = varint(body)?;
    let (len, batch) = varint(rest)?;
    // Each varint as wide as its shortest spelling: then it is that one.
    let shortest = |value, spelled: usize| varint::encoded(value).1 == spelled;
    let canonical =
        shortest(variant, body.len() - rest.len()) && shortest(len, rest.len() - batch.len());
    let end = frame.len() - CHECK;
    (variant == EVENTS_VARIANT && canonical && usize::try_from(len).ok()? == batch.len())
        .then(|| end - batch.len()..end)
}

/// The whole `Events` frame of events encoded already
/// ([`P2PEvent::encode_batch`]): byte for byte what [`encode`] makes of
/// the message, built from the batch, not the events. `None` if it would
/// pass [`MAX_FRAME`] (the message then goes in chunks, by [`encode`]).
///
/// A node encodes the events that go to many links once
/// ([`SyncNode::receive_frame`] forwards those that came in a frame as
/// they came).
///
/// [`SyncNode::receive_frame`]: super::SyncNode::receive_frame
pub fn events_frame(batch: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + 2 * 10 + batch.len() + CHECK);
    out.extend_from_slice(&[PROTOCOL_VERSION, WHOLE]);
    varint::put(&mut out, EVENTS_VARIANT);
    varint::put(&mut out, batch.len() as u64);
    out.extend_from_slice(batch);
    let sum = check(&out);
    out.extend_from_slice(&sum);
    (out.len() <= MAX_FRAME).then_some(out)
}

/// `Message::Events`'s index among the variants, as postcard writes it.
const EVENTS_VARIANT: u64 = 1;

/// A postcard varint (LEB128, at most ten bytes) and what follows it.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    let message = body::message(body)?;
    let events = match &message {
        Message::Events(events) => events.as_slice(),
        Message::ReconciliationRequest(r) => r.conflicting_events.as_slice(),
        Message::ReconciliationResponse(r) => r.resolution_events.as_slice(),
        _ => &[],
    };
    for event in events {
        event
            .check()
            .map_err(|e| WireError::Malformed(e.to_string()))?;
    }
    Ok(message)
}

/// Joins the chunks of one large message at a time, within [`MAX_MESSAGE`].
/// A chunk of another message abandons the one in progress (the sender
/// sends a message's chunks back to back on an ordered channel).
#[derive(Debug, Default)]
pub struct Reassembler {
    current: Option<Partial>,
    /// The message last refused as too large: its other chunks are dropped
    /// unread, so that one message is one refusal. Each chunk was refused
    /// (a point each), and a peer that sent one message too large, by a
    /// bug or an estimate gone wrong, was cut off by its 257th chunk.
    too_large: Option<u32>,
}

#[derive(Debug)]
struct Partial {
    message_id: u32,
    count: u32,
    next: u32,
    body: Vec<u8>,
}

impl Reassembler {
    /// Takes a chunk; returns the message once its last chunk is in.
    pub fn push(&mut self, chunk: Chunk) -> Result<Option<Message>, WireError> {
        let Chunk {
            message_id,
            index,
            count,
            bytes,
        } = chunk;
        if count as u64 * MAX_FRAME as u64 > MAX_MESSAGE as u64 + MAX_FRAME as u64 {
            if self.too_large == Some(message_id) && index > 0 {
                return Ok(None);
            }
            self.current = None;
            self.too_large = Some(message_id);
            return Err(WireError::MessageTooLarge(count as u64));
        }
        self.too_large = None;
        if index == 0 {
            self.current = Some(Partial {
                message_id,
                count,
                next: 0,
                body: Vec::new(),
            });
        }
        let partial = match &mut self.current {
            Some(p) if p.message_id == message_id && p.count == count && p.next == index => p,
            _ => {
                self.current = None;
                return Err(WireError::BadChunk { index, count });
            }
        };
        partial.body.extend_from_slice(&bytes);
        partial.next += 1;
        if partial.next < count {
            return Ok(None);
        }
        let body = std::mem::take(&mut partial.body);
        self.current = None;
        decode_message(&body).map(Some)
    }
}

#[cfg(test)]
mod tests;
