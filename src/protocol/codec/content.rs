//! An event's content bytes: what its seal signs and its hash covers.
//!
//! The bytes are postcard's encoding of the event without its seal (`id`,
//! `key`, `op`, `deps`, `hlc`, in that order), the form seals have signed
//! since signed events began. They are written here directly rather than
//! through serde: every event received in a signed room is encoded once to
//! check its seal, and in the size-optimized wasm serde's generic path made
//! a call of every byte of a peer id (~30% of taking a run-heavy stream of
//! frames in V8). `tests/native/codec.rs` holds these bytes equal to postcard's.
//!
//! An entity's bytes, which its digest hash covers, are postcard's
//! encoding of it in the same way (`Entity::append_bytes`, beside each
//! kind's state).
//!
//! postcard's rules, as they apply: unsigned integers are LEB128 varints,
//! signed ones zigzagged first; a peer id is its 8 little-endian bytes; a
//! string or a sequence is its length, then its items; a map its length,
//! then its pairs; an enum variant its index, then its fields; a struct its
//! fields in order; a bool one byte.

use super::varint::{self, zigzag};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::{CounterOp, EventId, Operation, P2PEvent, RegisterOp, SetOp};

/// Appends `event`'s content bytes to `out`.
pub fn append(event: &P2PEvent, out: &mut Vec<u8>) {
    dot(out, event.id);
    text(out, &event.key);
    match &event.op {
        Operation::Register(op) => {
            out.push(0);
            match op {
                RegisterOp::Write {
                    value,
                    observed,
                    resolution,
                } => {
                    out.push(0);
                    text(out, value.as_str());
                    clock(out, observed);
                    out.push(u8::from(*resolution));
                }
                RegisterOp::Delete { observed } => {
                    out.push(1);
                    clock(out, observed);
                }
            }
        }
        Operation::Counter(op) => {
            out.push(1);
            match op {
                CounterOp::Increment { by, sum } => {
                    out.push(0);
                    varint::put(out, zigzag(*by));
                    varint::put(out, zigzag(*sum));
                }
                CounterOp::Delete { observed } => {
                    out.push(1);
                    varint::put(out, observed.len() as u64);
                    for share in observed {
                        peer(out, share.peer);
                        varint::put(out, share.seq);
                        varint::put(out, zigzag(share.sum));
                    }
                }
            }
        }
        Operation::Set(op) => {
            out.push(2);
            let (variant, member, observed) = match op {
                SetOp::Add { member, observed } => (0, Some(member), observed),
                SetOp::Remove { member, observed } => (1, Some(member), observed),
                SetOp::Delete { observed } => (2, None, observed),
            };
            out.push(variant);
            if let Some(member) = member {
                text(out, member.as_str());
            }
            clock(out, observed);
        }
    }
    clock(out, &event.deps);
    varint::put(out, event.hlc.0);
}

pub(crate) fn peer(out: &mut Vec<u8>, peer: PeerId) {
    out.extend_from_slice(&peer.0.to_le_bytes());
}

/// An event id (a dot): its peer, then its sequence number.
pub(crate) fn dot(out: &mut Vec<u8>, dot: EventId) {
    peer(out, dot.peer);
    varint::put(out, dot.seq);
}

pub(crate) fn text(out: &mut Vec<u8>, text: &str) {
    varint::put(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A clock as the map it serializes as: its length, then its entries in
/// peer order.
pub(crate) fn clock(out: &mut Vec<u8>, clock: &VectorClock) {
    varint::put(out, clock.len() as u64);
    for (p, value) in clock.iter() {
        peer(out, p);
        varint::put(out, value);
    }
}
