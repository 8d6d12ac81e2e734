//! Digests, events, relay, reconciliation messages and compaction.

use hashbrown::HashSet;

use foldhash::fast::FixedState;

use super::batch::Batch;
use super::{Output, Persist, Relay, SyncConfig, SyncNode, MAX_REQUESTS_PER_INTERVAL};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::engine::ReconcileStep;
use crate::protocol::error::ReceiveError;
use crate::protocol::event::{EventId, Hash32, P2PEvent};
use crate::protocol::hashing;
use crate::protocol::json::WriteJson;
use crate::protocol::key_sort;
use crate::protocol::reconciliation::{ReconciliationRequest, ReconciliationResponse};
use crate::protocol::seal;
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::sync::refusal::Refusal;
use crate::protocol::sync::session::Session;
use crate::protocol::sync::wire::{self, Message, MAX_FRAME};

/// Events held for verification across frames, at most: beyond it they
/// are verified at once, so held frames take bounded memory however few
/// seals they carry, and the task that verifies and applies them stays
/// short (four runs' worth of events: a few ms in warm wasm). Four runs
/// rather than one: a few writers' bursts (runs of 100) made batches of
/// ~10 seals, whose verification amortizes less and whose handoffs to a
/// Worker cost the page's thread; at four, the run-heavy benchmark took
/// ~6% less time with Workers and ~9% less in place (BENCHMARKS, "Issue
/// 17, fifty-fifth session"); at sixteen, the last batches' wait undid it.
pub const MAX_UNVERIFIED_EVENTS: usize = 4 * seal::MAX_RUN;

/// Events out for verification elsewhere at once, at most
/// ([`SyncConfig::offload_seals`](super::SyncConfig::offload_seals)):
/// past it, a new batch is verified here too (and waits, verified, for
/// those before it), so a flood faster than the verifier has one more
/// verifier rather than a longer queue.
pub const MAX_IN_FLIGHT_EVENTS: usize = 8 * MAX_UNVERIFIED_EVENTS;

/// Events held for batches out at once, at most: a verifier this far
/// behind has stopped answering, and the node verifies what is out itself,
/// so held frames stay bounded.
pub const MAX_HELD_FOR_VERIFIER: usize = 2 * MAX_IN_FLIGHT_EVENTS;

/// Bytes held for verification across frames ([`Held::bytes`]): past
/// them what is held is verified (so at most this and one frame are
/// held for a window). The event bounds above, for events that carry
/// large values: a message may hold 16 MiB, and without a bound of bytes
/// a member sending one-event runs of large values had 256 of them (a
/// batch's seals) held, 4 GiB, and eight such batches out.
pub const MAX_UNVERIFIED_BYTES: usize = 4 << 20;

/// Bytes out for verification elsewhere at once, at most (as
/// [`MAX_IN_FLIGHT_EVENTS`]).
pub const MAX_IN_FLIGHT_BYTES: usize = 8 * MAX_UNVERIFIED_BYTES;

/// Bytes held for batches out at once, at most (as
/// [`MAX_HELD_FOR_VERIFIER`]); a window's frames may be held beside them.
pub const MAX_HELD_FOR_VERIFIER_BYTES: usize = 2 * MAX_IN_FLIGHT_BYTES;

/// What frames held for verification hold: their events, and about the
/// memory those take (decoded, [`P2PEvent::held_size`], and the copy of
/// each frame kept to be stored as it came).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub events: usize,
    pub bytes: usize,
}

impl Held {
    const UNVERIFIED: Held = Held {
        events: MAX_UNVERIFIED_EVENTS,
        bytes: MAX_UNVERIFIED_BYTES,
    };
    const IN_FLIGHT: Held = Held {
        events: MAX_IN_FLIGHT_EVENTS,
        bytes: MAX_IN_FLIGHT_BYTES,
    };
    const FOR_VERIFIER: Held = Held {
        events: MAX_HELD_FOR_VERIFIER,
        bytes: MAX_HELD_FOR_VERIFIER_BYTES,
    };

    /// What a frame's runs and its kept copy hold.
    fn of(opened: &seal::Opened, sent: Option<&Batch>) -> Held {
        Held {
            events: opened.events(),
            bytes: opened.held_size() + sent.map_or(0, |b| b.frame().len()),
        }
    }

    fn within(self, bound: Held) -> bool {
        self.events <= bound.events && self.bytes <= bound.bytes
    }

    /// Whether either count reached `bound`'s.
    fn reaches(self, bound: Held) -> bool {
        self.events >= bound.events || self.bytes >= bound.bytes
    }
}

impl std::ops::Add for Held {
    type Output = Held;

