//! What `/signal` counts (for `/metrics`) and the rate-limited log of what
//! it refuses: one line per class of refusal at most every
//! [`LOG_EVERY`](crate::limits::LOG_EVERY), carrying the count since the
//! last line, so a flood cannot fill a disk.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crate::limits::LogLimit;

use cpc_sync::protocol::signal::JoinError;

/// A class of refused upgrade, join or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An upgrade from a page of an origin not allowed (403).
    Origin,
    RoomFull,
    /// A room or peer name empty or over `MAX_NAME` bytes.
    BadName,
    BadKey,
    NotItsId,
    BadProof,
    Malformed,
    TooLarge,
    Binary,
    /// A signal before a join, or from a socket replaced in its room.
    NotJoined,
    /// A message over the rate limit, dropped.
    RateLimited,
    /// A socket closed for flooding.
    Flooding,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::Origin,
        Refusal::RoomFull,
        Refusal::BadName,
        Refusal::BadKey,
        Refusal::NotItsId,
        Refusal::BadProof,
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::Binary,
        Refusal::NotJoined,
        Refusal::RateLimited,
        Refusal::Flooding,
    ];

    /// Its name in logs and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::RoomFull => "room_full",
            Refusal::BadName => "bad_name",
            Refusal::BadKey => "bad_key",
            Refusal::NotItsId => "not_its_id",
            Refusal::BadProof => "bad_proof",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::Binary => "binary",
            Refusal::NotJoined => "not_joined",
            Refusal::RateLimited => "rate_limited",
            Refusal::Flooding => "flooding",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<&JoinError> for Refusal {
    fn from(error: &JoinError) -> Refusal {
        match error {
            JoinError::BadKey => Refusal::BadKey,
            JoinError::NotItsId => Refusal::NotItsId,
            JoinError::BadProof => Refusal::BadProof,
        }
    }
}

/// A snapshot of the counters, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalStats {
    /// Sockets open now.
    pub sockets: u64,
    /// Rooms with at least one peer now.
    pub rooms: u64,
    /// Refused since start, by [`Refusal::as_str`]; every class is listed.
    pub refused: Vec<(&'static str, u64)>,
    /// Signals relayed since start.
    pub relayed: u64,
    /// Messages dropped because the receiver's outbox was full.
    pub dropped_outbox_full: u64,
    /// Signals dropped because no such peer was in the room.
    pub dropped_no_peer: u64,
    /// Bytes waiting in every socket's outbox now.
    pub queued_bytes: u64,
    /// Sockets replaced by another that proved the same id in the room.
    pub replaced: u64,
    /// Sockets closed because a send did not complete in time.
    pub send_timeouts: u64,
    /// Sockets closed for sending nothing for too long.
    pub idle_timeouts: u64,
}

/// The server's counters; [`Counters::snapshot`] reads them.
#[derive(Debug, Default)]
pub struct Counters {
    pub sockets: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    pub relayed: AtomicU64,
    pub dropped_outbox_full: AtomicU64,
    pub dropped_no_peer: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub replaced: AtomicU64,
    pub send_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    log: Mutex<[LogLimit; Refusal::ALL.len()]>,
}

impl Counters {
    /// Counts a refusal and logs it, unless its class logged less than
    /// [`LOG_EVERY`](crate::limits::LOG_EVERY) ago.
    pub fn refused(&self, why: Refusal, detail: &str) {
        self.refused[why.index()].fetch_add(1, Relaxed);
        let line =
            self.log.lock().unwrap_or_else(|e| e.into_inner())[why.index()].note(Instant::now());
        if let Some(count) = line {
            eprintln!(
                "cpc-signal: refused ({}), {count} since the last such line; latest: {detail}",
                why.as_str()
            );
        }
    }

    pub fn snapshot(&self, rooms: u64) -> SignalStats {
        SignalStats {
            sockets: self.sockets.load(Relaxed),
            rooms,
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.as_str(), self.refused[r.index()].load(Relaxed)))
                .collect(),
            relayed: self.relayed.load(Relaxed),
            dropped_outbox_full: self.dropped_outbox_full.load(Relaxed),
            dropped_no_peer: self.dropped_no_peer.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            send_timeouts: self.send_timeouts.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
        }
    }
}

/// Counts a socket as open while it lives.
pub struct OpenSocket<'a>(&'a Counters);

impl<'a> OpenSocket<'a> {
    pub fn new(counters: &'a Counters) -> Self {
        counters.sockets.fetch_add(1, Relaxed);
        OpenSocket(counters)
    }
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_class() {
        let counters = Counters::default();
        counters.refused(Refusal::BadProof, "test");
        counters.refused(Refusal::BadProof, "test");
        counters.refused(Refusal::Origin, "test");
        let stats = counters.snapshot(0);
        assert_eq!(stats.refused.len(), Refusal::ALL.len());
        assert!(stats.refused.contains(&("bad_proof", 2)));
        assert!(stats.refused.contains(&("origin", 1)));
        assert!(stats.refused.contains(&("room_full", 0)));
    }
}
