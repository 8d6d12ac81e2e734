//! The overlay messages of a big room's partial view: the node carries
//! them between the wire and the [`Mesh`](crate::protocol::sync::Mesh),
//! which decides what they mean. Checked here: their size and rate.

use super::{Message, SyncNode};
use crate::protocol::clock::PeerId;
use crate::protocol::sync::mesh::{OverlayMessage, MAX_SHUFFLE};
use crate::protocol::sync::refusal::Refusal;

/// Overlay messages taken from one peer per gossip interval, at most (an
/// honest one sends about one shuffle and one reply per shuffle interval).
pub const MAX_OVERLAY_PER_INTERVAL: u32 = 4;

/// Overlay messages waiting for the mesh, at most; more are dropped (a
/// shuffle lost is a shuffle skipped).
pub const MAX_PENDING_OVERLAY: usize = 256;

impl SyncNode {
    pub(super) fn on_overlay(&mut self, from: PeerId, message: OverlayMessage) {
        let Some(session) = self.sessions.get_mut(&from) else {
            return;
        };
        if session.spent.overlay_messages >= MAX_OVERLAY_PER_INTERVAL {
            return self.refuse(from, Refusal::OverlayFlood(MAX_OVERLAY_PER_INTERVAL));
        }
        session.spent.overlay_messages += 1;
        let named = message.peers().len();
        if named > MAX_SHUFFLE {
            return self.refuse(from, Refusal::OverlayTooLarge(named));
        }
        if self.overlay.len() < MAX_PENDING_OVERLAY {
            self.overlay.push((from, message));
        }
    }

    /// Overlay messages received since the last call, with their senders,
    /// for [`Mesh::receive`](crate::protocol::sync::Mesh::receive).
    pub fn take_overlay(&mut self) -> Vec<(PeerId, OverlayMessage)> {
        std::mem::take(&mut self.overlay)
    }

    /// Sends an overlay message of the mesh to a connected peer (dropped if
    /// it is not connected).
    pub fn send_overlay(&mut self, to: PeerId, message: OverlayMessage) {
        self.send(to, &Message::Overlay(message));
    }
}
