//! Durable storage with asynchronous commits, as IndexedDB does them: a
//! write asked for commits some time later, writes commit in the order
//! asked, and the node learns of a commit later still (acknowledgements
//! are delayed and may arrive out of order). A crash loses what had not
//! committed, and the acknowledgements of what had.

use std::collections::{BTreeMap, VecDeque};

use cpc_sync::protocol::sync::Persist;
use cpc_sync::protocol::{EventId, Hash32, P2PEvent, PeerId};

use crate::common::Rng;

/// What a peer has on disk: a snapshot and the events after it.
#[derive(Debug, Default, Clone)]
pub struct Storage {
    pub snapshot: Option<Vec<u8>>,
    pub events: Vec<P2PEvent>,
}

#[derive(Debug, Default)]
pub struct Disk {
    pub stored: Storage,
    /// `(commits at, token, write)`, in token order.
    committing: VecDeque<(u64, u64, Persist)>,
    /// `(reaches the node at, token)`.
    acks: Vec<(u64, u64)>,
}

impl Disk {
    /// The node asked for `write`: it commits after the writes before it.
    pub fn ask(&mut self, token: u64, write: Persist, now: u64, rng: &mut Rng) {
        let after = self.committing.back().map_or(0, |(at, _, _)| *at);
        let at = after.max(now + 1 + rng.below(60) as u64);
        self.committing.push_back((at, token, write));
    }

    /// Commits the writes due by `now`; returns the events committed.
    pub fn commit_due(&mut self, now: u64, rng: &mut Rng) -> Vec<P2PEvent> {
        let mut committed = Vec::new();
        while self.committing.front().is_some_and(|(at, _, _)| *at <= now) {
            let Some((at, token, write)) = self.committing.pop_front() else {
                break;
            };
            match write {
                Persist::Events { record, count } => {
                    let events = P2PEvent::decode_batch(&record).expect("a node's record decodes");
                    // (A fold's kept log, stored again after its
                    // snapshot, counts none: stored before.)
                    assert!(
                        count == events.len() || count == 0,
                        "a record holds the events it counts: {} of {count}",
                        events.len()
                    );
                    committed.extend(events.iter().cloned());
                    self.stored.events.extend(events);
                }
                Persist::Snapshot(bytes) => {
                    self.stored = Storage {
                        snapshot: Some(bytes.to_vec()),
                        events: Vec::new(),
                    }
                }
            }
            self.acks.push((at + rng.below(40) as u64, token));
        }
        committed
    }

    /// Acknowledgements due by `now`, in the (shuffled) order they arrive.
    pub fn acks_due(&mut self, now: u64) -> Vec<u64> {
        let (due, later) = self.acks.iter().partition(|(at, _)| *at <= now);
        self.acks = later;
        due.into_iter().map(|(_, token)| token).collect()
    }

    /// Power is cut: what had not committed is gone, and the node will
    /// never hear of what had.
    pub fn crash(&mut self) {
        self.committing.clear();
        self.acks.clear();
    }
}

/// Every event any honest peer has seen, by id: one id must never name two
/// events (a peer that reused a sequence number after a crash).
#[derive(Debug, Default)]
pub struct Witness {
    seen: BTreeMap<EventId, Hash32>,
}

impl Witness {
    pub fn see(&mut self, event: &P2PEvent, by: PeerId) {
        let hash = event.hash();
        let first = *self.seen.entry(event.id).or_insert(hash);
        assert_eq!(
            first, hash,
            "{by} holds {:?} as another event than one seen before: a sequence number was reused",
            event.id
        );
    }
}
