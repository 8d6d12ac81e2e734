//! `SyncNode`: a `ReconciliationEngine` with one anti-entropy session per
//! remote peer, sans-IO in the style of iroh-gossip's `proto`: inputs are
//! method calls (`connect`, `receive_frame`, `tick`, local writes) that take
//! the time; outputs ([`Output`]) are drained by the caller, which does the
//! I/O. The node keeps the order that matters: a frame that may reflect a
//! write of ours waits until storage has acknowledged that write (see
//! `durability`); time comes in with every call and [`SyncNode::next_timer`]
//! says when to call [`SyncNode::tick`] next.

mod app;
mod batch;
mod durability;
mod gossip;
mod handshake;
mod overlay;
mod owed;
mod penalty;
mod presence;
mod relay;
mod repair;

pub use app::{LocalWrite, PeerReport};
use durability::Durability;
pub use durability::{Commit, Persist};
use gossip::Spread;
pub use gossip::{
    Held, EAGER_KEPT, FORCED_FOLD, MAX_HELD_FOR_VERIFIER, MAX_HELD_FOR_VERIFIER_BYTES,
    MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_EVENTS, MAX_UNVERIFIED_BYTES, MAX_UNVERIFIED_EVENTS,
    MIN_OFFLOADED_SEALS,
};
pub use overlay::{MAX_OVERLAY_PER_INTERVAL, MAX_PENDING_OVERLAY};
pub use owed::{Owed, ANSWER_SLICE, ANSWER_SLICE_BYTES};
pub use relay::{
    GRAFT_BATCH_MS, GRAFT_RETRY_MS, IHAVE_TIMEOUT_MS, MAX_ANNOUNCED, MAX_AWAITED,
    MAX_AWAITED_PER_PEER, MAX_GRAFTS_PER_INTERVAL, MAX_PRUNES_PER_INTERVAL, PULL_RETRY_MS,
};

use std::sync::Arc;

use crate::protocol::text::Text;

use super::budget::Reservation;
use super::refusal::Refusal;
use super::session::{Session, SessionStats, Standing};
use super::transfer::{Decoding, Incoming, Inflating, Loading, Outgoing, Verifying};
use super::wire::{self, Decoded, Message};
use crate::protocol::blake3;
use crate::protocol::clock::{ClockOrdering, PeerId, VectorClock};
use crate::protocol::engine::{Candidate, EngineConfig, ReconciliationEngine, Trust};
use crate::protocol::error::WriteError;
use crate::protocol::event::{Hash32, P2PEvent};
use crate::protocol::identity::Identity;
use crate::protocol::room::{Channel, Handshake, RoomSecret};
use crate::protocol::snapshot::{SnapshotError, StateSnapshot};
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::value::JsonValue;

/// The verification window a browser peer uses
/// ([`SyncConfig::verify_window_ms`]): frames arriving within 2 ms of each
/// other have their seals verified together, for 2 ms more latency on a
/// lone frame.
pub const VERIFY_WINDOW_MS: u64 = 2;

/// Frames that keep coming within the window of each other are held at
/// most this many windows from the first (a flood fills whole batches;
/// its first frame waits at most 20 ms in the browser).
pub const VERIFY_HOLD_WINDOWS: u64 = 10;

/// Timing and size knobs of the sync layer.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How often every session sends a digest.
    pub gossip_interval_ms: u64,
    /// Received seals wait to be verified together with those of the
    /// frames after them (batch verification across frames: many writers'
    /// one-seal frames) until no frame came for this long, or the first
    /// has waited [`VERIFY_HOLD_WINDOWS`] times this long, or
    /// [`seal::BATCH`](crate::protocol::seal::BATCH) seals wait, or another
    /// kind of message arrives. `None`: each frame's seals are verified as
    /// it arrives. The browser waits [`VERIFY_WINDOW_MS`].
    pub verify_window_ms: Option<u64>,
    /// Held frames' seals are verified elsewhere (a page's Workers): each
    /// batch is handed out as an [`Output::Verify`], and its events are
    /// applied, batch after batch in the order they were handed out, once
    /// [`SyncNode::verified`] brings its verdicts. Only with
    /// `verify_window_ms` (without it every frame is verified as it
    /// comes), and only batches of [`MIN_OFFLOADED_SEALS`] seals or more.
    /// Past [`MAX_IN_FLIGHT_EVENTS`] events out, the node verifies new
    /// batches itself too; past [`MAX_HELD_FOR_VERIFIER`] held, everything
    /// out. A snapshot received whole has its seals handed out too, in
    /// batches of [`SNAPSHOT_SEALS_PER_BATCH`](super::transfer::SNAPSHOT_SEALS_PER_BATCH),
    /// and is loaded once all their verdicts are back.
    pub offload_seals: bool,
    /// A snapshot received whole is decoded, and loaded into a fresh
    /// engine (a newcomer's), this many events at a timer's task
    /// ([`SNAPSHOT_SLICE`](super::transfer::SNAPSHOT_SLICE) by default):
    /// in one go, a million keys' decode and load hold a page's thread
    /// about 0.3 and 0.5 s. A snapshot of fewer is taken in the task of its
    /// last chunk, as with `None`: all at once.
    pub snapshot_slice: Option<usize>,
    /// Log length that triggers compaction, at the first gossip tick with
    /// no new events (at once past [`FORCED_FOLD`] times it).
    pub compact_after: usize,
    /// Our own events no peer said it had that a fold leaves in the log,
    /// at most (the latest; 25,000 by default, and never more than half of
    /// `compact_after`): they travel as events when we meet a peer again, not in
    /// a snapshot of the whole state ([`SyncNode::fold`]).
    pub keep_unacked: usize,
    /// Snapshot bytes per chunk (a chunk message fits one frame).
    pub snapshot_chunk: usize,
    /// Largest snapshot accepted from a peer.
    pub max_snapshot: u64,
    /// Most events a snapshot from a peer may hold ([`MAX_SNAPSHOT_EVENTS`]
    /// by default); one of more is refused before any is decoded.
    pub max_snapshot_events: usize,
    /// What a snapshot being taken in may hold of memory (its bytes, what
    /// they inflate to, its decoded events), shared by the nodes given
    /// clones of it (the room peer's rooms; a cloned `SyncConfig` shares
    /// it too); one of [`DEFAULT_INTAKE_BYTES`](super::DEFAULT_INTAKE_BYTES)
    /// by default. A snapshot that does not fit in what is left is not
    /// taken now.
    pub intake: super::IntakeBudget,
    /// Signs this peer's events, and makes the node refuse every event
    /// that is not under a valid seal of its origin (see
    /// [`crate::protocol::seal`]). The engine's peer id must be the
    /// identity's. `None`: an unsigned room, where seals are stripped on
    /// receipt (tests and benchmarks of the protocol without signatures).
    pub identity: Option<Identity>,
    /// A room with a secret: every connection starts with a handshake in
    /// which each side proves it knows the secret and holds the key of its
    /// id; a peer that fails it is disconnected before anything else is
    /// said. Needs `identity`.
    pub room: Option<RoomSecret>,
    /// Seeds the handshake nonces (32 random bytes; with a fixed seed the
    /// nonces are predictable).
    pub nonce_seed: [u8; 32],
    /// The caller keeps durable storage: the node asks for every write with
    /// [`Output::Persist`] and holds each frame that may reflect a write of
    /// its own until [`SyncNode::persisted`] says that write is committed.
    /// `false`: nothing is persisted, nothing is held (a peer in memory).
    pub durable: bool,
    /// How fresh events reach the peers not linked to their writer (see
    /// [`Relay`] and BENCHMARKS.md, issue 19).
    pub relay: Relay,
    /// The caller gzips and gunzips snapshots for transfer (a page, with
    /// the browser's `CompressionStream`): the node offers its snapshots
    /// gzipped as well, once [`Output::GzipSnapshot`] is answered, and asks
    /// for the gzipped form of a snapshot offered with one, inflated by
    /// [`Output::GunzipSnapshot`]. A room's snapshot gzips to a third to a
    /// seventh. `false`: snapshots travel as they are.
    pub gzip_snapshots: bool,
    /// Events a digest or a graft is answered with at a task, at most
    /// ([`ANSWER_SLICE`] by default): the rest go at the wakes after it,
    /// a slice each (the timer is due at once while any are owed).
    pub answer_slice: usize,
    /// Bytes of events (by [`P2PEvent::approx_size`]) a digest or a graft
    /// is answered with at a task, at most ([`ANSWER_SLICE_BYTES`] by
    /// default; a signed run whole past it).
    pub answer_slice_bytes: usize,
}

