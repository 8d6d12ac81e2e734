use super::holding::Parked;
use super::{ReconciliationEngine, Slot};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::entity::Entity;
use crate::protocol::error::ReceiveError;
use crate::protocol::event::{EventId, P2PEvent};

/// What happened to a received event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Applied, together with `released - 1` held events it unblocked.
    Applied { released: usize },
    /// Kept in the holding queue until its dependencies arrive.
    Held,
    /// Already applied or already held: nothing to do.
    Duplicate,
}

impl ReconciliationEngine {
    /// Counts a run of events the sync layer refused for its seal.
    pub fn count_refused_seal(&mut self) {
        self.stats.refused_seal += 1;
    }

    /// Counts a snapshot or leaf the sync layer refused before it reached
    /// the engine (unasked, or an impossible offer).
    pub fn count_refused_state(&mut self) {
        self.stats.refused_state += 1;
    }
    /// Takes a remote event: applies it when its dependencies are met (and
    /// then whatever it unblocks), otherwise holds it. Refusals are typed
    /// and counted in [`stats`](Self::stats); the engine is unchanged by them.
    pub fn receive(&mut self, event: P2PEvent, now_ms: u64) -> Result<Receipt, ReceiveError> {
        self.take(event, Some(now_ms))
    }

    /// Takes an event from this peer's own storage: it was accepted once, so
    /// the clock-skew bound is not checked again.
    pub fn replay(&mut self, event: P2PEvent) -> Result<Receipt, ReceiveError> {
        self.take(event, None)
    }

    fn take(&mut self, event: P2PEvent, now_ms: Option<u64>) -> Result<Receipt, ReceiveError> {
        let result = self.receive_inner(event, now_ms);
        if let Err(e) = &result {
            self.count_refusal(e);
        }
        result
    }

    /// Counts a refusal of a remote event (or of a run) in its class.
    pub(super) fn count_refusal(&mut self, e: &ReceiveError) {
        let stats = &mut self.stats;
        match e {
            ReceiveError::Malformed(_) | ReceiveError::InvalidRoomState { .. } => {
                stats.refused_malformed += 1
            }
            ReceiveError::ImpossibleDependency { .. } => stats.refused_impossible += 1,
            ReceiveError::ClockSkew { .. } => stats.refused_clock_skew += 1,
            ReceiveError::HoldingQueueFull { .. } | ReceiveError::HoldingQueueBytes { .. } => {
                stats.refused_queue_full += 1
            }
            ReceiveError::DependencyTooFar { .. } => stats.refused_far_ahead += 1,
            ReceiveError::Equivocation { .. } => stats.equivocations += 1,
            ReceiveError::TooManyOrigins { .. } => stats.refused_origins += 1,
            ReceiveError::NotOurs { .. } => stats.refused_not_ours += 1,
            ReceiveError::OverlappingRun { .. } => stats.equivocations += 1,
            _ => {}
        }
    }

    fn receive_inner(
        &mut self,
        event: P2PEvent,
        now_ms: Option<u64>,
    ) -> Result<Receipt, ReceiveError> {
        event.check()?;
        super::policy::check_room_state(&event)?;
        let id = event.id;
        // The origin's applied count, looked up once (a search of the
        // version vector each time it was needed below).
        let have = self.applied.get_hinted(id.peer, &mut self.applied_hint);
        if id.seq <= have {
            let known = self.log.get(id);
            if known.is_some_and(|known| !known.same_content(&event)) {
                return Err(ReceiveError::Equivocation { id });
            }
            self.stats.duplicates += 1;
            return Ok(Receipt::Duplicate);
        }
        if self.holding.contains(id) {
            self.stats.duplicates += 1;
            return Ok(Receipt::Duplicate);
        }
        if id.peer == self.peer && now_ms.is_some() {
            // Every event of ours was made here: one we lack is a lie (our
            // own storage replays them with no `now_ms`).
            return Err(ReceiveError::NotOurs { id });
        }
        if let Some(now_ms) = now_ms {
            self.clock
                .check(event.hlc, now_ms)
                .map_err(|source| ReceiveError::ClockSkew { id, source })?;
        }
        if have == 0 {
            self.check_origin_bound(id)?;
        }
        match first_missing(&self.applied, &event, have, None) {
            Some(missing) => {
                self.check_gap(&event, have)?;
                let waits_for = next_of_origin(&event, have).then_some(missing);
                self.holding.hold(event, waits_for, have > 0)?;
                self.stats.held += 1;
                Ok(Receipt::Held)
            }
            None => Ok(Receipt::Applied {
                released: self.apply_and_release(event),
            }),
        }
    }

