//! Catching up beyond the event log: snapshot transfer for peers behind the
//! compaction horizon, Merkle descent for states that differ under equal
//! clocks.

use std::sync::Arc;

use super::MIN_OFFLOADED_SEALS;
use super::{
    Output, SyncNode, MAX_LEAF_BYTES_PER_INTERVAL, MAX_MERKLE_ANSWERS_PER_INTERVAL,
    MAX_RESENT_BYTES_PER_INTERVAL,
};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::digest::{FANOUT, LEAF_DEPTH, LEAVES};
use crate::protocol::engine::Trust;
use crate::protocol::event::{Hash32, P2PEvent};
use crate::protocol::seal::{SealError, SnapshotSeals};
use crate::protocol::snapshot::{SnapshotError, StateSnapshot};
use crate::protocol::sync::budget::Reservation;
use crate::protocol::sync::refusal::Refusal;
use crate::protocol::sync::transfer::{
    Decoding, Incoming, Inflating, Loading, Outgoing, Verifying, GZIP_PATIENCE_MS, KEPT_SNAPSHOTS,
    MAX_STALLS, SNAPSHOT_SEALS_PER_BATCH, WINDOW_BYTES,
};
use crate::protocol::sync::wire::{Gzipped, Message};

/// The largest copy of a leaf sent: what one message carries
/// ([`MAX_MESSAGE`](crate::protocol::sync::wire::MAX_MESSAGE)), less room
/// for its envelope. A leaf rests on whole signed runs, each up to a
/// message's size, so a few runs of large values make a leaf larger.
const MAX_LEAF_STATE: usize = crate::protocol::sync::wire::MAX_MESSAGE - 1024;

impl SyncNode {
    /// The snapshot to offer, kept last: the newest kept one while the
    /// log still reaches back to it (a durable node's last fold, or one
    /// encoded for an earlier offer), else a fresh one.
    fn outgoing_snapshot(&mut self) -> &mut Outgoing {
        // Our writes are sealed first: a snapshot carries signed runs only.
        self.flush_local();
        let current = self
            .outgoing
            .last()
            .is_some_and(|o| !self.engine.needs_snapshot(&o.clock));
        if !current {
            let bytes = Arc::new(self.engine.encode_snapshot());
            self.keep_outgoing(bytes);
        }
        self.outgoing.last_mut().expect("one is kept")
    }

    /// Keeps `bytes`, the state encoded now, as the snapshot to offer
    /// next. Those never offered go (no transfer can be reading them);
    /// of those offered, the newest [`KEPT_SNAPSHOTS`] stay with it, so
    /// a transfer under way can resume at its offset.
    pub(super) fn keep_outgoing(&mut self, bytes: Arc<Vec<u8>>) {
        self.outgoing.retain(Outgoing::is_offered);
        self.outgoing
            .push(Outgoing::new(self.engine.clock().clone(), bytes));
        if self.outgoing.len() > KEPT_SNAPSHOTS {
            self.outgoing.remove(0);
        }
    }

    /// Offers `to` the snapshot to offer. With
    /// [`gzip_snapshots`](super::SyncConfig::gzip_snapshots), once its
    /// gzipped form is in hand (or given up): the first offer of a
    /// snapshot asks the edge for it, and waits.
    pub(super) fn offer_snapshot(&mut self, to: PeerId) {
        let (gzip, now_ms) = (self.config.gzip_snapshots, self.last_input_ms);
        let snapshot = self.outgoing_snapshot();
        if gzip && snapshot.wants_gzip() {
            snapshot.gzip_asked(now_ms);
            let bytes = snapshot.bytes.clone();
            self.outputs.push(Output::GzipSnapshot { bytes });
        }
        let snapshot = self.outgoing.last_mut().expect("one is kept");
        if snapshot.gzip_pending() {
            if !self.awaiting_gzip.contains(&to) {
                self.awaiting_gzip.push(to);
            }
            return;
        }
        // Hashed on the kept one, so the requests that follow the offer
        // find it by its id.
        let offer = Message::SnapshotOffer {
            id: snapshot.offer_id(),
            total: snapshot.bytes.len() as u64,
            clock: snapshot.clock.clone(),
            gzip: snapshot.gzip_offer(),
        };
        self.send(to, &offer);
    }

