//! A frame's body, written and read by hand: the bytes postcard writes for
//! [`Message`] and [`Chunk`] (their serde derives), without serde's code in
//! the wasm. serde's visitors and postcard's deserializer were ~25 KB of
//! the wasm before `wasm-opt`, for one enum of twenty variants.
//!
//! The form, as postcard's: a variant is its index among the variants (a
//! varint), then its fields in order; integers are varints (`i64`
//! zig-zagged), `u8` one byte, a length a varint before its items, an
//! `Option` a 0 or 1 byte, an array of bytes (a hash, key, nonce, MAC,
//! signature) its bytes as they are, a [`PeerId`] its 8 bytes little-endian,
//! a [`VectorClock`] a map (its length, then peer and counter pairs), an
//! event batch the bytes of [`crate::protocol::codec::events`].
//!
//! Reading takes what postcard takes, but no more ([`Postcard`]): what
//! this module accepts, postcard accepts as the same message (a test
//! checks it on random and mutated bodies), except bytes after the
//! message, which it refuses where postcard ignored them.

use super::{Chunk, Gzipped, Message, WireError, MAX_MESSAGE_EVENTS};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::codec::read::Postcard;
use crate::protocol::codec::{content, events, varint, CodecError};
use crate::protocol::event::{Hash32, P2PEvent};
use crate::protocol::reconciliation::{
    ReconciliationRequest, ReconciliationResponse, RequestType, ResponseType,
};
use crate::protocol::room::Proof;
use crate::protocol::sync::mesh::OverlayMessage;
use crate::protocol::sync::presence::PresenceUpdate;

/// Appends `message`'s body to `out`.
pub fn put_message(out: &mut Vec<u8>, message: &Message) {
    let w = &mut Writer(out);
    match message {
        Message::Digest { clock, root } => {
            w.variant(0);
            w.clock(clock);
            w.bytes(&root.0);
        }
        Message::Events(events) => {
            w.variant(1);
            w.events(events);
        }
        Message::SnapshotRequest { id, offset } => {
            w.variant(2);
            w.bytes(&id.0);
            w.u64(*offset);
        }
        Message::SnapshotChunk {
            id,
            offset,
            total,
            bytes,
        } => {
            w.variant(3);
            w.bytes(&id.0);
            w.u64(*offset);
            w.u64(*total);
            w.slice(bytes);
        }
        Message::MerkleQuery { depth, index } => {
            w.variant(4);
            w.bytes(&[*depth]);
            w.u64(u64::from(*index));
        }
        Message::MerkleNodes {
            depth,
            index,
            children,
        } => {
            w.variant(5);
            w.bytes(&[*depth]);
            w.u64(u64::from(*index));
            w.len(children.len());
            children.iter().for_each(|c| w.bytes(&c.0));
        }
        Message::LeafQuery { index } => {
            w.variant(6);
            w.u64(u64::from(*index));
        }
        Message::LeafState { index, state } => {
            w.variant(7);
            w.u64(u64::from(*index));
            w.slice(state);
        }
        Message::SnapshotOffer {
            id,
            total,
            clock,
            gzip,
        } => {
            w.variant(8);
            w.bytes(&id.0);
            w.u64(*total);
            w.clock(clock);
            match gzip {
                None => w.bytes(&[0]),
                Some(Gzipped { id, total }) => {
                    w.bytes(&[1]);
                    w.bytes(&id.0);
                    w.u64(*total);
                }
            }
        }
        Message::ReconciliationRequest(r) => {
            w.reconciliation(9, r.source_peer_id, r.target_peer_id);
            match &r.key {
                None => w.bytes(&[0]),
                Some(key) => {
                    w.bytes(&[1]);
                    w.slice(key.as_bytes());
                }
            }
            w.events(&r.conflicting_events);
        }
        Message::ReconciliationResponse(r) => {
            w.reconciliation(10, r.source_peer_id, r.target_peer_id);
            w.events(&r.resolution_events);
        }
        Message::Ping { sent_ms } => {
            w.variant(11);
            w.u64(*sent_ms);
        }
        Message::Pong { sent_ms } => {
            w.variant(12);
            w.u64(*sent_ms);
        }
        Message::Hello { nonce } => {
            w.variant(13);
            w.bytes(nonce);
        }
        Message::Proof(Proof {
            key,
            mac,
            signature,
            channel,
        }) => {
            w.variant(14);
            w.bytes(key);
            w.bytes(mac);
            w.bytes(signature.as_flattened());
            w.bytes(channel);
        }
        Message::Overlay(overlay) => {
            w.variant(15);
            w.variant(match overlay {
                OverlayMessage::Shuffle(_) => 0,
                OverlayMessage::ShuffleReply(_) => 1,
            });
            let peers = overlay.peers();
            w.len(peers.len());
            peers.iter().for_each(|&p| w.peer(p));
        }
        Message::Prune => w.variant(16),
        Message::Presence(updates) => {
            w.variant(17);
            w.len(updates.len());
            for u in updates {
                w.peer(u.peer);
                w.u64(u.stamp);
                w.slice(u.value.as_bytes());
                w.bytes(&u.key);
                w.bytes(u.signature.as_flattened());
            }
        }
        Message::IHave(marks) | Message::Graft(marks) => {
            w.variant(if matches!(message, Message::IHave(_)) {
                18
            } else {
                19
            });
            w.len(marks.len());
            for &(peer, seq) in marks {
                w.peer(peer);
                w.u64(seq);
            }
        }
    }
}

