//! PlumTree's eager and lazy push (Leitão, Pereira, Rodrigues, "Epidemic
//! Broadcast Trees", 2007) over a node's links, with
//! [`SyncConfig::prune_relays`](super::SyncConfig::prune_relays):
//!
//! - fresh events (ours or relayed) go whole on eager links and are
//!   announced by [`Message::IHave`] on lazy ones;
//! - a push of nothing new turns its link lazy both ways
//!   ([`Message::Prune`]), so the eager links settle into a spanning tree
//!   and a peer gets about one copy of each event;
//! - a peer still lacking announced events [`IHAVE_TIMEOUT_MS`] after the
//!   first announcement grafts its announcer ([`Message::Graft`]): the
//!   events come and the link turns eager again, which mends the tree
//!   where churn cut it; the next announcer is grafted
//!   [`GRAFT_RETRY_MS`] later if they still do not come;
//! - anti-entropy (digests) heals whatever both miss, but answers only
//!   with events held since the last gossip tick: fresher ones are on
//!   their way through the tree, and answering a digest that crossed them
//!   was most of the copies pruning alone left.
//!
//! A lying peer gets little from it: an `IHave` or graft names at most
//! [`MAX_ANNOUNCED`] origins; at most [`MAX_AWAITED`] origins are awaited,
//! [`MAX_AWAITED_PER_PEER`] of them on one peer's word; an `IHave` its
//! sender's own later digest contradicts is refused as unfounded (and
//! charged); grafts and prunes are rate-limited per gossip interval. A
//! graft is answered from the log, no more than a digest with the same
//! clock would be.

use super::{SyncNode, MAX_REQUESTS_PER_INTERVAL};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::P2PEvent;
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::sync::refusal::Refusal;
use crate::protocol::sync::wire::Message;

/// Origins named in one `IHave` or graft, at most (more go in several).
pub const MAX_ANNOUNCED: usize = 64;
/// Origins whose announced events are awaited at once, at most.
pub const MAX_AWAITED: usize = 1_024;
/// Of those, at most this many on the word of one peer.
pub const MAX_AWAITED_PER_PEER: usize = 256;
/// How long announced events may take through the tree before their
/// announcer is grafted: longer than a write takes to cross a room of
/// 1,000 (~200 ms in the simulator), so a healthy tree rarely grafts.
pub const IHAVE_TIMEOUT_MS: u64 = 300;
/// How long a graft may take to bring the events before the next
/// announcer is grafted.
pub const GRAFT_RETRY_MS: u64 = 200;
/// Grafts taken from one peer per gossip interval, at most (an honest
/// peer grafts one announcer per expiry, rarely twice an interval).
pub const MAX_GRAFTS_PER_INTERVAL: u32 = MAX_REQUESTS_PER_INTERVAL / 2;
/// Prunes taken from one peer per gossip interval, at most (an honest peer
/// prunes a link once, until a graft turns it eager again).
pub const MAX_PRUNES_PER_INTERVAL: u32 = 8;
/// Announcers kept per awaited origin, to graft in turn.
const ANNOUNCERS: usize = 3;

/// Events of one origin announced to us and not here yet.
#[derive(Debug)]
pub(super) struct Awaited {
    /// Who announced them, up to which sequence number, and whether it
    /// was grafted already; in the order they came.
    by: Vec<(PeerId, u64, bool)>,
    /// When to graft the next announcer.
    due_ms: u64,
}

impl SyncNode {
    /// Eager and lazy push (PlumTree) rather than relay to every link.
    pub(super) fn plumtree(&self) -> bool {
        self.config.prune_relays
    }

    /// Announces `events` to a lazy link: per origin, the last sequence
    /// number, [`MAX_ANNOUNCED`] origins a message.
    pub(super) fn announce(&mut self, to: PeerId, events: &[P2PEvent]) {
        let mut last: SortedMap<PeerId, u64> = SortedMap::new();
        for e in events {
            let seq = last.get_or_insert_with(e.id.peer, || 0);
            *seq = (*seq).max(e.id.seq);
        }
        let entries: Vec<(PeerId, u64)> = last.into_iter().collect();
        for chunk in entries.chunks(MAX_ANNOUNCED) {
            self.send(to, &Message::IHave(chunk.to_vec()));
        }
    }