    /// The edge's answer to [`Output::GzipSnapshot`] for `snapshot` (or,
    /// unasked, the gzipped form of a snapshot the node gave storage):
    /// kept beside it if it is still kept, and the offers that waited for
    /// it go out.
    pub fn snapshot_gzipped(&mut self, snapshot: &Arc<Vec<u8>>, gzipped: Result<Vec<u8>, String>) {
        if let Some(kept) = self
            .outgoing
            .iter_mut()
            .find(|o| Arc::ptr_eq(&o.bytes, snapshot))
        {
            kept.take_gzip(gzipped);
        }
        self.offer_awaiting();
    }

    /// Offers the snapshot to the peers that wait for it, unless its
    /// gzipped form is still out.
    fn offer_awaiting(&mut self) {
        if self.outgoing.last().is_some_and(Outgoing::gzip_pending) {
            return;
        }
        for peer in std::mem::take(&mut self.awaiting_gzip) {
            if self.sessions.contains_key(&peer) {
                self.offer_snapshot(peer);
            }
        }
    }

    /// On the timer: offers wait no longer than
    /// [`GZIP_PATIENCE_MS`](crate::protocol::sync::transfer::GZIP_PATIENCE_MS)
    /// for a gzipped form (past that, the snapshot goes as it is), nor a
    /// newcomer for its edge to inflate one (past that, it takes the next
    /// offer; the sender is not to blame).
    fn tend_gzip(&mut self, now_ms: u64) {
        let overdue = |since_ms: u64| now_ms.saturating_sub(since_ms) > GZIP_PATIENCE_MS;
        if self.inflating.as_ref().is_some_and(|i| overdue(i.since_ms)) {
            self.inflating = None;
        }
        let Some(newest) = self.outgoing.last_mut() else {
            return;
        };
        if newest.gzip_overdue(now_ms) {
            newest.gzip_failed();
            self.offer_awaiting();
        }
    }

    /// How long a transfer may go without a byte before it is asked for
    /// again, or another offer is taken.
    fn patience_ms(&self) -> u64 {
        2 * self.config.gossip_interval_ms
    }

    /// Takes an offer unless this peer already has what it covers, or is
    /// receiving another snapshot that is still progressing (offers from
    /// every neighbour must not make it start over again and again).
    pub(super) fn on_offer(
        &mut self,
        from: PeerId,
        id: Hash32,
        total: u64,
        clock: VectorClock,
        gzip: Option<Gzipped>,
        now_ms: u64,
    ) {
        if total > self.config.max_snapshot {
            let limit = self.config.max_snapshot;
            return self.refuse(from, Refusal::SnapshotTooLarge { total, limit });
        }
        // What the offer claims is checked again once the snapshot is in;
        // a claim no snapshot could back is refused before any transfer.
        let me = self.peer();
        if clock.get(me) > self.engine.clock().get(me) || clock.len() > self.engine.max_origins() {
            self.engine.count_refused_state();
            return self.refuse(from, Refusal::ImpossibleOffer);
        }
        if self.engine.clock().descends(&clock) {
            return;
        }
        // Joined with ours, its origins would pass the bound: refused once
        // in, at no cost to an honest sender (two peers each filled with
        // a member's throwaway origins the other lacks), and downloaded
        // again at every offer (a review counted 601 in 10 minutes). Not
        // taken, and told once an offer.
        let joined = self.engine.origins_joined(&clock);
        let limit = self.engine.max_origins();
        if joined > limit {
            let session = self.sessions.get_mut(&from);
            let told = session.is_some_and(|s| s.offer_past_origins.replace(id) == Some(id));
            if !told {
                self.engine.count_refused_state();
                let refused = SnapshotError::TooManyOriginsJoined {
                    count: joined,
                    limit,
                };
                self.refuse(from, refused.into());
            }
            return;
        }
        if self.taking_snapshot() {
            // A whole snapshot is being decoded, verified or loaded: it is
            // loaded, or refused, before another is taken.
            return;
        }
        // The gzipped form when we can inflate it and it is smaller: the
        // transfer is of its bytes, and what they inflate to is checked
        // against the offer's `total`.
        let (id, total, inflate_to) = match gzip {
            Some(g) if self.config.gzip_snapshots && g.total < total => {
                (g.id, g.total, Some(total))
            }
            _ => (id, total, None),
        };
        let patience = self.patience_ms();
        match &mut self.incoming {
            // The same snapshot: resume it, unless a window is on its way.
            Some(i) if i.id == id && i.total == total => {
                if !i.is_stalled(now_ms, patience) && i.from == from {
                    return;
                }
                i.resume_from(from);
            }
            Some(i) if self.sessions.contains_key(&i.from) && !i.is_stalled(now_ms, patience) => {
                return
            }
            _ => {
                // What it holds of the intake budget grows with what
                // arrives (not with what the offer claims: a member's
                // offer of 1 GB held it all for nothing), then with what
                // it inflates to and its decoded events; given back once it
                // is loaded or dropped.
                self.drop_incoming();
                self.intake_held = self.config.intake.reserve(0);
                self.incoming = Some(Incoming {
                    from,
                    id,
                    clock,
                    total,
                    bytes: Vec::new(),
                    requested_until: 0,
                    last_progress_ms: now_ms,
                    progress_mark: 0,
                    stalls: 0,
                    inflate_to,
                })
            }
        }
        self.request_window(now_ms);
    }

