use std::collections::{HashMap, HashSet};

use crate::protocol::error::EngineError;
use crate::protocol::event::{EventId, P2PEvent};

/// Events received before their dependencies, each parked under the one
/// event it waits for (the next missing event of some origin). Applying that
/// event wakes exactly its waiters: no rescans.
#[derive(Debug, Default)]
pub struct HoldingQueue {
    waiting: HashMap<EventId, Vec<P2PEvent>>,
    held: HashSet<EventId>,
    capacity: usize,
}

impl HoldingQueue {
    pub fn new(capacity: usize) -> Self {
        HoldingQueue {
            capacity,
            ..Default::default()
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

    pub fn contains(&self, id: EventId) -> bool {
        self.held.contains(&id)
    }

    /// At capacity a new event is refused, never an old one dropped: what the
    /// queue holds stays, and anti-entropy offers the refused event again
    /// once its dependencies are in.
    pub fn hold(&mut self, event: P2PEvent, waits_for: EventId) -> Result<(), EngineError> {
        if self.held.len() >= self.capacity {
            return Err(EngineError::HoldingQueueFull {
                id: event.id,
                capacity: self.capacity,
            });
        }
        self.held.insert(event.id);
        self.waiting.entry(waits_for).or_default().push(event);
        Ok(())
    }

    /// Parks again an event that was woken but still misses something; it
    /// was already counted, so the capacity does not apply.
    pub fn repark(&mut self, event: P2PEvent, waits_for: EventId) {
        self.held.insert(event.id);
        self.waiting.entry(waits_for).or_default().push(event);
    }

    /// The events that waited for `id`, removed from the queue.
    pub fn wake(&mut self, id: EventId) -> Vec<P2PEvent> {
        let events = self.waiting.remove(&id).unwrap_or_default();
        for e in &events {
            self.held.remove(&e.id);
        }
        events
    }

    /// Everything held, removed, in `(origin, seq)` order.
    pub fn drain(&mut self) -> Vec<P2PEvent> {
        self.held.clear();
        let mut all: Vec<P2PEvent> = self.waiting.drain().flat_map(|(_, v)| v).collect();
        all.sort_by_key(|e| e.id);
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = &P2PEvent> {
        self.waiting.values().flatten()
    }
}
