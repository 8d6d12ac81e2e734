use hashbrown::HashMap;

use crate::protocol::text::Text;
use foldhash::fast::FixedState;

use super::archive::Split;
use super::entities::Entities;
use super::policy::{self, is_reserved};
use super::{ReconciliationEngine, Slot};
use crate::protocol::clock::Timestamp;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::codec::KeyWords;
use crate::protocol::digest;
use crate::protocol::entity::{Entity, EntityState};
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::hashing;
use crate::protocol::key_sort;
use crate::protocol::snapshot::{Checks, SnapshotError, StateSnapshot};

/// Equivocations found in snapshots and leaves that are remembered, so
/// as to count each once.
const KEPT_EQUIVOCATIONS: usize = 256;

/// How a snapshot or a leaf is to be checked.
#[derive(Debug, Clone, Copy)]
pub struct Trust {
    /// Runs must carry valid seals.
    pub signed: bool,
    /// Timestamps are checked against our clock at this time. `None`: our
    /// own storage, accepted once already, which alone may set our own
    /// origin's entry.
    pub now_ms: Option<u64>,
}

impl Trust {
    /// Our own storage: structure is checked, seals and timestamps not.
    pub const OWN: Trust = Trust {
        signed: false,
        now_ms: None,
    };

    /// A snapshot from a peer: timestamps are checked against our clock
    /// at `now_ms`; its seals, in a signed room, the caller verified on
    /// its very events ([`SnapshotSeals`](crate::protocol::seal::SnapshotSeals)).
    pub fn from_peer(now_ms: u64) -> Trust {
        Trust {
            signed: false,
            now_ms: Some(now_ms),
        }
    }
}

/// A snapshot being loaded a slice at a time
/// ([`ReconciliationEngine::begin_load`]).
#[derive(Debug)]
pub struct SnapshotLoad {
    snapshot: StateSnapshot,
    trust: Trust,
    /// Its entities, built beside a fresh engine; `None`: joined with the
    /// engine's own state when finished.
    fresh: Option<FreshLoad>,
}

impl SnapshotLoad {
    /// The snapshot's events.
    pub fn len(&self) -> usize {
        self.snapshot.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot.events.is_empty()
    }
}

/// A fresh engine's state built from a snapshot, in four passes a slice
/// at a time: each event checked; each event's key into the entity
/// table; each entity rebuilt from its events; the events split into
/// their runs for the archive. The events are grouped by key through the
/// entity table itself, one hash each, where [`StateSnapshot::rebuild`]
/// sorts them by hash and the table hashes them again; a key of one
/// event (nearly all) is rebuilt from it directly.
#[derive(Debug)]
struct FreshLoad {
    /// Timestamps are checked against our clock at this time.
    now_ms: Option<u64>,
    /// Events checked so far, and the latest timestamp among them.
    checked: usize,
    latest: Option<Timestamp>,
    entities: Entities,
    /// Per event taken in so far, its entity's index.
    entity_of: Vec<u32>,
    /// Per entity, how many events it has and its first.
    sizes: Vec<u32>,
    first: Vec<u32>,
    /// Once every event is in: the events of entities with several,
    /// grouped by entity (a counting sort), `grouped[starts[i]..starts[i
    /// + 1]]` being entity i's.
    grouped: Option<(Vec<u32>, Vec<u32>)>,
    /// Entities rebuilt so far, in index order, and what the engine's
    /// books are to learn of them.
    rebuilt: usize,
    marks: Marks,
    split: Split,
}

/// What the books learn of a fresh engine's entities
/// ([`ReconciliationEngine::take_fresh`]): each is hashed into the digest.
#[derive(Debug, Default)]
struct Marks {
    /// The change epoch the entities were marked changed in.
    epoch: u32,
    /// Reported changed: all but room state.
    changed: Vec<u32>,
    /// Registers with concurrent siblings.
    conflicted: Vec<u32>,
    /// Room state (reserved keys).
    reserved: Vec<u32>,
}

impl FreshLoad {
    fn new(snapshot: &StateSnapshot, trust: Trust, engine: &ReconciliationEngine) -> Self {
        let events = snapshot.events.len();
        let mut entities = Entities::with_seed(engine.config.hash_seed);
        // Room for a key per event: fewer come when keys have several.
        entities.reserve(events);
        FreshLoad {
            now_ms: trust.now_ms,
            checked: 0,
            latest: None,
            entities,
            entity_of: Vec::with_capacity(events),
            sizes: Vec::new(),
            first: Vec::new(),
            grouped: None,
            rebuilt: 0,
            marks: Marks {
                epoch: engine.books.epoch,
                ..Marks::default()
            },
            split: Split::new(events),
        }
    }

    /// About `budget` events' (or entities') worth more; whether all is
    /// done.
    fn step(
        &mut self,
        snapshot: &StateSnapshot,
        budget: usize,
        engine: &ReconciliationEngine,
    ) -> Result<bool, SnapshotError> {
        let mut left = budget.max(1);
        if self.checked < snapshot.events.len() {
            left -= self.check(snapshot, left, engine)?;
            if left == 0 {
                return Ok(false);
            }
        }
        Ok(self.build(snapshot, left))
    }

    /// The passes after the checks, about `budget` more of them: the keys,
    /// the entities, the runs. Whether all is built.
    fn build(&mut self, snapshot: &StateSnapshot, budget: usize) -> bool {
        let events = &snapshot.events;
        let mut left = budget.max(1);
        loop {
            let done = if self.entity_of.len() < events.len() {
                self.key_events(events, left)
            } else if self.rebuilt < self.sizes.len() {
                self.rebuild(snapshot, left)
            } else if !self.split.is_done() {
                self.split.step(events, left)
            } else {
                return true;
            };
            left = left.saturating_sub(done);
            if left == 0 {
                return self.split.is_done() && self.rebuilt == self.sizes.len();
            }
        }
    }

    /// Checks the next `budget` events; how many.
    fn check(
        &mut self,
        snapshot: &StateSnapshot,
        budget: usize,
        engine: &ReconciliationEngine,
    ) -> Result<usize, SnapshotError> {
        let from = self.checked;
        let to = from.saturating_add(budget).min(snapshot.events.len());
        engine.check_events(snapshot, self.now_ms, from..to)?;
        let latest = snapshot.events[from..to].iter().map(|e| e.hlc).max();
        self.latest = self.latest.max(latest);
        self.checked = to;
        Ok(to - from)
    }

    /// The next `budget` events' keys into the table; how many.
    fn key_events(&mut self, events: &[P2PEvent], budget: usize) -> usize {
        let from = self.entity_of.len();
        let to = from.saturating_add(budget).min(events.len());
        for (i, event) in events[from..to].iter().enumerate() {
            let (index, new) = self
                .entities
                .find_or_insert(&event.key, |key| Slot::new(key, Entity::empty(), None));
            if new {
                self.sizes.push(0);
                self.first.push((from + i) as u32);
            }
            self.sizes[index as usize] += 1;
            self.entity_of.push(index);
        }
        if to == events.len() {
            self.entities.shrink();
        }
        to - from
    }

