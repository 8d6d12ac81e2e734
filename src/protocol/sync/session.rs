//! What a node knows about one remote peer.

use serde::Serialize;

use super::wire::Reassembler;
use crate::protocol::clock::VectorClock;

/// Counters for one connection, shown to the app per peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub events_in: u64,
    pub events_out: u64,
    /// Frames or events from this peer that were refused.
    pub rejected: u64,
    pub last_error: Option<String>,
}

/// One remote peer's sync session.
#[derive(Debug, Default)]
pub struct Session {
    /// What the peer has, as far as we know: its last digest, plus what it
    /// sent us and what we sent it since. Events it covers are not relayed
    /// to it again.
    pub their_clock: VectorClock,
    /// Whether a digest from the peer has arrived on this connection.
    pub synced: bool,
    pub reassembler: Reassembler,
    pub stats: SessionStats,
}
