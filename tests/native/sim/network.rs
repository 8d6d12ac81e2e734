//! A simulated network: ordered links between peers (like data channels),
//! virtual time, and faults.

use std::collections::{BTreeMap, VecDeque};

use cpc_sync::protocol::PeerId;

/// One direction of a connection: frames arrive in order, after a latency.
#[derive(Debug, Default)]
pub struct Link {
    pub queue: VecDeque<(u64, Vec<u8>)>,
    last_at: u64,
}

/// Every open connection, by (from, to).
#[derive(Debug, Default)]
pub struct Network {
    pub links: BTreeMap<(PeerId, PeerId), Link>,
}

impl Network {
    pub fn is_up(&self, a: PeerId, b: PeerId) -> bool {
        self.links.contains_key(&(a, b))
    }

    pub fn open(&mut self, a: PeerId, b: PeerId) {
        self.links.insert((a, b), Link::default());
        self.links.insert((b, a), Link::default());
    }

    /// Closes both directions; whatever was queued is lost.
    pub fn close(&mut self, a: PeerId, b: PeerId) {
        self.links.remove(&(a, b));
        self.links.remove(&(b, a));
    }

    pub fn send(&mut self, from: PeerId, to: PeerId, frame: Vec<u8>, at: u64) {
        if let Some(link) = self.links.get_mut(&(from, to)) {
            // Ordered: never before the frame queued ahead of it.
            let at = at.max(link.last_at);
            link.last_at = at;
            link.queue.push_back((at, frame));
        }
    }

    /// The links with a frame due by `now`.
    pub fn due(&self, now: u64) -> Vec<(PeerId, PeerId)> {
        self.links
            .iter()
            .filter(|(_, l)| l.queue.front().is_some_and(|(at, _)| *at <= now))
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn pop(&mut self, from: PeerId, to: PeerId) -> Option<Vec<u8>> {
        self.links
            .get_mut(&(from, to))?
            .queue
            .pop_front()
            .map(|(_, f)| f)
    }
}
