//! `StateSnapshot`: the whole state and its version vector, as the signed
//! events it rests on.
//!
//! A snapshot is not a copy of the state taken on trust: it is the sealed
//! runs still needed to rebuild the state (each entity's first operation per
//! kind and every dot it holds), plus, for every entry of the version
//! vector, the run holding that origin's latest event (its *head*). Checking
//! a snapshot is checking events: every run's seal verifies, every clock
//! entry is an event its origin signed, nothing lies beyond the clock. The
//! receiver rebuilds the entities from the events marked live
//! ([`Entity::rebuild`]); a sender can leave events out, but it cannot
//! make up a value, a dot, a writer or a clock entry, nor bring back a
//! value another of its events supersedes (the live marks are not sealed,
//! so a marked event is applied only if it survives all of its key's).

use crate::protocol::text::Text;
use std::hash::BuildHasher;
use std::ops::Range;

use super::clock::{PeerId, VectorClock};
use super::codec::{events, varint, CodecError, KeyWords};
use super::entity::{Entity, Held};
use super::event::{EventId, P2PEvent};
use super::heap_sort::heap_sort_by;
use super::key_sort;
use super::seal::{self, SealError};

const MAGIC: &[u8; 4] = b"CPCS";
/// 3: the events as a batch ([`events`]: runs in columns). 2 (postcard)
/// is read only to migrate a page's storage ([`super::codec::legacy`]).
pub const FORMAT: u8 = 3;

/// Snapshot bytes that cannot be loaded, or a snapshot that does not
/// verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a cpc-sync snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot format {0} is not supported (this build reads format {FORMAT})")]
    UnsupportedFormat(u8),
    #[error("snapshot is malformed: {0}")]
    Malformed(String),
    #[error("snapshot run refused: {0}")]
    Seal(#[from] SealError),
    #[error("snapshot claims {origin} is at {seq}, but holds no event of it there signed by it")]
    UnbackedClock { origin: PeerId, seq: u64 },
    #[error("snapshot event {0} (or something it depends on) lies beyond the snapshot's clock")]
    BeyondClock(EventId),
    #[error("snapshot claims our own origin is at {claimed}; we wrote {ours}")]
    RaisesOwnClock { claimed: u64, ours: u64 },
    #[error("snapshot has {count} origins; this room allows {limit}")]
    TooManyOrigins { count: usize, limit: usize },
    /// The snapshot's origins joined with ours pass the bound, where the
    /// snapshot's alone do not. Not a lie: an honest sender holds its own
    /// origins, and a flood of throwaway origins split between two peers
    /// leaves each with ones the other lacks.
    #[error("snapshot's origins joined with ours make {count}; this room allows {limit}")]
    TooManyOriginsJoined { count: usize, limit: usize },
    #[error("snapshot event {0} is timestamped too far ahead of our clock")]
    ClockSkew(EventId),
    #[error("state arrived that we did not ask for")]
    Unasked,
    /// A run of the snapshot overlaps a run of its signer's kept here with
    /// other bounds: the signer sealed both, and an honest sender may have
    /// taken the other first.
    #[error("snapshot run sealed on {0} overlaps another run of its signer's, kept here with other bounds")]
    OverlappingRun(EventId),
    /// A Merkle leaf's copy holding another version of an event kept here
    /// (in a signed room: its signer signed both). Not a lie of the
    /// sender's, who may have taken that version first; the equivocation
    /// is counted.
    #[error("event {0} is not the version kept here: its signer signed two")]
    OtherVersion(EventId),
    /// More events than the reader takes ([`StateSnapshot::decode_at_most`],
    /// [`StateSnapshot::decoding`]), refused before any is decoded. Not a
    /// lie: a Merkle leaf's copy made after its sender's clock moved past
    /// ours may hold more events than ours counts, and an honest room may
    /// outgrow a bound a peer set.
    #[error("snapshot holds {count} events; at most {limit} are taken here")]
    TooManyEvents { count: u64, limit: u64 },
}

impl From<CodecError> for SnapshotError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::TooManyEvents { count, limit } => {
                SnapshotError::TooManyEvents { count, limit }
            }
            e => SnapshotError::Malformed(e.to_string()),
        }
    }
}

