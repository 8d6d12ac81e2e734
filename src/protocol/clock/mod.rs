//! Logical time: peer ids, vector clocks for causality, and the hybrid
//! logical clock that orders Last-Write-Wins.

mod entries;
mod hlc;
mod peer_id;
mod vector_clock;

pub use hlc::{ClockSkewError, HybridClock, Timestamp};
pub use peer_id::{ParsePeerIdError, PeerId};
pub use vector_clock::{
    ClockOrdering, Entries, Hint, Iter as ClockIter, VectorClock, MAX_CLOCK_ENTRIES,
};