/// How a node passes on the fresh events it takes in (its own writes and
/// others'). Anti-entropy (digests) heals what any of them misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Relay {
    /// Every link that is not known to have them gets them: the fewest
    /// hops and the least time, about one copy per link (~5 a peer in a
    /// room of 1,000 with 7 links each).
    Flood,
    /// PlumTree (see `relay.rs`): pushed on the eager links of a spanning
    /// tree, announced (`IHave`) on the others, a link pruned on a
    /// duplicate and grafted when an announcement is not followed in time.
    /// About one copy a peer, but a shared tree's paths are long.
    Tree,
    /// Our own writes go to every link (none has them); others' are
    /// announced (`IHave`) on every link, and a peer that lacks them asks
    /// the first that announced them (a graft). One copy a peer, and
    /// announcements of a few bytes on each link, over the shortest paths;
    /// a relayed hop takes three crossings of a link instead of one.
    #[default]
    Pull,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            gossip_interval_ms: 1_000,
            compact_after: 50_000,
            keep_unacked: 25_000,
            verify_window_ms: None,
            offload_seals: false,
            snapshot_slice: Some(super::transfer::SNAPSHOT_SLICE),
            snapshot_chunk: 60 * 1024,
            max_snapshot: 512 * 1024 * 1024,
            max_snapshot_events: MAX_SNAPSHOT_EVENTS,
            intake: super::IntakeBudget::default(),
            identity: None,
            room: None,
            nonce_seed: [0; 32],
            durable: false,
            relay: Relay::default(),
            gzip_snapshots: false,
            answer_slice: ANSWER_SLICE,
            answer_slice_bytes: ANSWER_SLICE_BYTES,
        }
    }
}

/// Keys a report of changes names at most ([`Output::Changed`]): a
/// snapshot of a million keys is told of over a few dozen timers, each
/// part a task of a few ms where a page makes its strings, not in one
/// task of 0.4-0.8 s.
pub const CHANGES_AT_ONCE: usize = 32 * 1024;

/// The pause between slices of digest hashing after a large change: the
/// page stays responsive while a snapshot's worth of entities is hashed.
pub const DIGEST_PAUSE_MS: u64 = 20;

/// The default bound on the events of a snapshot from a peer
/// ([`SyncConfig::max_snapshot_events`]): four times a state of a million
/// keys, each resting on one event. A decoded event takes 160 bytes, and a
/// snapshot may spell one in a byte (its op; its key and time run-coded),
/// so 16 MiB of a member's snapshot, a few KB gzipped, decoded to 2.7 GB,
/// their room reserved at once before anything was checked: more than a
/// page's wasm memory holds, and the room peer, every room in one process,
/// aborted. At the bound, 640 MiB. A snapshot is also refused before
/// decoding when it holds more events than its own version vector counts
/// (its events are distinct and within it), but that vector is the
/// sender's claim: what bounds the memory of many nodes' snapshots at
/// once is their shared [`SyncConfig::intake`].
pub const MAX_SNAPSHOT_EVENTS: usize = 1 << 22;

/// How often the round-trip time to each peer is measured.
pub const PING_INTERVAL_MS: u64 = 10_000;
/// How long a ping waits for its pong before another is sent (links are
/// reliable: a pong this late is a link this slow, or a peer that does
/// not answer).
pub const PING_GIVEN_UP_MS: u64 = 60_000;

/// How many disconnected peers' counters are kept.
pub const KEPT_STATS: usize = 1024;

/// Penalty points at which a connection is closed. A forged or altered
/// run costs [`FORGERY_POINTS`](super::refusal::FORGERY_POINTS), a
/// malformed frame or event 1 (see [`Refusal::points`]): four forgeries,
/// or a hundred bad frames, and the peer is cut off.
pub const PENALTY_LIMIT: u32 = 100;

/// Reconciliation requests answered per peer per gossip interval. Each
/// answer may be a write of ours (a resolution): a peer must not make us
/// write without bound. Refused ones are asked again by an honest requester
/// after `RECONCILIATION_RETRY_MS`.
pub const MAX_REQUESTS_PER_INTERVAL: u32 = 64;