    /// Asks the source for a window from what has arrived (on start, and
    /// again after a stall or a reconnect).
    pub(super) fn request_window(&mut self, now_ms: u64) {
        let Some(incoming) = &self.incoming else {
            return;
        };
        self.ask_window(incoming.received(), now_ms);
    }

    /// Asks for the window after the last one asked for (pipelined).
    fn request_next_window(&mut self, now_ms: u64) {
        let Some(incoming) = &self.incoming else {
            return;
        };
        self.ask_window(incoming.requested_until, now_ms);
    }

    fn ask_window(&mut self, offset: u64, now_ms: u64) {
        let Some(incoming) = &mut self.incoming else {
            return;
        };
        incoming.requested_until = (offset + WINDOW_BYTES).min(incoming.total);
        incoming.last_progress_ms = now_ms;
        let (to, id) = (incoming.from, incoming.id);
        self.send(to, &Message::SnapshotRequest { id, offset });
    }

    /// Serves one window of a kept snapshot; an unknown id gets the current
    /// offer instead.
    pub(super) fn on_snapshot_request(&mut self, from: PeerId, id: Hash32, offset: u64) {
        let Some(bytes) = self.outgoing.iter().find_map(|o| o.bytes_for(id)).cloned() else {
            // Our offer instead (the one it asked for is gone), once an
            // interval: it carries our whole version vector.
            let Some(session) = self.sessions.get_mut(&from) else {
                return;
            };
            if std::mem::replace(&mut session.spent.offered_on_request, true) {
                return self.refuse(from, Refusal::OfferAgain);
            }
            return self.offer_snapshot(from);
        };
        let total = bytes.len();
        let chunk = self.config.snapshot_chunk.max(1);
        let start = usize::try_from(offset).map_or(total, |o| o.min(total));
        let end = (start + WINDOW_BYTES as usize).min(total);
        // What it was sent already goes again within a budget.
        if let Some(session) = self.sessions.get_mut(&from) {
            let again = session.snapshot_sent.again(id, start as u64, end as u64);
            if again > 0 && session.spent.resent_bytes + again > MAX_RESENT_BYTES_PER_INTERVAL {
                return self.refuse(from, Refusal::ResentBudget(MAX_RESENT_BYTES_PER_INTERVAL));
            }
            session.spent.resent_bytes += again;
            session.snapshot_sent.sent(id, end as u64);
        }
        for at in (start..end).step_by(chunk) {
            let message = Message::SnapshotChunk {
                id,
                offset: at as u64,
                total: total as u64,
                bytes: bytes[at..(at + chunk).min(end)].to_vec(),
            };
            self.send(from, &message);
        }
    }

