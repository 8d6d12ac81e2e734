//! What `Events` messages bring: held for their seals to be verified
//! together, then applied a slice at a time.
//!
//! A page takes a frame in one task and wakes the node in others. Applying
//! a newcomer's catch-up a frame at a time made its first frames long
//! tasks (a run of 1,000 events took 50-100 ms in wasm while the code was
//! still cold, 10-20 ms once warm), so the work is spread over tasks: a
//! frame's task only decodes and holds its events; the wake that verifies
//! them checks their runs' form and digests and their seals (a wake that
//! verifies more than a slice applies none of it); each wake after applies
//! at most [`APPLY_SLICE`] events. The node asks to be woken at once while
//! any wait ([`SyncNode::next_timer`]).
//!
//! Events are applied in the order their frames came. The events of one
//! frame are one batch: they are marked, persisted and relayed together
//! when the batch's last slice is applied, so a sealed run is never
//! persisted or relayed in part. Nothing else applies events while a batch
//! is under way: every other path that applies or reads the whole state
//! (a snapshot, a Merkle leaf, a reconciliation message, a fold) takes
//! everything received first ([`SyncNode::verify_received`]), and a local
//! write or a gossip round's reconciliation finishes the batch under way
//! ([`SyncNode::finish_batch`]): what they write depends on what is
//! applied, and is stored after it.

use std::collections::VecDeque;

use super::gossip::EAGER_KEPT;
use super::{Relay, SyncNode};
use crate::protocol::clock::PeerId;
use crate::protocol::engine::Receipt;
use crate::protocol::event::P2PEvent;
use crate::protocol::seal;
use crate::protocol::sync::wire::Message;

/// Events held for verification across frames: from here on they are
/// verified at the next wake, without waiting for the window.
pub const MAX_UNVERIFIED_EVENTS: usize = seal::MAX_RUN;

/// Events applied by one wake of the node, at most (a frame's batch may
/// take several): tens of ms in wasm while the code is cold.
pub const APPLY_SLICE: usize = 256;

/// Events received and not yet applied (held for verification, or
/// verified and waiting for their slice), at most: a frame that would pass
/// it first has as many applied at once. A peer sending faster than the
/// slices apply gets its frames applied as they come, as before slicing.
pub const MAX_RECEIVED_EVENTS: usize = 8 * seal::MAX_RUN;

/// Received events on their way in.
#[derive(Default)]
pub(super) struct Intake {
    /// Frames whose seals wait to be verified together (with
    /// [`SyncConfig::verify_window_ms`](super::SyncConfig::verify_window_ms)),
    /// with their senders; how many seals and events they hold, and when
    /// the first and the latest came.
    unverified: Vec<(PeerId, Vec<P2PEvent>)>,
    unverified_seals: usize,
    unverified_events: usize,
    unverified_since: u64,
    unverified_last: u64,
    /// Batches verified (or unsigned), to apply in order.
    verified: VecDeque<(PeerId, Vec<P2PEvent>)>,
    /// The batch being applied, if one was begun.
    applying: Option<Batch>,
    /// Events in `verified` and left in `applying`.
    waiting: usize,
}

/// A frame's events being applied, a slice at a time.
struct Batch {
    from: PeerId,
    events: std::vec::IntoIter<P2PEvent>,
    received: usize,
    duplicates: usize,
}

impl Intake {
    /// Events received and not yet applied.
    fn backlog(&self) -> usize {
        self.unverified_events + self.waiting
    }

    /// A frame's verified events, to apply after those before them.
    fn push(&mut self, from: PeerId, events: Vec<P2PEvent>) {
        if !events.is_empty() {
            self.waiting += events.len();
            self.verified.push_back((from, events));
        }
    }

    /// Verified events wait to be applied.
    pub(super) fn has_waiting(&self) -> bool {
        self.waiting > 0
    }
}