/// Merkle queries answered per peer per gossip interval: a descent asks
/// for at most 273 nodes (the root's children, then 16 and 256 below),
/// and an answer is 16 hashes (~520 bytes) for a query of ~10.
pub const MAX_MERKLE_ANSWERS_PER_INTERVAL: u32 = 2 * 273;

/// Bytes of Merkle leaves answered per peer per gossip interval, past the
/// first leaf (which goes whatever its size, and what it went past the
/// budget by is paid off in the intervals after it). A leaf's copy carries every
/// sealed run resting on its keys, whole: a burst that wrote keys all over
/// the tree is in nearly every leaf, so a sweep of the 4,096 leaves (37 KB
/// of queries) was answered with ~1,100 times its size. An honest peer
/// asks for the leaves that differ after a fault, and asks again at its
/// next digest for those not answered.
pub const MAX_LEAF_BYTES_PER_INTERVAL: usize = 1 << 20;

/// Snapshot bytes sent a peer again per gossip interval: a window asked
/// for below what it was sent of that snapshot (a stalled transfer asks
/// for its window again, a window at a time). Every byte of a snapshot
/// goes once as the transfer moves on; a request of ~60 bytes for the
/// same window over and over was answered with 1 MiB each time.
pub const MAX_RESENT_BYTES_PER_INTERVAL: u64 = 2 * super::transfer::WINDOW_BYTES;

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a frame to a connected peer.
    Send { to: PeerId, frame: Vec<u8> },
    /// Close the connection to a peer (it sent an oversized frame).
    Close { peer: PeerId, reason: String },
    /// Verify these seals (packed by [`seal::pack`](crate::protocol::seal::pack)
    /// or [`SnapshotSeals::pack`](crate::protocol::seal::SnapshotSeals::pack),
    /// e.g. with [`seal::verify_packed`](crate::protocol::seal::verify_packed)),
    /// then call [`SyncNode::verified`] with `batch` and their verdicts
    /// (only with [`SyncConfig::offload_seals`]).
    Verify { batch: u64, seals: Vec<u8> },
    /// Make `write` durable, after every write of a lower token, then call
    /// [`SyncNode::persisted`] with `token` (only with
    /// [`SyncConfig::durable`]).
    Persist { token: u64, write: Persist },
    /// These keys changed: a report in parts of at most
    /// [`CHANGES_AT_ONCE`] keys between two
    /// [`take_outputs`](SyncNode::take_outputs) (while more wait, the
    /// timer is due at once). The parts of a report name each key once
    /// between them; `last` ends the report, so an app tells of its keys
    /// then, and the next report begins at a later `take_outputs`.
    Changed { keys: Vec<Text>, last: bool },
    /// Gzip these bytes, a snapshot to offer, then call
    /// [`SyncNode::snapshot_gzipped`] with them and the result (only with
    /// [`SyncConfig::gzip_snapshots`]). Offers wait for the answer, up to
    /// [`GZIP_PATIENCE_MS`](super::transfer::GZIP_PATIENCE_MS).
    GzipSnapshot { bytes: Arc<Vec<u8>> },
    /// Inflate these gzipped bytes, a snapshot received, to at most `limit`
    /// bytes (more is an error: the sender lied), then call
    /// [`SyncNode::snapshot_gunzipped`] with `id` and the result (only with
    /// [`SyncConfig::gzip_snapshots`]). No other snapshot is taken
    /// meanwhile.
    GunzipSnapshot {
        id: Hash32,
        bytes: Vec<u8>,
        limit: u64,
    },
    /// A snapshot from `from` is arriving; `dropped`: its transfer was
    /// given up where it stood (its source went quiet or away, or what it
    /// covers came otherwise), and a later offer is taken.
    SnapshotProgress {
        from: PeerId,
        received: u64,
        total: u64,
        dropped: bool,
    },
    /// `peer`'s clock is `offset_ms` ahead of ours (behind if negative),
    /// by the stamp of its ping: beyond the skew a peer allows
    /// ([`EngineConfig::max_clock_skew_ms`]), so the one behind refuses
    /// the writes of the one ahead (dated ahead of its clock) until a clock
    /// is set right. Told once a session. With our own id: our writes are
    /// dated `offset_ms` ahead of our clock now (it was ahead when we
    /// wrote, and set right since), and peers refuse them until real time
    /// reaches their dates; told once until it does.
    ClockSkew { peer: PeerId, offset_ms: i64 },
    /// `peer` speaks protocol `version`, not ours: its connection is
    /// refused and closed (and dialed, and answered, ever more rarely).
    /// Told once a peer, so the app can say which page to reload.
    OtherVersion { peer: PeerId, version: u8 },
    /// Something `peer` sent was refused; counted in its session stats.
    Rejected { peer: PeerId, refusal: Refusal },
    /// A reconciliation message went out or came in, as its spec JSON.
    Reconciliation {
        peer: PeerId,
        outgoing: bool,
        json: String,
    },
}

/// The app's reconcile handler (see [`ReconcileHandler`](crate::protocol::engine::ReconcileHandler)).
pub type BoxedHandler = Box<dyn FnMut(&str, &[Candidate]) -> Option<JsonValue>>;

