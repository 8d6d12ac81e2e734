//! Events a peer asked for and is still owed, sent a slice a task.
//!
//! A digest or a graft may ask for every event a log holds: a newcomer
//! to a room of 100,000 updates lacks them all. Copied out of the log and
//! framed in the task that took the digest, they held a page's thread
//! ~60 ms. Instead the answer is a set of ranges, per origin, kept in
//! the peer's session ([`Owed`]), and each task sends at most
//! [`SyncConfig::answer_slice`](super::SyncConfig::answer_slice) of their
//! events: the first in the task of the digest, the rest at the wakes
//! after it ([`SyncNode::next_timer`] is due at once while any are owed).
//! Only the slice is copied out of the log. While the caller's link to
//! the peer holds a backlog of frames ([`SyncNode::set_backlogged`]) its
//! slices wait, so a large answer waits in the log (as ranges), not in a
//! queue of frames, and goes as fast as the link takes it.

use super::SyncNode;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::engine::ReconciliationEngine;
use crate::protocol::event::P2PEvent;
use crate::protocol::sorted_map::SortedMap;

/// Events a task answers a digest or a graft with, at most (a whole run
/// past it, in a signed room): ~5 ms of a page's thread in Chromium.
pub const ANSWER_SLICE: usize = 8 * 1024;

/// Bytes of events (by [`P2PEvent::approx_size`]) a task answers with, at
/// most (a whole run past it): a data channel's high-water mark. Events
/// of large values reach it long before [`ANSWER_SLICE`]: 8,192 of 20 KB
/// each were 160 MB framed in one task and queued for one link.
pub const ANSWER_SLICE_BYTES: usize = 1 << 20;

/// What is left of a task's slice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    events: usize,
    bytes: usize,
}

impl Budget {
    pub(super) fn new(events: usize, bytes: usize) -> Self {
        Budget {
            events: events.max(1),
            bytes: bytes.max(1),
        }
    }

    fn spent(&self) -> bool {
        self.events == 0 || self.bytes == 0
    }

    fn charge(&mut self, event: &P2PEvent) {
        self.events = self.events.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(event.approx_size());
    }
}

/// What one peer is still owed: per origin, `(after, upto)`, the events
/// past `after` up to `upto`. `after` moves up as slices go.
#[derive(Debug, Default)]
pub struct Owed {
    ranges: SortedMap<PeerId, (u64, u64)>,
}

impl Owed {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Owes the events of `origin` past `after` up to `upto`. What is
    /// owed of it already and was sent (its range's `after`) is not owed
    /// again: it is on its way.
    pub fn owe(&mut self, origin: PeerId, after: u64, upto: u64) {
        let (after, upto) = match self.ranges.get(&origin) {
            Some(&(sent, owed)) => (after.max(sent), upto.max(owed)),
            None => (after, upto),
        };
        if upto > after {
            self.ranges.insert(origin, (after, upto));
        } else {
            self.ranges.remove(&origin);
        }
    }

    /// A digest from the peer: what it lacks of `ours` is owed instead
    /// (past `skip` too, what was told it lately and is on its way). Origins
    /// it has caught up on are owed no more.
    pub fn answer(
        &mut self,
        ours: &VectorClock,
        theirs: &VectorClock,
        skip: impl Fn(PeerId) -> u64,
    ) {
        let before = std::mem::take(&mut self.ranges);
        for (origin, have) in ours.iter() {
            // An answer still going out goes on from where it is: what
            // was told past it (a fresh push) is no sign the rest is on
            // its way.
            let after = match before.get(&origin) {
                Some(&(sent, _)) => theirs.get(origin).max(sent),
                None => theirs.get(origin).max(skip(origin)),
            };
            if have > after {
                self.ranges.insert(origin, (after, have));
            }
        }
    }

    /// Up to `budget` of the owed events still logged, by origin then
    /// sequence, copied out of the log; in a signed room a run is taken
    /// whole (past the budget if it must). An origin folded out of the
    /// log past what is owed is owed no more: the peer's next digest gets
    /// a snapshot offer.
    pub(super) fn take(
        &mut self,
        engine: &ReconciliationEngine,
        budget: &mut Budget,
        signed: bool,
    ) -> Vec<P2PEvent> {
        let log = engine.log();
        let mut out = Vec::new();
        while !budget.spent() {
            let Some((&origin, &(after, upto))) = self.ranges.iter().next() else {
                break;
            };
            if after.saturating_add(1) < log.first_seq(origin) {
                self.ranges.remove(&origin);
                continue;
            }
            // The budget's worth, and on to the end of a signed run.
            let mut last: Option<&P2PEvent> = None;
            let mut more = false;
            'take: for part in log.range(origin, after, upto) {
                for event in part {
                    let open_run = signed && last.is_some_and(|l| l.seal.is_none());
                    if budget.spent() && !open_run {
                        more = true;
                        break 'take;
                    }
                    budget.charge(event);
                    out.push(event.clone());
                    last = Some(event);
                }
            }
            match last {
                Some(last) if more => {
                    self.ranges.insert(origin, (last.id.seq, upto));
                }
                _ => {
                    self.ranges.remove(&origin);
                }
            }
        }
        out
    }
}

impl SyncNode {
    /// The caller's link to `peer` holds a backlog of frames (`true`: a
    /// data channel's buffer at its high-water mark, with frames queued
    /// behind it) or has drained it (`false`). The events `peer` is owed
    /// wait while it does; everything else is sent as before. A caller
    /// that never says so sends every slice at once.
    pub fn set_backlogged(&mut self, peer: PeerId, backlogged: bool) {
        if let Some(session) = self.sessions.get_mut(&peer) {
            session.backlogged = backlogged;
            session.told.backlogged(backlogged, self.last_input_ms);
        }
    }

    /// Whether a peer whose link takes more is owed events: the timer
    /// is due at once.
    pub(super) fn owing(&self) -> bool {
        self.sessions
            .values()
            .any(|s| !s.owed.is_empty() && !s.backlogged)
    }

    /// Sends one slice of what peers are owed (those whose links are not
    /// backlogged): the peers in turn, from
    /// the one after the last served, each taking what is left of the
    /// slice (one owed many takes a whole slice a task, and the next task
    /// starts with the next peer).
    pub(super) fn send_owed(&mut self) {
        let owed: Vec<PeerId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.owed.is_empty() && !s.backlogged)
            .map(|(&p, _)| p)
            .collect();
        let first = self
            .last_owed
            .map_or(0, |last| owed.partition_point(|&p| p <= last));
        let signed = self.signed();
        let config = &self.config;
        let mut budget = Budget::new(config.answer_slice, config.answer_slice_bytes);
        for peer in owed[first..].iter().chain(&owed[..first]).copied() {
            if budget.spent() {
                break;
            }
            let Some(session) = self.sessions.get_mut(&peer) else {
                continue;
            };
            let events = session.owed.take(&self.engine, &mut budget, signed);
            self.last_owed = Some(peer);
            if !events.is_empty() {
                self.send_events(peer, events);
            }
        }
    }
}