    pub(super) fn on_chunk(
        &mut self,
        from: PeerId,
        id: Hash32,
        offset: u64,
        total: u64,
        bytes: &[u8],
        now_ms: u64,
    ) {
        let Some(incoming) = &mut self.incoming else {
            return self.refuse(from, Refusal::ChunkWithoutOffer);
        };
        if !incoming.fits(from, id, offset, total, bytes.len()) {
            // A repeated window, or one from an abandoned source or
            // another peer: harmless.
            return;
        }
        let holds = incoming.would_hold(bytes.len());
        if !self.hold_for_intake(holds) {
            self.drop_incoming();
            return self.refuse_intake(from, holds);
        }
        let Some(incoming) = &mut self.incoming else {
            return;
        };
        // It fits (above): taken.
        incoming.accept(from, id, offset, total, bytes, now_ms);
        let received = incoming.received();
        self.outputs.push(Output::SnapshotProgress {
            from,
            received,
            total,
            dropped: false,
        });
        if incoming.wants_next_window() {
            return self.request_next_window(now_ms);
        }
        if !incoming.is_complete() {
            return;
        }
        let Some(done) = self.incoming.take() else {
            return;
        };
        match done.inflate_to {
            Some(limit) => {
                let holds = done.total.saturating_add(limit);
                if !self.hold_for_intake(holds) {
                    return self.refuse_intake(from, holds);
                }
                self.inflating = Some(Inflating {
                    from,
                    id: done.id,
                    clock: done.clock,
                    total: limit,
                    since_ms: now_ms,
                });
                self.outputs.push(Output::GunzipSnapshot {
                    id: done.id,
                    bytes: done.bytes,
                    limit,
                });
            }
            None => self.start_decoding(from, done.clock, done.bytes, now_ms),
        }
    }

    /// The edge's answer to [`Output::GunzipSnapshot`] for the gzipped
    /// snapshot `id`: it must inflate to exactly the length offered, and
    /// is then decoded as a snapshot sent as it is. Else the sender is
    /// refused (it is what sent bytes that do not inflate), and a later
    /// offer is taken.
    pub fn snapshot_gunzipped(
        &mut self,
        id: Hash32,
        inflated: Result<Vec<u8>, String>,
        now_ms: u64,
    ) {
        let Some(inflating) = self.inflating.take_if(|i| i.id == id) else {
            return;
        };
        let Inflating {
            from, clock, total, ..
        } = inflating;
        match inflated {
            Ok(bytes) if bytes.len() as u64 == total => {
                self.start_decoding(from, clock, bytes, now_ms)
            }
            Ok(bytes) => {
                let why = format!(
                    "it inflates to {} bytes, not the {total} offered",
                    bytes.len()
                );
                self.engine.count_refused_state();
                self.refuse(from, SnapshotError::Malformed(why).into());
            }
            Err(reason) => {
                let why = format!("its gzipped form does not inflate: {reason}");
                self.engine.count_refused_state();
                self.refuse(from, SnapshotError::Malformed(why).into());
            }
        }
    }

    /// A snapshot's bytes in whole: decoded a slice at a time, the first
    /// slice now.
    fn start_decoding(&mut self, from: PeerId, clock: VectorClock, bytes: Vec<u8>, now_ms: u64) {
        match StateSnapshot::decoding(bytes, self.config.max_snapshot_events) {
            Ok(snapshot) => {
                let events = (snapshot.events() as u64)
                    .saturating_mul(std::mem::size_of::<P2PEvent>() as u64);
                let holds = self.held_for_intake().saturating_add(events);
                if !self.hold_for_intake(holds) {
                    return self.refuse_intake(from, holds);
                }
                self.decoding = Some(Decoding {
                    from,
                    clock,
                    snapshot,
                });
                self.decode_slice(now_ms);
            }
            Err(e) => {
                self.engine.count_refused_state();
                self.refuse(from, e.into());
            }
        }
    }