/// Appends `chunk`'s body to `out`.
pub fn put_chunk(out: &mut Vec<u8>, chunk: &Chunk) {
    let w = &mut Writer(out);
    w.u64(u64::from(chunk.message_id));
    w.u64(u64::from(chunk.index));
    w.u64(u64::from(chunk.count));
    w.slice(&chunk.bytes);
}

/// The message of a whole body (nothing may follow it). Its event batches
/// are decoded, not yet checked.
pub fn message(body: &[u8]) -> Result<Message, WireError> {
    let mut r = Postcard::new(body, "message");
    let message = read_message(&mut r);
    r.finish(message, true).map_err(malformed)
}

/// The chunk of a whole body.
pub fn chunk(body: &[u8]) -> Result<Chunk, WireError> {
    let mut r = Postcard::new(body, "chunk");
    let chunk = Chunk {
        message_id: r.u32(),
        index: r.u32(),
        count: r.u32(),
        bytes: r.slice().to_vec(),
    };
    r.finish(chunk, true).map_err(malformed)
}

fn malformed(e: CodecError) -> WireError {
    match e {
        CodecError::TooManyEvents { count, limit } => WireError::TooManyEvents { count, limit },
        e => WireError::Malformed(e.to_string()),
    }
}

/// A message as read: a placeholder where the reader failed (its error
/// sticks, see [`Postcard`]).
fn read_message(r: &mut Postcard) -> Message {
    let hash = |r: &mut Postcard| Hash32(r.array());
    match r.u32() {
        0 => Message::Digest {
            clock: r.clock(),
            root: hash(r),
        },
        1 => Message::Events(events(r)),
        2 => Message::SnapshotRequest {
            id: hash(r),
            offset: r.u64(),
        },
        3 => Message::SnapshotChunk {
            id: hash(r),
            offset: r.u64(),
            total: r.u64(),
            bytes: r.slice().to_vec(),
        },
        4 => Message::MerkleQuery {
            depth: r.u8(),
            index: r.u32(),
        },
        5 => Message::MerkleNodes {
            depth: r.u8(),
            index: r.u32(),
            children: r.many(32, hash),
        },
        6 => Message::LeafQuery { index: r.u32() },
        7 => Message::LeafState {
            index: r.u32(),
            state: r.slice().to_vec(),
        },
        8 => Message::SnapshotOffer {
            id: hash(r),
            total: r.u64(),
            clock: r.clock(),
            gzip: r.bool().then(|| Gzipped {
                id: hash(r),
                total: r.u64(),
            }),
        },
        9 => {
            only_variant(r);
            Message::ReconciliationRequest(ReconciliationRequest {
                message_type: RequestType::ReconciliationRequest,
                source_peer_id: r.peer(),
                target_peer_id: r.peer(),
                key: r.bool().then(|| r.str().into()),
                conflicting_events: events(r),
            })
        }
        10 => {
            only_variant(r);
            Message::ReconciliationResponse(ReconciliationResponse {
                message_type: ResponseType::ReconciliationResponse,
                source_peer_id: r.peer(),
                target_peer_id: r.peer(),
                resolution_events: events(r),
            })
        }
        11 => Message::Ping { sent_ms: r.u64() },
        12 => Message::Pong { sent_ms: r.u64() },
        13 => Message::Hello { nonce: r.array() },
        14 => Message::Proof(Proof {
            key: r.array(),
            mac: r.array(),
            signature: [r.array(), r.array()],
            channel: r.array(),
        }),
        15 => {
            let shuffle = match r.u32() {
                0 => OverlayMessage::Shuffle,
                1 => OverlayMessage::ShuffleReply,
                other => {
                    r.unknown(other.into());
                    OverlayMessage::Shuffle
                }
            };
            Message::Overlay(shuffle(r.many(8, Postcard::peer)))
        }
        16 => Message::Prune,
        17 => Message::Presence(r.many(8 + 1 + 1 + 32 + 64, |r| PresenceUpdate {
            peer: r.peer(),
            stamp: r.u64(),
            value: r.str().to_string(),
            key: r.array(),
            signature: [r.array(), r.array()],
        })),
        18 => Message::IHave(marks(r)),
        19 => Message::Graft(marks(r)),
        other => {
            r.unknown(other.into());
            Message::Prune
        }
    }
}

