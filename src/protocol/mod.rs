//! The protocol core: pure Rust, sans-IO. No web crate, no clock, no RNG:
//! time and randomness are passed in, so everything here runs natively,
//! deterministically and fast.

pub mod blake3;
pub mod blocks;
pub mod clock;
pub mod codec;
pub mod digest;
pub mod engine;
pub mod entity;
pub mod error;
pub mod event;
pub mod hashing;
pub mod heap_sort;
pub mod identity;
pub mod json;
pub mod key_sort;
pub mod prefetch;
pub mod reconciliation;
pub mod relay;
pub mod room;
pub mod seal;
pub mod signal;
pub mod signature;
pub mod snapshot;
pub mod sorted_map;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod value;

pub use clock::{ClockOrdering, HybridClock, PeerId, Timestamp, VectorClock};
pub use engine::{
    Candidate, Conflict, ConflictPolicy, EngineConfig, EngineStats, JournalEntry, Receipt,
    ReconcileHandler, ReconcileStep, ReconciliationEngine, Trust, RECONCILIATION_RETRY_MS,
};
pub use error::{ReceiveError, WriteError};
pub use event::{EventId, Hash32, Kind, Operation, P2PEvent};
pub use identity::Identity;
pub use reconciliation::{ReconciliationRequest, ReconciliationResponse};
pub use snapshot::{SnapshotError, StateSnapshot};
pub use text::Text;
pub use value::JsonValue;
