//! `Relays`: which peers of a room with a secret are reached through the
//! signaling server's relay (`crate::protocol::relay`) instead of WebRTC.
//!
//! A peer is relayed, for as long as it stays in the room, once
//!
//! - this page cannot make an RTCPeerConnection at all (every peer is);
//! - its WebRTC connection failed [`RELAY_AFTER`] times in a row without
//!   opening (ICE that cannot connect: no TURN, a strict network);
//! - it opened a relayed link to us (it decided so on its side).
//!
//! Only in rooms with a secret and a signaling server: a room without a
//! secret has the room's server peer to sync through.

use crate::protocol::clock::PeerId;
use crate::protocol::sorted_map::SortedMap;

/// WebRTC attempts to a peer that fail before it is relayed.
pub const RELAY_AFTER: u32 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// Dials since its last WebRTC connection opened.
    dials: u32,
    relayed: bool,
}

#[derive(Debug, Default)]
pub struct Relays {
    enabled: bool,
    /// No RTCPeerConnection here: every peer is relayed.
    no_webrtc: bool,
    peers: SortedMap<PeerId, Peer>,
}

impl Relays {
    pub fn new(enabled: bool) -> Relays {
        Relays {
            enabled,
            ..Relays::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A dial to `peer` is due: whether it goes over the relay.
    pub fn dial(&mut self, peer: PeerId) -> bool {
        if !self.enabled {
            return false;
        }
        let no_webrtc = self.no_webrtc;
        let p = self.peers.get_or_insert_with(peer, Peer::default);
        p.dials = p.dials.saturating_add(1);
        // This dial is the one after RELAY_AFTER that did not open.
        p.relayed |= no_webrtc || p.dials > RELAY_AFTER;
        p.relayed
    }

    /// A link to `peer` opened.
    pub fn opened(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.dials = 0;
        }
    }

    /// No RTCPeerConnection can be made here: whether the relay takes
    /// over (it does only where it is enabled).
    pub fn no_webrtc(&mut self) -> bool {
        self.no_webrtc |= self.enabled;
        self.enabled
    }

    /// `peer` opened a relayed link to us: whether we take it.
    pub fn offered(&mut self, peer: PeerId) -> bool {
        if self.enabled {
            self.peers.get_or_insert_with(peer, Peer::default).relayed = true;
        }
        self.enabled
    }

    pub fn is_relayed(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.relayed)
    }

    /// `peer` left the room: if it comes back, WebRTC is tried first.
    pub fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }

    pub fn clear(&mut self) {
        self.peers.clear();
    }
}
