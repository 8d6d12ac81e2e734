//! Announced relay: PlumTree's eager and lazy push (Leitão, Pereira,
//! Rodrigues, "Epidemic Broadcast Trees", 2007) with [`Relay::Tree`], and
//! a pull of what was announced with [`Relay::Pull`].
//!
//! - Tree: fresh events (ours or relayed) go whole on eager links and are
//!   announced by [`Message::IHave`] on lazy ones; a push of nothing new
//!   turns its link lazy both ways ([`Message::Prune`]), so the eager
//!   links settle into a spanning tree; a peer still lacking announced
//!   events [`IHAVE_TIMEOUT_MS`] after the first announcement grafts its
//!   announcer ([`Message::Graft`]): the events come and the link turns
//!   eager again, mending the tree where churn cut it.
//! - Pull: every relay is an announcement, and a peer lacking what was
//!   announced grafts the first announcer at once (or, if it grafted that
//!   peer less than [`GRAFT_BATCH_MS`] ago, when that has passed, with
//!   whatever else was announced meanwhile): each peer asks for each
//!   event once, from the neighbour that had it first, so it takes one
//!   copy over the fastest path there is. Own writes are pushed whole to
//!   every link (none can have them yet).
//! - Either way, the next announcer is grafted if the events do not come
//!   ([`GRAFT_RETRY_MS`], [`PULL_RETRY_MS`]); a graft is answered with
//!   what the asker lacks past both what it says it has and what was sent
//!   to it already, so asking twice brings nothing twice; and anti-entropy
//!   (digests) heals whatever is missed, but a digest is not answered with
//!   what we pushed or announced to its sender since our last gossip
//!   tick: that is on its way, or being pulled, and answering a digest
//!   that crossed it made most of the copies pruning alone left. A digest
//!   after our next tick asks again for what did not come.
//!
//! A lying peer gets little from it: an `IHave` or graft names at most
//! [`MAX_ANNOUNCED`] origins; at most [`MAX_AWAITED`] origins are awaited,
//! [`MAX_AWAITED_PER_PEER`] of them on one peer's word; a session notes
//! at most [`MAX_THEIR_ORIGINS`] origins in what its peer has; an `IHave` its
//! sender's own later digest contradicts is refused as unfounded (and
//! charged); grafts and prunes are rate-limited per gossip interval.

use super::{Relay, SyncNode};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::P2PEvent;
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::sync::refusal::Refusal;
use crate::protocol::sync::session::MAX_THEIR_ORIGINS;
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
/// announcer is grafted (Tree).
pub const GRAFT_RETRY_MS: u64 = 200;
/// The same with [`Relay::Pull`], where a graft is the usual way events
/// come: a round trip across the room (~230 ms at most in the simulator)
/// must not graft a second announcer, but a slow first announcer should
/// not hold up the last peers for long (500 ms put ~150 ms more on the
/// p99 to reach all 1,000, for no fewer copies).
pub const PULL_RETRY_MS: u64 = 300;
/// A peer grafted within this long is grafted again only when it has
/// passed, for all that was announced meanwhile: an honest peer grafts
/// one peer at most `1000 / GRAFT_BATCH_MS` times a second (and once
/// more for each `IHave` past [`MAX_AWAITED_PER_PEER`]) however many
/// events the room writes.
pub const GRAFT_BATCH_MS: u64 = 10;
/// Grafts taken from one peer per gossip interval, at most (an honest
/// peer sends one per [`GRAFT_BATCH_MS`], 100 a second, unless it is
/// flooded with announcements).
pub const MAX_GRAFTS_PER_INTERVAL: u32 = 256;
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

impl Awaited {
    /// The wall clock went back to `now_ms`: a graft due later by the old
    /// reading is due now.
    pub(super) fn clock_set_back(&mut self, now_ms: u64) {
        self.due_ms = self.due_ms.min(now_ms);
    }
}