    fn add(self, other: Held) -> Held {
        Held {
            events: self.events + other.events,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, other: Held) {
        *self = *self + other;
    }
}

impl std::ops::SubAssign for Held {
    fn sub_assign(&mut self, other: Held) {
        self.events -= other.events;
        self.bytes -= other.bytes;
    }
}

/// Seals a batch must hold to be handed out: fewer are verified here (a
/// lone write's seal takes ~0.1 ms, about a message to a Worker and back),
/// unless batches are out already (they are applied in order). At 16 the
/// run-heavy benchmark's batches (~10 seals: bursts of 100 writes from a
/// few writers) stayed on the page's thread; at 4 they go out, and the
/// stream takes ~30% less time with two workers, its thread busy 60% less
/// (BENCHMARKS, "Issue 17, thirteenth session").
pub const MIN_OFFLOADED_SEALS: usize = 4;

/// A batch of held frames whose seals are being verified elsewhere.
pub(super) struct InFlight {
    batch: u64,
    senders: Vec<PeerId>,
    opened: Vec<seal::Opened>,
    /// Each frame's batch as it came, kept to be stored so.
    sent: Vec<Option<Batch>>,
    held: Held,
    /// Its verdicts, once they came (a batch waits for those before it).
    verdicts: Option<Vec<u8>>,
}

/// Events in one `Events` message, at most (whole runs: a run longer than
/// this goes alone): a receiver takes a message in one task, which must
/// stay short whatever the events' size.
pub(super) const EVENTS_PER_MESSAGE: usize = seal::MAX_RUN;

/// What spreading some events takes, planned while they are borrowed
/// from the engine's log: the copies each link lacks, pushed or announced
/// (gossip relay, duplicates suppressed).
pub(super) struct Spread {
    sends: Vec<(PeerId, Vec<P2PEvent>)>,
    announces: Vec<(PeerId, Vec<P2PEvent>)>,
    /// Peers pushed every event: each gets the same `frames`.
    whole: Vec<PeerId>,
    /// Every event in frames, made once for all of `whole`: the frame
    /// they came in, or the events encoded.
    frames: Vec<Vec<u8>>,
    /// The events' ids, when some peer takes them all.
    ids: Vec<EventId>,
}

impl Spread {
    /// Plans `events` for every connected peer but `except` that does not
    /// have them yet; `own`: they are our own writes. `came_in`: the
    /// frame they came in, if they are exactly its events ([`Batch`]):
    /// it goes as it is to the peers pushed all of them.
    pub(super) fn plan(
        sessions: &SortedMap<PeerId, Session>,
        config: &SyncConfig,
        events: &[&P2PEvent],
        except: Option<PeerId>,
        own: bool,
        came_in: Option<&[u8]>,
    ) -> Spread {
        let (relay, signed) = (config.relay, config.identity.is_some());
        let mut sends = Vec::new();
        let mut announces = Vec::new();
        let mut whole = Vec::new();
        // Whole runs (a partial one is left out of any send), to go in
        // the same frames to every peer that lacks them all: asked once,
        // when a peer is to be pushed them.
        let mut whole_runs = None;
        let mut whole_runs = || {
            *whole_runs.get_or_insert_with(|| {
                seal::whole_runs(events, |_| true, signed)
                    .iter()
                    .all(|&run| run)
            })
        };
        for (&peer, session) in sessions.iter() {
            // Flood: our own writes go to every link, others' to the peers
            // that did not ask us to stop. Tree: eager links get the
            // events, lazy ones an `IHave`. Pull: our own writes go to
            // every link, others' are announced.
            if Some(peer) == except || (relay == Relay::Flood && !own && session.lazy) {
                continue;
            }
            let their = &session.their_clock;
            let announce = match relay {
                Relay::Flood => false,
                Relay::Tree => session.lazy,
                Relay::Pull => !own,
            };
            // An origin's events come in a stretch, in sequence order:
            // lacking its first, the peer lacks the rest.
            let mut stretches = events.chunk_by(|a, b| a.id.peer == b.id.peer);
            if !announce && stretches.all(|s| their.get(s[0].id.peer) < s[0].id.seq) && whole_runs()
            {
                whole.push(peer);
                continue;
            }
            let sent = seal::whole_runs(events, |e| their.get(e.id.peer) < e.id.seq, signed);
            let lacking: Vec<P2PEvent> = events
                .iter()
                .zip(sent)
                .filter(|(_, send)| *send)
                .map(|(e, _)| (*e).clone())
                .collect();
            if lacking.is_empty() {
                continue;
            }
            if announce {
                announces.push((peer, lacking));
            } else {
                sends.push((peer, lacking));
            }
        }
        let frames = match (whole.is_empty(), came_in) {
            (true, _) => Vec::new(),
            (false, Some(frame)) => vec![frame.to_vec()],
            (false, None) => frames_of(events, signed).unwrap_or_else(|| {
                // A run too large for a frame goes in chunks, a link's
                // own: each peer is sent the events, as it lacks them.
                let all = || events.iter().map(|e| (*e).clone()).collect();
                for peer in std::mem::take(&mut whole) {
                    sends.push((peer, all()));
                }
                Vec::new()
            }),
        };
        let ids = if whole.is_empty() {
            Vec::new()
        } else {
            events.iter().map(|e| e.id).collect()
        };
        Spread {
            sends,
            announces,
            whole,
            frames,
            ids,
        }
    }

    /// The events' batch, when they all went in one frame: the record
    /// storage would encode of them ([`wire::event_batch`]).
    pub(super) fn batch(&self) -> Option<&[u8]> {
        match &self.frames[..] {
            [frame] => wire::event_batch(frame),
            _ => None,
        }
    }
}

/// `events` in messages of about one frame each, as the number of events
/// each takes: whole runs (every event is one, unsigned) to a message, as
/// many as fit; a run that would pass the bounds starts the next message
/// (or goes alone, if it passes them by itself).
fn messages(events: &[&P2PEvent], signed: bool) -> Vec<usize> {
    let mut messages = Vec::new();
    let (mut count, mut size) = (0, 0);
    let mut rest = events;
    while !rest.is_empty() {
        // A run ends at its seal (signed), or is an event (unsigned).
        let run = if signed {
            let sealed = rest.iter().position(|e| e.seal.is_some());
            sealed.map_or(rest.len(), |i| i + 1)
        } else {
            1
        };
        let run_size: usize = rest[..run].iter().map(|e| e.approx_size()).sum();
        let full = size + run_size > EVENTS_PER_MESSAGE_BYTES || count + run > EVENTS_PER_MESSAGE;
        if full && count > 0 {
            messages.push(count);
            (count, size) = (0, 0);
        }
        count += run;
        size += run_size;
        rest = &rest[run..];
    }
    if count > 0 {
        messages.push(count);
    }
    messages
}

/// The whole frames of [`messages`] of `events`, each encoded once; `None`
/// if one of them would pass a frame (it goes in chunks).
fn frames_of(events: &[&P2PEvent], signed: bool) -> Option<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    let mut rest = events;
    for count in messages(events, signed) {
        let (message, after) = rest.split_at(count);
        let batch = P2PEvent::encode_batch(message.iter().copied());
        frames.push(wire::events_frame(&batch)?);
        rest = after;
    }
    Some(frames)
}

