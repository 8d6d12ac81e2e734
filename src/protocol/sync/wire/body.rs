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
//! Reading takes what postcard takes, but no more: what this module
//! accepts, postcard accepts as the same message (a test checks it on
//! random and mutated bodies), except bytes after the message, which it
//! refuses where postcard ignored them.

use super::{Chunk, Gzipped, Message, WireError};
use crate::protocol::clock::{PeerId, VectorClock, MAX_CLOCK_ENTRIES};
use crate::protocol::codec::varint::{self, Reader};
use crate::protocol::codec::{content, events};
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
            w.variant(9);
            // The `type` tag: the one variant of its enum.
            w.variant(0);
            w.peer(r.source_peer_id);
            w.peer(r.target_peer_id);
            w.events(&r.conflicting_events);
        }
        Message::ReconciliationResponse(r) => {
            w.variant(10);
            w.variant(0);
            w.peer(r.source_peer_id);
            w.peer(r.target_peer_id);
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
        }) => {
            w.variant(14);
            w.bytes(key);
            w.bytes(mac);
            w.bytes(signature.as_flattened());
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
    let mut r = Body(Reader::new(body, "message"));
    let message = match r.u32()? {
        0 => Message::Digest {
            clock: r.clock()?,
            root: r.hash()?,
        },
        1 => Message::Events(r.events()?),
        2 => Message::SnapshotRequest {
            id: r.hash()?,
            offset: r.u64()?,
        },
        3 => Message::SnapshotChunk {
            id: r.hash()?,
            offset: r.u64()?,
            total: r.u64()?,
            bytes: r.slice()?.to_vec(),
        },
        4 => Message::MerkleQuery {
            depth: r.u8()?,
            index: r.u32()?,
        },
        5 => Message::MerkleNodes {
            depth: r.u8()?,
            index: r.u32()?,
            children: r.many(32, Body::hash)?,
        },
        6 => Message::LeafQuery { index: r.u32()? },
        7 => Message::LeafState {
            index: r.u32()?,
            state: r.slice()?.to_vec(),
        },
        8 => Message::SnapshotOffer {
            id: r.hash()?,
            total: r.u64()?,
            clock: r.clock()?,
            gzip: match r.u8()? {
                0 => None,
                1 => Some(Gzipped {
                    id: r.hash()?,
                    total: r.u64()?,
                }),
                tag => return Err(malformed(format!("option tag {tag}"))),
            },
        },
        9 => {
            r.only_variant()?;
            Message::ReconciliationRequest(ReconciliationRequest {
                message_type: RequestType::ReconciliationRequest,
                source_peer_id: r.peer()?,
                target_peer_id: r.peer()?,
                conflicting_events: r.events()?,
            })
        }
        10 => {
            r.only_variant()?;
            Message::ReconciliationResponse(ReconciliationResponse {
                message_type: ResponseType::ReconciliationResponse,
                source_peer_id: r.peer()?,
                target_peer_id: r.peer()?,
                resolution_events: r.events()?,
            })
        }
        11 => Message::Ping { sent_ms: r.u64()? },
        12 => Message::Pong { sent_ms: r.u64()? },
        13 => Message::Hello { nonce: r.array()? },
        14 => Message::Proof(Proof {
            key: r.array()?,
            mac: r.array()?,
            signature: [r.array()?, r.array()?],
        }),
        15 => {
            let shuffle = match r.u32()? {
                0 => OverlayMessage::Shuffle,
                1 => OverlayMessage::ShuffleReply,
                other => return Err(malformed(format!("overlay variant {other}"))),
            };
            Message::Overlay(shuffle(r.many(8, Body::peer)?))
        }
        16 => Message::Prune,
        17 => Message::Presence(r.many(1 + 8 + 1 + 32 + 64, |r| {
            Ok(PresenceUpdate {
                peer: r.peer()?,
                stamp: r.u64()?,
                value: r.text()?,
                key: r.array()?,
                signature: [r.array()?, r.array()?],
            })
        })?),
        18 => Message::IHave(r.marks()?),
        19 => Message::Graft(r.marks()?),
        other => return Err(malformed(format!("message variant {other}"))),
    };
    r.0.finish().map_err(codec)?;
    Ok(message)
}