    /// What the snapshot being taken in holds of the intake budget.
    fn held_for_intake(&self) -> u64 {
        self.intake_held.as_ref().map_or(0, Reservation::bytes)
    }

    /// Has the snapshot being taken in hold `bytes` of the intake budget
    /// in all (more than it holds); whether they were left.
    fn hold_for_intake(&mut self, bytes: u64) -> bool {
        let more = bytes.saturating_sub(self.held_for_intake());
        more == 0
            || self
                .intake_held
                .as_mut()
                .is_some_and(|held| held.grow(more))
    }

    /// Gives up the snapshot being taken in, which needs `holds` bytes of
    /// the intake budget in all where less is left: what it held goes back
    /// at once, and a later offer is taken.
    fn refuse_intake(&mut self, from: PeerId, holds: u64) {
        self.intake_held = None;
        let (needed, left) = (holds, self.config.intake.left());
        self.refuse(from, Refusal::IntakeFull { needed, left });
    }

    /// Gives back what a snapshot held of the intake budget once none is
    /// being taken in (received, inflated, decoded, verified or loaded).
    pub(super) fn release_intake(&mut self) {
        if self.incoming.is_none() && !self.taking_snapshot() {
            self.intake_held = None;
        }
    }

    /// Whether a snapshot in whole is being decoded, verified or loaded.
    fn taking_snapshot(&self) -> bool {
        self.inflating.is_some()
            || self.decoding.is_some()
            || self.verifying.is_some()
            || self.loading.is_some()
    }

    /// Whether a snapshot waits for its next slice to be decoded, opened
    /// or loaded (the timer is due).
    pub(super) fn snapshot_slice_due(&self) -> bool {
        self.decoding.is_some() || self.snapshot_to_open() || self.loading.is_some()
    }

    /// The next slice of the snapshot being taken: decoded, its runs
    /// opened, or loaded.
    pub(super) fn snapshot_slice(&mut self, now_ms: u64) {
        if self.decoding.is_some() {
            self.decode_slice(now_ms);
        } else if self.snapshot_to_open() {
            self.open_snapshot_slice(now_ms);
        } else {
            self.load_slice();
        }
    }

    /// Events a slice of a snapshot takes.
    fn slice(&self) -> usize {
        self.config.snapshot_slice.unwrap_or(usize::MAX)
    }

    /// Decodes a slice of the snapshot received; once it is decoded, it
    /// is taken (or refused) in the same task.
    fn decode_slice(&mut self, now_ms: u64) {
        let slice = self.slice();
        let Some(decoding) = &mut self.decoding else {
            return;
        };
        let decoded = match decoding.snapshot.step(slice) {
            Ok(None) => return,
            Ok(Some(snapshot)) if snapshot.version_vector != decoding.clock => Err(
                SnapshotError::Malformed("its clock is not the one offered".into()),
            ),
            Ok(Some(snapshot)) => Ok(snapshot),
            Err(e) => Err(e),
        };
        let from = decoding.from;
        self.decoding = None;
        match decoded {
            Ok(snapshot) => self.take_snapshot(from, snapshot, now_ms),
            Err(e) => {
                self.engine.count_refused_state();
                self.refuse(from, e.into());
            }
        }
    }

    /// A snapshot in whole, decoded. In a signed room its runs' form is
    /// checked, then their seals are verified: here, or (with
    /// [`offload_seals`](super::SyncConfig::offload_seals) and at least
    /// [`MIN_OFFLOADED_SEALS`] of them) by the verifier elsewhere. Then the
    /// runs are opened a slice at a timer's task
    /// ([`open_snapshot_slice`](Self::open_snapshot_slice)), each batch of
    /// seals handed out as an [`Output::Verify`] as it fills, and the
    /// snapshot is loaded once every batch's verdicts are back
    /// ([`SyncNode::verified`]). A large room's snapshot carries tens of
    /// thousands of seals: seconds of a page's thread. The load, into a
    /// fresh engine, is sliced too ([`load`](Self::load)).
    fn take_snapshot(&mut self, from: PeerId, snapshot: StateSnapshot, now_ms: u64) {
        if !self.signed() {
            return self.load(from, snapshot, Trust::from_peer(now_ms));
        }
        let seals = Verifying::seals_in(&snapshot);
        if !self.config.offload_seals || seals < MIN_OFFLOADED_SEALS {
            let verified = SnapshotSeals::open(&snapshot.events).and_then(|s| s.verify());
            return self.settle_snapshot(from, snapshot, verified, now_ms);
        }
        let first_batch = self.next_batch;
        self.next_batch += seals.div_ceil(SNAPSHOT_SEALS_PER_BATCH) as u64;
        self.verifying = Some(Verifying::new(from, snapshot, seals, first_batch));
    }