impl SnapshotError {
    /// A lie (forged, inflated or inconsistent state), as opposed to bytes
    /// we cannot read or a clock that is merely ahead: weighs like a forgery.
    pub fn is_lie(&self) -> bool {
        !matches!(
            self,
            SnapshotError::ClockSkew(_)
                | SnapshotError::Unasked
                | SnapshotError::BadMagic
                | SnapshotError::UnsupportedFormat(_)
                | SnapshotError::OverlappingRun(_)
                | SnapshotError::OtherVersion(_)
                | SnapshotError::TooManyEvents { .. }
                | SnapshotError::TooManyOriginsJoined { .. }
        )
    }
}

/// A peer's replicated state as of `version_vector`, as the events it
/// rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    pub version_vector: VectorClock,
    /// Whole sealed runs, by origin then sequence.
    pub events: Vec<P2PEvent>,
    /// Per event: whether the state holds its dot (else it is there for its
    /// run's seal, a kind's first operation, or as a head).
    pub live: Vec<bool>,
}

/// What a receiver checks a snapshot against.
#[derive(Debug, Clone)]
pub struct Checks {
    /// Our own id, and how many events we wrote: no snapshot may raise it.
    pub me: PeerId,
    pub own_seq: u64,
    /// Runs must carry valid seals (a signed room).
    pub signed: bool,
    /// Every clock entry must be an event in the snapshot (a whole
    /// snapshot; a Merkle leaf's clock is checked against ours instead).
    pub heads: bool,
    pub max_origins: usize,
}

impl StateSnapshot {
    /// Encodes borrowed events (sorted by id): `MAGIC`, the format byte,
    /// the live bitmap (its length, then one bit per event), then the
    /// events and the version vector as one batch (with their keys hashed
    /// while they were gathered, if they were: [`KeyWords`]).
    pub fn encode_parts(
        version_vector: &VectorClock,
        events: &[&P2PEvent],
        live: &[bool],
        keys: Option<KeyWords>,
    ) -> Vec<u8> {
        let bits = live.len().div_ceil(8);
        let mut out = Vec::with_capacity(MAGIC.len() + 11 + bits);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        varint::put(&mut out, bits as u64);
        let at = out.len();
        out.resize(at + bits, 0);
        for (i, _) in live.iter().enumerate().filter(|(_, l)| **l) {
            out[at + i / 8] |= 1 << (i % 8);
        }
        events::encode_into(&mut out, events, version_vector, keys);
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let events: Vec<&P2PEvent> = self.events.iter().collect();
        Self::encode_parts(&self.version_vector, &events, &self.live, None)
    }

