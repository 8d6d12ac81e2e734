//! The `ReconciliationEngine`: local operations in, events out; remote events
//! in, applied in causal order; state, conflicts and digests out.

mod archive;
mod compaction;
mod entities;
mod evidence;
mod holding;
mod local;
mod log;
mod policy;
mod reconcile;
mod remote;
mod runs;
mod snapshot;
mod unsent;
mod view;

use crate::protocol::text::Text;
use hashbrown::{HashMap, HashSet};

use foldhash::fast::FixedState;

pub use archive::Archive;
pub use holding::HoldingQueue;
pub use local::LocalWrite;
pub use log::EventLog;
pub use policy::{
    is_reserved, policy_key, ConflictPolicy, Policies, UnknownPolicy, POLICY_PREFIX,
    RESERVED_PREFIX,
};
pub use reconcile::{
    ReconcileHandler, ReconcileStep, PASS_OVER_AFTER_ASKS, RECONCILIATION_RETRY_MS,
};
pub use remote::Receipt;
pub use runs::Received;
pub use snapshot::{SnapshotLoad, Trust};
pub use view::{Candidate, Conflict};

use super::clock::{Hint, HybridClock, PeerId, VectorClock, MAX_CLOCK_ENTRIES};
use super::digest::MerkleDigest;
use super::entity::{Entity, EntityState};
use entities::Entities;

/// Knobs of an engine. Randomness comes in here too (`hash_seed`): the core
/// has no RNG of its own.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Events waiting for dependencies, at most. See [`HoldingQueue::hold`].
    pub holding_capacity: usize,
    /// Events of one origin waiting for dependencies, at most: a peer that
    /// sends events depending on what never comes fills only its share.
    pub holding_per_origin: usize,
    /// Bytes of events (by [`P2PEvent::approx_size`](crate::protocol::P2PEvent::approx_size))
    /// waiting for dependencies, at most ([`HOLDING_BYTES`] by default).
    pub holding_bytes: usize,
    /// Bytes of one origin's events waiting for dependencies, at most
    /// ([`HOLDING_BYTES_PER_ORIGIN`] by default).
    pub holding_bytes_per_origin: usize,
    /// How far beyond what this peer has applied of an origin an event may
    /// depend on: an event depending on `(p, n)` with `n` further ahead is
    /// refused (it could only sit in the holding queue; a peer that far
    /// behind is sent a snapshot).
    pub max_dependency_gap: u64,
    /// How far ahead of local wall time a remote timestamp may be.
    pub max_clock_skew_ms: u64,
    /// Seeds the entity map's hasher, so a peer cannot aim keys at one bucket.
    pub hash_seed: u64,
    /// Distinct origins (writers) a room may have, at most. Every version
    /// vector this peer sends or stores has at most this many entries, so
    /// it stays under the decode bound ([`MAX_CLOCK_ENTRIES`]) and a peer
    /// can always decode its own digest and snapshot.
    pub max_origins: usize,
}

/// The default bound on the bytes of one origin's held events, by
/// [`P2PEvent::approx_size`](crate::protocol::P2PEvent::approx_size): a
/// message's (16 MiB, the sync layer's `MAX_MESSAGE`), and a run travels
/// in one message, so any run an honest origin can send is held whole.
/// The counts alone let a member's own sealed events, each a value of
/// megabytes waiting for an event she never sends, hold her 25,000 events'
/// share of the queue in gigabytes, for as long as the engine runs.
pub const HOLDING_BYTES_PER_ORIGIN: usize = 16 << 20;

/// The most bytes (by [`P2PEvent::approx_size`](crate::protocol::P2PEvent::approx_size))
/// one of our sealed runs takes: a run travels whole, in one message, and
/// a message of more than 16 MiB (the sync layer's `MAX_MESSAGE`) is
/// refused by every receiver. Runs were cut at [`MAX_RUN`](crate::protocol::seal::MAX_RUN)
/// events only, so a burst of 200 values of 100 KB made one run of 20 MB
/// that never reached anyone. 1 MiB under a message's bytes: a run's seal
/// and the message's envelope.
pub const MAX_RUN_BYTES: usize = 15 << 20;

/// The most bytes a write's key and value may take together: one event
/// must fit a run ([`MAX_RUN_BYTES`]) with its clocks (up to the room's
/// origins, ~6 bytes an entry). A larger write is refused
/// ([`WriteError::TooLarge`](crate::protocol::WriteError::TooLarge))
/// rather than made and never delivered.
pub const MAX_WRITE_BYTES: usize = 8 << 20;

