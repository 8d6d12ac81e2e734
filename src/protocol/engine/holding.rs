use hashbrown::hash_map::Entry;
use hashbrown::{HashMap, HashSet};

use foldhash::fast::FixedState;

use crate::protocol::clock::PeerId;
use crate::protocol::error::ReceiveError;
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;

/// Events received before their dependencies.
///
/// An origin's events apply in sequence order, so of each origin only its
/// *next* event (the first it lacks) can be ready. A later one waits for
/// its predecessor, found by id once that applies: it is held, and no more
/// (most held events, when a dropped message holds up a stream). The
/// origin's next event, when its dependencies are missing, parks its
/// origin under the one event it waits for, and applying that event wakes
/// exactly the origins parked under it: no rescans.
///
/// Its tables are keyed by ids a peer chooses (the dependency it names,
/// its own far-ahead sequence numbers), so they hash with the engine's
/// random seed ([`crate::protocol::hashing`]).
#[derive(Debug)]
pub struct HoldingQueue {
    /// Every held event, by id.
    events: HashMap<EventId, P2PEvent, FixedState>,
    /// Origins whose next event is held and waits for another event, by
    /// that event. An origin is parked under one event at most.
    waiting: HashMap<EventId, Parked, FixedState>,
    /// Held events per origin and their bytes ([`Share`]): one origin
    /// cannot fill the queue. Packed in a `u64`: the map is then of the
    /// type other tables of peers are (one instance of the hash table's
    /// code in the wasm), and one probe finds both.
    per_origin: HashMap<PeerId, u64, FixedState>,
    /// The held events' bytes, by [`P2PEvent::approx_size`].
    bytes: usize,
    /// The held origins of which nothing is applied yet: with the applied
    /// ones, the origins the engine knows (`max_origins`), each once.
    unapplied: HashSet<PeerId, FixedState>,
    /// Sealed runs held whole, by their first event: the seq of their
    /// last, and of the last found ready (as if those before it were
    /// applied: what is applied only grows, so it stays ready). None of
    /// such a run applies until all of it can ([`run_end`](Self::run_end));
    /// an unsigned room has none.
    runs: HashMap<EventId, (u64, u64), FixedState>,
    /// What held runs (by their first event: a lone event's is itself)
    /// cannot be applied without: facts found as they were held, woken or
    /// tried together, kept so that a try through them stops at once
    /// ([`ReconciliationEngine::release_together`](super::ReconciliationEngine)).
    /// Where a try of held runs together stopped for an event neither
    /// applied nor held: the runs or events it was tried from, by that
    /// event, to try again when it is applied. (Parking them there would
    /// not do: a lone event woken checks only what it was parked under.)
    retry: HashMap<EventId, Parked, FixedState>,
    /// Packed ([`Need::pack`]): a table of the type of `runs`, one
    /// instance of the hash table's code in the wasm.
    needs: HashMap<EventId, (u64, u64), FixedState>,
    capacity: usize,
    origin_capacity: usize,
    byte_capacity: usize,
    origin_byte_capacity: usize,
}

/// One origin's share of the queue, as [`HoldingQueue`]'s `per_origin`
/// keeps it: its held events in the low half of a word, their bytes in
/// the high half. The per-origin capacities are held under a half's
/// range ([`Share::clamp`]), so neither half can overflow into the other.
#[derive(Clone, Copy)]
struct Share(u64);

impl Share {
    const MAX: u64 = u32::MAX as u64;

    /// `capacity`, held within a half's range.
    fn clamp(capacity: usize) -> usize {
        (capacity as u64).min(Share::MAX) as usize
    }

    fn events(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    fn bytes(self) -> usize {
        (self.0 >> 32) as usize
    }

    /// With one more event of `bytes` (or one fewer).
    fn plus(self, bytes: usize) -> u64 {
        self.0 + 1 + ((bytes as u64) << 32)
    }

    fn minus(self, bytes: usize) -> u64 {
        self.0 - 1 - ((bytes as u64) << 32)
    }
}

/// What a held run cannot be applied without. A fact once found: an
/// event it needs stays needed until it is applied; a run waiting on
/// itself waits until a snapshot brings what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This event, not applied when noted: one of the run's dependencies,
    /// or one that a run it needs cannot be applied without.
    Event(EventId),
    /// Its events wait, through held events, on themselves (or on such
    /// events): no order of events applies them ([`EngineStats::circular`](super::EngineStats)).
    Never,
}

