//! `P2PEvent`: the unit of exchange.

use crate::protocol::text::Text;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::clock::{PeerId, Timestamp, VectorClock};
use super::codec;
use super::error::ReceiveError;
use super::seal::Seal;
use super::value::JsonValue;
use crate::protocol::blake3;

/// An event's identity: its origin peer and the origin's sequence number
/// (1, 2, 3, ...). It is also the event's *dot* in the CRDTs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventId {
    pub peer: PeerId,
    pub seq: u64,
}

/// Hashed as one 128-bit word, the peer in its low half and the sequence
/// number in its high half: with the tables' hasher the same value as the
/// derived hash (see [`PeerId`]'s), with one multiply and no 128-bit
/// shifts.
impl std::hash::Hash for EventId {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(self.peer.0) | (u128::from(self.seq) << 64));
    }
}

impl EventId {
    pub fn new(peer: PeerId, seq: u64) -> Self {
        EventId { peer, seq }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.peer, self.seq)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An entity kind, fixed by the first operation on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Register,
    Counter,
    Set,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Register => "register",
            Kind::Counter => "counter",
            Kind::Set => "set",
        })
    }
}

/// What an event does to its entity.
///
/// Operations that supersede earlier ones carry `observed`: the entity-level
/// vector clock of what the writer had seen (the spec's per-entity clock). A
/// receiver removes exactly the dots `(p, n)` with `n <= observed[p]`; anything
/// else present is concurrent and survives. That one rule gives multi-value
/// registers, add-wins sets and "update wins over a concurrent delete".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Register(RegisterOp),
    Counter(CounterOp),
    Set(SetOp),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOp {
    /// `resolution` marks the answer to a reconciliation request: concurrent
    /// resolutions of one conflict settle by resolver id, never by another round.
    Write {
        value: JsonValue,
        observed: VectorClock,
        resolution: bool,
    },
    Delete {
        observed: VectorClock,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterOp {
    /// `sum` is the origin's running total on this key after this
    /// increment: a counter's state is then backed by one event per origin
    /// (its latest), which is what a verified snapshot carries.
    Increment { by: i64, sum: i64 },
    /// Cancels the contributions the deleter had seen, origin by origin.
    Delete { observed: Vec<CounterShare> },
}

/// One origin's contribution to a counter: its running sum as of its event `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterShare {
    pub peer: PeerId,
    pub seq: u64,
    pub sum: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOp {
    Add {
        member: JsonValue,
        observed: VectorClock,
    },
    Remove {
        member: JsonValue,
        observed: VectorClock,
    },
    Delete {
        observed: VectorClock,
    },
}

/// What an operation removes dots of ([`Operation::observed_scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    Register,
    Member(&'a JsonValue),
    Set,
}

impl Operation {
    pub fn kind(&self) -> Kind {
        match self {
            Operation::Register(_) => Kind::Register,
            Operation::Counter(_) => Kind::Counter,
            Operation::Set(_) => Kind::Set,
        }
    }

    /// Bytes of the value (or member) the operation carries; a counter's
    /// increment counts as 8.
    pub fn value_len(&self) -> usize {
        match self {
            Operation::Register(RegisterOp::Write { value, .. })
            | Operation::Set(SetOp::Add { member: value, .. })
            | Operation::Set(SetOp::Remove { member: value, .. }) => value.as_str().len(),
            Operation::Counter(CounterOp::Increment { .. }) => 8,
            _ => 0,
        }
    }

    /// Whether the operation takes something away: it observed a dot (an
    /// overwrite, a delete, a remove). A counter's delete is not counted:
    /// a counter's join never drops a contribution, and its cancellations
    /// are live dots of their own.
    pub fn supersedes(&self) -> bool {
        self.observed_scope().is_some_and(|(_, o)| !o.is_empty())
    }

    /// The dots the operation removes (its key's register, one member of
    /// its set, or its whole set), and what of them it observed: it removes
    /// each of the scope's dots up to the clock's entry for its origin.
    /// `None` for a counter's, whose delete observes shares.
    pub fn observed_scope(&self) -> Option<(Scope<'_>, &VectorClock)> {
        match self {
            Operation::Register(RegisterOp::Write { observed, .. })
            | Operation::Register(RegisterOp::Delete { observed }) => {
                Some((Scope::Register, observed))
            }
            Operation::Set(SetOp::Add { member, observed })
            | Operation::Set(SetOp::Remove { member, observed }) => {
                Some((Scope::Member(member), observed))
            }
            Operation::Set(SetOp::Delete { observed }) => Some((Scope::Set, observed)),
            Operation::Counter(_) => None,
        }
    }

    /// What the operation observed, as a clock of dots (every kind but
    /// the counter's, whose delete observes shares).
    pub fn observed_clock(&self) -> Option<&VectorClock> {
        match self {
            Operation::Register(RegisterOp::Write { observed, .. })
            | Operation::Register(RegisterOp::Delete { observed })
            | Operation::Set(SetOp::Add { observed, .. })
            | Operation::Set(SetOp::Remove { observed, .. })
            | Operation::Set(SetOp::Delete { observed }) => Some(observed),
            Operation::Counter(_) => None,
        }
    }

    /// The first dot the operation observed (in [`observed`](Self::observed)'s
    /// order) that `clock` does not cover: what must be applied before it.
    /// An observed clock is walked against `clock` in one pass.
    pub fn first_uncovered_dot(&self, clock: &VectorClock) -> Option<EventId> {
        match self.observed_clock() {
            Some(observed) => clock
                .first_not_covered(observed)
                .map(|(peer, seq)| EventId::new(peer, seq)),
            None => self.observed().find(|d| clock.get(d.peer) < d.seq),
        }
    }

    /// Every dot the operation says it observed. They are dependencies too:
    /// an event is applied only after everything it supersedes.
    pub fn observed(&self) -> impl Iterator<Item = EventId> + '_ {
        let clock = self.observed_clock();
        let shares = match self {
            Operation::Counter(CounterOp::Delete { observed }) => observed.as_slice(),
            _ => &[],
        };
        clock
            .into_iter()
            .flat_map(|c| c.iter().map(|(p, n)| EventId::new(p, n)))
            .chain(shares.iter().map(|s| EventId::new(s.peer, s.seq)))
    }
}

/// The fundamental unit of data exchange.
///
/// `deps` are its causal dependencies as a *delta*: the entries of the
/// origin's version vector that grew since the origin's previous event. The
/// previous event of the same origin is an implicit dependency, so an event is
/// ready exactly when `applied[origin] == seq - 1`, every `deps` entry and every
/// observed dot is covered by the receiver's version vector. That keeps events
/// small (usually no entry at all) where a full version vector would carry one
/// entry per peer in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2PEvent {
    pub id: EventId,
    pub key: Text,
    pub op: Operation,
    pub deps: VectorClock,
    pub hlc: Timestamp,
    /// Set on the last event of a signed run (see [`crate::protocol::seal`]);
    /// not part of the event's content.
    pub seal: Option<Box<Seal>>,
}