/// The most bytes a resolution's key and value may take together. A
/// resolution copies the value it settles on, which may be another's, made
/// under another build's bound (or none), so its bound is what a run takes
/// with room for its clocks, not [`MAX_WRITE_BYTES`]: a remote value over
/// 8 MiB that won a conflict could not be settled on, and the conflict was
/// asked about again every few seconds, forever.
pub const MAX_RESOLUTION_BYTES: usize = MAX_RUN_BYTES - (1 << 20);

/// The default bound on the bytes of all held events: four origins'
/// shares, as the counts are (100,000 events, 25,000 an origin). In
/// memory a held event takes its 160 bytes (which the counts bound) and
/// at most about three times its estimate (a clock entry takes 16 bytes
/// and is counted as 6).
pub const HOLDING_BYTES: usize = 4 * HOLDING_BYTES_PER_ORIGIN;

/// The default bound on distinct origins: half the decode bound, so that
/// every clock this peer makes, and the join of two of them, decodes; and
/// above the 30,000 writers of the C1.2 benchmark.
pub const MAX_ORIGINS: usize = MAX_CLOCK_ENTRIES / 2;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            holding_capacity: 100_000,
            holding_per_origin: 25_000,
            holding_bytes: HOLDING_BYTES,
            holding_bytes_per_origin: HOLDING_BYTES_PER_ORIGIN,
            max_dependency_gap: 1_000_000,
            max_clock_skew_ms: HybridClock::DEFAULT_MAX_SKEW_MS,
            hash_seed: 0x5eed,
            max_origins: MAX_ORIGINS,
        }
    }
}

/// One step of the apply journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEntry {
    /// An event applied.
    Applied(super::EventId),
    /// Everything up to this clock arrived at once (a snapshot, or what the
    /// engine held when recording started).
    Loaded(VectorClock),
}

/// Counters of what the engine saw and refused, for the app and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub applied: u64,
    pub duplicates: u64,
    pub held: u64,
    pub refused_malformed: u64,
    pub refused_impossible: u64,
    pub refused_clock_skew: u64,
    /// Events refused at the holding queue's bounds, of events or of
    /// bytes ([`ReceiveError::HoldingQueueFull`](crate::protocol::ReceiveError::HoldingQueueFull),
    /// [`ReceiveError::HoldingQueueBytes`](crate::protocol::ReceiveError::HoldingQueueBytes)).
    pub refused_queue_full: u64,
    pub equivocations: u64,
    pub refused_far_ahead: u64,
    /// Runs of events refused for a missing, foreign or bad seal.
    pub refused_seal: u64,
    /// Events refused because their origin would pass `max_origins`.
    pub refused_origins: u64,
    /// Remote events claiming our own origin beyond what we wrote.
    pub refused_not_ours: u64,
    /// Snapshots and Merkle leaves refused (unverifiable, inflated, forged).
    pub refused_state: u64,
    /// Dots of ours a snapshot's clock covers and its state left out with
    /// no event of its to supersede them, kept (`engine/evidence.rs`).
    pub kept_unsuperseded: u64,
    /// Held runs found waiting, through held events, on themselves: no
    /// order of events applies them (only key holders can seal such
    /// runs). They stay held until a snapshot brings what they name.
    pub circular: u64,
    /// Events checked by tries of held runs together
    /// ([`release_together`](ReconciliationEngine)): the work circles of
    /// runs cost.
    pub joined_checks: u64,
}

/// An entity with its key and the engine's bookkeeping flags.
#[derive(Debug)]
struct Slot {
    key: Text,
    entity: Entity,
    /// Changed since the digest was last computed.
    digest_stale: bool,
    /// The change epoch ([`Books::epoch`]) it was last reported changed in:
    /// equal to the current one while it waits in [`Books::changed`], so
    /// taking the changes clears every mark at once, with no lookup.
    changed: u32,
    /// The origin of the last event this engine applied to the key (not
    /// replicated: unknown after a snapshot load).
    last_writer: Option<PeerId>,
}

/// What changed since it was last looked at: kept apart from the entity map
/// so both can be borrowed at once.
#[derive(Debug, Default)]
struct Books {
    /// Entities (their indices in [`Entities`]) whose hash is stale in
    /// the digest.
    stale: Vec<u32>,
    /// Entities changed since the app last asked.
    changed: Vec<u32>,
    /// Counts the times the app asked (see [`Slot::changed`]); never
    /// [`Slot::UNCHANGED`].
    epoch: u32,
    /// Register keys with concurrent siblings (any policy; no reserved key).
    /// (A hash set: every register write probes it; readers sort.)
    conflicted: HashSet<Text, FixedState>,
}