    /// Decodes a snapshot; any defect is an error, never a panic. Decoding
    /// checks the form; [`verify`](Self::verify) checks what it claims.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Self::decode_as(bytes, Self::read(usize::MAX))
    }

    /// Decodes a snapshot of at most `limit` events, as
    /// [`decode`](Self::decode) does, or refuses it before decoding any
    /// ([`events::decode_at_most`]): a Merkle leaf's copy is joined only
    /// under a clock equal to ours, and its events are distinct and within
    /// that clock, so it holds no more events than the clock counts.
    pub fn decode_at_most(bytes: &[u8], limit: usize) -> Result<Self, SnapshotError> {
        Self::decode_as(bytes, Self::read(limit))
    }

    /// Decodes a snapshot as [`decode`](Self::decode) does, its keys and
    /// values ranges of two shared buffers ([`Text`](crate::protocol::Text))
    /// instead of an allocation each: for this peer's own stored snapshot,
    /// all of which its state is restored from. (One from a peer may
    /// bring a single event new to us, which would keep its whole buffer.)
    pub fn decode_shared(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let read = events::Read {
            shared: true,
            ..Self::read(usize::MAX)
        };
        Self::decode_as(bytes, read)
    }

    /// Decodes a snapshot whose batch is read as `read` says.
    fn decode_as(bytes: &[u8], read: events::Read) -> Result<Self, SnapshotError> {
        let (bits, body) = Self::header(bytes)?;
        Self::assemble(&bytes[bits], events::decode_as(&bytes[body..], read)?)
    }

    /// A snapshot of at most `limit` events to decode a slice at a time
    /// ([`Decoding::step`]): what [`decode`](Self::decode) does, each slice
    /// a task of its own. One of more events, or of more than its version
    /// vector counts, is refused ([`SnapshotError::TooManyEvents`]) before
    /// any is decoded.
    pub fn decoding(bytes: Vec<u8>, limit: usize) -> Result<Decoding, SnapshotError> {
        let (bits, body) = Self::header(&bytes)?;
        Ok(Decoding {
            bits: bytes[bits].to_vec(),
            batch: events::Resumable::new(bytes, body, Self::read(limit))?,
        })
    }

    /// How a snapshot's batch is read: of at most `limit` events, and of
    /// no more than its version vector counts.
    fn read(limit: usize) -> events::Read {
        events::Read {
            limit,
            within_clock: true,
            ..events::Read::default()
        }
    }

    /// Where the live bitmap and the batch are in `bytes`.
    fn header(bytes: &[u8]) -> Result<(Range<usize>, usize), SnapshotError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadMagic)?;
        let (&format, body) = body.split_first().ok_or(SnapshotError::BadMagic)?;
        if format != FORMAT {
            return Err(SnapshotError::UnsupportedFormat(format));
        }
        let mut reader = varint::Reader::new(body, "live");
        let len = reader.at_most(body.len())?;
        reader.take(len)?;
        let end = bytes.len() - reader.remaining();
        Ok((end - len..end, end))
    }

    /// The snapshot of a decoded batch and its live bitmap.
    fn assemble(bits: &[u8], batch: events::Batch) -> Result<Self, SnapshotError> {
        let count = batch.events.len();
        let stray = count % 8 != 0 && bits.last().is_some_and(|b| b >> (count % 8) != 0);
        if bits.len() != count.div_ceil(8) || stray {
            return Err(SnapshotError::Malformed(
                "the live bitmap does not match the events".into(),
            ));
        }
        let live = (0..count)
            .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
            .collect();
        if !batch.sorted {
            return Err(SnapshotError::Malformed(
                "events are not sorted by id, or repeat".into(),
            ));
        }
        Ok(StateSnapshot {
            version_vector: batch.clock,
            events: batch.events,
            live,
        })
    }

    /// Checks everything the snapshot claims, except timestamps (the
    /// engine checks those against its clock): seals, that every clock
    /// entry is backed by its origin's event, that nothing lies beyond the
    /// clock, that our own entry is not raised, and the bound on origins.
    pub fn verify(&self, checks: &Checks) -> Result<(), SnapshotError> {
        self.verify_whole(checks)?;
        self.verify_events(0..self.events.len())
    }

    /// What [`verify`](Self::verify) checks of the snapshot as a whole:
    /// all but the walk over its events (a few lookups an origin, and the
    /// seals when `checks.signed`).
    pub fn verify_whole(&self, checks: &Checks) -> Result<(), SnapshotError> {
        let clock = &self.version_vector;
        if self.live.len() != self.events.len() {
            // Decoding never makes one; a snapshot built in code might.
            return Err(SnapshotError::Malformed(
                "the live flags do not match the events".into(),
            ));
        }
        if clock.len() > checks.max_origins {
            return Err(SnapshotError::TooManyOrigins {
                count: clock.len(),
                limit: checks.max_origins,
            });
        }
        let own = clock.get(checks.me);
        if own > checks.own_seq {
            return Err(SnapshotError::RaisesOwnClock {
                claimed: own,
                ours: checks.own_seq,
            });
        }
        if checks.heads {
            for (origin, seq) in clock.iter() {
                let head = EventId::new(origin, seq);
                if self.events.binary_search_by_key(&head, |e| e.id).is_err() {
                    return Err(SnapshotError::UnbackedClock { origin, seq });
                }
            }
        }
        if checks.signed {
            seal::verify_runs(&self.events)?;
        }
        Ok(())
    }

    /// What [`verify`](Self::verify) checks of the events in `range`:
    /// each well formed, and nothing of it beyond the clock.
    pub fn verify_events(&self, range: Range<usize>) -> Result<(), SnapshotError> {
        let clock = &self.version_vector;
        // Events come by origin: its clock entry is looked up once a run
        // of them, and each event's deps in one walk of the clock.
        let mut origin = (PeerId(0), 0);
        for event in self.events.get(range).unwrap_or_default() {
            event
                .check()
                .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
            if event.id.peer != origin.0 || origin.1 == 0 {
                origin = (event.id.peer, clock.get(event.id.peer));
            }
            // The origin's previous event is below the event itself.
            let beyond = event.id.seq > origin.1
                || clock.first_not_covered(&event.deps).is_some()
                || event.op.first_uncovered_dot(clock).is_some();
            if beyond {
                return Err(SnapshotError::BeyondClock(event.id));
            }
        }
        Ok(())
    }

    /// The entities the live events rebuild, by key. `hash_seed` seeds the
    /// hash that groups them (the engine's own, drawn at random): a fixed
    /// seed anyone can read would let a lying peer search out keys that
    /// collide, in a snapshot or leaf it sends.
    pub fn rebuild(&self, hash_seed: u64) -> Vec<(Text, Entity)> {
        let hasher = foldhash::fast::FixedState::with_seed(hash_seed);
        self.rebuild_by(|key| hasher.hash_one(key))
    }

    fn rebuild_by(&self, hash: impl Fn(&str) -> u64) -> Vec<(Text, Entity)> {
        // Grouped by key without a map: indices sorted by the key's hash
        // (no string comparisons, one allocation), each run of equal hashes
        // one key but for collisions. Most keys have one event: those are
        // rebuilt in a second pass in the events' order, which reads the
        // events (and their keys) in the order they lie in memory rather
        // than the hashes' random one; a cold start rebuilds 100k entities
        // this way.
        let mut order: Vec<(u64, u32)> = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (hash(&e.key), i as u32))
            .collect();
        key_sort::sort_by_key(&mut order, |&(hash, _)| u128::from(hash));
        let mut alone = vec![false; self.events.len()];
        let mut out = Vec::with_capacity(order.len());
        let mut group: Vec<(&P2PEvent, bool)> = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let hash = order[start].0;
            // Runs of one hash are short: a linear scan, not a binary search
            // of everything after them.
            let len = order[start..]
                .iter()
                .take_while(|(h, _)| *h == hash)
                .count();
            let end = start + len;
            if len == 1 {
                alone[order[start].1 as usize] = true;
                start = end;
                continue;
            }
            let first = &self.events[order[start].1 as usize].key;
            let one_key = order[start + 1..end]
                .iter()
                .all(|(_, i)| self.events[*i as usize].key == *first);
            if one_key {
                group.clear();
                group.extend(order[start..end].iter().map(|(_, i)| {
                    let i = *i as usize;
                    (&self.events[i], self.live[i])
                }));
                out.push((first.clone(), Entity::rebuild(&mut group)));
            } else {
                // A hash collision: the run sorted by key, each key's events
                // a group (n log n however many keys collide; splitting off
                // one key at a time was quadratic in them).
                let mut members: Vec<usize> =
                    order[start..end].iter().map(|(_, i)| *i as usize).collect();
                let key = |i: usize| self.events[i].key.as_str();
                heap_sort_by(&mut members, |&a, &b| (key(a), a) < (key(b), b));
                for same in members.chunk_by(|&a, &b| key(a) == key(b)) {
                    group.clear();
                    group.extend(same.iter().map(|&i| (&self.events[i], self.live[i])));
                    out.push((
                        self.events[same[0]].key.clone(),
                        Entity::rebuild(&mut group),
                    ));
                }
            }
            start = end;
        }
        drop(order);
        for ((event, live), _) in self
            .events
            .iter()
            .zip(&self.live)
            .zip(&alone)
            .filter(|(_, alone)| **alone)
        {
            let mut group = [(event, *live)];
            out.push((event.key.clone(), Entity::rebuild(&mut group)));
        }
        out
    }

    fn is_live(&self, at: usize) -> bool {
        self.live.get(at) == Some(&true)
    }

    /// The entities two replicas of the same keys end with, joined by
    /// evidence ([`Entity::join`]): ours (`self`) and `theirs`, under equal
    /// clocks, each key `wanted` says is part of it. An event both sent is
    /// taken once, live if either holds it.
    pub fn join_with(
        &self,
        theirs: &StateSnapshot,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<(Text, Entity)> {
        let mut held: Vec<Held<'_>> = Vec::with_capacity(self.events.len() + theirs.events.len());
        let (mut i, mut j) = (0, 0);
        // Both sorted by id: one merge.
        loop {
            let ours = self.events.get(i);
            let their = theirs.events.get(j);
            let (event, o, t) = match (ours, their) {
                (Some(a), Some(b)) if a.id == b.id => {
                    i += 1;
                    j += 1;
                    // Two versions of one event follow a fault in an
                    // unsigned room (a signed one refuses a copy holding
                    // another version of an event it keeps): both sides
                    // take the one whose content sorts last, so they
                    // still converge.
                    let event = if a.same_content(b) || a.content_bytes() >= b.content_bytes() {
                        a
                    } else {
                        b
                    };
                    (event, self.is_live(i - 1), theirs.is_live(j - 1))
                }
                (Some(a), Some(b)) if b.id < a.id => {
                    j += 1;
                    (b, false, theirs.is_live(j - 1))
                }
                (Some(a), _) => {
                    i += 1;
                    (a, self.is_live(i - 1), false)
                }
                (None, Some(b)) => {
                    j += 1;
                    (b, false, theirs.is_live(j - 1))
                }
                (None, None) => break,
            };
            if wanted(&event.key) {
                held.push(Held {
                    event,
                    ours: o,
                    theirs: t,
                });
            }
        }
        heap_sort_by(&mut held, |a, b| a.event.key < b.event.key);
        held.chunk_by_mut(|a, b| a.event.key == b.event.key)
            .map(|group| (group[0].event.key.clone(), Entity::join(group)))
            .collect()
    }
}