    /// Whether a snapshot's runs wait to be opened.
    fn snapshot_to_open(&self) -> bool {
        self.verifying.as_ref().is_some_and(|v| !v.is_open())
    }

    /// Opens a slice of the runs of the snapshot being verified, and hands
    /// out the batches of seals it fills; a run that is not whole refuses
    /// the snapshot.
    fn open_snapshot_slice(&mut self, now_ms: u64) {
        let Some(verifying) = self.verifying.as_mut().filter(|v| !v.is_open()) else {
            return;
        };
        match verifying.open_slice() {
            Ok(batches) => {
                for (batch, seals) in batches {
                    self.outputs.push(Output::Verify { batch, seals });
                }
            }
            Err(e) => {
                if let Some(done) = self.verifying.take() {
                    self.settle_snapshot(done.from, done.snapshot, Err(e), now_ms);
                }
            }
        }
    }

    /// Takes the verdicts of a batch of the snapshot being verified;
    /// returns whether the batch was one of its. The snapshot is settled
    /// once all are back.
    pub(super) fn snapshot_verdicts(&mut self, batch: u64, verdicts: &[u8], now_ms: u64) -> bool {
        let Some(verifying) = &mut self.verifying else {
            return false;
        };
        if !verifying.take(batch, verdicts) {
            return false;
        }
        if let Some(all) = verifying.all_verdicts() {
            if let Some(done) = self.verifying.take() {
                let verified = done.seals.settle(&all);
                self.settle_snapshot(done.from, done.snapshot, verified, now_ms);
            }
        }
        true
    }

    /// Opens and verifies here the seals of the snapshot being verified
    /// (the verifier failed), and settles it.
    pub(super) fn verify_snapshot_here(&mut self, now_ms: u64) {
        if let Some(mut done) = self.verifying.take() {
            let verified = done.open_rest().and_then(|()| done.seals.verify());
            self.settle_snapshot(done.from, done.snapshot, verified, now_ms);
        }
    }

    /// Loads a snapshot of a signed room whose seals were verified, or
    /// refuses it for the run that did not verify.
    fn settle_snapshot(
        &mut self,
        from: PeerId,
        snapshot: StateSnapshot,
        verified: Result<(), SealError>,
        now_ms: u64,
    ) {
        match verified {
            Ok(()) => self.load(from, snapshot, Trust::from_peer(now_ms)),
            Err(e) => {
                self.engine.count_refused_state();
                self.loaded(from, Err(e.into()));
            }
        }
    }

    /// Loads a snapshot whose seals (in a signed room) were verified: into
    /// a fresh engine (a newcomer's) a slice at a time, its first one now;
    /// else at once.
    fn load(&mut self, from: PeerId, snapshot: StateSnapshot, trust: Trust) {
        if self.config.snapshot_slice.is_none() {
            let loaded = self.engine.load_snapshot(snapshot, trust);
            return self.loaded(from, loaded);
        }
        match self.engine.begin_load(snapshot, trust) {
            Ok(load) => {
                self.loading = Some(Loading { from, load });
                self.load_slice();
            }
            Err(e) => self.loaded(from, Err(e)),
        }
    }