impl Slot {
    /// A new slot's change mark: no epoch's.
    const UNCHANGED: u32 = u32::MAX;

    fn new(key: Text, entity: Entity, last_writer: Option<PeerId>) -> Self {
        Slot {
            key,
            entity,
            digest_stale: false,
            changed: Slot::UNCHANGED,
            last_writer,
        }
    }
}

impl Books {
    /// Reports the entity at `index` (in `slot`) changed to the app (once
    /// until it next asks).
    fn mark_changed(&mut self, index: u32, slot: &mut Slot) {
        if slot.changed != self.epoch {
            slot.changed = self.epoch;
            self.changed.push(index);
        }
    }

    /// Records that the entity at `index` (in `slot`) changed.
    /// Room state (reserved keys) counts in the digest but is neither
    /// reported to the app nor ever a conflict.
    fn touch(&mut self, index: u32, slot: &mut Slot) {
        if !slot.digest_stale {
            slot.digest_stale = true;
            self.stale.push(index);
        }
        if policy::is_reserved(&slot.key) {
            return;
        }
        self.mark_changed(index, slot);
        let conflicted =
            matches!(slot.entity.shown(), EntityState::Register(r) if r.is_conflicted());
        if conflicted {
            if !self.conflicted.contains(&slot.key) {
                self.conflicted.insert(slot.key.clone());
            }
        } else if !self.conflicted.is_empty() {
            self.conflicted.remove(&slot.key);
        }
    }
}

/// The core of a peer, per the protocol: turns local operations into
/// [`P2PEvent`](super::P2PEvent)s, applies remote events only once their
/// dependencies are met (holding the rest), resolves concurrent updates per
/// the conflict matrix, and runs the reconciliation exchange.
///
/// Sans-IO: every method that needs the time takes `now_ms`; nothing here
/// sends, sleeps or reads a clock.
#[derive(Debug)]
pub struct ReconciliationEngine {
    peer: PeerId,
    config: EngineConfig,
    clock: HybridClock,
    /// The latest stamp of our own events applied (written here, or
    /// replayed from storage): what [`stamps_ahead`](Self::stamps_ahead)
    /// compares with the time. Not the hybrid clock's last, which others'
    /// stamps move too.
    own_stamp: u64,
    /// The version vector: per origin, how many of its events are applied.
    applied: VectorClock,
    /// Origins whose entry of `applied` grew since our last local event:
    /// the next local event's `deps`.
    unsent: unsent::UnsentDeps,
    /// Where the last event's origin was found in `applied`: most events
    /// are their predecessor's origin's next.
    applied_hint: Hint,
    /// Since [`mark_applied`](Self::mark_applied): each origin whose
    /// count grew, where it stood (what [`applied_since_mark`](Self::applied_since_mark)
    /// reads, at a cost in the origins that moved, not in all of them).
    /// `None` when no mark is open.
    moved: Option<compaction::Moved>,
    /// The last mark's list, emptied, kept for the next: a signed node
    /// marks once a frame, and a map made for each was a fifteenth of
    /// C1.2's page thread in V8 (an allocation, a hash, an insert).
    spare_moved: compaction::Moved,
    /// A local write released others' held events (they waited on it)
    /// since [`take_released`](Self::take_released) was last asked.
    released: bool,
    entities: Entities,
    log: EventLog,
    /// Runs out of the log that the state still rests on.
    archive: Archive,
    /// The superseders snapshots and leaf copies carry (`evidence.rs`):
    /// the folded ones', and the log's (the superseding events logged, and
    /// how many of them a leaf's copy noted so far, with what it found).
    dominators: evidence::Dominators,
    logged_superseders: Vec<super::EventId>,
    log_dominators: (usize, evidence::Dominators),
    /// Equivocations found in snapshots and leaves, counted once each.
    equivocated: Vec<super::EventId>,
    holding: HoldingQueue,
    /// Tries of held runs together stopped for an event not here, kept
    /// to go on from where they stopped ([`runs::Stalled`]).
    stalled: Vec<runs::Stalled>,
    /// This peer's local defaults (see [`policy`](Self::policy)).
    policies: Policies,
    /// The room's policies: derived from the reserved policy registers,
    /// kept in step by [`refresh_room_policy`](Self::refresh_room_policy).
    room_policies: Policies,
    digest: MerkleDigest,
    books: Books,
    /// Siblings we already asked a resolver about, per key.
    requested: HashMap<Text, reconcile::Asked, FixedState>,
    stats: EngineStats,
    /// Apply order, when recording (tests check causal delivery with it).
    journal: Option<Vec<JournalEntry>>,
}