/// Eager links left, at least, when a duplicate push would prune one
/// (PlumTree's tree: one; a lazy link grafts back when it must).
pub const EAGER_KEPT: usize = 1;

/// Entities rehashed at a time into the Merkle digest (a few ms of work).
pub const DIGEST_SLICE: usize = 2_000;

/// Target encoded size of one `Events` message: a frame, with room to spare.
const EVENTS_PER_MESSAGE_BYTES: usize = MAX_FRAME - 4 * 1024;
/// How many times `compact_after` the log may grow while events keep
/// coming before a fold is forced ([`SyncNode::compact`]).
pub const FORCED_FOLD: usize = 4;

impl SyncNode {
    /// Sends our version vector and Merkle root. While many entities wait
    /// to be rehashed (after a burst of events) the root is left out (all
    /// zeros): it is only compared when clocks are equal, and computing it
    /// at once would stall the peer; [`SyncNode::refresh_digest`] catches
    /// up in slices.
    pub(super) fn send_digest(&mut self, to: PeerId) {
        if self.digest_when_stored {
            // A loaded snapshot waits to be stored: every peer is told
            // once it is (a gossip round or a new session in between
            // told its clock before, a review found).
            return;
        }
        let clock = self.engine.clock().clone();
        let root = self
            .engine
            .digest_within(DIGEST_SLICE)
            .unwrap_or(Hash32::ZERO);
        self.send(to, &Message::Digest { clock, root });
    }

    /// Answers a digest with exactly what the sender lacks: events, or a
    /// snapshot offer when it is behind our compaction horizon. Equal clocks
    /// with different roots start a Merkle descent.
    pub(super) fn on_digest(&mut self, from: PeerId, clock: VectorClock, root: Hash32) {
        let me = self.peer();
        let ours = self.engine.clock().get(me);
        if let Some(session) = self.sessions.get_mut(&from) {
            session.their_clock = clock.clone();
            // No more of ours than we made: a claim of our writes to come
            // would have them folded before any peer had them (a review).
            if clock.get(me) > ours {
                session.their_clock.set(me, ours);
            }
            session.their_root = Some(root);
            session.synced = true;
        }
        if self.engine.needs_snapshot(&clock) {
            if let Some(session) = self.sessions.get_mut(&from) {
                session.owed.clear();
            }
            self.offer_snapshot(from);
            return;
        }
        if self.config.relay != Relay::Flood {
            self.check_announced(from, &clock);
        }
        let ours = self.engine.clock();
        if let Some(session) = self.sessions.get_mut(&from) {
            // What we sent it lately (pushed, or answered) is on its
            // way, and what we announced it it pulls (see `relay.rs`); a
            // digest after that asks again for what did not come
            // (`Told`), and what it said it had once it is not sent.
            let flood = self.config.relay == Relay::Flood;
            let (now_ms, patience_ms) = (
                self.last_input_ms,
                session.patience_ms(self.config.gossip_interval_ms),
            );
            session.ack(&clock, ours);
            session.told.heard(&session.acked, now_ms, patience_ms);
            let told = &session.told;
            session.owed.answer(ours, &session.acked, |origin| {
                told.on_its_way(origin, now_ms, patience_ms)
            });
            if flood && !session.owed.is_empty() {
                // It missed what we relay: relay to it again.
                session.lazy = false;
            }
        }
        self.send_owed();
        if clock == *self.engine.clock()
            && root != Hash32::ZERO
            && self
                .engine
                .digest_within(DIGEST_SLICE)
                .is_some_and(|ours| ours != root)
        {
            self.ask_merkle(from, 0, 0);
        }
    }

    /// Events from `from`: in a signed room their runs' form is checked
    /// and their seals verified, now or (with a verification window)
    /// together with those of the frames after them.
    ///
    /// `sent`: the frame's batch as it came (see [`Batch`]), stored as it
    /// is if every event of it applies.
    pub(super) fn on_events(
        &mut self,
        from: PeerId,
        events: Vec<P2PEvent>,
        sent: Option<Batch>,
        now_ms: u64,
    ) {
        let signed = self.signed();
        if !signed || self.config.verify_window_ms.is_none() {
            // Unsigned, seals are stripped: a batch carrying any is not
            // what is applied.
            let sent = sent.filter(|_| signed || events.iter().all(|e| e.seal.is_none()));
            let events = if signed {
                let mut opened = seal::check_runs(events);
                self.forget_known(from, &mut opened);
                self.verify_now(from, opened)
            } else {
                self.open_seals(from, events)
            };
            return self.apply_received(from, events, sent, now_ms);
        }
        let mut opened = seal::check_runs(events);
        self.forget_known(from, &mut opened);
        // Events that fail their runs' form are refused, not applied: the
        // frame is no longer what will apply, so its copy is not kept.
        let sent = sent.filter(|batch| batch.count == opened.events());
        let held = Held::of(&opened, sent.as_ref());
        if !(self.unverified_held + held).within(Held::UNVERIFIED) {
            // What is held goes first: a task applies at most the bound
            // (or one frame) of events, not the bound and a frame more.
            self.verify_received(now_ms);
        }
        if self.unverified.is_empty() {
            self.unverified_since = now_ms;
        }
        self.unverified_last = now_ms;
        self.unverified_seals += opened.seals();
        self.unverified_held += held;
        self.unverified.push((from, opened, sent));
        if self.unverified_seals >= seal::BATCH || self.unverified_held.reaches(Held::UNVERIFIED) {
            self.verify_received(now_ms);
        }
    }