/// A unit enum's tag, of its one variant.
fn only_variant(r: &mut Postcard) {
    match r.u32() {
        0 => {}
        other => r.unknown(other.into()),
    }
}

/// An event batch after its length, with no clock of its own, of at most
/// [`MAX_MESSAGE_EVENTS`] events.
fn events(r: &mut Postcard) -> Vec<P2PEvent> {
    let batch = events::decode_at_most(r.slice(), MAX_MESSAGE_EVENTS);
    let batch = batch.and_then(|batch| match batch.clock.is_empty() {
        true => Ok(batch.events),
        false => Err(CodecError::Invalid(
            "a message's event batch carries a clock",
        )),
    });
    r.or_fail(batch)
}

fn marks(r: &mut Postcard) -> Vec<(PeerId, u64)> {
    r.many(9, |r| (r.peer(), r.u64()))
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn variant(&mut self, index: u64) {
        varint::put(self.0, index);
    }

    fn u64(&mut self, value: u64) {
        varint::put(self.0, value);
    }

    fn len(&mut self, len: usize) {
        varint::put(self.0, len as u64);
    }

    /// Bytes as they are (an array's: no length).
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Bytes after their length.
    fn slice(&mut self, bytes: &[u8]) {
        varint::put(self.0, bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn peer(&mut self, peer: PeerId) {
        content::peer(self.0, peer);
    }

    fn clock(&mut self, clock: &VectorClock) {
        content::clock(self.0, clock);
    }

    /// The head of a reconciliation request or response (message
    /// `variant`).
    fn reconciliation(&mut self, variant: u64, source: PeerId, target: PeerId) {
        self.variant(variant);
        // The `type` tag: the one variant of its enum.
        self.variant(0);
        self.peer(source);
        self.peer(target);
    }

    /// An event batch, after its length.
    fn events(&mut self, batch: &[P2PEvent]) {
        let batch = P2PEvent::encode_batch(batch);
        self.slice(&batch);
    }
}