impl Need {
    /// As a pair of words: an event's peer and seq, or two `u64::MAX`
    /// (no event has that seq: a sequence number is a count of events).
    fn pack(self) -> (u64, u64) {
        match self {
            Need::Event(id) => (id.peer.0, id.seq),
            Need::Never => (u64::MAX, u64::MAX),
        }
    }

    fn unpack((peer, seq): (u64, u64)) -> Need {
        if seq == u64::MAX {
            Need::Never
        } else {
            Need::Event(EventId::new(PeerId(peer), seq))
        }
    }
}

/// The held events parked under an event, each its origin's next when it
/// was parked. Usually one waits for a given event, so the common case
/// needs no allocation of its own.
#[derive(Debug)]
pub enum Parked {
    One(EventId),
    Many(Vec<EventId>),
}

impl Parked {
    fn push(&mut self, parked: EventId) {
        match self {
            Parked::Many(v) => v.push(parked),
            Parked::One(first) => *self = Parked::Many(vec![*first, parked]),
        }
    }

    /// The parked events.
    pub fn events(&self) -> &[EventId] {
        match self {
            Parked::One(parked) => std::slice::from_ref(parked),
            Parked::Many(v) => v,
        }
    }
}

impl HoldingQueue {
    /// A queue of at most `capacity` events, `origin_capacity` of one
    /// origin, and `(bytes, per origin)` bytes of events by
    /// [`P2PEvent::approx_size`].
    pub fn new(
        capacity: usize,
        origin_capacity: usize,
        (byte_capacity, origin_byte_capacity): (usize, usize),
        hash_seed: u64,
    ) -> Self {
        let state = || FixedState::with_seed(hash_seed);
        HoldingQueue {
            events: HashMap::with_hasher(state()),
            waiting: HashMap::with_hasher(state()),
            per_origin: HashMap::with_hasher(state()),
            bytes: 0,
            unapplied: HashSet::with_hasher(state()),
            runs: HashMap::with_hasher(state()),
            needs: HashMap::with_hasher(state()),
            retry: HashMap::with_hasher(state()),
            capacity: 0,
            origin_capacity: 0,
            byte_capacity: 0,
            origin_byte_capacity: 0,
        }
        .bounded(
            capacity,
            origin_capacity,
            (byte_capacity, origin_byte_capacity),
        )
    }