    /// Verifies the seals of every frame held for verification, together,
    /// and applies the events of the runs that verify, frame by frame in
    /// the order they came.
    ///
    /// With [`offload_seals`](super::SyncConfig::offload_seals) they are
    /// handed out instead (see [`SyncNode::verified`]).
    pub fn verify_received(&mut self, now_ms: u64) {
        if self.unverified.is_empty() {
            return;
        }
        self.unverified_seals = 0;
        let held = std::mem::take(&mut self.unverified_held);
        let unverified = std::mem::take(&mut self.unverified);
        let mut senders = Vec::with_capacity(unverified.len());
        let mut opened = Vec::with_capacity(unverified.len());
        let mut sent = Vec::with_capacity(unverified.len());
        for (from, frame, batch) in unverified {
            senders.push(from);
            opened.push(frame);
            sent.push(batch);
        }
        let seals: usize = opened.iter().map(seal::Opened::seals).sum();
        let offload = seals >= MIN_OFFLOADED_SEALS || !self.in_flight.is_empty();
        if self.config.offload_seals && offload {
            if (self.in_flight_held + held).within(Held::FOR_VERIFIER) {
                let batch = self.next_batch;
                self.next_batch += 1;
                let out = (self.in_flight_out() + held).within(Held::IN_FLIGHT);
                let verdicts = if out {
                    self.outputs.push(Output::Verify {
                        batch,
                        seals: seal::pack(&opened),
                    });
                    None
                } else {
                    // The verifier is behind: this one is verified here,
                    // and applied after those out.
                    Some(seal::verdicts(&opened))
                };
                self.in_flight_held += held;
                self.in_flight.push_back(InFlight {
                    batch,
                    senders,
                    opened,
                    sent,
                    held,
                    verdicts,
                });
                // Verified here with nothing out before it: at once.
                self.apply_settled(now_ms);
                return;
            }
            // The verifier is that far behind: what is out first, here.
            self.verify_in_flight(now_ms);
        }
        let settled = seal::verify_opened(opened);
        self.apply_verified(senders, settled, sent, now_ms);
    }

    /// The verdicts of a batch handed out by [`Output::Verify`], one per
    /// seal in its order (1: it verifies). The batch's events are applied
    /// once every batch handed out before it is; a run whose seal has no
    /// verdict of 1 is refused. A batch of a received snapshot's seals
    /// settles the snapshot once every batch of it is back: it loads if
    /// every verdict is 1, else it is refused whole. Verdicts for a batch
    /// not out (settled already, or never handed out) are ignored.
    pub fn verified(&mut self, batch: u64, verdicts: &[u8], now_ms: u64) {
        if self.snapshot_verdicts(batch, verdicts, now_ms) {
            return;
        }
        let Some(held) = self
            .in_flight
            .iter_mut()
            .find(|b| b.batch == batch && b.verdicts.is_none())
        else {
            return;
        };
        held.verdicts = Some(verdicts.to_vec());
        self.apply_settled(now_ms);
    }

    /// Applies the batches at the front that have their verdicts, in order.
    fn apply_settled(&mut self, now_ms: u64) {
        while self.in_flight.front().is_some_and(|b| b.verdicts.is_some()) {
            let Some(done) = self.in_flight.pop_front() else {
                break;
            };
            self.in_flight_held -= done.held;
            let verdicts = done.verdicts.unwrap_or_default();
            let settled = seal::settle(done.opened, &verdicts);
            self.apply_verified(done.senders, settled, done.sent, now_ms);
        }
    }

    /// Verifies here every batch still out (the verifier fell behind, or
    /// the caller's stopped: see [`SyncNode::verify_here`]), in order, and
    /// applies them; verdicts that come for them later are ignored.
    pub(super) fn verify_in_flight(&mut self, now_ms: u64) {
        // Taken with the batches, before any is applied.
        self.in_flight_held = Held::default();
        for held in std::mem::take(&mut self.in_flight) {
            let settled = match &held.verdicts {
                Some(verdicts) => seal::settle(held.opened, verdicts),
                None => seal::verify_opened(held.opened),
            };
            self.apply_verified(held.senders, settled, held.sent, now_ms);
        }
    }

    /// Stops handing seals out ([`SyncConfig::offload_seals`]) and verifies
    /// what is out here (frames' seals, and a snapshot's): for a caller
    /// whose verifier failed.
    pub fn verify_here(&mut self, now_ms: u64) {
        self.config.offload_seals = false;
        self.verify_in_flight(now_ms);
        self.verify_snapshot_here(now_ms);
    }

    /// Batches out for verification elsewhere, or verified here and
    /// waiting for those, not yet applied; a received snapshot's seals out
    /// count as one.
    pub fn verifying(&self) -> usize {
        self.in_flight.len() + usize::from(self.verifying.is_some())
    }

    /// What frames held for verification hold: those held for a window
    /// and the batches out (or verified here and waiting for those out).
    pub fn held_for_verification(&self) -> Held {
        self.unverified_held + self.in_flight_held
    }

    /// What the batches out with the verifier hold (not those verified
    /// here and waiting).
    fn in_flight_out(&self) -> Held {
        let out = self.in_flight.iter().filter(|b| b.verdicts.is_none());
        out.fold(Held::default(), |sum, b| sum + b.held)
    }

    /// Refuses the runs that did not verify and applies the others, frame
    /// by frame.
    fn apply_verified(
        &mut self,
        senders: Vec<PeerId>,
        settled: Vec<(Vec<P2PEvent>, Vec<seal::SealError>)>,
        sent: Vec<Option<Batch>>,
        now_ms: u64,
    ) {
        for ((from, (accepted, errors)), sent) in senders.into_iter().zip(settled).zip(sent) {
            let sent = sent.filter(|_| errors.is_empty());
            self.refuse_seals(from, errors);
            self.apply_received(from, accepted, sent, now_ms);
        }
        // Whoever woke us (a timer, a verifier) learns what changed now.
        self.report_changes();
    }

    /// When the frames held for verification are due: a window after the
    /// latest (no frame followed it), or [`VERIFY_HOLD_WINDOWS`] windows
    /// after the first (frames kept coming).
    pub(super) fn verification_due(&self) -> Option<u64> {
        let window = self.config.verify_window_ms?;
        let quiet = self.unverified_last.saturating_add(window);
        let held = self
            .unverified_since
            .saturating_add(window.saturating_mul(super::VERIFY_HOLD_WINDOWS));
        (!self.unverified.is_empty()).then(|| quiet.min(held))
    }

