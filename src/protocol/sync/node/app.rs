//! What the app asks of a node: its writes, and a report on each peer.

use serde::Serialize;

use super::SyncNode;
use crate::protocol::clock::{PeerId, VectorClock};
pub use crate::protocol::engine::LocalWrite;
use crate::protocol::error::WriteError;
use crate::protocol::sync::LinkState;

/// What the app is shown of one peer (`peers()` in the JS API).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    pub id: String,
    pub state: &'static str,
    /// Smoothed round-trip time of sync messages, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<f64>,
    /// Frames or events from it that were refused, and the last reason.
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes waiting in the transport to be sent to it.
    pub buffered: u64,
    /// What it last said it has (once synced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<VectorClock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How it stands against this peer (once synced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standing: Option<&'static str>,
    /// It is the room's server peer (`cpc-signal`'s, reached over the
    /// signaling socket); set by the edge that knows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub server: bool,
    /// Its link runs through the signaling server's sealed relay (a room
    /// with a secret whose WebRTC failed); set by the edge that knows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
}

impl SyncNode {
    /// Makes one of the app's writes. Returns the sequence number of the
    /// event it made, or `None` when there was nothing to write (a delete
    /// of an absent key, a remove of an absent member). The event is
    /// sealed, persisted and sent at the next
    /// [`take_outputs`](Self::take_outputs); it is durable once
    /// [`durable_upto`](Self::durable_upto) reaches its number.
    pub fn apply(&mut self, write: LocalWrite, now_ms: u64) -> Result<Option<u64>, WriteError> {
        let id = self.engine_mut().perform(write, now_ms)?;
        Ok(id.map(|id| id.seq))
    }

    /// The report on `peer`, whose link is in `state` with `buffered` bytes
    /// queued. Mutable: comparing Merkle roots may bring ours up to date.
    pub fn report(&mut self, peer: PeerId, state: LinkState, buffered: u64) -> PeerReport {
        let stats = self.stats(peer).cloned().unwrap_or_default();
        let (clock, digest) = match self.remote_view(peer) {
            Some((clock, root)) => (Some(clock.clone()), root.map(|r| r.to_string())),
            None => (None, None),
        };
        PeerReport {
            id: peer.to_string(),
            state: state.as_str(),
            rtt: stats.rtt(),
            rejected: stats.rejected,
            last_error: stats.last_error,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            buffered,
            clock,
            digest,
            standing: self.standing(peer).map(|s| s.as_str()),
            server: false,
            relayed: false,
        }
    }
}