/// A blake3 hash, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// All zeros: "no hash" where one is optional on the wire (a digest
    /// sent before the Merkle tree caught up).
    pub const ZERO: Hash32 = Hash32([0; 32]);
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

impl Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let hex = String::deserialize(deserializer)?;
            let bad = || serde::de::Error::custom("a hash is 64 hex digits");
            if hex.len() != 64 || !hex.is_ascii() {
                return Err(bad());
            }
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            Ok(Hash32(out))
        } else {
            super::identity::bytes::b32(deserializer).map(Hash32)
        }
    }
}

impl P2PEvent {
    /// Content address: blake3 over the binary encoding of the content
    /// (the seal left out).
    pub fn hash(&self) -> Hash32 {
        Hash32(*blake3::hash(&self.content_bytes()).as_bytes())
    }

    /// The binary encoding of everything but the seal.
    pub fn content_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_content(&mut out);
        out
    }

    /// Appends [`content_bytes`](Self::content_bytes) to `out` (a run's
    /// contents in one buffer, with no allocation per event): postcard's
    /// encoding of the event without its seal ([`codec::content`]).
    pub fn append_content(&self, out: &mut Vec<u8>) {
        codec::content::append(self, out);
    }

    /// Same content, whatever the seals (a relayed copy may be compared
    /// with one sealed here later).
    pub fn same_content(&self, other: &P2PEvent) -> bool {
        self.id == other.id
            && self.key == other.key
            && self.op == other.op
            && self.deps == other.deps
            && self.hlc == other.hlc
    }

    /// Several events in one buffer, as runs in columns
    /// ([`crate::protocol::codec::events`]): a storage record of one commit.
    pub fn encode_batch<'a>(events: impl IntoIterator<Item = &'a P2PEvent>) -> Vec<u8> {
        codec::events::encode(events, &VectorClock::new())
    }

    /// The events of [`encode_batch`](Self::encode_batch), each checked;
    /// of several batches back to back, all of theirs (a storage record
    /// joins the batches of one commit).
    pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Self>, ReceiveError> {
        let malformed = |e: codec::CodecError| ReceiveError::Malformed(e.to_string());
        let mut events = Vec::new();
        let mut rest = bytes;
        loop {
            let len = codec::events::batch_len(rest).map_err(malformed)?;
            let (batch, after) = rest.split_at(len);
            let batch = codec::events::decode(batch).map_err(malformed)?.events;
            for event in &batch {
                event.check()?;
            }
            events.extend(batch);
            if after.is_empty() {
                return Ok(events);
            }
            rest = after;
        }
    }

    /// About how many bytes the event takes in a batch
    /// ([`crate::protocol::codec::events`]), without encoding it: on the
    /// high side (its key spelled out, clock entries at their widest
    /// usual size, a run header and its peer's key of its own).
    pub fn approx_size(&self) -> usize {
        let entries = match &self.op {
            Operation::Counter(CounterOp::Delete { observed }) => 2 * observed.len(),
            op => op.observed_clock().map_or(0, VectorClock::len),
        };
        let seal = if self.seal.is_some() { 40 + 65 } else { 0 };
        8 + self.key.len() + self.op.value_len() + 6 * (entries + self.deps.len()) + seal
    }

    /// About how much memory the event takes decoded: the struct, its key
    /// and value (counted whole even where short ones sit in the struct,
    /// or a repeated key is shared), each clock entry as the pair it is
    /// decoded to, and its seal. For bounds on what is held from a peer.
    pub fn held_size(&self) -> usize {
        let pair = std::mem::size_of::<(PeerId, u64)>();
        let observed = match &self.op {
            Operation::Counter(CounterOp::Delete { observed }) => {
                observed.len() * std::mem::size_of::<CounterShare>()
            }
            op => op.observed_clock().map_or(0, VectorClock::len) * pair,
        };
        let seal = if self.seal.is_some() {
            std::mem::size_of::<Seal>()
        } else {
            0
        };
        let clocks = pair * self.deps.len() + observed;
        std::mem::size_of::<Self>() + self.key.len() + self.op.value_len() + clocks + seal
    }

    /// Every event this one needs applied first: its origin's previous event,
    /// its `deps` and the dots it observed.
    pub fn dependencies(&self) -> impl Iterator<Item = EventId> + '_ {
        let previous = (self.id.seq > 1).then(|| EventId::new(self.id.peer, self.id.seq - 1));
        previous
            .into_iter()
            .chain(self.deps.iter().map(|(p, n)| EventId::new(p, n)))
            .chain(self.op.observed())
    }

    /// Checks what can be checked without any state: the event does not
    /// depend on itself or on its origin's future.
    pub fn check(&self) -> Result<(), ReceiveError> {
        let impossible = |reason: &str| {
            Err(ReceiveError::ImpossibleDependency {
                id: self.id,
                reason: reason.to_string(),
            })
        };
        if self.id.seq == 0 {
            return impossible("sequence numbers start at 1");
        }
        if self.deps.get(self.id.peer) >= self.id.seq {
            return impossible("it depends on itself or a later event of its origin");
        }
        // A clock names each peer once: one lookup (the dots' iterator
        // chain is a call a step in the size-optimized wasm).
        let observed_itself = match self.op.observed_clock() {
            Some(observed) => observed.get(self.id.peer) >= self.id.seq,
            None => self
                .op
                .observed()
                .any(|d| d.peer == self.id.peer && d.seq >= self.id.seq),
        };
        if observed_itself {
            return impossible("it observed itself or a later event of its origin");
        }
        Ok(())
    }
}