    /// Refuses to hold an event that depends on one more than
    /// `max_dependency_gap` past what is applied of its origin: a lie that
    /// would sit in the queue for good. `have`: its own origin's count.
    ///
    /// A dependency at most `gap` is within it whatever is applied, so
    /// those are not looked up: in a room whose writers have written fewer
    /// events than the gap (the default is a million), no dependency is.
    pub(super) fn check_gap(&self, event: &P2PEvent, have: u64) -> Result<(), ReceiveError> {
        let gap = self.config.max_dependency_gap;
        let id = event.id;
        let far = if id.seq - 1 > have.saturating_add(gap) {
            Some(EventId::new(id.peer, id.seq - 1))
        } else if event.deps.max_value() > gap {
            self.applied
                .first_beyond(&event.deps, PeerId(0), gap)
                .map(|(peer, seq)| EventId::new(peer, seq))
        } else {
            None
        };
        let far = far.or_else(|| {
            event
                .op
                .observed()
                .find(|d| d.seq > gap && d.seq > self.applied.get(d.peer).saturating_add(gap))
        });
        match far {
            Some(dependency) => Err(ReceiveError::DependencyTooFar {
                id,
                dependency,
                gap,
            }),
            None => Ok(()),
        }
    }

    /// Refuses an event from a new origin once the room has `max_origins`
    /// (ours always has a place: our own writes are never refused). Held
    /// origins count too: a flood of throwaway identities must not grow any
    /// version vector past what every peer can decode. For an origin of
    /// which nothing is applied (the callers have looked that up: in a
    /// room of thousands, a search of a large clock each).
    pub(super) fn check_origin_bound(&self, id: EventId) -> Result<(), ReceiveError> {
        debug_assert_eq!(self.applied.get(id.peer), 0, "{id}: applied already");
        if self.holding.holds_origin(id.peer) {
            return Ok(());
        }
        let limit = self.max_origins();
        let known = self.applied.len() + self.holding.unapplied_origins();
        // Whether ours is among them is looked up only near the limit: a
        // search of the clock for each new origin (2% of a page's work
        // taking 30,000 writers' first events, natively).
        if known + 1 >= limit {
            let ours = usize::from(self.applied.get(self.peer) > 0);
            if known - ours + 1 >= limit {
                return Err(ReceiveError::TooManyOrigins { id, limit });
            }
        }
        Ok(())
    }

    /// Takes events in the order given; refusals are counted and skipped.
    pub fn receive_all(
        &mut self,
        events: impl IntoIterator<Item = P2PEvent>,
        now_ms: u64,
    ) -> usize {
        let before = self.stats.applied;
        for event in events {
            let _ = self.receive(event, now_ms);
        }
        (self.stats.applied - before) as usize
    }

    /// The protocol's `resolve_conflicts`: takes every held event and applies
    /// those whose dependencies are now met (say, after a snapshot was
    /// loaded); the rest go back to the queue, but for runs that overlap
    /// one kept now with other bounds (which the snapshot brought), dropped.
    /// Returns how many applied.
    pub fn resolve_conflicts(&mut self) -> usize {
        let mut held = self.holding.drain();
        self.stalled.clear();
        self.drop_overlapping_held(&mut held);
        // Back into the queue, then each origin's next released as if
        // woken: a run held whole only with the rest of it.
        let mut nexts = Vec::new();
        for event in held {
            let have = self.applied.get(event.id.peer);
            if event.id.seq <= have {
                continue;
            }
            if next_of_origin(&event, have) {
                nexts.push(event.id);
            }
            self.holding.rehold(event, None, have > 0);
        }
        self.holding.forget_runs();
        let mut applied = 0;
        for next in nexts {
            // Its predecessor as the waker: every dependency is checked.
            let woken_by = EventId::new(next.peer, next.seq - 1);
            let mut to_wake = Vec::new();
            applied += self.release(next, woken_by, &mut to_wake);
            applied += self.wake_all(to_wake);
        }
        applied
    }

