//! What a node knows about one remote peer.

use serde::Serialize;

use super::wire::Reassembler;
use crate::protocol::clock::VectorClock;
use crate::protocol::event::Hash32;
use crate::protocol::room::Handshake;

/// Counters for one connection, shown to the app per peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    /// Smoothed round-trip time of the sync messages (RFC 6298's SRTT).
    pub rtt_ms: Option<f64>,
}

impl SessionStats {
    /// Folds one round-trip sample into the smoothed estimate.
    pub fn sample_rtt(&mut self, rtt_ms: f64) {
        self.rtt_ms = Some(match self.rtt_ms {
            None => rtt_ms,
            Some(srtt) => srtt + (rtt_ms - srtt) / 8.0,
        });
    }
}

/// How a connected peer stands against this one, from its last digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Same version vector, same Merkle root.
    InSync,
    /// Same version vector, but the roots differ or are not known yet.
    Syncing,
    /// It lacks events we have, and has none we lack.
    Behind,
    /// It has events we lack, and lacks none of ours.
    Ahead,
    /// Each has events the other lacks.
    Concurrent,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::InSync => "in sync",
            Standing::Syncing => "syncing",
            Standing::Behind => "behind",
            Standing::Ahead => "ahead",
            Standing::Concurrent => "concurrent",
        }
    }
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
    /// The Merkle root of its last digest.
    pub their_root: Option<Hash32>,
    pub reassembler: Reassembler,
    pub stats: SessionStats,
    /// When to measure the round trip again.
    pub next_ping_ms: u64,
    /// Points for forged or malformed input; see `PENALTY_LIMIT`.
    pub penalty: u32,
    /// In a room with a secret, the handshake until it succeeds: nothing
    /// but `Hello` and `Proof` crosses the connection before.
    pub handshake: Option<Handshake>,
    /// Reconciliation requests answered this gossip interval.
    pub requests: u32,
    /// Overlay messages taken this gossip interval.
    pub overlay_messages: u32,
    /// The link is lazy (see [`Message::Prune`](super::wire::Message::Prune)):
    /// fresh events are announced to it (`IHave`), not pushed, until a
    /// graft; without PlumTree (relay to every link), it only means the
    /// peer asked not to be relayed others' events.
    pub lazy: bool,
    /// We pruned it (the link went lazy on our word).
    pub pruned: bool,
    /// Grafts and prunes taken this gossip interval.
    pub grafts: u32,
    pub prunes: u32,
    /// What we pushed or announced to it since our last gossip tick (per
    /// origin, the last sequence number): a digest of its that crossed
    /// them is not answered with them (see `relay.rs`).
    pub told: VectorClock,
    /// When we last grafted it (with `Relay::Pull`, a graft goes at once
    /// unless one went within `GRAFT_BATCH_MS`).
    pub grafted_ms: Option<u64>,
    /// Merkle leaves we asked this peer for, with how many answers are
    /// due (a slow answer may be asked for again): only those are taken.
    pub asked_leaves: crate::protocol::sorted_map::SortedMap<u16, u8>,
    /// Events its digests and grafts asked for that are still to go, a
    /// slice a task (see `node/owed.rs`).
    pub owed: super::node::Owed,
    /// The caller's link to it holds a backlog of frames: what it is
    /// owed waits ([`SyncNode::set_backlogged`](super::SyncNode::set_backlogged)).
    pub backlogged: bool,
}