/// A peer's protocol state: the engine, its sessions, and the transfers in
/// flight.
pub struct SyncNode {
    engine: ReconciliationEngine,
    config: SyncConfig,
    sessions: SortedMap<PeerId, Session>,
    /// Counters of peers not connected now, carried into their next
    /// session (at most [`KEPT_STATS`] peers).
    past_stats: SortedMap<PeerId, SessionStats>,
    /// Peers found speaking another protocol version, as told
    /// ([`Output::OtherVersion`]; the latest [`KEPT_STATS`]).
    other_versions: Vec<PeerId>,
    outputs: Vec<Output>,
    next_message_id: u32,
    next_gossip_ms: u64,
    /// Recent snapshots encoded for transfers (oldest first).
    outgoing: Vec<Outgoing>,
    incoming: Option<Incoming>,
    /// What the snapshot being taken in holds of
    /// [`SyncConfig::intake`], from its offer taken until it is loaded or
    /// dropped (given back at the next tick after).
    intake_held: Option<Reservation>,
    /// Peers an offer waits for: the snapshot's gzipped form is out with
    /// the edge.
    awaiting_gzip: Vec<PeerId>,
    /// A snapshot in whole, gzipped, out with the edge to be inflated.
    inflating: Option<Inflating>,
    /// A snapshot in whole, decoded a slice at a time.
    decoding: Option<Decoding>,
    /// A snapshot in whole, its seals out with the verifier.
    verifying: Option<Verifying>,
    /// A snapshot checked, loaded a slice at a time.
    loading: Option<Loading>,
    /// The whole state to be stored at the next timer (or with our next
    /// writes, which rest on it, if they come first): a snapshot was
    /// loaded, or storage lost what it held ([`Self::storage_lost`]).
    snapshot_to_store: bool,
    /// A snapshot loaded waits to be stored: the digests that tell peers
    /// our clock went past it wait too, sent once its write is asked for
    /// (so held behind it): the room peer acknowledged a snapshot's
    /// events before they were on its disk (a review).
    digest_when_stored: bool,
    /// Whether the app is told which keys changed ([`Output::Changed`]):
    /// a page with no listener for them is not sent a million keys after
    /// a snapshot.
    changes_wanted: bool,
    /// Changed keys reported since the last `take_outputs`, and whether
    /// a report ended there: no other begins before the next.
    changes_reported: usize,
    report_ended: bool,
    handler: BoxedHandler,
    /// This peer's events up to here have been sealed and spread.
    sealed_upto: u64,
    /// Handshake nonces drawn so far.
    nonces: u64,
    durability: Durability,
    /// The latest time an input brought (timers are set from it).
    last_input_ms: u64,
    /// Events applied as of the last gossip tick (the node is quiet when
    /// none were applied since).
    applied_at_tick: u64,
    /// Whether the app was told our writes are dated ahead
    /// ([`Output::ClockSkew`] with our own id).
    ahead_told: bool,
    /// Our own events some peer of an ended session said it had (its
    /// clock's entry for us): a fold keeps ours past what any peer had
    /// ([`stable_clock`](Self::stable_clock)).
    own_acked: u64,
    /// Frames whose seals wait to be verified together (with
    /// [`SyncConfig::verify_window_ms`]), with their senders; how many
    /// seals they hold, and when the first came.
    unverified: Vec<(PeerId, crate::protocol::seal::Opened, Option<batch::Batch>)>,
    unverified_seals: usize,
    unverified_held: gossip::Held,
    unverified_since: u64,
    /// When the latest frame held for verification came.
    unverified_last: u64,
    /// Batches handed out for verification ([`SyncConfig::offload_seals`]),
    /// oldest first, and what they hold.
    in_flight: std::collections::VecDeque<gossip::InFlight>,
    in_flight_held: gossip::Held,
    next_batch: u64,
    /// Overlay messages received, for the mesh (see `overlay.rs`).
    overlay: Vec<(PeerId, super::mesh::OverlayMessage)>,
    /// The others' presence (see `presence.rs`), apart from the engine.
    presence: super::presence::PresenceTable,
    /// Our presence: as the app set it, as last sent, and when it is due
    /// (again).
    presence_value: Option<String>,
    presence_sent: Option<super::presence::PresenceUpdate>,
    presence_due: Option<u64>,
    presence_changed: bool,
    /// Every session closed since our presence last went out: the peers
    /// we meet next may have heard from signaling that we left, and take
    /// only an update newer than the last they heard, so the next session
    /// to start sends a fresh one (else we showed again only at the next
    /// refresh, up to [`PRESENCE_REFRESH_MS`](super::presence::PRESENCE_REFRESH_MS)
    /// later).
    presence_unheard: bool,
    /// Origins whose events were announced to us (`IHave`) and have not
    /// come yet (see `relay.rs`).
    awaited: SortedMap<PeerId, relay::Awaited>,
    /// The peer last sent a slice of what it is owed (see `owed.rs`).
    last_owed: Option<PeerId>,
}