    /// With these bounds from now on (what it holds stays held).
    pub fn bounded(
        mut self,
        capacity: usize,
        origin_capacity: usize,
        (byte_capacity, origin_byte_capacity): (usize, usize),
    ) -> Self {
        self.capacity = capacity;
        self.origin_capacity = Share::clamp(origin_capacity);
        self.byte_capacity = byte_capacity;
        self.origin_byte_capacity = Share::clamp(origin_byte_capacity);
        self
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The held events' bytes, by [`P2PEvent::approx_size`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What `origin` holds: its events and their bytes.
    fn share(&self, origin: PeerId) -> Share {
        Share(self.per_origin.get(&origin).copied().unwrap_or(0))
    }

    /// Whether some held event is from `origin`.
    pub fn holds_origin(&self, origin: PeerId) -> bool {
        self.per_origin.contains_key(&origin)
    }

    /// Distinct origins of held events.
    pub fn origins(&self) -> usize {
        self.per_origin.len()
    }

    /// Distinct origins of held events of which nothing is applied.
    pub fn unapplied_origins(&self) -> usize {
        self.unapplied.len()
    }

    /// The engine applied the first event of `origin`.
    pub fn origin_applied(&mut self, origin: PeerId) {
        if !self.unapplied.is_empty() {
            self.unapplied.remove(&origin);
        }
    }

    pub fn contains(&self, id: EventId) -> bool {
        !self.events.is_empty() && self.events.contains_key(&id)
    }

    /// A held event.
    pub fn get(&self, id: EventId) -> Option<&P2PEvent> {
        if self.events.is_empty() {
            return None;
        }
        self.events.get(&id)
    }

    /// Whether `count` more events of `origin`, of `bytes` together, fit,
    /// as [`hold`](Self::hold) would take them one by one; the error is the
    /// one it would give.
    pub fn room_for(&self, id: EventId, count: usize, bytes: usize) -> Result<(), ReceiveError> {
        let full = |capacity| ReceiveError::HoldingQueueFull { id, capacity };
        let share = self.share(id.peer);
        if self.events.len() + count > self.capacity {
            return Err(full(self.capacity));
        }
        if share.events() + count > self.origin_capacity {
            return Err(full(self.origin_capacity));
        }
        self.bytes_for(id, share, bytes)
    }

    /// Whether `bytes` more of `id`'s origin (holding `share`) fit.
    fn bytes_for(&self, id: EventId, share: Share, bytes: usize) -> Result<(), ReceiveError> {
        let full = |capacity| ReceiveError::HoldingQueueBytes { id, capacity };
        if self.bytes.saturating_add(bytes) > self.byte_capacity {
            return Err(full(self.byte_capacity));
        }
        if share.bytes().saturating_add(bytes) > self.origin_byte_capacity {
            return Err(full(self.origin_byte_capacity));
        }
        Ok(())
    }

    /// Holds an event. `waits_for`: for its origin's next event, the event
    /// it waits for (its origin is parked under it); `None` for a later
    /// one, which waits for its predecessor.
    ///
    /// At capacity (of events or of bytes, in all or of its origin) a new
    /// event is refused, never an old one dropped: what the queue holds
    /// stays, and anti-entropy offers the refused event again once its
    /// dependencies are in.
    /// `origin_applied`: some event of the event's origin is applied.
    pub fn hold(
        &mut self,
        event: P2PEvent,
        waits_for: Option<EventId>,
        origin_applied: bool,
    ) -> Result<(), ReceiveError> {
        if self.events.len() >= self.capacity {
            return Err(ReceiveError::HoldingQueueFull {
                id: event.id,
                capacity: self.capacity,
            });
        }
        let share = self.share(event.id.peer);
        if share.events() >= self.origin_capacity {
            return Err(ReceiveError::HoldingQueueFull {
                id: event.id,
                capacity: self.origin_capacity,
            });
        }
        let bytes = event.approx_size();
        self.bytes_for(event.id, share, bytes)?;
        self.put(event, bytes, waits_for, origin_applied);
        Ok(())
    }

    /// Holds an event without the capacity checks: one held before (it
    /// was counted), put back after a drain. `waits_for` as for
    /// [`hold`](Self::hold).
    pub fn rehold(&mut self, event: P2PEvent, waits_for: Option<EventId>, origin_applied: bool) {
        let bytes = event.approx_size();
        self.put(event, bytes, waits_for, origin_applied);
    }

    /// Holds `event`, of `bytes`, counted in its origin's share.
    fn put(
        &mut self,
        event: P2PEvent,
        bytes: usize,
        waits_for: Option<EventId>,
        origin_applied: bool,
    ) {
        let origin = event.id.peer;
        let share = self.per_origin.entry(origin).or_default();
        *share = Share(*share).plus(bytes);
        self.bytes += bytes;
        if !origin_applied {
            self.unapplied.insert(origin);
        }
        let id = event.id;
        self.events.insert(id, event);
        if let Some(waits_for) = waits_for {
            self.park(id, waits_for);
        }
    }

    /// Notes that the events `first..=last` of `first`'s origin, held,
    /// are one sealed run, to be applied together or not at all.
    pub fn hold_run(&mut self, first: EventId, last: u64) {
        self.runs.insert(first, (last, first.seq - 1));
    }

    /// The run held whole that begins at `id`: the seq of its last event,
    /// and of the last found ready.
    pub fn run_end(&self, id: EventId) -> Option<(u64, u64)> {
        if self.runs.is_empty() {
            return None;
        }
        self.runs.get(&id).copied()
    }

    /// Whether some run is held whole.
    pub fn has_runs(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Notes that the run held whole from `first` is ready up to `seq`.
    pub fn run_ready_to(&mut self, first: EventId, seq: u64) {
        if let Some(run) = self.runs.get_mut(&first) {
            run.1 = run.1.max(seq);
        }
    }

    /// Forgets the runs whose first event is no longer held (applied, or
    /// dropped from a drained queue).
    pub fn forget_runs(&mut self) {
        if !self.runs.is_empty() {
            let events = &self.events;
            self.runs.retain(|first, _| events.contains_key(first));
        }
    }

    /// Notes that a try of held runs together from `start` stopped for
    /// `lacking`, neither applied nor held: to be tried again once it is.
    pub fn retry_on(&mut self, lacking: EventId, start: EventId) {
        park_in(&mut self.retry, start, lacking);
    }

    /// The starts of tries that stopped for `id`, just applied.
    pub fn retries(&mut self, id: EventId) -> Option<Parked> {
        if self.retry.is_empty() {
            return None;
        }
        self.retry.remove(&id)
    }

    /// Notes what the held run from `first` cannot be applied without.
    pub fn note_need(&mut self, first: EventId, need: Need) {
        self.needs.insert(first, need.pack());
    }

    /// What the held run from `first` was found to need, if anything.
    pub fn need(&self, first: EventId) -> Option<Need> {
        if self.needs.is_empty() {
            return None;
        }
        self.needs.get(&first).copied().map(Need::unpack)
    }

    /// Forgets what the held run from `first` was found to need (it was
    /// applied meanwhile: no longer a reason).
    pub fn forget_need(&mut self, first: EventId) {
        self.needs.remove(&first);
    }

    /// The first event of the held run that holds `id`, a held event: the
    /// first its seal covers, found at the run's last (at most
    /// [`MAX_RUN`](crate::protocol::seal::MAX_RUN) events on). `id` itself
    /// where no seal is found (an unsigned room's lone event).
    pub fn run_of(&self, id: EventId) -> EventId {
        if !self.runs.is_empty() && self.runs.contains_key(&id) {
            return id;
        }
        let mut at = id;
        while let Some(event) = self.get(at) {
            if let Some(seal) = &event.seal {
                return EventId::new(id.peer, seal.first.min(id.seq));
            }
            if at.seq - id.seq >= crate::protocol::seal::MAX_RUN as u64 {
                break;
            }
            at = EventId::new(id.peer, at.seq + 1);
        }
        id
    }

    /// Parks the held event `parked`, its origin's next, under the event
    /// it waits for. Applied otherwise meanwhile (held runs applied
    /// together), it is left parked: the engine skips it when woken.
    pub fn park(&mut self, parked: EventId, waits_for: EventId) {
        park_in(&mut self.waiting, parked, waits_for);
    }

    /// The origins parked under `id`, unparked (it was just applied).
    pub fn woken(&mut self, id: EventId) -> Option<Parked> {
        if self.waiting.is_empty() {
            return None;
        }
        self.waiting.remove(&id)
    }

    /// Removes the held event `id` to apply it, if `missing` finds nothing
    /// it waits for; if it names an event, parks `id`'s origin under it
    /// and keeps the event. Nothing when `id` is not held.
    ///
    /// One probe of the table for the look and the removal (a look and a
    /// take were two, for every event woken).
    pub fn release_if(
        &mut self,
        id: EventId,
        missing: impl FnOnce(&P2PEvent) -> Option<EventId>,
    ) -> Option<P2PEvent> {
        if self.events.is_empty() {
            return None;
        }
        let Entry::Occupied(held) = self.events.entry(id) else {
            return None;
        };
        if let Some(waits_for) = missing(held.get()) {
            park_in(&mut self.waiting, id, waits_for);
            return None;
        }
        let event = held.remove();
        if !self.runs.is_empty() {
            self.runs.remove(&id);
        }
        if !self.needs.is_empty() {
            self.needs.remove(&id);
        }
        let bytes = event.approx_size();
        self.bytes -= bytes;
        if let Some(share) = self.per_origin.get_mut(&id.peer) {
            *share = Share(*share).minus(bytes);
            if Share(*share).events() == 0 {
                self.per_origin.remove(&id.peer);
                self.unapplied.remove(&id.peer);
            }
        }
        Some(event)
    }

    /// Everything held, removed, in `(origin, seq)` order. The runs held
    /// whole stay noted, for the events put back
    /// ([`forget_runs`](Self::forget_runs) once they are).
    pub fn drain(&mut self) -> Vec<P2PEvent> {
        self.waiting.clear();
        // Facts of what is held: a snapshot may bring what they name.
        self.needs.clear();
        self.retry.clear();
        self.per_origin.clear();
        self.bytes = 0;
        self.unapplied.clear();
        let mut all: Vec<P2PEvent> = self.events.drain().map(|(_, e)| e).collect();
        key_sort::sort_by_key(&mut all, |e| key_sort::id_key(e.id));
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = &P2PEvent> {
        self.events.values()
    }
}

/// Parks `origin` in `waiting` under `waits_for` (a field of its own,
/// so it can be done while a held event is borrowed).
pub(super) fn park_in(
    waiting: &mut HashMap<EventId, Parked, FixedState>,
    parked: EventId,
    waits_for: EventId,
) {
    match waiting.entry(waits_for) {
        Entry::Occupied(mut o) => o.get_mut().push(parked),
        Entry::Vacant(v) => {
            v.insert(Parked::One(parked));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::protocol::event::sample;

    /// Held events' bytes are bounded in all and by origin, beside their
    /// counts, and given back as they are released (or drained).
    #[test]
    fn held_bytes_are_bounded_and_given_back() {
        let value = format!("\"{}\"", "x".repeat(1_000));
        let event = |origin: u64, seq: u64| sample(PeerId(origin), seq, &value);
        let size = event(1, 2).approx_size();
        let mut queue = HoldingQueue::new(100, 100, (5 * size, 3 * size), 7);
        for seq in 2..=4 {
            assert!(queue.hold(event(1, seq), None, false).is_ok());
        }
        let refused = queue.hold(event(1, 5), None, false);
        assert!(matches!(
            refused,
            Err(ReceiveError::HoldingQueueBytes { capacity, .. }) if capacity == 3 * size
        ));
        assert!(queue
            .room_for(EventId::new(PeerId(2), 2), 2, 2 * size)
            .is_ok());
        for seq in 2..=3 {
            assert!(queue.hold(event(2, seq), None, false).is_ok());
        }
        assert_eq!(queue.bytes(), 5 * size);
        let refused = queue.hold(event(3, 2), None, false);
        assert!(matches!(
            refused,
            Err(ReceiveError::HoldingQueueBytes { capacity, .. }) if capacity == 5 * size
        ));
        assert!(queue
            .release_if(EventId::new(PeerId(1), 2), |_| None)
            .is_some());
        assert_eq!(queue.bytes(), 4 * size);
        assert!(queue.hold(event(3, 2), None, false).is_ok());
        assert_eq!(queue.drain().len(), 5);
        assert_eq!(queue.bytes(), 0);
    }

    /// The attack: a lying peer searches out ids that share one bucket
    /// under a seed anyone can read (foldhash's fixed default), then
    /// sends events that wait for them, so each insert into the queue
    /// walks all the others. Under the queue's own seed those ids spread.
    #[test]
    fn ids_ground_against_a_public_seed_spread_under_the_queues() {
        let bucket = |hash: u64| hash & 0xfff;
        let public = FixedState::default();
        let target = bucket(public.hash_one(EventId::new(PeerId(7), 1)));
        let ground: Vec<EventId> = (1..)
            .map(|seq| EventId::new(PeerId(7), seq))
            .filter(|id| bucket(public.hash_one(id)) == target)
            .take(200)
            .collect();
        let queue = HoldingQueue::new(1_000, 1_000, (1 << 20, 1 << 20), 0x1234_5678_9abc_def0);
        let mut counts: std::collections::HashMap<u64, usize> = Default::default();
        for id in &ground {
            *counts
                .entry(bucket(queue.events.hasher().hash_one(id)))
                .or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        // 200 ids over 4,096 buckets: a few share one by chance.
        assert!(most <= 8, "{most} of the ground ids share a bucket");
    }
}