    /// Loads a slice of the snapshot being loaded; once all is, it is
    /// taken into the state in the same task.
    fn load_slice(&mut self) {
        let slice = self.slice();
        let Some(loading) = &mut self.loading else {
            return;
        };
        let loaded = match self.engine.load_step(&mut loading.load, slice) {
            Ok(false) => return,
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(Loading { from, load }) = self.loading.take() {
            let loaded = loaded.and_then(|()| self.engine.finish_load(load));
            self.loaded(from, loaded);
        }
    }

    /// After a snapshot from `from` loaded (its state told to every peer,
    /// and stored at the next timer: encoding the state is a task of its
    /// own), or was refused.
    fn loaded(&mut self, from: PeerId, loaded: Result<(), SnapshotError>) {
        match loaded {
            Ok(()) => {
                // A durable node tells its clock once the state is asked
                // to be stored, and the digests wait for that write.
                self.snapshot_to_store = self.config.durable;
                self.digest_when_stored = true;
                self.digest_if_stored();
            }
            Err(e) => self.refuse(from, e.into()),
        }
    }

    /// Gives up the transfer under way, telling the app where it stood;
    /// what it held of the intake budget goes back at once.
    fn drop_incoming(&mut self) {
        if let Some(dropped) = self.incoming.take() {
            self.outputs.push(Output::SnapshotProgress {
                from: dropped.from,
                received: dropped.received(),
                total: dropped.total,
                dropped: true,
            });
            self.release_intake();
        }
    }

    /// On the timer: forgets a transfer this peer no longer needs, and
    /// counts a stall of one that made no progress for a patience period
    /// (asking its source again while it is connected); past
    /// [`MAX_STALLS`] it is given up.
    pub(super) fn tend_transfer(&mut self, now_ms: u64) {
        self.tend_gzip(now_ms);
        let patience = self.patience_ms();
        let Some(incoming) = &self.incoming else {
            return;
        };
        if self.engine.clock().descends(&incoming.clock) || incoming.stalls >= MAX_STALLS {
            self.drop_incoming();
        } else if incoming.is_stalled(now_ms, patience) {
            // A source gone counts its stalls too: a member that offered
            // and went kept the transfer, and what it held, for good.
            let asked = self.sessions.contains_key(&incoming.from);
            if let Some(incoming) = &mut self.incoming {
                incoming.stalls += 1;
                incoming.last_progress_ms = now_ms;
            }
            if asked {
                self.request_window(now_ms);
            }
        }
    }

    pub(super) fn on_merkle_query(&mut self, from: PeerId, depth: u8, index: u32) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.spent.merkle_answers >= MAX_MERKLE_ANSWERS_PER_INTERVAL {
            let limit = MAX_MERKLE_ANSWERS_PER_INTERVAL;
            return self.refuse(from, Refusal::MerkleBudget(limit));
        }
        session.spent.merkle_answers += 1;
        self.engine.digest();
        let children = self
            .engine
            .merkle()
            .children(depth as u32, index as usize)
            .map(|c| c.to_vec());
        match children {
            Some(children) => self.send(
                from,
                &Message::MerkleNodes {
                    depth,
                    index,
                    children,
                },
            ),
            None => self.refuse(from, Refusal::NoMerkleNode { depth, index }),
        }
    }

    /// Descends into the children that differ; at the leaves, sends ours
    /// and asks for theirs.
    pub(super) fn on_merkle_nodes(
        &mut self,
        from: PeerId,
        depth: u8,
        index: u32,
        theirs: &[Hash32],
    ) {
        // Only answers: a node of its own would make us ask it for the
        // leaves it names.
        let asked =
            (self.sessions.get_mut(&from)).is_some_and(|s| s.asked_nodes.answered((depth, index)));
        if !asked {
            return self.refuse(from, Refusal::UnaskedMerkleNode { depth, index });
        }
        let mine = match self.engine.merkle().children(depth as u32, index as usize) {
            Some(mine) if mine.len() == theirs.len() => mine.to_vec(),
            _ => return self.refuse(from, Refusal::NoMerkleNode { depth, index }),
        };
        for (i, (a, b)) in mine.iter().zip(theirs).enumerate() {
            if a == b {
                continue;
            }
            let child = index as usize * FANOUT + i;
            if depth as u32 + 1 < LEAF_DEPTH {
                self.ask_merkle(from, depth + 1, child as u32);
            } else if let Some(session) = self.sessions.get_mut(&from) {
                let (leaf, now_ms) = (child as u16, self.last_input_ms);
                if session.split_leaves.holds(leaf, *a, *b, now_ms) {
                    continue;
                }
                session.asked_leaves.ask(leaf);
                session.leaf_pairs.note(leaf, *a, *b, now_ms);
                self.send(
                    from,
                    &Message::LeafQuery {
                        index: child as u32,
                    },
                );
            }
        }
    }