    /// The next `budget` entities rebuilt from their events, and marked
    /// as the books are to learn of them; how many.
    fn rebuild(&mut self, snapshot: &StateSnapshot, budget: usize) -> usize {
        let (events, live) = (&snapshot.events, &snapshot.live);
        let (starts, grouped) = self.grouped.get_or_insert_with(|| {
            // Events of entities with several, grouped by entity: a
            // counting sort.
            let mut starts: Vec<u32> = Vec::with_capacity(self.sizes.len() + 1);
            let mut total = 0;
            for &size in &self.sizes {
                starts.push(total);
                total += if size > 1 { size } else { 0 };
            }
            starts.push(total);
            let mut grouped = vec![0u32; total as usize];
            let mut fill = starts.clone();
            for (i, &index) in self.entity_of.iter().enumerate() {
                if self.sizes[index as usize] > 1 {
                    grouped[fill[index as usize] as usize] = i as u32;
                    fill[index as usize] += 1;
                }
            }
            (starts, grouped)
        });
        let from = self.rebuilt;
        let to = from.saturating_add(budget).min(self.sizes.len());
        let mut group: Vec<(&P2PEvent, bool)> = Vec::new();
        for index in from..to {
            let entity = if self.sizes[index] == 1 {
                let i = self.first[index] as usize;
                Entity::rebuild(&mut [(&events[i], live[i])])
            } else {
                let members = &grouped[starts[index] as usize..starts[index + 1] as usize];
                group.clear();
                group.extend(
                    members
                        .iter()
                        .map(|&i| (&events[i as usize], live[i as usize])),
                );
                Entity::rebuild(&mut group)
            };
            let index = index as u32;
            let slot = self.entities.at(index);
            slot.entity = entity;
            // As `Books::touch` marks it.
            slot.digest_stale = true;
            if is_reserved(&slot.key) {
                self.marks.reserved.push(index);
                continue;
            }
            slot.changed = self.marks.epoch;
            self.marks.changed.push(index);
            if matches!(slot.entity.shown(), EntityState::Register(r) if r.is_conflicted()) {
                self.marks.conflicted.push(index);
            }
        }
        self.rebuilt = to;
        to - from
    }
}

/// The events a state rests on, sorted by id, each once: every live dot
/// (`true`), every kind's first operation and, for the whole state, each
/// origin's head (`false` unless also a live dot). Sorted rather than
/// hashed: the runs holding them are then found in one ordered pass.
pub(super) enum Needed {
    Pairs(Vec<(EventId, bool)>),
    /// As they were sorted, one word each ([`Packed`]), unpacked where
    /// read: a million pairs were 24 MB more to write (and, natively, to
    /// fault in) on every encode.
    Packed {
        words: Vec<u64>,
        peers: Vec<PeerId>,
    },
}

impl Needed {
    fn new(mut ids: Vec<(EventId, bool)>) -> Self {
        // Of equal ids, any one live makes the kept one live.
        key_sort::sort_by_key(&mut ids, |&(id, _)| key_sort::id_key(id));
        ids.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            earlier.1 |= same && later.1;
            same
        });
        Needed::Pairs(ids)
    }

    fn len(&self) -> usize {
        match self {
            Needed::Pairs(ids) => ids.len(),
            Needed::Packed { words, .. } => words.len(),
        }
    }

    /// The `at`th event, and whether it is live.
    #[inline]
    fn get(&self, at: usize) -> Option<(EventId, bool)> {
        match self {
            Needed::Pairs(ids) => ids.get(at).copied(),
            Needed::Packed { words, peers } => words.get(at).map(|&w| Packed::unpack(peers, w)),
        }
    }

    /// Where the first event at or after `id` is, searching from `from`.
    fn seek(&self, from: usize, id: EventId) -> usize {
        let (mut low, mut high) = (from, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.get(middle) {
                Some((w, _)) if w < id => low = middle + 1,
                _ => high = middle,
            }
        }
        low
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<(EventId, bool)> {
        (0..self.len()).filter_map(|at| self.get(at)).collect()
    }
}

/// An event id and its live flag in one word, ordered as `(EventId, bool)`
/// is: the origin's rank among the version vector's peers (sorted by id),
/// the sequence number, the flag. A million of them sort in a third of the
/// time the pairs take.
struct Packed {
    peers: Vec<PeerId>,
    ranks: HashMap<PeerId, u64, FixedState>,
    last: Option<(PeerId, u64)>,
}

impl Packed {
    const SEQ_BITS: u32 = 47;
    const RANK_BITS: u32 = 64 - Self::SEQ_BITS - 1;

    /// For ids of `clock`'s origins; `None` if they are too many to pack.
    fn new(clock: &VectorClock) -> Option<Self> {
        if clock.len() >= 1 << Self::RANK_BITS {
            return None;
        }
        let peers: Vec<PeerId> = clock.iter().map(|(p, _)| p).collect();
        let mut ranks = HashMap::with_capacity_and_hasher(peers.len(), hashing::state());
        ranks.extend(peers.iter().enumerate().map(|(r, p)| (*p, r as u64)));
        Some(Packed {
            peers,
            ranks,
            last: None,
        })
    }

    /// `None` for an origin outside the clock or a sequence past the bits.
    fn pack(&mut self, id: EventId, live: bool) -> Option<u64> {
        let rank = self.rank(id.peer)?;
        (id.seq < 1 << Self::SEQ_BITS).then(|| Self::word(rank, id.seq, live))
    }

    /// `peer`'s rank; `None` outside the clock.
    #[inline]
    fn rank(&mut self, peer: PeerId) -> Option<u64> {
        match self.last {
            Some((last, rank)) if last == peer => Some(rank),
            _ => {
                let rank = *self.ranks.get(&peer)?;
                self.last = Some((peer, rank));
                Some(rank)
            }
        }
    }

    #[inline]
    fn word(rank: u64, seq: u64, live: bool) -> u64 {
        (rank << (Self::SEQ_BITS + 1)) | (seq << 1) | u64::from(live)
    }

    /// The id and flag of `word`, packed with `peers` as they were.
    #[inline]
    fn unpack(peers: &[PeerId], word: u64) -> (EventId, bool) {
        let rank = (word >> (Self::SEQ_BITS + 1)) as usize;
        let seq = (word >> 1) & ((1 << Self::SEQ_BITS) - 1);
        (EventId::new(peers[rank], seq), word & 1 == 1)
    }
}

/// Ids marked in a bitmap of every id a clock covers, two bits each
/// (needed, live), by origin rank then sequence: read out in order, they
/// are [`Packed`] words sorted and merged without a sort. For a whole
/// state, whose dots cover most of the ids ever applied: for a million
/// entities the bitmap is 250 KB where the words to sort were 16 MB (and
/// as much again for the sort), their sort ~9% of encoding the snapshot.
struct Dense {
    packed: Packed,
    /// Per rank: the place of its sequence 1, then one past the last.
    starts: Vec<u64>,
    bits: Vec<u64>,
}

impl Dense {
    /// Ids a place takes two bits of: 32 a word.
    const PER_WORD: u64 = 32;