    /// Applies a ready event and, transitively, the held events it wakes:
    /// its origin's next event, and the next events of the origins parked
    /// under it.
    pub(super) fn apply_and_release(&mut self, event: P2PEvent) -> usize {
        // The event is moved once, into the log; most wake nothing, and
        // those make no allocation.
        let id = event.id;
        self.apply(event);
        // Events applied whose dependents are still to wake: their ids,
        // the events moved once, from the queue into the log.
        1 + self.wake_all(vec![id])
    }

    /// Wakes what the events `to_wake`, just applied, make ready, and
    /// what those make ready in turn. Returns how many applied.
    pub(super) fn wake_all(&mut self, mut to_wake: Vec<EventId>) -> usize {
        let mut count = 0;
        while let Some(applied) = to_wake.pop() {
            if self.holding.is_empty() {
                break;
            }
            count += self.wake(applied, &mut to_wake);
        }
        count
    }

    /// Applies the held events that `applied`, just applied, makes ready:
    /// its origin's next, and the next events of the origins parked under
    /// it; their ids go to `to_wake`. Returns how many applied.
    pub(super) fn wake(&mut self, applied: EventId, to_wake: &mut Vec<EventId>) -> usize {
        // Each parked origin's next as it stands now, before any of them
        // applies: the event parked under `applied`. (Looked up after one
        // applied, an origin listed twice would name the event after it,
        // which waited for its predecessor, not for `applied`, and whose
        // dependencies `release` would not check from the start.)
        // A parked event no longer its origin's next was applied meanwhile
        // (with held runs applied together): its origin's next is woken by
        // its predecessor, and `release` must not take it for one whose
        // dependencies before `applied`'s origin were checked.
        let still_next = |id: &EventId| self.applied.get(id.peer).saturating_add(1) == id.seq;
        let (one, many) = match self.holding.woken(applied) {
            None => (None, Vec::new()),
            Some(Parked::One(parked)) => (Some(parked).filter(still_next), Vec::new()),
            Some(Parked::Many(parked)) => (None, parked.into_iter().filter(still_next).collect()),
        };
        let mut count = self.release(
            EventId::new(applied.peer, applied.seq.saturating_add(1)),
            applied,
            to_wake,
        );
        for next in one.into_iter().chain(many) {
            count += self.release(next, applied, to_wake);
        }
        // Tries of held runs together that stopped for it go on.
        if let Some(starts) = self.holding.retries(applied) {
            for &start in starts.events() {
                if self.applied.get(start.peer).saturating_add(1) == start.seq {
                    count += self.release_together(start, to_wake);
                }
            }
        }
        count
    }

    /// Applies the held event `next`, its origin's next, if nothing it
    /// needs is missing now that `woken_by` applied (its id to `to_wake`);
    /// else parks its origin under what it waits for. Returns how many
    /// applied (0 or 1).
    fn release(&mut self, next: EventId, woken_by: EventId, to_wake: &mut Vec<EventId>) -> usize {
        // A run held whole applies only once all of it can.
        if let Some(missing) = self.run_waits_for(next) {
            return self.park_or_join(next, missing, to_wake);
        }
        let applied = &self.applied;
        let mut waits_for = None;
        let ready = self.holding.release_if(next, |event| {
            waits_for = first_missing(applied, event, next.seq - 1, Some(woken_by));
            waits_for
        });
        match (ready, waits_for) {
            (Some(event), _) => {
                self.apply(event);
                to_wake.push(next);
                1
            }
            // Parked: under an event held in a run held whole, it may be
            // one of runs waiting on one another.
            (None, Some(missing)) if self.holding.has_runs() && self.holding.contains(missing) => {
                self.release_together(next, to_wake)
            }
            (None, _) => 0,
        }
    }

    /// Parks `next`'s origin under `missing`, unless `missing` is held and
    /// the held runs apply together ([`release_together`](Self::release_together)).
    pub(super) fn park_or_join(
        &mut self,
        next: EventId,
        missing: EventId,
        to_wake: &mut Vec<EventId>,
    ) -> usize {
        if self.holding.contains(missing) {
            let applied = self.release_together(next, to_wake);
            if applied > 0 {
                return applied;
            }
        }
        self.holding.park(next, missing);
        0
    }