impl SyncNode {
    /// Events from `from`: in a signed room their runs' form is checked
    /// and their seals verified, now or (with a verification window)
    /// together with those of the frames after them; then applied, at
    /// once without a window, a slice per wake with one.
    pub(super) fn on_events(&mut self, from: PeerId, events: Vec<P2PEvent>, now_ms: u64) {
        if self.config.verify_window_ms.is_none() {
            let events = self.open_seals(from, events);
            self.intake.push(from, events);
            return self.apply_slice(usize::MAX, now_ms);
        }
        let backlog = self.intake.backlog() + events.len();
        if backlog > MAX_RECEIVED_EVENTS {
            // What came first goes first: enough of it to stay in bounds.
            self.verify_held();
            self.apply_slice(backlog - MAX_RECEIVED_EVENTS, now_ms);
        }
        if !self.signed() {
            let events = self.open_seals(from, events);
            return self.intake.push(from, events);
        }
        // Their runs' form and digests are checked with their seals, at
        // the wake that verifies them: the frame's task only decodes.
        let intake = &mut self.intake;
        if intake.unverified.is_empty() {
            intake.unverified_since = now_ms;
        }
        intake.unverified_last = now_ms;
        intake.unverified_seals += events.iter().filter(|e| e.seal.is_some()).count();
        intake.unverified_events += events.len();
        intake.unverified.push((from, events));
        if intake.unverified_seals >= seal::BATCH {
            // A full batch: its cost is the seals', bounded (a flood of
            // lone writes must not pile up seals for one long wake).
            self.verify_held();
        }
    }

    /// Takes everything received: verifies what is held for verification
    /// and applies every event waiting. Whatever reads or changes the
    /// whole state calls it first.
    pub fn verify_received(&mut self, now_ms: u64) {
        self.verify_held();
        self.apply_slice(usize::MAX, now_ms);
    }

    /// Applies the rest of the frame whose events are being applied, so a
    /// local write never depends on events that are not yet persisted (a
    /// frame's events are persisted when its last slice is in, and before
    /// the write, which is persisted after them).
    pub(super) fn finish_batch(&mut self, now_ms: u64) {
        if let Some(batch) = &self.intake.applying {
            let rest = batch.events.len();
            self.apply_slice(rest, now_ms);
        }
    }

    /// A wake: verifies what is due, or else applies a slice of what
    /// waits (a wake that verified many events leaves applying them to the
    /// next, which is due at once: each stays short).
    pub(super) fn take_received(&mut self, now_ms: u64) {
        if self.verification_due().is_some_and(|due| due <= now_ms) {
            let many = self.intake.unverified_events > APPLY_SLICE;
            self.verify_held();
            if many {
                return;
            }
        }
        self.apply_slice(APPLY_SLICE, now_ms);
    }

    /// When the frames held for verification are due: a window after the
    /// latest (no frame followed it), or [`VERIFY_HOLD_WINDOWS`] windows
    /// after the first (frames kept coming), or at once (0) with
    /// [`MAX_UNVERIFIED_EVENTS`] events held: in a task of its own, not the
    /// frame's (a page's first frames run cold code; decoding, verifying
    /// and applying one in a task made long tasks). A full batch of seals
    /// is verified in the frame's task.
    ///
    /// [`VERIFY_HOLD_WINDOWS`]: super::VERIFY_HOLD_WINDOWS
    pub(super) fn verification_due(&self) -> Option<u64> {
        let window = self.config.verify_window_ms?;
        let intake = &self.intake;
        if intake.unverified.is_empty() {
            return None;
        }
        if intake.unverified_seals >= seal::BATCH
            || intake.unverified_events >= MAX_UNVERIFIED_EVENTS
        {
            return Some(0);
        }
        let quiet = intake.unverified_last.saturating_add(window);
        let held = intake
            .unverified_since
            .saturating_add(window.saturating_mul(super::VERIFY_HOLD_WINDOWS));
        Some(quiet.min(held))
    }

