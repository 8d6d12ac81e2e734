//! Synchronization between engines: the wire format, and (sans-IO) the
//! per-peer anti-entropy sessions of a [`SyncNode`].

pub mod budget;
#[cfg(all(
    not(target_arch = "wasm32"),
    any(feature = "server", feature = "testing")
))]
pub mod gzip;
pub mod link;
pub mod mesh;
mod node;
pub mod presence;
pub mod refusal;
pub mod session;
pub mod transfer;
pub mod warm;
pub mod wire;

pub use budget::{IntakeBudget, DEFAULT_INTAKE_BYTES};
pub use link::{Backoff, LinkAction, LinkConfig, Links, Route, Verdict};
pub use mesh::{
    LinkState, Mesh, MeshAction, MeshConfig, OverlayMessage, MAX_SHUFFLE, PROTECTED_LINKS,
};
pub use node::{
    BoxedHandler, Commit, Held, LocalWrite, Output, PeerReport, Persist, Relay, SyncConfig,
    SyncNode, ANSWER_SLICE, ANSWER_SLICE_BYTES, CHANGES_AT_ONCE, DIGEST_PAUSE_MS, EAGER_KEPT,
    FORCED_FOLD, GRAFT_BATCH_MS, GRAFT_RETRY_MS, IHAVE_TIMEOUT_MS, MAX_ANNOUNCED, MAX_AWAITED,
    MAX_AWAITED_PER_PEER, MAX_GRAFTS_PER_INTERVAL, MAX_HELD_FOR_VERIFIER,
    MAX_HELD_FOR_VERIFIER_BYTES, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_EVENTS,
    MAX_LEAF_BYTES_PER_INTERVAL, MAX_MERKLE_ANSWERS_PER_INTERVAL, MAX_OVERLAY_PER_INTERVAL,
    MAX_PENDING_OVERLAY, MAX_PRUNES_PER_INTERVAL, MAX_REQUESTS_PER_INTERVAL,
    MAX_RESENT_BYTES_PER_INTERVAL, MAX_UNVERIFIED_BYTES, MAX_UNVERIFIED_EVENTS,
    MIN_OFFLOADED_SEALS, PENALTY_LIMIT, PULL_RETRY_MS, VERIFY_HOLD_WINDOWS, VERIFY_WINDOW_MS,
};
pub use refusal::{Refusal, FORGERY_POINTS, UNSEALED_POINTS};
pub use session::{SessionStats, Standing, MAX_LAST_ERROR, MAX_THEIR_ORIGINS};