impl ReconciliationEngine {
    pub fn new(peer: PeerId, config: EngineConfig) -> Self {
        ReconciliationEngine {
            peer,
            clock: HybridClock::new(config.max_clock_skew_ms),
            own_stamp: 0,
            applied: VectorClock::new(),
            unsent: unsent::UnsentDeps::default(),
            applied_hint: Hint::default(),
            moved: None,
            spare_moved: compaction::Moved::default(),
            released: false,
            entities: Entities::with_seed(config.hash_seed),
            log: EventLog::with_seed(config.hash_seed),
            archive: Archive::default(),
            dominators: evidence::Dominators::new(config.hash_seed),
            logged_superseders: Vec::new(),
            log_dominators: (0, evidence::Dominators::new(config.hash_seed)),
            equivocated: Vec::new(),
            stalled: Vec::new(),
            holding: HoldingQueue::new(
                config.holding_capacity,
                config.holding_per_origin,
                (config.holding_bytes, config.holding_bytes_per_origin),
                config.hash_seed,
            ),
            policies: Policies::default(),
            room_policies: Policies::default(),
            digest: MerkleDigest::default(),
            books: Books {
                conflicted: HashSet::with_hasher(FixedState::with_seed(config.hash_seed)),
                ..Books::default()
            },
            requested: HashMap::with_hasher(FixedState::with_seed(config.hash_seed)),
            stats: EngineStats::default(),
            journal: None,
            config,
        }
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// How far the stamp of our last write is ahead of `now_ms`, when that
    /// is past the skew a peer allows: our writes are dated ahead, and
    /// peers refuse them until real time reaches their dates, however the
    /// clock is set now (the hybrid clock dates each write after the last).
    /// Of writes folded into a snapshot before a restart, told at the next.
    pub fn stamps_ahead(&self, now_ms: u64) -> Option<u64> {
        let last = self.own_stamp;
        (last > now_ms.saturating_add(self.config.max_clock_skew_ms)).then(|| last - now_ms)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// An engine to replay our own storage into: without the bounds on
    /// what waits for its dependencies and how far ahead it may depend,
    /// which hold against peers. Stored records need not be in causal
    /// order (a batch applied whole is
    /// recorded ahead of events its arrival released from the holding
    /// queue), and an event refused there was dropped: a room peer
    /// forgot 13,000 of 40,000 events it had acknowledged, a page its
    /// own sent write, whose sequence number it then made again (a
    /// review). [`bounded`](Self::bounded) once replayed.
    pub fn replaying(peer: PeerId, config: &EngineConfig) -> Self {
        let unbounded = EngineConfig {
            holding_capacity: usize::MAX,
            holding_per_origin: usize::MAX,
            holding_bytes: usize::MAX,
            holding_bytes_per_origin: usize::MAX,
            max_dependency_gap: u64::MAX,
            ..config.clone()
        };
        ReconciliationEngine::new(peer, unbounded)
    }

    /// With `config`'s bounds from now on (of the same room: its hash
    /// seed and origins as before); what waits stays.
    pub fn bounded(mut self, config: EngineConfig) -> Self {
        self.holding = self.holding.bounded(
            config.holding_capacity,
            config.holding_per_origin,
            (config.holding_bytes, config.holding_bytes_per_origin),
        );
        self.config = config;
        self
    }

    /// The bound on distinct origins, never above the decode bound.
    pub fn max_origins(&self) -> usize {
        self.config.max_origins.min(MAX_CLOCK_ENTRIES)
    }

    /// The version vector of applied events.
    pub fn clock(&self) -> &VectorClock {
        &self.applied
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    pub fn holding(&self) -> &HoldingQueue {
        &self.holding
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Whether `run` (a sealed run as received) is one we hold as it is,
    /// in the log or the archive: a duplicate, whose seal was verified
    /// when it first came. Counted as a duplicate.
    pub fn knows_run(&mut self, run: &[super::P2PEvent]) -> bool {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return false;
        };
        // New events, the usual case, at the cost of a clock look-up.
        if last.id.seq > self.applied.get(last.id.peer) {
            return false;
        }
        let known = (self.log.run_of(first.id))
            .or_else(|| self.archive.run_of(first.id))
            .is_some_and(|held| held == run);
        if known {
            self.stats.duplicates += run.len() as u64;
        }
        known
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Starts recording the order events are applied in.
    pub fn record_apply_order(&mut self) {
        let start = JournalEntry::Loaded(self.applied.clone());
        self.journal.get_or_insert_with(|| vec![start]);
    }

    /// What was applied, in order, since recording started.
    pub fn apply_order(&self) -> &[JournalEntry] {
        self.journal.as_deref().unwrap_or_default()
    }

    /// Keys changed since the last call, each once.
    pub fn take_changes(&mut self) -> Vec<Text> {
        self.take_some_changes(usize::MAX)
    }

    /// Keys changed, as [`take_changes`](Self::take_changes), but at most
    /// `most` of them: the rest wait for the next call
    /// ([`has_changes`](Self::has_changes)). Until the last is taken, a key
    /// taken and changed again is not listed again: the parts together name
    /// every key changed since the list began, each once, so whoever takes
    /// them in parts tells of them once all are taken (a million keys
    /// loaded from a snapshot, in parts of tens of thousands a task).
    pub fn take_some_changes(&mut self, most: usize) -> Vec<Text> {
        let changed = &mut self.books.changed;
        let from = changed.len().saturating_sub(most);
        let entities = &mut self.entities;
        let keys = changed[from..]
            .iter()
            .map(|&i| entities.at(i).key.clone())
            .collect();
        changed.truncate(from);
        if changed.is_empty() {
            self.next_epoch();
        }
        keys
    }

    /// Whether changed keys wait to be taken.
    pub fn has_changes(&self) -> bool {
        !self.books.changed.is_empty()
    }

    /// Forgets the changes since the last [`take_changes`](Self::take_changes)
    /// without making their list (a restore reports none).
    pub fn clear_changes(&mut self) {
        self.books.changed.clear();
        self.next_epoch();
    }

    /// Starts a new change epoch: every mark of the last one is stale.
    fn next_epoch(&mut self) {
        self.books.epoch += 1;
        if self.books.epoch == Slot::UNCHANGED {
            // Once in four billion: marks of epochs long past could be
            // taken for the new ones.
            for slot in self.entities.values_mut() {
                slot.changed = Slot::UNCHANGED;
            }
            self.books.epoch = 0;
        }
    }

    /// The Merkle root of the state: equal on two peers exactly when their
    /// replicated states are equal, whatever order events arrived in.
    pub fn digest(&mut self) -> super::Hash32 {
        let stale = std::mem::take(&mut self.books.stale);
        self.rehash(stale);
        self.digest.root()
    }

    /// The Merkle root if at most `budget` entities need rehashing first;
    /// `None` otherwise (the caller does without, and slices the work with
    /// [`refresh_digest`](Self::refresh_digest)).
    pub fn digest_within(&mut self, budget: usize) -> Option<super::Hash32> {
        (self.books.stale.len() <= budget).then(|| self.digest())
    }

    /// Changed entities not yet rehashed into the Merkle tree.
    pub fn digest_backlog(&self) -> usize {
        self.books.stale.len()
    }

    /// Rehashes at most `budget` changed entities into the Merkle tree's
    /// leaves, so a large change (a burst of remote events) is hashed in
    /// slices rather than in one long pause. Returns whether every change
    /// is in. The root above the changed leaves is left to the next
    /// [`digest`](Self::digest), which hashes each changed leaf once for
    /// all the slices since the last: a slice taken in a lull of a long
    /// stream (C1.2's 30,000 writers) hashed the same leaves, and the
    /// nodes above them, after every slice.
    pub fn refresh_digest(&mut self, budget: usize) -> bool {
        let rest = self.books.stale.len().saturating_sub(budget);
        let batch = self.books.stale.split_off(rest);
        self.rehash(batch);
        rest == 0
    }

    /// Puts the hashes of the entities at `indices` into the Merkle tree.
    fn rehash(&mut self, indices: Vec<u32>) {
        let mut scratch = Vec::new();
        for index in indices {
            let slot = self.entities.at(index);
            slot.digest_stale = false;
            let hash = slot.entity.hash_with(&slot.key, &mut scratch);
            self.digest.update(&slot.key, hash);
        }
    }

    pub fn merkle(&mut self) -> &MerkleDigest {
        self.digest();
        &self.digest
    }

    #[doc(hidden)]
    pub fn entity_debug(&self, key: &str) -> Option<&Entity> {
        self.entity(key)
    }

    pub(crate) fn entity(&self, key: &str) -> Option<&Entity> {
        self.entities.get(key).map(|s| &s.entity)
    }
}