impl SyncNode {
    /// Announces `events` to a lazy link: per origin, the last sequence
    /// number, [`MAX_ANNOUNCED`] origins a message.
    pub(super) fn announce(&mut self, to: PeerId, events: &[P2PEvent]) {
        let mut last: SortedMap<PeerId, u64> = SortedMap::new();
        for e in events {
            let seq = last.get_or_insert_with(e.id.peer, || 0);
            *seq = (*seq).max(e.id.seq);
        }
        let entries: Vec<(PeerId, u64)> = last.into_iter().collect();
        if let Some(session) = self.sessions.get_mut(&to).filter(|s| s.handshake.is_none()) {
            for &(origin, seq) in &entries {
                session.told.announce(origin, seq);
            }
        }
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
        let mut overflow = Vec::new();
        let mut unnoted = false;
        for (origin, seq) in entries {
            let ours = self.engine.clock().get(origin);
            if origin == me && seq > ours {
                self.refuse(from, Refusal::UnfoundedIHave { origin, seq });
                continue;
            }
            let Some(session) = self.sessions.get_mut(&from) else {
                return;
            };
            if !session.learn(origin, seq) {
                // Not awaited either: anti-entropy brings what it lacks.
                unnoted = true;
                continue;
            }
            if seq <= ours {
                continue;
            }
            let due_ms = match self.config.relay {
                Relay::Tree => now_ms + IHAVE_TIMEOUT_MS,
                _ => self
                    .sessions
                    .get(&from)
                    .and_then(|s| s.grafted_ms)
                    .map_or(now_ms, |last| now_ms.max(last + GRAFT_BATCH_MS)),
            };
            // Events held for verification may be these: not before they
            // are verified (the tick verifies first, then grafts).
            let due_ms = self
                .verification_due()
                .map_or(due_ms, |verified| due_ms.max(verified));
            if let Some(awaited) = self.awaited.get_mut(&origin) {
                // What came since is forgotten; an announcer grafted
                // before that announces more is to be grafted again.
                awaited.by.retain(|b| b.1 > ours);
                if let Some(b) = awaited.by.iter_mut().find(|b| b.0 == from) {
                    if seq > b.1 {
                        b.1 = seq;
                        b.2 = false;
                        awaited.due_ms = awaited.due_ms.min(due_ms);
                    }
                } else if awaited.by.len() < ANNOUNCERS {
                    if awaited.by.is_empty() {
                        awaited.due_ms = due_ms;
                    }
                    awaited.by.push((from, seq, false));
                }
                continue;
            }
            if self.awaited.len() >= MAX_AWAITED || on_its_word >= MAX_AWAITED_PER_PEER {
                overflow.push((origin, ours));
                continue;
            }
            on_its_word += 1;
            let awaited = Awaited {
                by: vec![(from, seq, false)],
                due_ms,
            };
            self.awaited.insert(origin, awaited);
        }
        if unnoted {
            self.refuse(from, Refusal::TooManyOrigins(MAX_THEIR_ORIGINS));
        }
        if !overflow.is_empty() {
            // Not awaited, so not grafted from anyone else if it fails:
            // pulled from the announcer at once (no more grafts than its
            // IHaves), and anti-entropy heals the rest.
            let bound = MAX_AWAITED_PER_PEER.min(MAX_AWAITED);
            self.refuse(from, Refusal::TooManyAnnounced(bound));
            self.send(from, &Message::Graft(overflow));
        }
        if self.graft_due().is_some_and(|due| due <= now_ms) {
            self.graft(now_ms);
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
        let retry = match self.config.relay {
            Relay::Tree => GRAFT_RETRY_MS,
            _ => PULL_RETRY_MS,
        };
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
            awaited.due_ms = now_ms + retry;
            true
        });
        for (to, entries) in grafts {
            if let Some(session) = self.sessions.get_mut(&to) {
                session.lazy = false;
                session.pruned = false;
                session.grafted_ms = Some(now_ms);
            }
            for chunk in entries.chunks(MAX_ANNOUNCED) {
                self.send(to, &Message::Graft(chunk.to_vec()));
            }
        }
    }

    /// A graft: the link turns eager (Tree), and the sender is owed the
    /// events it lacks of each origin it names, past what it says it has
    /// and what was sent to it (those the log still holds, see `owed.rs`;
    /// one behind the compaction horizon gets a snapshot offer at its next
    /// digest).
    pub(super) fn on_graft(&mut self, from: PeerId, entries: Vec<(PeerId, u64)>) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.spent.grafts >= MAX_GRAFTS_PER_INTERVAL {
            return self.refuse(from, Refusal::GraftFlood(MAX_GRAFTS_PER_INTERVAL));
        }
        session.spent.grafts += 1;
        if entries.len() > MAX_ANNOUNCED {
            return self.refuse(from, Refusal::AnnouncementTooLarge(entries.len()));
        }
        session.lazy = false;
        session.pruned = false;
        let clock = self.engine.clock();
        for &(origin, have) in &entries {
            let have = have.max(session.their_clock.get(origin));
            session.owed.owe(origin, have, clock.get(origin));
        }
        self.send_owed();
    }

    /// A prune: the link turns lazy (we announce to it, no more pushes).
    pub(super) fn on_prune(&mut self, from: PeerId) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.spent.prunes >= MAX_PRUNES_PER_INTERVAL {
            return self.refuse(from, Refusal::PruneFlood(MAX_PRUNES_PER_INTERVAL));
        }
        session.spent.prunes += 1;
        session.lazy = true;
    }
}