    /// Asks `to` for the children of its Merkle node at `depth`, `index`
    /// (noted: only an asked node's answer is taken).
    pub(super) fn ask_merkle(&mut self, to: PeerId, depth: u8, index: u32) {
        if let Some(session) = self.sessions.get_mut(&to) {
            session.asked_nodes.ask((depth, index));
            self.send(to, &Message::MerkleQuery { depth, index });
        }
    }

    /// Answers a leaf query with our copy: the signed events it rests on.
    pub(super) fn on_leaf_query(&mut self, from: PeerId, index: u32) {
        if index as usize >= LEAVES {
            return self.refuse(from, Refusal::NoLeaf(index));
        }
        let Some(spent) = self.sessions.get(&from).map(|s| s.spent.leaf_bytes) else {
            return;
        };
        if spent >= MAX_LEAF_BYTES_PER_INTERVAL {
            return self.refuse(from, Refusal::LeafBudget(MAX_LEAF_BYTES_PER_INTERVAL));
        }
        // Our writes are sealed first: the copy carries signed runs only.
        self.flush_local();
        let state = self.engine.leaf_state(index as u16).encode();
        // Charged whether it goes or not (the encoding was the work); what
        // goes past the budget is paid off in the intervals after it
        // (see `tick`), what does not go, in this one.
        let unsent = state.len() > MAX_LEAF_STATE;
        if let Some(session) = self.sessions.get_mut(&from) {
            session.spent.leaf_bytes += if unsent {
                state.len().min(MAX_LEAF_BYTES_PER_INTERVAL)
            } else {
                state.len()
            };
        }
        if unsent {
            // A message the asker would refuse (and charge us for) at
            // every ask: the leaf is left unrepaired instead, its keys
            // healing when they are written again.
            return;
        }
        self.send(from, &Message::LeafState { index, state });
    }

    /// Joins a peer's copy of a leaf we asked it for, once it verifies.
    /// Unasked copies are refused: state that arrives whole is taken only
    /// in answer to a request of ours.
    pub(super) fn on_leaf(&mut self, from: PeerId, index: u32, state: &[u8], now_ms: u64) {
        let asked = index < LEAVES as u32
            && (self.sessions.get_mut(&from))
                .is_some_and(|s| s.asked_leaves.answered(index as u16));
        if !asked {
            // Not what an honest peer sends, but no lie either.
            self.engine.count_refused_state();
            return self.refuse(from, SnapshotError::Unasked.into());
        }
        let trust = Trust {
            signed: self.signed(),
            now_ms: Some(now_ms),
        };
        // The engine counts what it refuses; a leaf that does not decode
        // never reaches it. A copy of more events than our clock counts
        // cannot be joined (its clock must be ours, its events distinct
        // and within it): refused before any is decoded.
        let limit = usize::try_from(self.engine.clock().total()).unwrap_or(usize::MAX);
        let joined = match StateSnapshot::decode_at_most(state, limit) {
            Ok(state) => self.engine.join_leaf(index as u16, state, trust),
            Err(e) => {
                self.engine.count_refused_state();
                Err(e)
            }
        };
        if let Err(e) = joined {
            if let SnapshotError::OtherVersion(_) = e {
                if let Some(session) = self.sessions.get_mut(&from) {
                    if let Some((ours, theirs)) = session.leaf_pairs.get(index as u16) {
                        session
                            .split_leaves
                            .note(index as u16, ours, theirs, now_ms);
                    }
                }
            }
            self.refuse(from, e.into());
        }
    }
}