    /// In a signed room, the events of runs whose seals verify, at once;
    /// the others are refused, counted and penalized. Unsigned, seals are
    /// stripped: an unsigned node cannot vouch for them.
    fn open_seals(&mut self, from: PeerId, mut events: Vec<P2PEvent>) -> Vec<P2PEvent> {
        if !self.signed() {
            events.iter_mut().for_each(|e| e.seal = None);
            return events;
        }
        self.verify_now(from, seal::check_runs(events))
    }

    /// The events of `opened`'s runs whose seals verify; the others are
    /// refused, counted and penalized.
    fn verify_now(&mut self, from: PeerId, opened: seal::Opened) -> Vec<P2PEvent> {
        let (accepted, errors) = seal::verify_opened(vec![opened]).pop().unwrap_or_default();
        self.refuse_seals(from, errors);
        accepted
    }

    /// Drops from `opened` (events as gossip brings them, not a request's
    /// siblings, which must be there) the runs we hold already as they
    /// came, before their seals are verified: a member replaying one
    /// frame of 500 runs she signed once had each verified again, 14 µs
    /// a run natively, at no cost to her (a review). `from` has them, and
    /// a push of nothing new is PlumTree's prune, as ever.
    fn forget_known(&mut self, from: PeerId, opened: &mut seal::Opened) {
        let engine = &mut self.engine;
        let known = opened.forget_known(|run| engine.knows_run(run));
        if known.is_empty() {
            return;
        }
        let count = known.iter().map(|&(_, len)| len).sum();
        self.sent_us(
            from,
            count,
            known.iter().map(|(last, _)| (last.peer, last.seq)),
        );
        if opened.events() == 0 {
            self.prune_or_keep(from, count, count);
        }
    }

    /// Counts `count` events `from` sent us, and notes that it has each
    /// origin's events up to the sequence number `has` gives. The origins
    /// are the sender's to choose (a throwaway key's each): a session
    /// notes so many. Of ours, no more than we made (see `on_digest`).
    fn sent_us(&mut self, from: PeerId, count: usize, has: impl Iterator<Item = (PeerId, u64)>) {
        let me = self.peer();
        let ours = self.engine.clock().get(me);
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        session.stats.events_in += count as u64;
        for (origin, seq) in has {
            session.learn(origin, if origin == me { seq.min(ours) } else { seq });
        }
    }

    fn refuse_seals(&mut self, from: PeerId, errors: Vec<seal::SealError>) {
        for error in errors {
            self.engine.count_refused_seal();
            self.refuse(from, error.into());
        }
    }

