use std::collections::{HashMap, HashSet};

use foldhash::fast::FixedState;

use crate::protocol::clock::PeerId;
use crate::protocol::error::ReceiveError;
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;

/// Events received before their dependencies, each parked under the one
/// event it waits for. Applying that event wakes exactly its waiters: no
/// rescans.
///
/// Its tables are keyed by ids a peer chooses (the dependency it names,
/// its own far-ahead sequence numbers), so they hash with the engine's
/// random seed ([`crate::protocol::hashing`]).
#[derive(Debug)]
pub struct HoldingQueue {
    waiting: HashMap<EventId, Waiters, FixedState>,
    held: HashSet<EventId, FixedState>,
    /// Held events per origin: one origin cannot fill the queue.
    per_origin: HashMap<PeerId, usize, FixedState>,
    /// The held origins of which nothing is applied yet: with the applied
    /// ones, the origins the engine knows (`max_origins`), each once.
    unapplied: HashSet<PeerId, FixedState>,
    capacity: usize,
    origin_capacity: usize,
}

/// Usually one event waits for a given event (its origin's successor), so
/// the common case needs no allocation of its own.
#[derive(Debug)]
enum Waiters {
    One(P2PEvent),
    Many(Vec<P2PEvent>),
}

impl Waiters {
    fn push(&mut self, event: P2PEvent) {
        match self {
            Waiters::Many(v) => v.push(event),
            Waiters::One(_) => {
                let Waiters::One(first) =
                    std::mem::replace(self, Waiters::Many(Vec::with_capacity(2)))
                else {
                    return;
                };
                if let Waiters::Many(v) = self {
                    v.push(first);
                    v.push(event);
                }
            }
        }
    }

    fn into_vec(self) -> Vec<P2PEvent> {
        match self {
            Waiters::One(e) => vec![e],
            Waiters::Many(v) => v,
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, P2PEvent> {
        match self {
            Waiters::One(e) => std::slice::from_ref(e).iter(),
            Waiters::Many(v) => v.iter(),
        }
    }
}

impl HoldingQueue {
    pub fn new(capacity: usize, origin_capacity: usize, hash_seed: u64) -> Self {
        let state = || FixedState::with_seed(hash_seed);
        HoldingQueue {
            waiting: HashMap::with_hasher(state()),
            held: HashSet::with_hasher(state()),
            per_origin: HashMap::with_hasher(state()),
            unapplied: HashSet::with_hasher(state()),
            capacity,
            origin_capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
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
        self.held.contains(&id)
    }

    /// At capacity a new event is refused, never an old one dropped: what the
    /// queue holds stays, and anti-entropy offers the refused event again
    /// once its dependencies are in.
    /// `origin_applied`: some event of the event's origin is applied.
    pub fn hold(
        &mut self,
        event: P2PEvent,
        waits_for: EventId,
        origin_applied: bool,
    ) -> Result<(), ReceiveError> {
        if self.held.len() >= self.capacity {
            return Err(ReceiveError::HoldingQueueFull {
                id: event.id,
                capacity: self.capacity,
            });
        }
        if self.per_origin.get(&event.id.peer).copied().unwrap_or(0) >= self.origin_capacity {
            return Err(ReceiveError::HoldingQueueFull {
                id: event.id,
                capacity: self.origin_capacity,
            });
        }
        self.repark(event, waits_for, origin_applied);
        Ok(())
    }

    /// Parks again an event that was woken but still misses something; it
    /// was already counted, so the capacity does not apply.
    pub fn repark(&mut self, event: P2PEvent, waits_for: EventId, origin_applied: bool) {
        self.held.insert(event.id);
        *self.per_origin.entry(event.id.peer).or_default() += 1;
        if !origin_applied {
            self.unapplied.insert(event.id.peer);
        }
        match self.waiting.entry(waits_for) {
            std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().push(event),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Waiters::One(event));
            }
        }
    }

    /// Removes the events that waited for `id`, handing each to `take` (no
    /// allocation for the usual single waiter).
    pub fn wake_each(&mut self, id: EventId, mut take: impl FnMut(P2PEvent)) {
        if self.held.is_empty() {
            return;
        }
        let Some(waiters) = self.waiting.remove(&id) else {
            return;
        };
        let mut each = |e: P2PEvent| {
            self.held.remove(&e.id);
            if let Some(n) = self.per_origin.get_mut(&e.id.peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_origin.remove(&e.id.peer);
                    self.unapplied.remove(&e.id.peer);
                }
            }
            take(e);
        };
        match waiters {
            Waiters::One(e) => each(e),
            Waiters::Many(v) => v.into_iter().for_each(each),
        }
    }

    /// Everything held, removed, in `(origin, seq)` order.
    pub fn drain(&mut self) -> Vec<P2PEvent> {
        self.held.clear();
        self.per_origin.clear();
        self.unapplied.clear();
        let mut all: Vec<P2PEvent> = self
            .waiting
            .drain()
            .flat_map(|(_, w)| w.into_vec())
            .collect();
        key_sort::sort_by_key(&mut all, |e| key_sort::id_key(e.id));
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = &P2PEvent> {
        self.waiting.values().flat_map(Waiters::iter)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

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
        let queue = HoldingQueue::new(1_000, 1_000, 0x1234_5678_9abc_def0);
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for id in &ground {
            *counts
                .entry(bucket(queue.waiting.hasher().hash_one(id)))
                .or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        // 200 ids over 4,096 buckets: a few share one by chance.
        assert!(most <= 8, "{most} of the ground ids share a bucket");
    }
}