impl std::fmt::Debug for SyncNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncNode")
            .field("peer", &self.engine.peer())
            .field("sessions", &self.sessions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SyncNode {
    pub fn new(engine: ReconciliationEngine, config: SyncConfig) -> Self {
        let sealed_upto = engine.sealed_own(config.identity.is_some());
        // What a node starts with is what it restored: durable.
        let durability = Durability::new(config.durable, engine.clock().get(engine.peer()));
        SyncNode {
            sealed_upto,
            durability,
            last_input_ms: 0,
            applied_at_tick: 0,
            own_acked: 0,
            ahead_told: false,
            unverified: Vec::new(),
            unverified_seals: 0,
            unverified_held: Default::default(),
            unverified_since: 0,
            unverified_last: 0,
            in_flight: Default::default(),
            in_flight_held: Default::default(),
            next_batch: 0,
            overlay: Vec::new(),
            presence: Default::default(),
            presence_value: None,
            presence_sent: None,
            presence_due: None,
            presence_changed: false,
            presence_unheard: false,
            awaited: SortedMap::new(),
            last_owed: None,
            nonces: 0,
            engine,
            config,
            sessions: SortedMap::new(),
            past_stats: SortedMap::new(),
            other_versions: Vec::new(),
            outputs: Vec::new(),
            next_message_id: 0,
            next_gossip_ms: 0,
            outgoing: Vec::new(),
            incoming: None,
            intake_held: None,
            awaiting_gzip: Vec::new(),
            inflating: None,
            decoding: None,
            verifying: None,
            loading: None,
            snapshot_to_store: false,
            digest_when_stored: false,
            changes_wanted: true,
            changes_reported: 0,
            report_ended: false,
            handler: Box::new(|_, _| None),
        }
    }

    /// Rebuilds a node from what it persisted: the last snapshot, then the
    /// events appended after it.
    pub fn restore(
        peer: PeerId,
        engine_config: EngineConfig,
        config: SyncConfig,
        snapshot: Option<&[u8]>,
        events: impl IntoIterator<Item = P2PEvent>,
    ) -> Result<Self, SnapshotError> {
        // Our own storage, in whatever order it was recorded.
        let mut engine = ReconciliationEngine::replaying(peer, &engine_config);
        if let Some(bytes) = snapshot {
            engine.load_snapshot(StateSnapshot::decode_shared(bytes)?, Trust::OWN)?;
        }
        // Events within the snapshot: the tail its fold left in the log,
        // put back before the events after it are replayed onto it.
        let covered = engine.clock().clone();
        let (tail, after): (Vec<P2PEvent>, Vec<P2PEvent>) = events
            .into_iter()
            .partition(|e| e.id.seq <= covered.get(e.id.peer));
        engine.restore_log_tail(tail);
        for event in after {
            // A refusal here means the store was damaged: the event is
            // skipped and anti-entropy fetches it again.
            let _ = engine.replay(event);
        }
        let mut engine = engine.bounded(engine_config);
        engine.clear_changes();
        Ok(SyncNode::new(engine, config))
    }

    pub fn engine(&self) -> &ReconciliationEngine {
        &self.engine
    }

    /// For configuration (policies) and reads that need `&mut` (digest).
    /// Writes go through [`SyncNode::write`], so they are persisted and sent.
    pub fn engine_mut(&mut self) -> &mut ReconciliationEngine {
        &mut self.engine
    }

    pub fn peer(&self) -> PeerId {
        self.engine.peer()
    }

    pub fn set_reconcile_handler(&mut self, handler: BoxedHandler) {
        self.handler = handler;
    }

    /// Connected peers and their counters.
    pub fn sessions(&self) -> impl Iterator<Item = (PeerId, &SessionStats)> {
        self.sessions.iter().map(|(p, s)| (*p, &s.stats))
    }

    /// What a connected peer last said it has: its version vector (with
    /// what was sent to it since) and its Merkle root.
    pub fn remote_view(&self, peer: PeerId) -> Option<(&VectorClock, Option<Hash32>)> {
        self.sessions
            .get(&peer)
            .filter(|s| s.synced)
            .map(|s| (&s.their_clock, s.their_root))
    }

    /// How a connected, synced peer stands against us. Roots are compared
    /// only when ours is at hand (see [`SyncNode::refresh_digest`]).
    pub fn standing(&mut self, peer: PeerId) -> Option<Standing> {
        let session = self.sessions.get(&peer).filter(|s| s.synced)?;
        let root = session.their_root;
        Some(match self.engine.clock().compare(&session.their_clock) {
            ClockOrdering::After => Standing::Behind,
            ClockOrdering::Before => Standing::Ahead,
            ClockOrdering::Concurrent => Standing::Concurrent,
            ClockOrdering::Equal => {
                let ours = self.engine.digest_within(gossip::DIGEST_SLICE);
                if root.is_some() && root == ours {
                    Standing::InSync
                } else {
                    Standing::Syncing
                }
            }
        })
    }

    /// A peer's counters over all its connections so far.
    pub fn stats(&self, peer: PeerId) -> Option<&SessionStats> {
        self.sessions
            .get(&peer)
            .map(|s| &s.stats)
            .or_else(|| self.past_stats.get(&peer))
    }

    /// A snapshot being received: `(from, received, total)`.
    pub fn snapshot_progress(&self) -> Option<(PeerId, u64, u64)> {
        self.incoming
            .as_ref()
            .map(|i| (i.from, i.bytes.len() as u64, i.total))
    }

    /// Rehashes a slice of the changed entities into the Merkle digest;
    /// returns whether it is up to date. Call it often while it returns
    /// `false` (the tick calls it too).
    pub fn refresh_digest(&mut self) -> bool {
        self.engine.refresh_digest(gossip::DIGEST_SLICE)
    }

    /// The Merkle root of the state, every change hashed in first.
    pub fn digest(&mut self) -> Hash32 {
        self.engine.digest()
    }

    /// When [`tick`](Self::tick) wants to run next: at the gossip interval,
    /// or in [`DIGEST_PAUSE_MS`] while changed entities wait to be hashed
    /// into the digest, or at once while a snapshot's runs wait to be
    /// opened or a loaded one to be stored, or while a peer is owed events
    /// (see `owed.rs`). The caller arms one timer for
    /// it (an idle node wakes once per gossip interval).
    pub fn next_timer(&self) -> u64 {
        let next = if self.engine.digest_backlog() > 0 {
            self.next_gossip_ms
                .min(self.last_input_ms + DIGEST_PAUSE_MS)
        } else {
            self.next_gossip_ms
        };
        let next = self.presence_due.map_or(next, |due| due.min(next));
        let next = self.graft_due().map_or(next, |due| due.min(next));
        // A snapshot to decode, open or load (a slice at each wake), its
        // state to store, the rest of a report of changes, or of the
        // events a peer asked for: at once.
        let next = if self.snapshot_slice_due()
            || self.snapshot_to_store
            || self.changes_pending()
            || self.owing()
        {
            next.min(self.last_input_ms)
        } else {
            next
        };
        self.verification_due().map_or(next, |due| due.min(next))
    }

    /// What to do now. Local writes made since the last call leave here:
    /// sealed as one run (one signature per burst of writes), persisted,
    /// then sent.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        // Local writes report what they changed here, all of a burst at
        // once, rather than one output per write.
        self.report_changes();
        self.flush_local();
        self.persist_others(false);
        self.changes_reported = 0;
        self.report_ended = false;
        std::mem::take(&mut self.outputs)
    }

    /// Seals the events made here since the last flush and spreads them.
    fn flush_local(&mut self) {
        // Others' events our writes released (held, they waited on one):
        // stored before our writes, which may rest on them, and passed on
        // (a helper's test through the wire found them sent only at the
        // next digest round, and stored not at all).
        if self.engine.take_released() {
            self.absorb_released();
        }
        let upto = self.engine.clock().get(self.engine.peer());
        if upto <= self.sealed_upto {
            return;
        }
        // Others' events ours may depend on are asked for first.
        self.persist_others(true);
        let events = self
            .engine
            .seal_own(self.config.identity.as_ref(), self.sealed_upto);
        self.sealed_upto = upto;
        if !events.is_empty() {
            let spread = Spread::plan(&self.sessions, &self.config, &events, None, true, None);
            // Persisted before they are sent (the sends wait for it),
            // encoded once: the batch of the frame made for the peers,
            // or else from the log.
            if self.config.durable {
                let write = if std::mem::take(&mut self.snapshot_to_store) {
                    // They rest on a snapshot loaded since the last timer:
                    // stored now, holding them, they are never durable
                    // without it (restored without it, they would be held
                    // and their numbers made again).
                    let bytes = self.engine.encode_snapshot();
                    self.snapshot_write(bytes)
                } else if let Some(batch) = spread.batch() {
                    // Encoded once already, for the peers.
                    Persist::Events {
                        record: batch.to_vec(),
                        count: events.len(),
                    }
                } else {
                    Persist::events(&events)
                };
                self.persist(write, Some(upto));
            }
            self.carry_out(spread);
            self.digest_if_stored();
        }
    }

    /// Stores the state of a snapshot loaded since the last timer, if
    /// any. Our writes are sealed first (a stored snapshot is sent on);
    /// if there are any, that flush stores it, holding them.
    fn store_loaded_snapshot(&mut self) {
        if !self.snapshot_to_store {
            return;
        }
        self.flush_local();
        if std::mem::take(&mut self.snapshot_to_store) {
            self.persist_snapshot();
        }
        self.digest_if_stored();
    }

    /// Sends the digests a loaded snapshot's store was waited for, once
    /// its write is asked for.
    fn digest_if_stored(&mut self) {
        if !self.snapshot_to_store && std::mem::take(&mut self.digest_when_stored) {
            let peers: Vec<PeerId> = self.sessions.keys().copied().collect();
            for peer in peers {
                self.send_digest(peer);
            }
        }
    }

    /// Storage lost everything it held (the browser deleted the database
    /// under the page: the user cleared the site's data): the whole state
    /// is stored again, a snapshot at the next tick, and the writes not yet
    /// durable are durable with it (they are in the state it encodes).
    pub fn storage_lost(&mut self) {
        self.snapshot_to_store = self.config.durable;
    }

    /// Replaces what storage holds with a snapshot of the state (encoded
    /// only for a node with storage).
    fn persist_snapshot(&mut self) {
        if self.config.durable {
            let bytes = self.engine.encode_snapshot();
            let write = self.snapshot_write(bytes);
            self.persist(write, None);
        }
    }

    /// The write that stores `bytes`, the state encoded now; kept too, as
    /// the snapshot a newcomer is offered next (so a durable node encodes
    /// its state once for both).
    fn snapshot_write(&mut self, bytes: Vec<u8>) -> Persist {
        let bytes = Arc::new(bytes);
        self.keep_outgoing(Arc::clone(&bytes));
        Persist::Snapshot(bytes)
    }

    /// A local write: `op` runs on the engine; the event it makes is
    /// sealed, persisted and gossiped to every connected peer at the next
    /// [`take_outputs`](Self::take_outputs) or tick.
    pub fn write(
        &mut self,
        op: impl FnOnce(&mut ReconciliationEngine) -> Result<Option<P2PEvent>, WriteError>,
    ) -> Result<Option<P2PEvent>, WriteError> {
        op(&mut self.engine)
    }

    /// Whether to report which keys changed ([`Output::Changed`]; on by
    /// default). Off, the engine forgets them instead of listing them:
    /// what an app with no one to tell saves (a newcomer's snapshot of a
    /// million keys: ~80 ms of a page's task in Chromium).
    pub fn want_changes(&mut self, wanted: bool) {
        self.changes_wanted = wanted;
    }

    /// Whether a report of changed keys has parts still to come
    /// ([`Output::Changed`]).
    pub fn changes_pending(&self) -> bool {
        self.changes_wanted && self.engine.has_changes()
    }

    /// A connection to `peer` opened, under no channel its handshake can
    /// be bound to (a relayed link, the room's server peer; see
    /// [`connect_over`](Self::connect_over)).
    pub fn connect(&mut self, peer: PeerId, now_ms: u64) {
        self.connect_over(peer, &Channel::unbound(), now_ms);
    }

    /// A connection to `peer` opened over `channel` (a WebRTC data
    /// channel's fingerprints): in a room with a secret the handshake is
    /// bound to it, else both sides send a digest at once.
    pub fn connect_over(&mut self, peer: PeerId, channel: &Channel, now_ms: u64) {
        self.last_input_ms = self.last_input_ms.max(now_ms);
        let stats = self.past_stats.remove(&peer).unwrap_or_default();
        let handshake = self.needs_handshake().then(|| {
            self.nonces += 1;
            let nonce = blake3::keyed_hash(&self.config.nonce_seed, &self.nonces.to_le_bytes());
            Handshake::new(self.peer(), peer, *nonce.as_bytes(), channel)
        });
        let hello = handshake.as_ref().map(|h| Message::Hello {
            nonce: h.my_nonce(),
        });
        self.sessions.insert(
            peer,
            Session {
                stats,
                handshake,
                ..Session::default()
            },
        );
        match hello {
            Some(hello) => self.send(peer, &hello),
            None => self.start_session(peer, now_ms),
        }
        self.report_changes();
    }

    /// The session with `peer` may begin: digests, round-trip probes, and a
    /// snapshot transfer from it to resume.
    fn start_session(&mut self, peer: PeerId, now_ms: u64) {
        if self.incoming.as_ref().is_some_and(|i| i.from == peer) {
            self.request_window(now_ms);
        }
        self.send_digest(peer);
        self.ping_if_due(peer, now_ms);
        self.greet_presence(peer, now_ms);
    }

    /// The connection to `peer` is gone; what was queued on it is lost. A
    /// partial snapshot from it is kept, to resume.
    pub fn disconnect(&mut self, peer: PeerId) {
        self.end_session(peer);
        self.unlink_presence(peer);
        self.presence_unheard |= self.sessions.is_empty();
    }

    fn end_session(&mut self, peer: PeerId) {
        self.drop_held(peer);
        if let Some(session) = self.sessions.remove(&peer) {
            // Held to what we made by then, whatever the path it was
            // learnt by (a digest's claim, an events frame's).
            let me = self.peer();
            let made = self.engine.clock().get(me);
            self.own_acked = (self.own_acked).max(session.their_clock.get(me).min(made));
            if self.past_stats.len() >= KEPT_STATS {
                self.past_stats.pop_first();
            }
            // A ping still out ends with the session: its wait is not
            // the next one's round trip.
            let mut stats = session.stats;
            stats.waited_ms = None;
            self.past_stats.insert(peer, stats);
        }
    }

    /// Timer: hash a slice of the changed entities; at the gossip interval,
    /// gossip digests, run reconciliation, compact.
    pub fn tick(&mut self, now_ms: u64) {
        self.clock_set_back(now_ms);
        // The digest catches up in a pause of input, not at every wake (a
        // verification window's, for one).
        let paused = now_ms >= self.last_input_ms.saturating_add(DIGEST_PAUSE_MS);
        self.last_input_ms = self.last_input_ms.max(now_ms);
        if self.verification_due().is_some_and(|due| due <= now_ms) {
            self.verify_received(now_ms);
        }
        // A snapshot loaded at an earlier wake is stored before the next
        // slice: the slice that finishes a load leaves the store, an
        // encode of the whole state, to a task of its own.
        self.store_loaded_snapshot();
        self.snapshot_slice(now_ms);
        self.release_intake();
        self.send_owed();
        self.send_presence_if_due(now_ms);
        if self.graft_due().is_some_and(|due| due <= now_ms) {
            self.graft(now_ms);
        }
        if now_ms < self.next_gossip_ms {
            if paused && self.engine.digest_backlog() > 0 {
                self.refresh_digest();
            }
            return;
        }
        self.next_gossip_ms = now_ms + self.config.gossip_interval_ms;
        self.tell_stamps_ahead(now_ms);
        for session in self.sessions.values_mut() {
            session.spent.next_interval();
            let patience_ms = session.patience_ms(self.config.gossip_interval_ms);
            session.told.expire(now_ms, patience_ms);
        }
        self.verify_received(now_ms);
        self.flush_local();
        self.refresh_digest();
        let peers: Vec<PeerId> = self.sessions.keys().copied().collect();
        for peer in peers {
            self.send_digest(peer);
            self.ping_if_due(peer, now_ms);
        }
        self.reconcile(now_ms);
        self.expire_presence(now_ms);
        self.compact();
        self.tend_transfer(now_ms);
        self.report_changes();
    }

    /// A frame arrived from `from`. Bad frames are refused, counted and
    /// reported; an oversized one also closes the connection.
    pub fn receive_frame(&mut self, from: PeerId, frame: &[u8], now_ms: u64) {
        self.clock_set_back(now_ms);
        self.last_input_ms = self.last_input_ms.max(now_ms);
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        session.stats.frames_in += 1;
        session.stats.bytes_in += frame.len() as u64;
        let message = match wire::decode(frame) {
            Ok(Decoded::Message(m)) => Some(m),
            Ok(Decoded::Chunk(c)) => match session.reassembler.push(c) {
                Ok(m) => m,
                Err(e) => return self.refuse(from, e.into()),
            },
            Err(e) => return self.refuse(from, e.into()),
        };
        if let Some(message) = message {
            self.handle(from, message, frame, now_ms);
        }
        self.report_changes();
    }

    /// `frame`: the one it came in (the last, if in chunks): when its
    /// events all apply, it is forwarded as it came and its batch stored
    /// as it is (see `batch.rs`).
    fn handle(&mut self, from: PeerId, message: Message, frame: &[u8], now_ms: u64) {
        if !self.handshake(from, &message, now_ms) {
            return;
        }
        // Events held for verification come first, before anything that
        // may read or answer from the state they change.
        if !matches!(
            message,
            Message::Events(_)
                | Message::Ping { .. }
                | Message::Pong { .. }
                | Message::Overlay(_)
                | Message::Prune
                | Message::IHave(_)
                | Message::Presence(_)
        ) {
            self.verify_received(now_ms);
        }
        match message {
            // Taken by the handshake.
            Message::Hello { .. } | Message::Proof(_) => {}
            Message::Digest { clock, root } => self.on_digest(from, clock, root),
            Message::Events(events) => {
                // Kept if it may be stored or forwarded as it came (with
                // Pull, others' events are announced, never pushed).
                let forwards = self.config.relay != Relay::Pull
                    && self.sessions.len() > 1
                    && events.len() <= gossip::EVENTS_PER_MESSAGE;
                let sent = (!events.is_empty() && (self.stores() || forwards))
                    .then(|| batch::Batch::of(frame, events.len()))
                    .flatten();
                self.on_events(from, events, sent, now_ms)
            }
            Message::SnapshotOffer {
                id,
                total,
                clock,
                gzip,
            } => self.on_offer(from, id, total, clock, gzip, now_ms),
            Message::SnapshotRequest { id, offset } => self.on_snapshot_request(from, id, offset),
            Message::SnapshotChunk {
                id,
                offset,
                total,
                bytes,
            } => self.on_chunk(from, id, offset, total, &bytes, now_ms),
            Message::MerkleQuery { depth, index } => self.on_merkle_query(from, depth, index),
            Message::MerkleNodes {
                depth,
                index,
                children,
            } => self.on_merkle_nodes(from, depth, index, &children),
            Message::LeafQuery { index } => self.on_leaf_query(from, index),
            Message::LeafState { index, state } => self.on_leaf(from, index, &state, now_ms),
            Message::ReconciliationRequest(request) => self.on_request(from, request, now_ms),
            Message::ReconciliationResponse(response) => self.on_response(from, response, now_ms),
            Message::Overlay(message) => self.on_overlay(from, message),
            Message::Presence(updates) => self.on_presence(from, updates, now_ms),
            Message::Prune => self.on_prune(from),
            Message::IHave(entries) => self.on_ihave(from, entries, now_ms),
            Message::Graft(entries) => self.on_graft(from, entries),
            Message::Ping { sent_ms } => {
                self.compare_clocks(from, sent_ms, now_ms);
                self.send(from, &Message::Pong { sent_ms });
            }
            Message::Pong { sent_ms } => {
                if let Some(session) = self.sessions.get_mut(&from) {
                    if session.ping_out == Some(sent_ms) && sent_ms <= now_ms {
                        session.ping_out = None;
                        session.stats.waited_ms = None;
                        session.stats.sample_rtt((now_ms - sent_ms) as f64);
                    }
                }
            }
        }
    }

    /// The wall clock went back (set right, NTP) past what the timers were
    /// scheduled by: every schedule and stamp read off the old reading is
    /// brought to `now_ms` (else nothing runs, and nothing told is resent,
    /// until real time reaches the old reading: a review).
    fn clock_set_back(&mut self, now_ms: u64) {
        let slack = now_ms.saturating_add(self.config.gossip_interval_ms.max(PING_INTERVAL_MS));
        if self.next_gossip_ms <= slack && self.last_input_ms <= slack {
            return;
        }
        self.next_gossip_ms = now_ms;
        self.last_input_ms = now_ms;
        if let Some(due) = &mut self.presence_due {
            *due = (*due).min(now_ms);
        }
        for session in self.sessions.values_mut() {
            session.next_ping_ms = session.next_ping_ms.min(now_ms);
            if session.ping_out.is_some_and(|sent| sent > now_ms) {
                session.ping_out = None;
            }
            // What was told by the old reading is taken as lost.
            session.told.clock_set_back(now_ms);
            session.grafted_ms = session.grafted_ms.map(|t| t.min(now_ms));
        }
        for awaited in self.awaited.values_mut() {
            awaited.clock_set_back(now_ms);
        }
    }

    /// Tells the app once, until real time catches up, that our writes are
    /// dated ahead: the ping comparison no longer says so once the clock
    /// is set right, and the writes went nowhere for the length of its
    /// error, without a word (a review).
    fn tell_stamps_ahead(&mut self, now_ms: u64) {
        match self.engine.stamps_ahead(now_ms) {
            Some(ahead) if !self.ahead_told => {
                self.ahead_told = true;
                let peer = self.peer();
                let offset_ms = i64::try_from(ahead).unwrap_or(i64::MAX);
                self.outputs.push(Output::ClockSkew { peer, offset_ms });
            }
            Some(_) => {}
            None => self.ahead_told = false,
        }
    }

    /// Compares `peer`'s clock, by the stamp of its ping, with ours: a
    /// page whose clock is hours off sees its writes refused by every peer
    /// (dated ahead) or refuses theirs (behind), and nothing said so but a
    /// counter. Off by more than the skew allowed, the app is told
    /// ([`Output::ClockSkew`]); the estimate is off by the ping's one-way
    /// delay, small beside the skew.
    fn compare_clocks(&mut self, peer: PeerId, sent_ms: u64, now_ms: u64) {
        let skew = self.engine.config().max_clock_skew_ms;
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let offset = i128::from(sent_ms) - i128::from(now_ms);
        // Once a session: a peer alternating its stamps must not make an
        // error of each ping.
        if offset.unsigned_abs() > u128::from(skew) && !session.skew_told {
            session.skew_told = true;
            let offset_ms = offset.max(i64::MIN.into()).min(i64::MAX.into()) as i64;
            self.outputs.push(Output::ClockSkew { peer, offset_ms });
        }
    }

    /// Measures the round trip to `peer` on connect and every
    /// [`PING_INTERVAL_MS`] (not every digest: the digest alone is the
    /// steady-state cost of anti-entropy).
    ///
    /// Only the echo of our ping is a sample, so a ping is not replaced
    /// while it waits for its pong: one unanswered at the next interval
    /// makes the round trip that long at least while it waits
    /// ([`SessionStats::waited_ms`]: a link slower than the interval is
    /// measured, and one that never answers is slow), and is given up
    /// after [`PING_GIVEN_UP_MS`].
    fn ping_if_due(&mut self, peer: PeerId, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        // Not before the handshake: the ping would not leave.
        if now_ms < session.next_ping_ms || session.handshake.is_some() {
            return;
        }
        session.next_ping_ms = now_ms + PING_INTERVAL_MS;
        if let Some(sent_ms) = session.ping_out {
            let waited = now_ms.saturating_sub(sent_ms);
            session.stats.waited_ms = Some(waited as f64);
            if waited < PING_GIVEN_UP_MS {
                return;
            }
        }
        session.ping_out = Some(now_ms);
        self.send(peer, &Message::Ping { sent_ms: now_ms });
    }

    fn send(&mut self, to: PeerId, message: &Message) {
        let Some(session) = self.sessions.get_mut(&to) else {
            return;
        };
        if session.handshake.is_some() && !message.is_handshake() {
            // Not a word before the peer proved the secret.
            return;
        }
        self.next_message_id = self.next_message_id.wrapping_add(1);
        let frames = wire::encode(message, self.next_message_id);
        for frame in &frames {
            session.stats.frames_out += 1;
            session.stats.bytes_out += frame.len() as u64;
        }
        for frame in frames {
            self.emit_frame(to, frame);
        }
    }

    /// Sends a frame made already (one that is not the handshake's).
    fn send_frame(&mut self, to: PeerId, frame: Vec<u8>) {
        let Some(session) = self.sessions.get_mut(&to) else {
            return;
        };
        if session.handshake.is_some() {
            return;
        }
        session.stats.frames_out += 1;
        session.stats.bytes_out += frame.len() as u64;
        self.emit_frame(to, frame);
    }

    fn signed(&self) -> bool {
        self.config.identity.is_some()
    }

    /// After every input but a local write (reported at
    /// [`take_outputs`](Self::take_outputs)): which keys changed.
    fn report_changes(&mut self) {
        if !self.changes_wanted {
            return self.engine.clear_changes();
        }
        let room = CHANGES_AT_ONCE - self.changes_reported;
        if self.report_ended || room == 0 || !self.engine.has_changes() {
            return;
        }
        let keys = self.engine.take_some_changes(room);
        self.changes_reported += keys.len();
        self.report_ended = !self.engine.has_changes();
        let last = self.report_ended;
        self.outputs.push(Output::Changed { keys, last });
    }

    /// The version vectors of the connected, synced peers and ours: what
    /// everyone known has. Of our own events, no more than some peer said
    /// it had, in this session or an ended one, unless they are more than
    /// [`SyncConfig::keep_unacked`]: a page that wrote offline and closed (a
    /// fold) folded its unsent writes with the rest, so the peers it met
    /// again got its whole state as a snapshot, and passed that on, for
    /// one edit (a review). Kept in the log, they travel as events. A page
    /// that never meets a peer still folds, that many behind. A
    /// peer may claim ours to make us fold them: they then travel in
    /// snapshots, as everyone's did.
    ///
    /// A peer that lacks `lag` or more of our events (at most
    /// [`SyncConfig::compact_after`]) holds nothing back: it gets a
    /// snapshot, as a peer back from long offline does. A member's digest
    /// of an empty clock, once a round, held back every fold, forced ones
    /// too: the log and a room peer's file grew without bound (a review).
    pub(super) fn stable_clock(&self, lag: usize) -> VectorClock {
        let ours = self.engine.clock();
        let lag = lag as u64;
        let clocks = self
            .sessions
            .values()
            .filter(|s| s.synced && ours.count_beyond(&s.their_clock) < lag)
            .map(|s| &s.their_clock);
        let mut stable = VectorClock::meet(clocks.chain(std::iter::once(ours)));
        let me = self.peer();
        // Never past half the fold threshold: a fold then always leaves a
        // log the next fold is a threshold away from.
        let kept = self.config.keep_unacked.min(self.config.compact_after / 2) as u64;
        let acked = self
            .sessions
            .values()
            .map(|s| s.their_clock.get(me))
            .fold(self.own_acked, u64::max)
            .max(stable.get(me).saturating_sub(kept));
        if stable.get(me) > acked {
            stable.set(me, acked);
        }
        stable
    }
}