/// A snapshot being decoded a slice at a time
/// ([`StateSnapshot::decoding`]).
pub struct Decoding {
    bits: Vec<u8>,
    batch: events::Resumable,
}

impl Decoding {
    /// The events the snapshot holds (what its decoding makes room for).
    pub fn events(&self) -> usize {
        self.batch.events()
    }

    /// Decodes about `events` more events (whole runs); the snapshot once
    /// all are. After an error it is of no more use.
    pub fn step(&mut self, events: usize) -> Result<Option<StateSnapshot>, SnapshotError> {
        if !self.batch.step(events)? {
            return Ok(None);
        }
        match self.batch.take() {
            Some(batch) => StateSnapshot::assemble(&self.bits, batch).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EngineConfig, JsonValue, ReconciliationEngine};

    /// A snapshot of more events than the reader takes is refused before
    /// any is decoded, whole or a slice at a time; at the bound it decodes.
    #[test]
    fn a_snapshot_past_the_event_bound_is_refused_before_decoding() {
        let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
        for i in 0..10u64 {
            engine
                .set(&format!("k{i}"), JsonValue::parse("1").unwrap(), 1_000 + i)
                .unwrap();
        }
        let bytes = engine.encode_snapshot();
        let whole = StateSnapshot::decode(&bytes).expect("decodes");
        let count = whole.events.len() as u64;
        let refused = SnapshotError::TooManyEvents {
            count,
            limit: count - 1,
        };
        let limit = count as usize;
        assert_eq!(
            StateSnapshot::decode_at_most(&bytes, limit - 1),
            Err(refused.clone())
        );
        let sliced = StateSnapshot::decoding(bytes.clone(), limit - 1).map(|_| ());
        assert_eq!(sliced, Err(refused));
        assert_eq!(
            StateSnapshot::decode_at_most(&bytes, limit),
            Ok(whole.clone())
        );
        let mut decoding = StateSnapshot::decoding(bytes, limit).expect("within the bound");
        let decoded = loop {
            if let Some(snapshot) = decoding.step(3).expect("decodes") {
                break snapshot;
            }
        };
        assert_eq!(decoded, whole);
    }

    /// Keys whose hashes collide (what a lying peer would search out, made
    /// here by the hash itself) rebuild the same entities as keys that do
    /// not: registers, counters and sets, several live events to a key.
    #[test]
    fn colliding_keys_rebuild_the_same_entities() {
        let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
        let now = 1_000;
        for i in 0..300u64 {
            let value = JsonValue::parse(&i.to_string()).expect("JSON");
            engine
                .set(&format!("r{}", i % 100), value.clone(), now)
                .expect("set");
            engine
                .increment(&format!("c{}", i % 50), 1, now)
                .expect("increment");
            engine
                .add(&format!("s{}", i % 30), value, now)
                .expect("add");
        }
        let snapshot = engine.snapshot();
        let by_key = |mut v: Vec<(Text, Entity)>| {
            v.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            v
        };
        let expected = by_key(snapshot.rebuild(7));
        assert_eq!(expected.len(), 180);
        assert_eq!(by_key(snapshot.rebuild_by(|_| 0)), expected);
        assert_eq!(by_key(snapshot.rebuild_by(|k| k.len() as u64)), expected);
    }
}
