//! Following one write through a big room: the hops and the time to each
//! peer, and the copies of it sent (against the minimum, one per peer).

use std::collections::HashMap;

use cpc_sync::protocol::EventId;

use super::Room;

/// A write being followed.
pub struct Tracked {
    pub id: EventId,
    pub start_ms: u64,
    /// Hops and milliseconds to each peer that has it, by index.
    pub reached: HashMap<usize, (u32, u64)>,
    /// Frames that carried it, and their bytes.
    pub copies: u64,
    pub bytes: u64,
    /// Bytes of the frames that announced it or asked for it (PlumTree's
    /// `IHave` and graft).
    pub lazy_bytes: u64,
}

/// What one write took to reach every peer.
#[derive(Debug, Clone)]
pub struct Spread {
    pub peers: usize,
    /// Per peer reached: hops and milliseconds.
    pub reached: Vec<(u32, u64)>,
    pub copies: u64,
    pub bytes: u64,
    pub lazy_bytes: u64,
}

impl Room {
    /// A frame from `from` to `to` is being delivered.
    pub(super) fn observe(&mut self, _from: usize, _to: usize, frame: &[u8]) {
        if let Some(t) = &mut self.tracked {
            if Room::carries(frame, t.id) {
                t.copies += 1;
                t.bytes += frame.len() as u64;
            } else if Room::names(frame, t.id) {
                t.lazy_bytes += frame.len() as u64;
            }
        }
    }

    /// A frame from `from` was taken by `to`: the first to bring the
    /// followed write counts its hops.
    pub(super) fn arrived(&mut self, from: usize, to: usize) {
        let Some(t) = &self.tracked else {
            return;
        };
        if t.reached.contains_key(&to) {
            return;
        }
        let Some(p) = self.peers[to].as_ref() else {
            return;
        };
        if p.node.engine().clock().get(t.id.peer) < t.id.seq {
            return;
        }
        let hops = t.reached.get(&from).map_or(1, |(h, _)| h + 1);
        let at = self.now - t.start_ms;
        if let Some(t) = &mut self.tracked {
            t.reached.insert(to, (hops, at));
        }
    }

    /// Writes at peer `i` and follows the write until every live peer has
    /// it or `max_ms` passed.
    pub fn follow(&mut self, i: usize, max_ms: u64) -> Spread {
        let id = self.write(i).expect("a write");
        let mut tracked = Tracked {
            id,
            start_ms: self.now,
            reached: HashMap::new(),
            copies: 0,
            bytes: 0,
            lazy_bytes: 0,
        };
        tracked.reached.insert(i, (0, 0));
        self.tracked = Some(tracked);
        // The write leaves at once (it was flushed by `write`), so what it
        // sent is counted from its frames' delivery.
        let end = self.now + max_ms;
        while self.now < end {
            self.run(10, |_| {});
            let all = self.len();
            if self
                .tracked
                .as_ref()
                .is_some_and(|t| t.reached.len() >= all)
            {
                break;
            }
        }
        let t = self.tracked.take().expect("followed");
        Spread {
            peers: self.len(),
            reached: t
                .reached
                .iter()
                .filter(|(&j, _)| j != i && self.peers[j].is_some())
                .map(|(_, r)| *r)
                .collect(),
            copies: t.copies,
            bytes: t.bytes,
            lazy_bytes: t.lazy_bytes,
        }
    }
}