    /// For ids of `clock`, if its bitmap is no larger than the `words`
    /// it stands for would be; else `None`.
    fn new(clock: &VectorClock, words: usize) -> Option<Self> {
        let mut starts = Vec::with_capacity(clock.len() + 1);
        let mut total = 0u64;
        for (_, seq) in clock.iter() {
            if seq >= 1 << Packed::SEQ_BITS {
                return None;
            }
            starts.push(total);
            total = total.checked_add(seq)?;
        }
        starts.push(total);
        let bitmap = total.div_ceil(Self::PER_WORD);
        if bitmap > words as u64 {
            return None;
        }
        Some(Dense {
            packed: Packed::new(clock)?,
            starts,
            bits: vec![0; bitmap as usize],
        })
    }

    /// Marks `id` needed (and live); `None` if it is outside the clock.
    #[inline]
    fn mark(&mut self, id: EventId, live: bool) -> Option<()> {
        let rank = self.packed.rank(id.peer)? as usize;
        let (start, end) = (self.starts[rank], self.starts[rank + 1]);
        let place = start.checked_add(id.seq.checked_sub(1)?)?;
        if place >= end {
            return None;
        }
        let shift = 2 * (place % Self::PER_WORD);
        self.bits[(place / Self::PER_WORD) as usize] |= (1 | u64::from(live) << 1) << shift;
        Some(())
    }

    /// The marked ids as sorted [`Packed`] words.
    fn into_needed(self) -> Needed {
        const NEEDED: u64 = 0x5555_5555_5555_5555;
        let count = self.bits.iter().map(|w| (w & NEEDED).count_ones() as usize);
        let mut words = Vec::with_capacity(count.sum());
        let mut rank = 0;
        for (i, &word) in self.bits.iter().enumerate() {
            let mut needed = word & NEEDED;
            while needed != 0 {
                let bit = needed.trailing_zeros();
                needed &= needed - 1;
                let place = i as u64 * Self::PER_WORD + u64::from(bit / 2);
                while place >= self.starts[rank + 1] {
                    rank += 1;
                }
                let live = word >> (bit + 1) & 1 == 1;
                let seq = place - self.starts[rank] + 1;
                words.push(Packed::word(rank as u64, seq, live));
            }
        }
        Needed::Packed {
            words,
            peers: self.packed.peers,
        }
    }
}

impl ReconciliationEngine {
    /// What the entities of `slots` rest on, with each origin's head when
    /// `heads`.
    fn needed<'a, I: Iterator<Item = &'a Slot>>(
        &'a self,
        slots: impl Fn() -> I,
        heads: bool,
        superseders: &[EventId],
    ) -> Needed {
        // Sized by what `slots` says it holds: a leaf's few, not the state's.
        let capacity = slots().size_hint().0 * 2 + superseders.len();
        self.needed_packed(slots(), heads, superseders, capacity)
            .unwrap_or_else(|| self.needed_pairs(slots(), heads, superseders, capacity))
    }

    /// What the whole state rests on, with every origin's head: marked in
    /// a bitmap ([`Dense`]) where that is no larger than the words to
    /// sort, else as [`needed`](Self::needed).
    fn needed_whole(&self) -> Needed {
        let capacity = self.entities.len() * 2;
        let superseders = self.superseders();
        self.needed_dense(capacity, &superseders)
            .unwrap_or_else(|| self.needed(|| self.entities.values(), true, &superseders))
    }

    /// [`needed_whole`](Self::needed_whole) in a bitmap; `None` where the
    /// clock's ids are too many for `capacity` words, or an id is outside
    /// the clock.
    fn needed_dense(&self, capacity: usize, superseders: &[EventId]) -> Option<Needed> {
        let mut dense = Dense::new(&self.applied, capacity)?;
        let mut fits = true;
        for slot in self.entities.values() {
            slot.entity
                .for_each_dot(|dot| fits &= dense.mark(dot, true).is_some());
            for id in slot.entity.firsts() {
                dense.mark(id, false)?;
            }
        }
        for id in self.heads().chain(superseders.iter().copied()) {
            dense.mark(id, false)?;
        }
        fits.then(|| dense.into_needed())
    }