    /// Applies a causally ready event to the state, the version vector and
    /// the log. Local and remote events both come through here.
    pub(super) fn apply(&mut self, event: P2PEvent) {
        let id = event.id;
        // Events apply in their origin's order: what is applied of it is
        // the one before (no search of the version vector for it).
        debug_assert_eq!(self.applied.get(id.peer), id.seq - 1);
        self.clock.observe(event.hlc);
        if id.peer == self.peer {
            self.own_stamp = self.own_stamp.max(event.hlc.millis());
        }
        if let Some(moved) = &mut self.moved {
            moved.note(id);
        }
        if id.seq == 1 && self.holding.unapplied_origins() > 0 {
            self.holding.origin_applied(id.peer);
        }
        self.applied
            .observe_hinted(id.peer, id.seq, &mut self.applied_hint);
        if id.peer != self.peer {
            self.unsent.note(id.peer);
        }
        let (index, new) = self.entities.find_or_insert(&event.key, |key| {
            Slot::new(key, Entity::new(&event), Some(id.peer))
        });
        let slot = self.entities.at(index);
        if !new {
            slot.entity.apply(&event);
            slot.last_writer = Some(id.peer);
        }
        self.books.touch(index, slot);
        if super::policy::is_reserved(&event.key) {
            self.refresh_room_policy(&event.key);
        }
        if !self.requested.is_empty() && !self.books.conflicted.contains(&*event.key) {
            self.requested.remove(&*event.key);
        }
        self.stats.applied += 1;
        if let Some(journal) = &mut self.journal {
            journal.push(super::JournalEntry::Applied(id));
        }
        if event.op.supersedes() {
            self.logged_superseders.push(id);
        }
        self.log.append(event);
    }
}

/// Whether `event` is its origin's next (the first the engine lacks of
/// it; `have`: what is applied of the origin): the one event of its
/// origin that can be ready. A later one waits for its predecessor.
fn next_of_origin(event: &P2PEvent, have: u64) -> bool {
    event.id.seq - 1 == have
}

/// The first event `event` waits for, or `None` when it is ready: its
/// origin's previous event, its `deps` and every dot it observed are
/// in `applied`. `have`: what is applied of its origin.
///
/// It names the exact event missing (not "the next one of that
/// origin"), under which the holding queue parks the event's origin
/// when the event is the origin's next.
///
/// `woken_by`: the event it was parked under, just applied (or its
/// predecessor, just applied: nothing was checked after that). What was
/// found applied before it still is, so the search resumes where it
/// stopped: an event that depends on the last events of 63 writers is
/// woken by each in turn, and would otherwise check all 63 each time.
pub(super) fn first_missing(
    applied: &VectorClock,
    event: &P2PEvent,
    have: u64,
    woken_by: Option<EventId>,
) -> Option<EventId> {
    let origin = event.id.peer;
    if have.saturating_add(1) < event.id.seq {
        return Some(EventId::new(origin, event.id.seq - 1));
    }
    // It waited for its origin's previous event (nothing after was
    // checked), for an entry of its deps (those before it were met),
    // or for an observed dot (every dep was met).
    let deps_from = match woken_by {
        Some(w) if w.peer == origin && w.seq == event.id.seq - 1 => Some(PeerId(0)),
        Some(w) if event.deps.get(w.peer) == w.seq => Some(w.peer),
        Some(_) => None,
        None => Some(PeerId(0)),
    };
    // Past the check above, the origin's own earlier events are met
    // (`have`), whatever `applied` says of it: a run's events are checked
    // before its first is applied (`runs.rs`), and one that observes an
    // earlier event of its run waits for nothing (a helper's review).
    if let Some(from) = deps_from {
        let mut beyond = applied.first_beyond(&event.deps, from, 0);
        if beyond.is_some_and(|(peer, _)| peer == origin) {
            // A clock names each peer once: the next entry is another's.
            beyond = (origin.0.checked_add(1))
                .and_then(|next| applied.first_beyond(&event.deps, PeerId(next), 0));
        }
        if let Some((peer, seq)) = beyond {
            return Some(EventId::new(peer, seq));
        }
    }
    match event.op.first_uncovered_dot(applied) {
        Some(dot) if dot.peer == origin => event
            .op
            .observed()
            .find(|d| d.peer != origin && applied.get(d.peer) < d.seq),
        uncovered => uncovered,
    }
}