    /// Applies events from `from` (their seals verified), and persists and
    /// relays what they brought. `sent`: their batch as it came, stored
    /// as it is when they all apply, each alone (none a duplicate, none
    /// refused, none held, none releasing a held one): the log then holds
    /// exactly them.
    fn apply_received(
        &mut self,
        from: PeerId,
        events: Vec<P2PEvent>,
        sent: Option<Batch>,
        now_ms: u64,
    ) {
        let sent = sent.filter(|batch| batch.count == events.len());
        self.open_mark();
        // An origin's events come in order: its last of a stretch is what
        // the sender has of it.
        let has = events
            .chunk_by(|a, b| a.id.peer == b.id.peer)
            .map(|stretch| {
                let seq = stretch.iter().map(|e| e.id.seq).max().unwrap_or(0);
                (stretch[0].id.peer, seq)
            });
        self.sent_us(from, events.len(), has);
        let received = events.len();
        let taken = self.engine.receive_runs(events, now_ms);
        for error in taken.refused {
            self.refuse(from, error.into());
        }
        self.prune_or_keep(from, received, taken.duplicates);
        self.absorb_received(Some(from), sent.filter(|_| taken.alone), false);
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

    /// Persists and relays the events from others applied since the
    /// engine's [`mark_applied`](ReconciliationEngine::mark_applied)
    /// (learned from `from`). Events made here leave through
    /// [`SyncNode::flush_local`], sealed.
    pub(super) fn absorb(&mut self, from: Option<PeerId>) {
        self.absorb_received(from, None, false);
    }

    /// [`absorb`](Self::absorb) of others' events our own writes released
    /// (held, they waited on one of them): pushed as our writes are, with
    /// them, since peers that held them waited on our writes too.
    pub(super) fn absorb_released(&mut self) {
        self.absorb_received(None, None, true);
    }

    /// Marks the engine before taking received events, what a local
    /// write released absorbed first, on its own: a new mark forgot it
    /// (never stored: a helper's review), and taken with received events
    /// it went as theirs, or theirs as it (pushed back to their sender).
    pub(super) fn open_mark(&mut self) {
        if self.engine.take_released() {
            self.absorb_released();
        }
        self.engine.mark_applied();
    }

    /// [`absorb`](Self::absorb), with the batch they came in when it is
    /// exactly what was applied: stored as it came. `push`: sent whole to
    /// every peer lacking them, as our own writes are.
    fn absorb_received(&mut self, from: Option<PeerId>, sent: Option<Batch>, push: bool) {
        let me = self.engine.peer();
        let mut ranges = self.engine.applied_ranges_since_mark();
        ranges.retain(|(origin, _, _)| *origin != me);
        if ranges.is_empty() {
            return;
        }
        let fresh = self.engine.logged(&ranges);
        // Forwarded as it came if it holds just the events spread (not
        // ours, sent back to us after we lost them) and no more than we
        // put in one message.
        let one_message = || messages(&fresh, self.signed()).len() == 1;
        let forward = sent
            .as_ref()
            .filter(|b| b.count == fresh.len() && one_message())
            .map(Batch::frame);
        let spread = Spread::plan(&self.sessions, &self.config, &fresh, from, push, forward);
        // Stored as it came only if it is all that applied.
        let whole = sent.as_ref().is_some_and(|b| b.count == fresh.len());
        self.carry_out(spread);
        match sent {
            Some(batch) if whole => self.persist_as_sent(batch, ranges),
            _ => self.persist_later(ranges),
        }
    }

    /// Sends what [`Spread::plan`] planned.
    pub(super) fn carry_out(&mut self, spread: Spread) {
        for (peer, lacking) in spread.sends {
            self.send_events(peer, lacking);
        }
        for (peer, lacking) in spread.announces {
            self.announce(peer, &lacking);
        }
        let mut frames = spread.frames;
        let last = spread.whole.len().saturating_sub(1);
        for (i, peer) in spread.whole.into_iter().enumerate() {
            self.note_sent(peer, spread.ids.iter().copied());
            // Copies for all but the last, which takes them.
            let frames = if i == last {
                std::mem::take(&mut frames)
            } else {
                frames.clone()
            };
            for frame in frames {
                self.send_frame(peer, frame);
            }
        }
    }

    /// Books events `ids` as sent to `to`: it has them now.
    fn note_sent(&mut self, to: PeerId, ids: impl ExactSizeIterator<Item = EventId>) {
        let now_ms = self.last_input_ms;
        let Some(session) = self.sessions.get_mut(&to) else {
            return;
        };
        session.stats.events_out += ids.len() as u64;
        let told = session.handshake.is_none();
        let mut observe = |(id, first): (EventId, u64)| {
            session.their_clock.observe(id.peer, id.seq);
            if told {
                session.told.observe(id.peer, first, id.seq, now_ms);
            }
        };
        // The clocks keep the highest of each origin, and an origin's
        // events come in stretches (its runs): one look-up a stretch,
        // which also names the lowest it sent.
        let mut stretch: Option<(EventId, u64)> = None;
        for id in ids {
            if let Some((s, first)) = stretch.as_mut().filter(|(s, _)| s.peer == id.peer) {
                s.seq = s.seq.max(id.seq);
                *first = (*first).min(id.seq);
            } else if let Some(done) = stretch.replace((id, id.seq)) {
                observe(done);
            }
        }
        if let Some(done) = stretch {
            observe(done);
        }
    }

    /// Sends events in messages of about one frame each, sealed runs whole
    /// (a partial run is left out: the receiver would refuse it).
    pub(super) fn send_events(&mut self, to: PeerId, events: Vec<P2PEvent>) {
        let signed = self.signed();
        let events: Vec<P2PEvent> = if signed {
            let refs: Vec<&P2PEvent> = events.iter().collect();
            let sent = seal::whole_runs(&refs, |_| true, true);
            events
                .into_iter()
                .zip(sent)
                .filter_map(|(e, send)| send.then_some(e))
                .collect()
        } else {
            events
        };
        self.note_sent(to, events.iter().map(|e| e.id));
        let counts = messages(&events.iter().collect::<Vec<_>>(), signed);
        let mut events = events.into_iter();
        for count in counts {
            let message = events.by_ref().take(count).collect();
            self.send(to, &Message::Events(message));
        }
    }

    /// Runs the reconciliation exchange for conflicted `reconcile` keys;
    /// the resolver is the lowest *connected* origin (or this peer).
    pub(super) fn reconcile(&mut self, now_ms: u64) {
        self.open_mark();
        // The sessions' keys come sorted (a `SortedMap`); a set type here
        // would be one more B-tree in the wasm.
        let connected: Vec<PeerId> = self.sessions.keys().copied().collect();
        let steps = self.engine.reconcile(
            &mut *self.handler,
            &|p| connected.binary_search(&p).is_ok(),
            now_ms,
        );
        for step in steps {
            if let ReconcileStep::Request(mut request) = step {
                let to = request.target_peer_id;
                request.conflicting_events = self.to_send(&request.conflicting_events);
                self.log_reconciliation(to, true, &request);
                if let Some(session) = self.sessions.get_mut(&to) {
                    session.awaited_responses.asked(now_ms);
                }
                self.send(to, &Message::ReconciliationRequest(request));
            }
        }
        self.absorb(None);
        self.flush_local();
    }

    pub(super) fn on_request(
        &mut self,
        from: PeerId,
        mut request: ReconciliationRequest,
        now_ms: u64,
    ) {
        if let Err(refusal) = self.addressed(from, request.source_peer_id, request.target_peer_id) {
            return self.refuse(from, refusal);
        }
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.spent.requests >= MAX_REQUESTS_PER_INTERVAL {
            return self.refuse(from, Refusal::TooManyRequests(MAX_REQUESTS_PER_INTERVAL));
        }
        session.spent.requests += 1;
        // Shown to the app once taken: one refused above costs no JSON.
        self.log_reconciliation(from, false, &request);
        // In a signed room the siblings come in the whole runs holding
        // them: those verify, and the events of other keys in them are
        // taken like any events. Our own writes so far leave as their own
        // run, so the resolution events below form one.
        self.open_mark();
        if self.signed() {
            let runs = std::mem::take(&mut request.conflicting_events);
            let Some(key) = request.key.clone() else {
                return self.refuse(
                    from,
                    ReceiveError::Malformed("a signed reconciliation request names no key".into())
                        .into(),
                );
            };
            // The runs are taken here whole, the siblings too (the
            // handling takes those again, as duplicates), whatever the
            // handling makes of the request; siblings of a refused run
            // are left out: those not here, and those here in another
            // version (the handling took them again, and charged the
            // equivocation twice).
            let runs = self.open_seals(from, runs);
            let siblings: Vec<P2PEvent> = runs.iter().filter(|e| e.key == key).cloned().collect();
            for error in self.engine.receive_runs(runs, now_ms).refused {
                self.refuse(from, error.into());
            }
            let engine = &self.engine;
            let here = |e: &P2PEvent| match engine.holding().get(e.id) {
                Some(held) => held.same_content(e),
                None => {
                    e.id.seq <= engine.clock().get(e.id.peer)
                        && engine
                            .kept_event(e.id)
                            .is_none_or(|kept| kept.same_content(e))
                }
            };
            request.conflicting_events = siblings.into_iter().filter(here).collect();
            if request.conflicting_events.is_empty() {
                return self.absorb(Some(from));
            }
        }
        self.flush_local();
        match self
            .engine
            .handle_reconciliation_request(&request, &mut *self.handler, now_ms)
        {
            Ok(Some(mut response)) => {
                // The siblings the handling applied are persisted (and
                // relayed) before our resolution, which rests on them, is
                // flushed: never durable without them (restored without
                // them it would be held, and its number made again).
                self.absorb(Some(from));
                self.flush_local();
                response.resolution_events = self.to_send(&response.resolution_events);
                self.log_reconciliation(from, true, &response);
                if let Some(session) = self.sessions.get_mut(&from) {
                    for e in &response.resolution_events {
                        session.their_clock.observe(e.id.peer, e.id.seq);
                    }
                }
                self.send(from, &Message::ReconciliationResponse(response));
            }
            Ok(None) => self.absorb(Some(from)),
            Err(e) => {
                self.refuse(from, e.into());
                self.absorb(Some(from));
            }
        }
    }

    /// That a reconciliation message on `from`'s connection is from `from`
    /// to us, as it says before it is shown to the app.
    fn addressed(&self, from: PeerId, source: PeerId, target: PeerId) -> Result<(), Refusal> {
        match source == from && target == self.peer() {
            true => Ok(()),
            false => Err(Refusal::Misaddressed {
                sender: source,
                recipient: target,
            }),
        }
    }

    pub(super) fn on_response(
        &mut self,
        from: PeerId,
        mut response: ReconciliationResponse,
        now_ms: u64,
    ) {
        if let Err(refusal) = self.addressed(from, response.source_peer_id, response.target_peer_id)
        {
            return self.refuse(from, refusal);
        }
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if !session.awaited_responses.answered(now_ms) {
            // No points: an answer to a request sent on a connection
            // since replaced comes on the new one, and a late one may be
            // honest too.
            return self.refuse(from, Refusal::UnaskedResponse);
        }
        self.log_reconciliation(from, false, &response);
        response.resolution_events = self.open_seals(from, response.resolution_events);
        self.open_mark();
        if let Err(refused) = self
            .engine
            .handle_reconciliation_response(&response, now_ms)
        {
            for e in refused {
                self.refuse(from, e.into());
            }
        }
        self.absorb(Some(from));
    }

    /// What of a reconciliation message's `events` to send, by origin and
    /// sequence. In a signed room each is widened to the whole sealed run
    /// holding it, as kept here (log or archive; a run not kept whole is
    /// left out): what a receiver can verify. As many runs (or events) as
    /// one message takes, in `events`' order: a receiver refuses a message
    /// of more than [`MAX_MESSAGE`](wire::MAX_MESSAGE) bytes or
    /// [`MAX_MESSAGE_EVENTS`](wire::MAX_MESSAGE_EVENTS) events, and ours
    /// would be made again at every reconcile tick. What is left out
    /// reaches it by anti-entropy.
    fn to_send(&self, events: &[P2PEvent]) -> Vec<P2PEvent> {
        let signed = self.signed();
        // `approx_size` is on the high side of a batch's bytes; the rest
        // of the message (its header, ids) is under the slack.
        const BYTES: usize = wire::MAX_MESSAGE - 64 * 1024;
        // Events of runs already taken are skipped by a hash set, as in
        // the engine's `evidence`: a map by id would be one more BTreeMap
        // type in the wasm.
        let mut taken: HashSet<EventId, FixedState> = HashSet::with_hasher(hashing::state());
        let mut runs = Vec::new();
        let mut bytes = 0;
        for event in events {
            if taken.contains(&event.id) {
                continue;
            }
            let run = match signed {
                true => self.engine.sealed_run_of(event.id).unwrap_or_default(),
                false => std::slice::from_ref(event),
            };
            let size: usize = run.iter().map(P2PEvent::approx_size).sum();
            if runs.len() + run.len() > wire::MAX_MESSAGE_EVENTS || bytes + size > BYTES {
                // Left out whole: its other events are not looked up again.
                taken.extend(run.iter().map(|e| e.id));
                continue;
            }
            bytes += size;
            for e in run {
                if taken.insert(e.id) {
                    runs.push(e.clone());
                }
            }
        }
        key_sort::sort_by_key(&mut runs, |e| key_sort::id_key(e.id));
        runs
    }

    fn log_reconciliation(&mut self, peer: PeerId, outgoing: bool, message: &impl WriteJson) {
        self.outputs.push(Output::Reconciliation {
            peer,
            outgoing,
            json: message.to_json_text(),
        });
    }

    /// Folds the log into a snapshot once it is long and the node is
    /// quiet (no event applied since the last gossip interval): events
    /// every known peer has are dropped, and storage is replaced by the
    /// snapshot. Encoding the whole state is the one long computation on
    /// this path, so while events keep coming it waits, up to
    /// [`FORCED_FOLD`] times the threshold (a bound on memory and on what a
    /// restart replays).
    pub(super) fn compact(&mut self) {
        let applied = self.engine.clock().total();
        let quiet = applied == self.applied_at_tick;
        self.applied_at_tick = applied;
        let long = self.engine.log().len();
        let due = self.config.compact_after;
        if long >= due.saturating_mul(FORCED_FOLD) || (long >= due && quiet) {
            self.fold();
        }
    }

    /// Folds every stable logged event into a snapshot to persist, however
    /// short the log (on close, so the next start reads one snapshot
    /// instead of replaying a log).
    pub fn fold(&mut self) {
        self.fold_lagging(self.config.compact_after);
    }

    /// As [`fold`](Self::fold), holding back for a peer only what one
    /// that lacks fewer than `lag` events lacks: one that lacks more gets
    /// a snapshot (a fold for the log's weight, which a member's digest
    /// of nothing held back for good).
    pub fn fold_lagging(&mut self, lag: usize) {
        // Received events waiting for verification go in first, and our
        // unsent writes leave (sealed) before the log they are in folds.
        self.verify_received(self.last_input_ms);
        self.flush_local();
        // Others' events waiting for a record go in one first: the
        // snapshot supersedes it, but storage counts the events it made
        // durable by records (the room peer's `events_persisted`, which
        // a fold amid a stream left short for good).
        self.persist_others(true);
        self.store_loaded_snapshot();
        if self.engine.log().is_empty() {
            return;
        }
        let stable = self.stable_clock(lag.min(self.config.compact_after));
        if !self.config.durable {
            self.engine.compact(&stable);
        } else if let Some(bytes) = self.engine.compact_encoded(&stable) {
            let write = self.snapshot_write(bytes);
            self.persist(write, None);
            // What the fold left in the log (our writes no peer has, what
            // a lagging peer lacks) is stored again after the snapshot,
            // which replaces every record: a restore puts it back in the
            // log, so it still travels as events.
            let tail: Vec<&P2PEvent> = self.engine.log().iter().collect();
            if !tail.is_empty() {
                // Stored before, so not counted again (a review).
                let record = P2PEvent::encode_batch(tail.iter().copied());
                self.persist(Persist::Events { record, count: 0 }, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::{sample, Operation, RegisterOp};
    use crate::protocol::identity::Identity;

    fn session(knows: &[(u64, u64)]) -> Session {
        let mut session = Session::default();
        for &(peer, seq) in knows {
            session.their_clock.observe(PeerId(peer), seq);
        }
        session
    }

    fn ids(events: &[P2PEvent]) -> Vec<EventId> {
        events.iter().map(|e| e.id).collect()
    }

    /// The peers that lack every event get the same frames, made once:
    /// the frame the events came in, or the events encoded; one that has
    /// part of them gets the rest, encoded for it.
    #[test]
    fn every_peer_lacking_all_the_events_gets_the_same_frames() {
        let events = [
            sample(PeerId(7), 1, "1"),
            sample(PeerId(7), 2, "2"),
            sample(PeerId(9), 1, "3"),
        ];
        let refs: Vec<&P2PEvent> = events.iter().collect();
        let mut sessions = SortedMap::new();
        sessions.insert(PeerId(1), session(&[(7, 1)]));
        sessions.insert(PeerId(2), session(&[]));
        sessions.insert(PeerId(3), session(&[(9, 1)]));
        sessions.insert(PeerId(4), session(&[(7, 2), (9, 1)]));
        sessions.insert(PeerId(5), session(&[(1, 5)]));
        let flood = SyncConfig {
            relay: Relay::Flood,
            ..SyncConfig::default()
        };
        let came_in = b"the frame they came in".as_slice();
        let spread = Spread::plan(&sessions, &flood, &refs, None, false, Some(came_in));
        assert_eq!(spread.whole, vec![PeerId(2), PeerId(5)]);
        assert_eq!(spread.frames, vec![came_in.to_vec()]);
        assert_eq!(spread.ids, ids(&events));
        let sends: Vec<(PeerId, Vec<EventId>)> =
            spread.sends.iter().map(|(p, e)| (*p, ids(e))).collect();
        assert_eq!(
            sends,
            vec![
                (PeerId(1), ids(&events[1..])),
                (PeerId(3), ids(&events[..2])),
            ]
        );

        // Without the frame, the events encoded once, as a message.
        let spread = Spread::plan(&sessions, &flood, &refs, None, false, None);
        assert_eq!(spread.whole, vec![PeerId(2), PeerId(5)]);
        let message = Message::Events(events.to_vec());
        assert_eq!(spread.frames, wire::encode(&message, 1));
        assert_eq!(spread.sends.len(), 2);

        // Signed, unsealed events are no whole run: not sent at all (the
        // receiver would refuse them).
        let signed = SyncConfig {
            identity: Some(Identity::from_seed(1)),
            ..flood
        };
        let spread = Spread::plan(&sessions, &signed, &refs, None, false, Some(came_in));
        assert!(spread.whole.is_empty());
        assert!(spread.sends.is_empty());
    }

    /// Events too many for one message go in several frames, split as
    /// each link's would be; a run too large for a frame goes to each
    /// link as its own (in chunks).
    #[test]
    fn frames_made_once_are_split_as_a_link_s_messages() {
        let events =
            crate::protocol::testing::workload::rounds(3 * EVENTS_PER_MESSAGE, 2, 10, 4, 1);
        let refs: Vec<&P2PEvent> = events.iter().collect();
        let frames = frames_of(&refs, false).expect("whole frames");
        let mut rest = events.iter().cloned();
        let each: Vec<Vec<u8>> = messages(&refs, false)
            .into_iter()
            .flat_map(|count| {
                wire::encode(&Message::Events(rest.by_ref().take(count).collect()), 1)
            })
            .collect();
        assert!(frames.len() >= 3);
        assert_eq!(frames, each);

        let mut large = sample(PeerId(7), 1, "1");
        let text = format!("\"{}\"", "x".repeat(MAX_FRAME));
        large.op = Operation::Register(RegisterOp::Write {
            value: crate::protocol::value::JsonValue::parse(&text).expect("json"),
            observed: VectorClock::new(),
            resolution: false,
        });
        assert_eq!(frames_of(&[&large], false), None);
        let mut sessions = SortedMap::new();
        sessions.insert(PeerId(1), session(&[]));
        sessions.insert(PeerId(2), session(&[]));
        let spread = Spread::plan(
            &sessions,
            &SyncConfig::default(),
            &[&large],
            None,
            true,
            None,
        );
        assert!(spread.whole.is_empty());
        assert_eq!(spread.sends.len(), 2);
    }
}