    /// [`needed`](Self::needed) sorted as pairs.
    fn needed_pairs<'a>(
        &self,
        slots: impl Iterator<Item = &'a Slot>,
        heads: bool,
        superseders: &[EventId],
        capacity: usize,
    ) -> Needed {
        let mut ids = Vec::with_capacity(capacity);
        for slot in slots {
            slot.entity.for_each_dot(|dot| ids.push((dot, true)));
            ids.extend(slot.entity.firsts().map(|id| (id, false)));
        }
        if heads {
            ids.extend(self.heads().map(|id| (id, false)));
        }
        ids.extend(superseders.iter().map(|&id| (id, false)));
        Needed::new(ids)
    }

    /// [`needed`](Self::needed) sorted as packed words; `None` where an id
    /// does not pack.
    fn needed_packed<'a>(
        &self,
        slots: impl Iterator<Item = &'a Slot>,
        heads: bool,
        superseders: &[EventId],
        capacity: usize,
    ) -> Option<Needed> {
        let mut packed = Packed::new(&self.applied)?;
        let mut words = Vec::with_capacity(capacity);
        let mut fits = true;
        for slot in slots {
            let dots = words.len();
            slot.entity
                .for_each_dot(|dot| match packed.pack(dot, true) {
                    Some(word) => words.push(word),
                    None => fits = false,
                });
            for id in slot.entity.firsts() {
                let word = packed.pack(id, false)?;
                // A key written once rests on one event, its first and its
                // live dot: pushed once, the sort below has half the words.
                if !words[dots..].contains(&(word | 1)) {
                    words.push(word);
                }
            }
        }
        if heads {
            for id in self.heads() {
                words.push(packed.pack(id, false)?);
            }
        }
        for &id in superseders {
            words.push(packed.pack(id, false)?);
        }
        if !fits {
            return None;
        }
        key_sort::sort_words(&mut words);
        // Of equal ids, any one live makes the kept one live.
        words.dedup_by(|later, earlier| {
            let same = *later >> 1 == *earlier >> 1;
            *earlier |= u64::from(same) & *later;
            same
        });
        Some(Needed::Packed {
            words,
            peers: packed.peers,
        })
    }

    /// What a snapshot of the whole state carries: the runs holding every
    /// live dot, every kind's first operation and every origin's head, with
    /// which events are live.
    fn whole_evidence(&self) -> (Vec<&P2PEvent>, Vec<bool>) {
        self.evidence(&self.needed_whole(), None)
    }

    /// Each origin's latest applied event.
    fn heads(&self) -> impl Iterator<Item = EventId> + '_ {
        self.applied.iter().map(|(p, n)| EventId::new(p, n))
    }

    /// An applied event still kept here: in the log, or in the archive
    /// when the state rests on it.
    pub fn kept_event(&self, id: EventId) -> Option<&P2PEvent> {
        self.log.get(id).or_else(|| {
            let run = self.archive.run_of(id)?;
            run.get(usize::try_from(id.seq - run.first()?.id.seq).ok()?)
        })
    }

    /// The whole sealed run holding `id`, from the log or the archive.
    pub fn sealed_run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        self.log.run_of(id).or_else(|| self.archive.run_of(id))
    }

    /// The runs holding the `needed` events, each once, sorted by id, with
    /// which events are live. One pass: the first needed event not yet
    /// covered names the next run, whose events take the needed entries
    /// they match. With `keys`, each event's key is hashed as the event
    /// is read here (for the encoder's key table).
    fn evidence(
        &self,
        wanted: &Needed,
        mut keys: Option<&mut KeyWords>,
    ) -> (Vec<&P2PEvent>, Vec<bool>) {
        let mut events: Vec<&P2PEvent> = Vec::with_capacity(wanted.len());
        let mut flags = Vec::with_capacity(wanted.len());
        let mut at = 0;
        // The whole run holding each id, from the log or the archive (a
        // lone event where no seal covers it). Ids come in order: one
        // cursor walks the archive's segments.
        let mut archived = self.archive.cursor();
        let mut logged = self.log.cursor();
        while let Some((id, _)) = wanted.get(at) {
            let run = logged
                .run_of(id)
                .or_else(|| archived.run_of(id))
                .or_else(|| logged.get(id).map(std::slice::from_ref))
                .unwrap_or_default();
            for event in run {
                let mut live = false;
                while let Some((w, l)) = wanted.get(at).filter(|(w, _)| *w <= event.id) {
                    live |= l && w == event.id;
                    at += 1;
                }
                // Runs never overlap (a seal covers its own range), but a
                // snapshot with an event twice would be refused: make sure.
                if events.last().is_none_or(|last| last.id < event.id) {
                    if let Some(keys) = keys.as_deref_mut() {
                        keys.push(&event.key);
                    }
                    events.push(event);
                    flags.push(live);
                }
            }
            if wanted.get(at).is_some_and(|(w, _)| w == id) {
                // Not kept here (or not in the run named): skipped.
                at += 1;
            }
        }
        (events, flags)
    }

    /// Encodes the state as a [`StateSnapshot`]: the sealed runs it rests
    /// on and each origin's head. Our own events must be sealed first (the
    /// sync layer flushes before it encodes).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.encode_needed(&self.needed_whole())
    }

    /// The snapshot of the state, encoded, from what it rests on.
    pub(super) fn encode_needed(&self, needed: &Needed) -> Vec<u8> {
        // Their keys hashed for the batch's key table while the events are
        // read here: a million events are not read again for them.
        let mut keys = KeyWords::with_capacity(needed.len());
        let (events, flags) = self.evidence(needed, Some(&mut keys));
        StateSnapshot::encode_parts(&self.applied, &events, &flags, Some(keys))
    }

    pub fn snapshot(&self) -> StateSnapshot {
        let (events, live) = self.whole_evidence();
        StateSnapshot {
            version_vector: self.applied.clone(),
            events: events.into_iter().cloned().collect(),
            live,
        }
    }

    /// What a snapshot or a leaf from elsewhere is checked against.
    fn checks(&self, trust: Trust, heads: bool) -> Checks {
        let own_seq = match trust.now_ms {
            Some(_) => self.applied.get(self.peer),
            None => u64::MAX,
        };
        Checks {
            me: self.peer,
            own_seq,
            signed: trust.signed,
            heads,
            max_origins: self.max_origins(),
        }
    }

    /// The bound on origins, once the snapshot's are joined with ours (a
    /// snapshot over it alone was refused as a lie by
    /// [`StateSnapshot::verify_whole`]).
    fn check_origins(&self, snapshot: &StateSnapshot) -> Result<(), SnapshotError> {
        let count = self.origins_joined(&snapshot.version_vector);
        if count > self.max_origins() {
            return Err(SnapshotError::TooManyOriginsJoined {
                count,
                limit: self.max_origins(),
            });
        }
        Ok(())
    }

    /// How many origins our version vector joined with `clock` names: a
    /// snapshot of that clock passes the bound on origins past
    /// [`max_origins`](Self::max_origins) (checked at its offer too).
    pub fn origins_joined(&self, clock: &VectorClock) -> usize {
        let new = clock.iter().filter(|(p, _)| self.applied.get(*p) == 0);
        self.applied.len() + new.count()
    }

    /// What is checked of each event in `range`: its form and clocks
    /// ([`StateSnapshot::verify_events`]), its timestamp within the skew
    /// bound (at `now_ms`, unless from our own storage), its room state
    /// (honest peers applied each, so refused none).
    fn check_events(
        &self,
        snapshot: &StateSnapshot,
        now_ms: Option<u64>,
        range: std::ops::Range<usize>,
    ) -> Result<(), SnapshotError> {
        snapshot.verify_events(range.clone())?;
        let events = snapshot.events.get(range).unwrap_or_default();
        if let Some(now_ms) = now_ms {
            if let Some(e) = events
                .iter()
                .find(|e| self.clock.check(e.hlc, now_ms).is_err())
            {
                return Err(SnapshotError::ClockSkew(e.id));
            }
        }
        events
            .iter()
            .try_for_each(policy::check_room_state)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))
    }

    /// That no run of `snapshot` overlaps one kept here with other bounds
    /// (`held`: one in the holding queue, too; else those are dropped when
    /// it loads).
    fn check_runs_kept(&self, snapshot: &StateSnapshot, held: bool) -> Result<(), SnapshotError> {
        match self.overlapping_run(&snapshot.events, held) {
            Some(id) => Err(SnapshotError::OverlappingRun(id)),
            None => Ok(()),
        }
    }

    /// A refused snapshot or leaf counted: another version of an event
    /// kept here as an equivocation too, once an event.
    fn count_refused(&mut self, e: &SnapshotError) {
        self.stats.refused_state += 1;
        if let SnapshotError::OtherVersion(id) = e {
            self.note_equivocation(*id);
        }
    }

    /// Counts an equivocation found in a snapshot or leaf (`id`'s signer
    /// signed two versions) once: the same two peers meet it at every
    /// repair until one of them is cut off or the leaf changes. The
    /// newest [`KEPT_EQUIVOCATIONS`] are remembered.
    fn note_equivocation(&mut self, id: EventId) {
        if self.equivocated.contains(&id) {
            return;
        }
        if self.equivocated.len() >= KEPT_EQUIVOCATIONS {
            self.equivocated.remove(0);
        }
        self.equivocated.push(id);
        self.stats.equivocations += 1;
    }

    /// In a signed room, that each event of a snapshot or a leaf's copy is
    /// the version kept here, if one is. A member re-signing one of its own
    /// events as another (a write of any key, observing what it likes)
    /// would have a leaf's join take it as a dot of ours were it only
    /// compared by content, and our next copy of the leaf would carry the
    /// version we logged, live in another leaf: refused by every peer as a
    /// lie, ours. And re-signed as a delete of any value, it was the
    /// evidence a pushed snapshot needs to drop that value here
    /// (`evidence.rs`), by an event no other peer would apply.
    fn check_versions(&self, copy: &StateSnapshot, signed: bool) -> Result<(), SnapshotError> {
        if !signed {
            return Ok(());
        }
        let other = copy.events.iter().find(|e| {
            self.kept_event(e.id)
                .is_some_and(|kept| !kept.same_content(e))
        });
        match other {
            Some(e) => Err(SnapshotError::OtherVersion(e.id)),
            None => Ok(()),
        }
    }

    /// Events of a snapshot of which we hold another version (waiting in
    /// the holding queue): counted as equivocations, and taken neither as
    /// evidence against a dot of ours nor as evidence of ours
    /// (`evidence.rs`). The snapshot is not refused for them: a held event
    /// stays until applied or passed, and a member that made a peer hold
    /// one version of its head while every other peer has the other would
    /// have that peer refuse every snapshot for good. The held version
    /// goes when the load passes it.
    fn note_held_versions(&mut self, snapshot: &StateSnapshot) {
        let held: Vec<EventId> = (snapshot.events.iter())
            .filter(|e| {
                self.holding
                    .get(e.id)
                    .is_some_and(|held| !held.same_content(e))
            })
            .map(|e| e.id)
            .collect();
        for id in held {
            self.note_equivocation(id);
        }
    }

    /// Whether `id` is an event found with two versions (of the newest
    /// [`KEPT_EQUIVOCATIONS`]).
    pub(super) fn is_equivocated(&self, id: EventId) -> bool {
        self.equivocated.contains(&id)
    }

    /// Verifies and loads a snapshot: joins its state with this engine's (a
    /// fresh engine simply takes it), then applies whatever held events
    /// became ready. Events this engine had beyond the snapshot stay
    /// applied; nothing either side has is lost. A snapshot that does not
    /// verify changes nothing; the refusal is counted.
    pub fn load_snapshot(
        &mut self,
        snapshot: StateSnapshot,
        trust: Trust,
    ) -> Result<(), SnapshotError> {
        let sealed = trust.signed || snapshot.events.iter().any(|e| e.seal.is_some());
        let checked = self
            .check_whole(&snapshot, trust)
            .and_then(|()| self.check_events(&snapshot, trust.now_ms, 0..snapshot.events.len()))
            .and_then(|()| self.check_runs_kept(&snapshot, false))
            // Signed runs (the sync layer verified their seals): a fresh
            // engine keeps no version to compare with.
            .and_then(|()| self.check_versions(&snapshot, sealed && !self.is_fresh()));
        if let Err(e) = checked {
            self.count_refused(&e);
            return Err(e);
        }
        if sealed && !self.holding.is_empty() {
            self.note_held_versions(&snapshot);
        }
        self.take_checked(snapshot, None);
        Ok(())
    }

    /// [`load_snapshot`](Self::load_snapshot) a slice at a time, for a
    /// page's thread: a fresh engine (a newcomer's) checks the snapshot as
    /// a whole here, then its events and builds its entities beside the
    /// state in [`load_step`](Self::load_step)s, each a task of its own,
    /// and takes them in [`finish_load`](Self::finish_load). An engine
    /// with a state of its own joins the snapshot with it there, in one
    /// go. A refusal is counted.
    pub fn begin_load(
        &mut self,
        snapshot: StateSnapshot,
        trust: Trust,
    ) -> Result<SnapshotLoad, SnapshotError> {
        let fresh = self.is_fresh();
        if fresh {
            if let Err(e) = self.check_whole(&snapshot, trust) {
                self.stats.refused_state += 1;
                return Err(e);
            }
        }
        Ok(SnapshotLoad {
            fresh: fresh.then(|| FreshLoad::new(&snapshot, trust, self)),
            snapshot,
            trust,
        })
    }

    /// About `events` more events' worth of `load`: checked, then taken
    /// into the entities being built. Whether all is done (then
    /// [`finish_load`](Self::finish_load) is quick). A defect found
    /// refuses the snapshot (counted; `load` is of no more use).
    pub fn load_step(
        &mut self,
        load: &mut SnapshotLoad,
        events: usize,
    ) -> Result<bool, SnapshotError> {
        let Some(built) = &mut load.fresh else {
            return Ok(true);
        };
        let step = built.step(&load.snapshot, events, self);
        if step.is_err() {
            self.stats.refused_state += 1;
        }
        step
    }

    /// Takes a snapshot begun with [`begin_load`](Self::begin_load) into
    /// the state (what its steps left is done here). If the engine took
    /// events or writes since it began, it is checked again and joined
    /// instead, as [`load_snapshot`](Self::load_snapshot) does.
    pub fn finish_load(&mut self, mut load: SnapshotLoad) -> Result<(), SnapshotError> {
        match load.fresh.take() {
            Some(mut built) if self.is_fresh() => {
                if let Err(e) = built.step(&load.snapshot, usize::MAX, self) {
                    self.stats.refused_state += 1;
                    return Err(e);
                }
                // As `load_snapshot` does: held versions of its events.
                let sealed =
                    load.trust.signed || load.snapshot.events.iter().any(|e| e.seal.is_some());
                if sealed && !self.holding.is_empty() {
                    self.note_held_versions(&load.snapshot);
                }
                self.take_checked(load.snapshot, Some(built));
                Ok(())
            }
            _ => self.load_snapshot(load.snapshot, load.trust),
        }
    }

    /// No event applied and no entity: a newcomer's, or a cold start's.
    fn is_fresh(&self) -> bool {
        self.applied.is_empty() && self.entities.is_empty()
    }

    /// What is checked of a snapshot as a whole, against this engine (all
    /// but the walk over its events).
    fn check_whole(&self, snapshot: &StateSnapshot, trust: Trust) -> Result<(), SnapshotError> {
        snapshot.verify_whole(&self.checks(trust, true))?;
        self.check_origins(snapshot)
    }

    /// Takes a checked snapshot into the state; `built`: a fresh engine's
    /// entities, built beside it from the snapshot.
    fn take_checked(&mut self, snapshot: StateSnapshot, built: Option<FreshLoad>) {
        self.note_own_stamps(&snapshot);
        let theirs = snapshot.version_vector.clone();
        let ours = self.applied.clone();
        let split = if self.is_fresh() {
            // A fresh engine: the join with nothing is the snapshot itself,
            // its entities built beside the state (at once, unless the
            // slices of a load did).
            let built = built.unwrap_or_else(|| {
                let mut built = FreshLoad::new(&snapshot, Trust::OWN, self);
                built.latest = snapshot.events.iter().map(|e| e.hlc).max();
                built.build(&snapshot, usize::MAX);
                built
            });
            if let Some(latest) = built.latest {
                self.clock.observe(latest);
            }
            self.take_fresh(built.entities, built.marks);
            Some(built.split)
        } else {
            // A dot of ours the join drops stays unless the snapshot
            // shows what superseded it (`evidence.rs`).
            self.observe_times(&snapshot);
            let mut dropped = Vec::new();
            for (key, entity) in snapshot.rebuild(self.config.hash_seed) {
                let lost = self.join_entity(&key, &entity, &ours, &theirs);
                if !lost.is_empty() {
                    dropped.push((key, lost));
                }
            }
            if !dropped.is_empty() {
                self.keep_unsuperseded(dropped, &snapshot, &ours);
            }
            None
        };
        // What the log held of the origins the snapshot raises is kept as
        // evidence: the state still shows what the snapshot left as it was
        // (a lying one may leave out keys an origin wrote before), and a
        // snapshot of ours must carry what we show.
        let mut skipped = super::log::Pieces::default();
        for (peer, seq) in theirs.iter() {
            if seq > self.applied.get(peer) {
                self.applied.set(peer, seq);
                self.log.skip_to(peer, seq, &mut skipped);
                if peer != self.peer {
                    self.unsent.note(peer);
                }
            }
        }
        let skipped = skipped.finish();
        self.note_unlogged(&skipped);
        self.archive.insert_pieces(skipped);
        // Only those beyond our clock before the load: one within it
        // that we never applied (every peer folded it away) may be a
        // version its signer re-signed, and noted it would ride in every
        // snapshot and leaf copy of ours for good. Those we applied are
        // noted already (those we took from a leaf's copy are not: see
        // `join_leaf`).
        for event in &snapshot.events {
            if event.id.seq > ours.get(event.id.peer) && !self.is_equivocated(event.id) {
                self.dominators.note(event);
            }
        }
        match split {
            Some(split) => self.archive.insert_split(split, snapshot.events),
            None => self.archive.insert(snapshot.events),
        }
        if let Some(journal) = &mut self.journal {
            journal.push(super::JournalEntry::Loaded(theirs));
        }
        self.resolve_conflicts();
    }

    /// A fresh engine's entities, built from a verified snapshot: every
    /// one waits to be hashed into the digest, and is reported changed
    /// but for room state (`marks` lists those, the conflicted and the
    /// reserved keys, as the build found them).
    fn take_fresh(&mut self, entities: Entities, marks: Marks) {
        self.entities = entities;
        let epoch = self.books.epoch;
        if marks.epoch != epoch {
            // The app took its changes while the build ran: the marks of
            // the changed are the new epoch's.
            for &index in &marks.changed {
                self.entities.at(index).changed = epoch;
            }
        }
        self.books.stale.extend(0..self.entities.len() as u32);
        self.books.changed.extend_from_slice(&marks.changed);
        for index in marks.conflicted {
            let key = self.entities.at(index).key.clone();
            self.books.conflicted.insert(key);
        }
        for index in marks.reserved {
            let key = self.entities.at(index).key.clone();
            self.refresh_room_policy(&key);
        }
    }

    /// One Merkle leaf of the state, as a snapshot restricted to its keys
    /// (no heads: a leaf is only taken under equal clocks).
    pub fn leaf_state(&mut self, leaf: u16) -> StateSnapshot {
        self.digest();
        let superseders = self.leaf_superseders(leaf);
        let slots = || {
            self.digest
                .leaf(leaf)
                .filter_map(|(key, _)| self.entities.get(key))
        };
        let (events, flags) = self.evidence(&self.needed(slots, false, &superseders), None);
        StateSnapshot {
            version_vector: self.applied.clone(),
            events: events.into_iter().cloned().collect(),
            live: flags,
        }
    }

    /// Repairs one Merkle leaf from a peer's copy of it (clocks agree, roots
    /// do not): verified like a snapshot, then joined with our own copy by
    /// evidence ([`Entity::join`]): a value either side holds stays unless
    /// an event either side sent supersedes it, so a copy that leaves a
    /// value out deletes nothing, and both sides end with the same leaf.
    /// `Ok(false)`: our clock moved since we asked; the copy is dropped.
    pub fn join_leaf(
        &mut self,
        leaf: u16,
        theirs: StateSnapshot,
        trust: Trust,
    ) -> Result<bool, SnapshotError> {
        if theirs.version_vector != self.applied {
            return Ok(false);
        }
        let checked = theirs
            .verify_whole(&self.checks(trust, false))
            .and_then(|()| self.check_origins(&theirs))
            .and_then(|()| self.check_events(&theirs, trust.now_ms, 0..theirs.events.len()))
            .and_then(|()| self.check_runs_kept(&theirs, true))
            .and_then(|()| self.check_versions(&theirs, trust.signed))
            .and_then(|()| {
                // A sealed run is sent whole, so a burst that wrote keys of
                // several leaves brings events of other leaves; only the
                // leaf's own may be live.
                let foreign = theirs
                    .events
                    .iter()
                    .zip(&theirs.live)
                    .find(|(e, live)| **live && digest::leaf_of(&e.key) != leaf);
                match foreign {
                    Some((e, _)) => Err(SnapshotError::Malformed(format!(
                        "live event {} is not of Merkle leaf {leaf}",
                        e.id
                    ))),
                    None => Ok(()),
                }
            });
        if let Err(e) = checked {
            self.count_refused(&e);
            return Err(e);
        }
        self.observe_times(&theirs);
        // Our own copy is the other half of the evidence; the join is the
        // same on both sides, so the two leaves end alike. Entities of the
        // leaf only: the other leaves' events are their runs' evidence, not
        // state to join.
        let ours = self.leaf_state(leaf);
        for (key, entity) in ours.join_with(&theirs, |key| digest::leaf_of(key) == leaf) {
            self.set_entity(key, entity);
        }
        // Not noted: under equal clocks every event of the copy is within
        // our clock, and one we never applied may be a version its signer
        // re-signed (docs/DECISIONS.md, "What superseded a value travels
        // with it").
        self.archive.insert(theirs.events);
        Ok(true)
    }

    /// The stamp of our own last write among a loaded snapshot's events
    /// (a restart's: our writes folded before it), for
    /// [`stamps_ahead`](Self::stamps_ahead); a review found writes folded
    /// while the clock was ahead were told of only at the next write.
    fn note_own_stamps(&mut self, snapshot: &StateSnapshot) {
        let me = self.peer;
        let own = snapshot.events.iter().filter(|e| e.id.peer == me);
        if let Some(latest) = own.map(|e| e.hlc.millis()).max() {
            self.own_stamp = self.own_stamp.max(latest);
        }
    }

    /// Moves the local clock past every timestamp of a loaded snapshot or
    /// leaf: one pass over its events rather than one walk per entity.
    fn observe_times(&mut self, snapshot: &StateSnapshot) {
        if let Some(latest) = snapshot.events.iter().map(|e| e.hlc).max() {
            self.clock.observe(latest);
        }
    }

    /// Puts `entity` in the place of `key`'s, if it differs.
    fn set_entity(&mut self, key: Text, entity: Entity) {
        let index = match self.entities.find(&key) {
            Some(index) => {
                let slot = self.entities.at(index);
                if slot.entity == entity {
                    return;
                }
                slot.entity = entity;
                index
            }
            None => self
                .entities
                .insert_new(Slot::new(key.clone(), entity, None)),
        };
        self.note_joined(index, &key);
    }

    /// The books learn of the entity at `index` (`key`'s), changed by a
    /// join; room state, the room's policies too.
    pub(super) fn note_joined(&mut self, index: u32, key: &str) {
        self.books.touch(index, self.entities.at(index));
        if is_reserved(key) {
            self.refresh_room_policy(key);
        }
    }

    /// Joins a snapshot's entity for `key` into ours by the version-vector
    /// rule: the dots of ours the join dropped.
    fn join_entity(
        &mut self,
        key: &Text,
        entity: &Entity,
        ours: &VectorClock,
        theirs: &VectorClock,
    ) -> Vec<EventId> {
        let (index, dropped) = match self.entities.find(key) {
            Some(index) => {
                let mine = &mut self.entities.at(index).entity;
                let (mut before, mut after) = (Vec::new(), Vec::new());
                mine.for_each_dot(|dot| before.push(dot));
                mine.merge(entity, ours, theirs);
                mine.for_each_dot(|dot| after.push(dot));
                (index, Self::dropped(&before, after))
            }
            None => {
                let mut fresh = Entity::empty();
                fresh.merge(entity, ours, theirs);
                if fresh.is_empty() {
                    return Vec::new();
                }
                let index = self
                    .entities
                    .insert_new(Slot::new(key.clone(), fresh, None));
                (index, Vec::new())
            }
        };
        self.note_joined(index, key);
        dropped
    }

    /// Folds the archive and the runs leaving the log (`folded`) down to
    /// what the state rests on, after a compaction; returns what that is.
    pub(super) fn keep_evidence(&mut self, folded: Vec<Vec<P2PEvent>>) -> Needed {
        self.note_unlogged(&folded);
        let needed = self.needed_whole();
        let wanted = &needed;
        self.archive.insert_pieces(folded);
        // Runs come in order of their first id, so one cursor walks `wanted`.
        let mut at = 0;
        self.archive.retain(|run| {
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                return false;
            };
            at = wanted.seek(at, first.id);
            wanted.get(at).is_some_and(|(w, _)| w <= last.id)
        });
        needed
    }

    /// A new engine with a snapshot's state (from our own storage).
    pub fn from_snapshot(
        peer: PeerId,
        config: super::EngineConfig,
        snapshot: StateSnapshot,
    ) -> Result<Self, SnapshotError> {
        let mut engine = ReconciliationEngine::new(peer, config);
        engine.load_snapshot(snapshot, Trust::OWN)?;
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::engine::EngineConfig;
    use crate::protocol::testing::{workload, Rng};

    /// A fold that encodes its snapshot writes the bytes a fold and then
    /// an encode do (it only skips the second walk over the dots).
    #[test]
    fn compact_encoded_is_compact_then_encode() {
        let events = workload::rounds(3_000, 5, 300, 4, 11);
        let engine = || {
            let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
            for event in events.clone() {
                engine.receive(event, 1 << 40).expect("taken");
            }
            engine
        };
        let (mut a, mut b) = (engine(), engine());
        // Half of each origin first, then the rest.
        let half: VectorClock = a.clock().iter().map(|(p, n)| (p, n / 2)).collect();
        for stable in [half, a.clock().clone()] {
            let bytes = a.compact_encoded(&stable).expect("some events fold");
            assert!(b.compact(&stable) > 0);
            assert_eq!(bytes, b.encode_snapshot());
        }
        assert_eq!(
            a.compact_encoded(&a.clock().clone()),
            None,
            "nothing left to fold"
        );
    }

    /// A leaf answer in a signed room where a burst sealed as one run
    /// wrote keys of several leaves: the runs come whole, the other
    /// leaves' events as evidence, not live. It is taken, and the keys of
    /// other leaves are left as they were (rebuilt from evidence alone,
    /// they would join as empty and vanish). (A helper's review found
    /// honest answers refused as lies.)
    #[test]
    fn a_leaf_of_a_run_across_leaves_is_taken_and_joins_that_leaf_only() {
        use crate::protocol::seal;
        let now = 1 << 40;
        let (writer, mut runs) = workload::runs_to_seal(16, 1);
        seal::seal(&writer, &mut runs[0]);
        let engine = || {
            let mut e = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
            workload::apply_verified(&mut e, runs[0].clone(), now);
            e
        };
        let (mut a, mut b) = (engine(), engine());
        let leaf = digest::leaf_of("key1");
        assert!(runs[0].iter().any(|e| digest::leaf_of(&e.key) != leaf));
        let trust = Trust {
            signed: true,
            now_ms: Some(now),
        };
        let answer = a.leaf_state(leaf);
        assert_eq!(answer.events.len(), 16, "the run whole");
        let state = StateSnapshot::decode(&answer.encode()).expect("decodes");
        assert_eq!(b.join_leaf(leaf, state, trust), Ok(true));
        assert_eq!(b.state(), a.state());
        assert_eq!(b.entities.len(), 16);

        // A live event of another leaf is a lie: refused, nothing joined.
        let mut lying = answer;
        let other = lying
            .events
            .iter()
            .position(|e| digest::leaf_of(&e.key) != leaf)
            .expect("another leaf's event");
        lying.live[other] = true;
        let refused = b.join_leaf(leaf, lying, trust);
        assert!(
            matches!(&refused, Err(SnapshotError::Malformed(m)) if m.contains("not of Merkle leaf")),
            "{refused:?}"
        );
        assert_eq!(b.state(), a.state());
    }

    /// Every dot of `leaf`'s keys, sorted.
    fn leaf_dots(engine: &mut ReconciliationEngine, leaf: u16) -> Vec<EventId> {
        engine.digest();
        let mut dots = Vec::new();
        for (key, _) in engine.digest.leaf(leaf) {
            if let Some(slot) = engine.entities.get(key) {
                slot.entity.for_each_dot(|dot| dots.push(dot));
            }
        }
        dots.sort();
        dots
    }

    /// Leaf repair joins by evidence. An honest copy changes nothing; a
    /// copy with live marks cleared or set at random, and old events of
    /// the leaf's keys added as live, takes no dot from us (none of its
    /// events supersedes one we hold); and two peers that then swap copies
    /// of the leaf end alike, as the join is the same from either side.
    /// Folded or not (folded, the copies hold only the runs the state
    /// rests on). (Not checked: that no old value comes back. One whose
    /// superseders neither copy carries does: docs/DECISIONS.md, "What
    /// superseded a value travels with it".)
    #[test]
    fn a_leaf_joined_by_evidence_keeps_what_we_hold_and_converges() {
        use crate::protocol::testing::seeds;
        let name = "a_leaf_joined_by_evidence_keeps_what_we_hold_and_converges";
        for seed in seeds(name, "CPC_LEAF_JOIN_SEEDS", 40) {
            let mut rng = Rng::new(seed);
            let events = workload::rounds(300, 3, 10, 2, seed);
            let folded = seed % 2 == 1;
            let engine = || {
                let mut engine = ReconciliationEngine::new(PeerId(9), EngineConfig::default());
                for event in events.clone() {
                    engine.receive(event, 1 << 40).expect("taken");
                }
                if folded {
                    engine.compact(&engine.clock().clone());
                }
                engine
            };
            let (mut a, mut b) = (engine(), engine());
            let leaf = digest::leaf_of(&events[rng.below(events.len())].key);
            let honest = a.leaf_state(leaf);
            let root = a.digest();
            assert_eq!(a.join_leaf(leaf, honest.clone(), Trust::OWN), Ok(true));
            assert_eq!(a.digest(), root, "seed {seed}: an honest copy changed a");

            let mut lie = honest;
            for (event, live) in lie.events.iter().zip(lie.live.iter_mut()) {
                if digest::leaf_of(&event.key) == leaf && rng.below(3) == 0 {
                    *live = !*live;
                }
            }
            // Old events of the leaf's keys the copy did not carry, marked
            // live: what a member that kept them can send.
            for event in &events {
                let carried = lie.events.iter().any(|e| e.id == event.id);
                if !carried && digest::leaf_of(&event.key) == leaf && rng.below(2) == 0 {
                    let at = lie.events.partition_point(|e| e.id < event.id);
                    lie.events.insert(at, event.clone());
                    lie.live.insert(at, true);
                }
            }
            let held = leaf_dots(&mut b, leaf);
            assert_eq!(b.join_leaf(leaf, lie, Trust::OWN), Ok(true));
            let after = leaf_dots(&mut b, leaf);
            assert!(
                held.iter().all(|dot| after.binary_search(dot).is_ok()),
                "seed {seed}: the lie took dots from b: {held:?} -> {after:?}"
            );

            let (from_a, from_b) = (a.leaf_state(leaf), b.leaf_state(leaf));
            assert_eq!(a.join_leaf(leaf, from_b, Trust::OWN), Ok(true));
            assert_eq!(b.join_leaf(leaf, from_a, Trust::OWN), Ok(true));
            assert_eq!(a.digest(), b.digest(), "seed {seed}: a and b differ");
            assert_eq!(a.state(), b.state(), "seed {seed}");
        }
    }

    /// A snapshot raising an origin's entry that leaves out keys that
    /// origin wrote before (b's writes 1..=10 are in our log; the
    /// snapshot holds only b's run 11..=12): the state we keep is the
    /// state our own stored snapshot restores. The log's events of b were
    /// dropped, and with them the evidence of keys still shown. (A
    /// helper's review.)
    #[test]
    fn what_we_show_after_a_load_is_what_we_store() {
        use crate::protocol::seal;
        let now = 1 << 40;
        let (bob, runs) = workload::runs_to_seal(12, 1);
        let mut before = runs[0][..10].to_vec();
        seal::seal(&bob, &mut before);
        let mut after = runs[0][10..].to_vec();
        seal::seal(&bob, &mut after);
        let mut victim = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
        workload::apply_verified(&mut victim, before, now);
        let snapshot = StateSnapshot {
            version_vector: [(bob.peer(), 12)].into_iter().collect(),
            live: vec![true; after.len()],
            events: after,
        };
        let signed = Trust {
            signed: true,
            now_ms: Some(now),
        };
        victim.load_snapshot(snapshot, signed).expect("verifies");
        assert_eq!(victim.entities.len(), 12);
        let stored = StateSnapshot::decode(&victim.encode_snapshot()).expect("decodes");
        let restored =
            ReconciliationEngine::from_snapshot(PeerId(2), EngineConfig::default(), stored)
                .expect("our own");
        assert_eq!(restored.state(), victim.state());
    }

    /// Ids at the edges of an origin's places and of a bitmap word are
    /// marked where they belong; ids outside the clock are not marked.
    #[test]
    fn the_bitmap_marks_the_clock_s_ids_and_no_others() {
        let (a, b, c) = (PeerId(1), PeerId(2), PeerId(3));
        // 31 ids of `a` (its last the word's second last place), 1 of
        // `b` (the word's last), 40 of `c` (across the next word).
        let clock: VectorClock = [(a, 31), (b, 1), (c, 40)].into_iter().collect();
        let mut dense = Dense::new(&clock, 3).expect("three words");
        assert!(Dense::new(&clock, 2).is_none(), "72 ids take three words");
        for (peer, seq, live) in [(a, 1, true), (a, 31, false), (b, 1, true), (c, 1, false)] {
            assert_eq!(dense.mark(EventId::new(peer, seq), live), Some(()));
        }
        assert_eq!(dense.mark(EventId::new(c, 40), true), Some(()));
        // Marked twice: live if either is.
        assert_eq!(dense.mark(EventId::new(a, 31), true), Some(()));
        for outside in [
            EventId::new(a, 0),
            EventId::new(a, 32),
            EventId::new(b, 2),
            EventId::new(c, 41),
            EventId::new(PeerId(4), 1),
        ] {
            assert_eq!(dense.mark(outside, true), None, "{outside}");
        }
        let marked = dense.into_needed().to_vec();
        let id = EventId::new;
        assert_eq!(
            marked,
            [
                (id(a, 1), true),
                (id(a, 31), true),
                (id(b, 1), true),
                (id(c, 1), false),
                (id(c, 40), true)
            ]
        );
    }

    #[test]
    fn packed_ids_sort_and_merge_as_the_pairs_do() {
        let seed = Rng::from_env("packed_ids_sort_and_merge_as_the_pairs_do").next_u64();
        // Keys written many times, and keys written once (whose first
        // operation is their live dot, pushed once when packed).
        for (events, keys) in [(3_000, 400), (2_000, 2_000)] {
            let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
            for event in workload::rounds(events, 7, keys, 5, seed) {
                engine.receive(event, 1 << 40).expect("taken");
            }
            let superseders = engine.superseders();
            // Overwrites are superseders; first writes are not.
            assert_eq!(superseders.is_empty(), keys as usize == events);
            for heads in [false, true] {
                let slots = || engine.entities.values();
                let packed = engine
                    .needed_packed(slots(), heads, &superseders, 0)
                    .expect("packs");
                let pairs = engine.needed_pairs(slots(), heads, &superseders, 0);
                assert!(matches!(packed, Needed::Packed { .. }));
                assert!(packed.to_vec().iter().any(|(_, live)| *live));
                assert_eq!(packed.to_vec(), pairs.to_vec(), "seed {seed}, {keys} keys");
                if heads {
                    let dense = engine
                        .needed_dense(events, &superseders)
                        .expect("a bitmap of the ids");
                    assert_eq!(dense.to_vec(), pairs.to_vec(), "seed {seed}, {keys} keys");
                    assert!(
                        engine.needed_dense(0, &superseders).is_none(),
                        "no bitmap larger than the words"
                    );
                }
            }
        }
        let events = workload::rounds(3_000, 7, 400, 5, seed);
        let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
        for event in events {
            engine.receive(event, 1 << 40).expect("taken");
        }
        let slots = || engine.entities.values();
        let packed = engine.needed_packed(slots(), true, &[], 0).expect("packs");
        assert!(packed.to_vec().iter().any(|(_, live)| !live));
        // An origin outside the clock does not pack.
        let mut packed = Packed::new(&engine.applied).expect("few origins");
        assert_eq!(packed.pack(EventId::new(PeerId(u64::MAX), 1), true), None);
        let origin = engine.applied.iter().next().expect("an origin").0;
        assert_eq!(packed.pack(EventId::new(origin, 1 << 47), true), None);
        let word = packed.pack(EventId::new(origin, (1 << 47) - 1), true);
        assert_eq!(
            word.map(|w| Packed::unpack(&packed.peers, w)),
            Some((EventId::new(origin, (1 << 47) - 1), true))
        );
    }
}
