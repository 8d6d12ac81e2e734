//! The reconciliation exchange messages, in the spec's shape.
//!
//! ```json
//! { "type": "RECONCILIATION_REQUEST", "source_peer_id": "…", "target_peer_id": "…",
//!   "conflicting_events": [ /* P2PEvent */ ] }
//! { "type": "RECONCILIATION_RESPONSE", "source_peer_id": "…", "target_peer_id": "…",
//!   "resolution_events": [ /* P2PEvent */ ] }
//! ```

use serde::{Deserialize, Serialize};

use super::clock::PeerId;
use super::event::P2PEvent;
use super::text::Text;

/// The `type` tag of a request: a string in JSON, one byte in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RequestType {
    #[default]
    #[serde(rename = "RECONCILIATION_REQUEST")]
    ReconciliationRequest,
}

/// The `type` tag of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ResponseType {
    #[default]
    #[serde(rename = "RECONCILIATION_RESPONSE")]
    ReconciliationResponse,
}

/// Asks the resolver of a conflict to settle it. `conflicting_events` are the
/// sibling writes the requester sees, so the resolver can apply any it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRequest {
    #[serde(rename = "type")]
    pub message_type: RequestType,
    pub source_peer_id: PeerId,
    pub target_peer_id: PeerId,
    /// The key in conflict. In a signed room the siblings travel in the
    /// whole runs holding them, and a run may hold other keys too (even
    /// keys every sibling's origin wrote), so the request names it. `None`
    /// in the spec's shape: the key of its events, which are then all of
    /// one key (`null` in JSON, read as missing too).
    #[serde(default)]
    pub key: Option<Text>,
    #[serde(with = "crate::protocol::codec::serde_events")]
    pub conflicting_events: Vec<P2PEvent>,
}

/// The resolver's answer: the event(s) that settle the conflict, each one
/// descending every sibling it resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationResponse {
    #[serde(rename = "type")]
    pub message_type: ResponseType,
    pub source_peer_id: PeerId,
    pub target_peer_id: PeerId,
    #[serde(with = "crate::protocol::codec::serde_events")]
    pub resolution_events: Vec<P2PEvent>,
}