/// A register write of `value` to key "k", unsealed: the unit tests' event.
#[cfg(test)]
pub(crate) fn sample(origin: PeerId, seq: u64, value: &str) -> P2PEvent {
    P2PEvent {
        id: EventId::new(origin, seq),
        key: "k".into(),
        op: Operation::Register(RegisterOp::Write {
            value: JsonValue::parse(value).unwrap(),
            observed: VectorClock::new(),
            resolution: false,
        }),
        deps: VectorClock::new(),
        hlc: Timestamp::new(1000, 0),
        seal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(peer: u64, seq: u64, value: &str) -> P2PEvent {
        sample(PeerId(peer), seq, value)
    }

    #[test]
    fn encode_decode_and_hash() {
        let e = write(7, 1, "\"hi\"");
        let bytes = P2PEvent::encode_batch(std::slice::from_ref(&e));
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        let decoded = P2PEvent::decode_batch(&bytes).unwrap();
        assert_eq!(decoded, std::slice::from_ref(&e));
        assert_eq!(e.hash(), decoded[0].hash());
        assert_ne!(e.hash(), write(7, 1, "\"ho\"").hash());
    }

    #[test]
    fn batches_round_trip_and_refuse_bad_events() {
        let batch = vec![write(7, 1, "1"), write(7, 2, "2"), write(9, 1, "[]")];
        let bytes = P2PEvent::encode_batch(&batch);
        assert_eq!(P2PEvent::decode_batch(&bytes).unwrap(), batch);
        assert!(P2PEvent::decode_batch(&bytes[..bytes.len() - 3]).is_err());
        assert!(P2PEvent::decode_batch(&P2PEvent::encode_batch(&[write(7, 0, "1")])).is_err());
    }

    #[test]
    fn impossible_dependencies_are_typed_errors() {
        let mut e = write(7, 0, "1");
        assert!(matches!(
            e.check(),
            Err(ReceiveError::ImpossibleDependency { .. })
        ));
        e.id.seq = 3;
        e.deps.set(PeerId(7), 3);
        assert!(matches!(
            e.check(),
            Err(ReceiveError::ImpossibleDependency { .. })
        ));
        let mut e = write(7, 3, "1");
        if let Operation::Register(RegisterOp::Write { observed, .. }) = &mut e.op {
            observed.set(PeerId(7), 4);
        }
        assert!(e.check().is_err());
    }

    #[test]
    fn json_form_is_readable() {
        let json = serde_json::to_value(write(255, 2, "{\"a\":1}")).unwrap();
        assert_eq!(json["id"]["peer"], "00000000000000ff");
        assert_eq!(json["op"]["register"]["write"]["value"]["a"], 1);
    }

    #[test]
    fn garbage_bytes_are_errors_not_panics() {
        for bytes in [&[][..], &[1, 2, 3], &[0xff; 64]] {
            assert!(P2PEvent::decode_batch(bytes).is_err());
        }
    }
}