    /// Verifies the seals of every frame held for verification, together;
    /// the events of the runs that verify wait to be applied, frame by
    /// frame in the order they came.
    fn verify_held(&mut self) {
        if self.intake.unverified.is_empty() {
            return;
        }
        self.intake.unverified_seals = 0;
        self.intake.unverified_events = 0;
        let (senders, opened): (Vec<PeerId>, Vec<seal::Opened>) =
            std::mem::take(&mut self.intake.unverified)
                .into_iter()
                .map(|(from, events)| (from, seal::check_runs(events)))
                .unzip();
        for (from, (accepted, errors)) in senders.into_iter().zip(seal::verify_opened(opened)) {
            self.refuse_seals(from, errors);
            self.intake.push(from, accepted);
        }
    }

    /// Applies up to `budget` waiting events, batch after batch; a batch
    /// ends with its events persisted and relayed.
    fn apply_slice(&mut self, mut budget: usize, now_ms: u64) {
        if !self.intake.has_waiting() {
            return;
        }
        while budget > 0 {
            let Some(mut batch) = self.intake.applying.take().or_else(|| self.begin_batch()) else {
                break;
            };
            for event in batch.events.by_ref().take(budget) {
                budget -= 1;
                self.intake.waiting -= 1;
                match self.engine.receive(event, now_ms) {
                    Ok(Receipt::Duplicate) => batch.duplicates += 1,
                    Ok(_) => {}
                    Err(e) => self.refuse(batch.from, e.into()),
                }
            }
            if batch.events.len() > 0 {
                self.intake.applying = Some(batch);
                break;
            }
            self.prune_or_keep(batch.from, batch.received, batch.duplicates);
            self.absorb(Some(batch.from));
        }
        // Whoever woke us (a timer, most often) learns what changed now.
        self.report_changes();
    }

    /// Starts applying the next verified frame's events: their runs that
    /// straddle our log's start are kept, and what they bring is marked.
    fn begin_batch(&mut self) -> Option<Batch> {
        let (from, events) = self.intake.verified.pop_front()?;
        self.engine.keep_straddling_runs(&events);
        self.engine.mark_applied();
        if let Some(session) = self.sessions.get_mut(&from) {
            session.stats.events_in += events.len() as u64;
            for e in &events {
                session.their_clock.observe(e.id.peer, e.id.seq);
            }
        }
        Some(Batch {
            from,
            received: events.len(),
            duplicates: 0,
            events: events.into_iter(),
        })
    }

    /// In a signed room, the events of runs whose seals verify, at once;
    /// the others are refused, counted and penalized. Unsigned, seals are
    /// stripped: an unsigned node cannot vouch for them.
    pub(super) fn open_seals(&mut self, from: PeerId, mut events: Vec<P2PEvent>) -> Vec<P2PEvent> {
        if !self.signed() {
            events.iter_mut().for_each(|e| e.seal = None);
            return events;
        }
        let (accepted, errors) = seal::open_seals(events);
        self.refuse_seals(from, errors);
        accepted
    }

    fn refuse_seals(&mut self, from: PeerId, errors: Vec<seal::SealError>) {
        for error in errors {
            self.engine.count_refused_seal();
            self.refuse(from, error.into());
        }
    }

    /// PlumTree's prune: a push of nothing new turns its link lazy both
    /// ways, unless fewer than [`EAGER_KEPT`] eager links would be left.
    fn prune_or_keep(&mut self, from: PeerId, received: usize, duplicates: usize) {
        if received == 0 || duplicates < received || self.config.relay != Relay::Tree {
            return;
        }
        let eager = self
            .sessions
            .iter()
            .filter(|(p, s)| **p != from && !s.lazy)
            .count();
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if eager >= EAGER_KEPT && !session.lazy {
            session.lazy = true;
            session.pruned = true;
            self.send(from, &Message::Prune);
        }
    }
}