/// The chunk of a whole body.
pub fn chunk(body: &[u8]) -> Result<Chunk, WireError> {
    let mut r = Body(Reader::new(body, "chunk"));
    let chunk = Chunk {
        message_id: r.u32()?,
        index: r.u32()?,
        count: r.u32()?,
        bytes: r.slice()?.to_vec(),
    };
    r.0.finish().map_err(codec)?;
    Ok(chunk)
}

fn malformed(what: String) -> WireError {
    WireError::Malformed(format!("unknown {what}"))
}

fn codec(e: crate::protocol::codec::CodecError) -> WireError {
    WireError::Malformed(e.to_string())
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

    /// An event batch, after its length.
    fn events(&mut self, batch: &[P2PEvent]) {
        let batch = P2PEvent::encode_batch(batch);
        self.slice(&batch);
    }
}

struct Body<'a>(Reader<'a>);

impl<'a> Body<'a> {
    fn u8(&mut self) -> Result<u8, WireError> {
        self.0.u8().map_err(codec)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.0.u64().map_err(codec)
    }

    /// A varint of at most 5 bytes that fits 32 bits, as postcard reads a
    /// `u32` (and a length on wasm32, whose `usize` it is: lengths are read
    /// so natively too, so both read the same messages).
    fn u32(&mut self) -> Result<u32, WireError> {
        let before = self.0.remaining();
        let value = self.u64()?;
        match u32::try_from(value) {
            Ok(v) if before - self.0.remaining() <= 5 => Ok(v),
            _ => Err(WireError::Malformed(format!(
                "{} holds a varint beyond 32 bits",
                self.0.column
            ))),
        }
    }

    /// A count of items of at least `min_bytes` each: bounded by what is
    /// left, so reserving for it is safe.
    fn count(&mut self, min_bytes: usize) -> Result<usize, WireError> {
        let count = self.u32()? as usize;
        if count > self.0.remaining() / min_bytes.max(1) {
            return Err(codec(crate::protocol::codec::CodecError::Truncated(
                self.0.column,
            )));
        }
        Ok(count)
    }

    fn many<T>(
        &mut self,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let count = self.count(min_bytes)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Bytes after their length.
    fn slice(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.count(1)?;
        self.0.take(len).map_err(codec)
    }

    fn text(&mut self) -> Result<String, WireError> {
        let bytes = self.slice()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| codec(crate::protocol::codec::CodecError::Utf8(self.0.column)))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.0.array().map_err(codec)
    }

    fn hash(&mut self) -> Result<Hash32, WireError> {
        self.array().map(Hash32)
    }

    fn peer(&mut self) -> Result<PeerId, WireError> {
        self.array().map(|b| PeerId(u64::from_le_bytes(b)))
    }

    /// A unit enum's tag, of its one variant.
    fn only_variant(&mut self) -> Result<(), WireError> {
        match self.u32()? {
            0 => Ok(()),
            other => Err(malformed(format!("type tag {other}"))),
        }
    }

    /// A clock as its map: taken as serde's visitor takes it (at most
    /// [`MAX_CLOCK_ENTRIES`], the last of a repeated peer, zeros dropped).
    fn clock(&mut self) -> Result<VectorClock, WireError> {
        let count = self.u32()? as usize;
        let mut entries = Vec::with_capacity(count.min(self.0.remaining() / 9));
        for _ in 0..count {
            if entries.len() >= MAX_CLOCK_ENTRIES {
                return Err(WireError::Malformed(format!(
                    "a version vector has more than {MAX_CLOCK_ENTRIES} entries"
                )));
            }
            entries.push((self.peer()?, self.u64()?));
        }
        Ok(VectorClock::from_entries(entries))
    }

    /// An event batch after its length, with no clock of its own.
    fn events(&mut self) -> Result<Vec<P2PEvent>, WireError> {
        let batch = events::decode(self.slice()?).map_err(codec)?;
        if !batch.clock.is_empty() {
            return Err(WireError::Malformed(
                "a message's event batch carries a clock".into(),
            ));
        }
        Ok(batch.events)
    }

    fn marks(&mut self) -> Result<Vec<(PeerId, u64)>, WireError> {
        self.many(9, |r| Ok((r.peer()?, r.u64()?)))
    }
}