    /// An `IHave`: what we lack of it is awaited, to be grafted from its
    /// sender if the tree does not bring it in time.
    pub(super) fn on_ihave(&mut self, from: PeerId, entries: Vec<(PeerId, u64)>, now_ms: u64) {
        if entries.len() > MAX_ANNOUNCED {
            return self.refuse(from, Refusal::AnnouncementTooLarge(entries.len()));
        }
        let me = self.peer();
        let mut on_its_word = self
            .awaited
            .values()
            .filter(|a| a.by.iter().any(|b| b.0 == from))
            .count();
        let mut overflow = false;
        for (origin, seq) in entries {
            let ours = self.engine.clock().get(origin);
            if origin == me && seq > ours {
                self.refuse(from, Refusal::UnfoundedIHave { origin, seq });
                continue;
            }
            let Some(session) = self.sessions.get_mut(&from) else {
                return;
            };
            session.their_clock.observe(origin, seq);
            if seq <= ours {
                continue;
            }
            if let Some(awaited) = self.awaited.get_mut(&origin) {
                if let Some(b) = awaited.by.iter_mut().find(|b| b.0 == from) {
                    b.1 = b.1.max(seq);
                } else if awaited.by.len() < ANNOUNCERS {
                    awaited.by.push((from, seq, false));
                }
                continue;
            }
            if self.awaited.len() >= MAX_AWAITED || on_its_word >= MAX_AWAITED_PER_PEER {
                overflow = true;
                continue;
            }
            on_its_word += 1;
            let awaited = Awaited {
                by: vec![(from, seq, false)],
                due_ms: now_ms + IHAVE_TIMEOUT_MS,
            };
            self.awaited.insert(origin, awaited);
        }
        if overflow {
            let bound = MAX_AWAITED_PER_PEER.min(MAX_AWAITED);
            self.refuse(from, Refusal::TooManyAnnounced(bound));
        }
    }

    /// A digest from `from`: announcements of its that the digest (sent
    /// after them) does not cover were lies.
    pub(super) fn check_announced(&mut self, from: PeerId, clock: &VectorClock) {
        let mut lies = Vec::new();
        for (origin, awaited) in self.awaited.iter_mut() {
            awaited.by.retain(|&(p, seq, _)| {
                let lie = p == from && clock.get(*origin) < seq;
                if lie {
                    lies.push((*origin, seq));
                }
                !lie
            });
        }
        self.awaited.retain(|_, a| !a.by.is_empty());
        for (origin, seq) in lies {
            self.refuse(from, Refusal::UnfoundedIHave { origin, seq });
        }
    }

    /// When the next awaited announcement falls due.
    pub(super) fn graft_due(&self) -> Option<u64> {
        self.awaited.values().map(|a| a.due_ms).min()
    }

    /// Grafts, for every awaited origin due and still lacking, its next
    /// announcer not grafted yet (one graft message per announcer); what
    /// came, or has nobody left to ask, is forgotten.
    pub(super) fn graft(&mut self, now_ms: u64) {
        let clock = self.engine.clock().clone();
        let mut grafts: SortedMap<PeerId, Vec<(PeerId, u64)>> = SortedMap::new();
        let sessions = &self.sessions;
        self.awaited.retain(|&origin, awaited| {
            let have = clock.get(origin);
            awaited.by.retain(|b| b.1 > have);
            if awaited.by.is_empty() {
                return false;
            }
            if awaited.due_ms > now_ms {
                return true;
            }
            let next = awaited
                .by
                .iter_mut()
                .find(|b| !b.2 && sessions.contains_key(&b.0));
            let Some(next) = next else {
                return false;
            };
            next.2 = true;
            grafts
                .get_or_insert_with(next.0, Vec::new)
                .push((origin, have));
            awaited.due_ms = now_ms + GRAFT_RETRY_MS;
            true
        });
        for (to, entries) in grafts {
            if let Some(session) = self.sessions.get_mut(&to) {
                session.lazy = false;
                session.pruned = false;
            }
            for chunk in entries.chunks(MAX_ANNOUNCED) {
                self.send(to, &Message::Graft(chunk.to_vec()));
            }
        }
    }

    /// A graft: the link turns eager, and the sender gets the events it
    /// lacks of each origin it names (those the log still holds; one
    /// behind the compaction horizon gets a snapshot offer at its next
    /// digest).
    pub(super) fn on_graft(&mut self, from: PeerId, entries: Vec<(PeerId, u64)>) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.grafts >= MAX_GRAFTS_PER_INTERVAL {
            return self.refuse(from, Refusal::GraftFlood(MAX_GRAFTS_PER_INTERVAL));
        }
        session.grafts += 1;
        if entries.len() > MAX_ANNOUNCED {
            return self.refuse(from, Refusal::AnnouncementTooLarge(entries.len()));
        }
        session.lazy = false;
        session.pruned = false;
        let log = self.engine.log();
        let clock = self.engine.clock();
        let mut events = Vec::new();
        for &(origin, have) in &entries {
            let ours = clock.get(origin);
            if have >= ours || have.saturating_add(1) < log.first_seq(origin) {
                continue;
            }
            events.extend_from_slice(log.range(origin, have, ours));
        }
        if !events.is_empty() {
            self.send_events(from, events);
        }
    }

    /// A prune: the link turns lazy (we announce to it, no more pushes).
    pub(super) fn on_prune(&mut self, from: PeerId) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.prunes >= MAX_PRUNES_PER_INTERVAL {
            return self.refuse(from, Refusal::PruneFlood(MAX_PRUNES_PER_INTERVAL));
        }
        session.prunes += 1;
        session.lazy = true;
    }
}
