//! Relayed links: in a room with a secret, peers whose WebRTC fails send
//! their frames through the signaling socket, sealed end to end
//! ([`RelayLink`]; the server forwards `[peer id][sealed bytes]`). The
//! links decide when ([`LinkAction::Relay`]); this edge draws the secrets,
//! moves the bytes and reports each link as any other, so the sync node
//! runs over it unchanged (its secret handshake included).
//!
//! [`LinkAction::Relay`]: crate::protocol::sync::LinkAction::Relay

use std::rc::Rc;

use crate::protocol::relay::{address, unaddress, Received, RelayError, RelayLink};
use crate::protocol::room::RoomSecret;
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::sync::LinkState;
use crate::protocol::PeerId;

use super::signaling::{warn, Server};
use super::{jitter, now_ms, State, TransportEvent};

/// The relayed links of one page, each with the epoch the links named it.
pub(super) struct Relay {
    room: Rc<RoomSecret>,
    me: PeerId,
    links: SortedMap<PeerId, (u64, RelayLink)>,
}

/// 32 bytes from the browser's CSPRNG, a link's ephemeral secret; none,
/// no link (a guessable secret would give its key away).
fn fresh_secret() -> Option<[u8; 32]> {
    let mut secret = [0u8; 32];
    web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut secret).is_ok())
        .then_some(secret)
}

impl Relay {
    pub(super) fn new(room: Rc<RoomSecret>, me: PeerId) -> Relay {
        Relay {
            room,
            me,
            links: SortedMap::new(),
        }
    }

    pub(super) fn has(&self, peer: PeerId) -> bool {
        self.links.contains_key(&peer)
    }

    /// Seals and sends a frame to `to`; `false`: the socket is not
    /// keeping up. A link not yet open drops it (anti-entropy resends).
    pub(super) fn send(&mut self, to: PeerId, frame: &[u8], server: Option<&Server>) -> bool {
        let (Some((_, link)), Some(server)) = (self.links.get_mut(&to), server) else {
            return true;
        };
        match link.seal(frame) {
            Ok(sealed) => server.send_frame(&address(to, &sealed)),
            Err(e) => {
                warn(&format!("cpc-sync: frame to {to} not relayed: {e}"));
                true
            }
        }
    }

    fn remove(&mut self, peer: PeerId) -> Option<u64> {
        self.links.remove(&peer).map(|(epoch, _)| epoch)
    }

    /// Every link (the socket they ran over is gone).
    fn take_all(&mut self) -> Vec<(PeerId, u64)> {
        let mut all = Vec::new();
        while let Some((peer, (epoch, _))) = self.links.pop_first() {
            all.push((peer, epoch));
        }
        all
    }
}

impl State {
    /// Starts relayed link `epoch` to `peer`, replacing any connection.
    pub(super) fn relay_to(&mut self, peer: PeerId, epoch: u64, out: &mut Vec<TransportEvent>) {
        let had = self.drop_connection(peer) | self.drop_relay(peer);
        let (Some(relay), Some(secret)) = (&mut self.relay, fresh_secret()) else {
            if had {
                out.push(TransportEvent::Link(peer, LinkState::Closed));
            }
            self.links.closed(peer, epoch, now_ms(), jitter());
            return;
        };
        let link = RelayLink::new(&relay.room, relay.me, peer, secret);
        if let Some(server) = &self.server {
            server.send_frame(&address(peer, &link.hello()));
        }
        relay.links.insert(peer, (epoch, link));
        if had {
            out.push(TransportEvent::Link(peer, LinkState::Closed));
        }
        out.push(TransportEvent::Link(peer, LinkState::Connecting));
    }

    /// Drops the relayed link to `peer`, if any.
    pub(super) fn drop_relay(&mut self, peer: PeerId) -> bool {
        self.relay.as_mut().and_then(|r| r.remove(peer)).is_some()
    }

    /// The socket that carried the relayed links is gone: each closed.
    pub(super) fn unrelay_all(&mut self, out: &mut Vec<TransportEvent>) {
        let Some(relay) = &mut self.relay else { return };
        for (peer, epoch) in relay.take_all() {
            self.links.closed(peer, epoch, now_ms(), jitter());
            out.push(TransportEvent::Link(peer, LinkState::Closed));
        }
    }

    /// A binary message on the socket of a room with a secret: a relayed
    /// message from a peer.
    pub(super) fn on_relayed(&mut self, bytes: &[u8], out: &mut Vec<TransportEvent>) {
        let (Some(relay), Some((from, message))) = (&mut self.relay, unaddress(bytes)) else {
            return;
        };
        let Some(secret) = fresh_secret() else { return };
        let known = relay.links.get_mut(&from);
        let (received, epoch) = match known {
            Some((epoch, link)) => (link.receive(message, || secret), Some(*epoch)),
            None => {
                // A peer opening a link to us: checked before the links
                // hear of it (a server cannot open one).
                let mut link = RelayLink::new(&relay.room, relay.me, from, secret);
                let Some(second) = fresh_secret() else { return };
                match link.receive(message, || second) {
                    Ok(Received::Opened {
                        reply: Some(reply), ..
                    }) => {
                        // Open, so it has both keys.
                        let Some(channel) = link.channel() else {
                            return;
                        };
                        let Some(epoch) = self.links.relay_offered(from, now_ms()) else {
                            return;
                        };
                        if self.drop_connection(from) {
                            out.push(TransportEvent::Link(from, LinkState::Closed));
                        }
                        if let Some(server) = &self.server {
                            server.send_frame(&address(from, &reply));
                        }
                        if let Some(relay) = &mut self.relay {
                            relay.links.insert(from, (epoch, link));
                        }
                        self.links.opened(from, epoch, now_ms());
                        out.push(TransportEvent::Opened(from, channel));
                    }
                    Ok(_) => {}
                    Err(e) => refused(from, &e),
                }
                return;
            }
        };
        let Some(epoch) = epoch else { return };
        let channel = (relay.links.get(&from)).and_then(|(_, link)| link.channel());
        match (received, channel) {
            (Ok(Received::Opened { reply, restarted }), Some(channel)) => {
                if let (Some(reply), Some(server)) = (reply, &self.server) {
                    server.send_frame(&address(from, &reply));
                }
                if restarted {
                    // The peer started over: so does the sync session.
                    out.push(TransportEvent::Link(from, LinkState::Closed));
                }
                self.links.opened(from, epoch, now_ms());
                out.push(TransportEvent::Opened(from, channel));
            }
            // Opened with no channel cannot be (an open link has both
            // keys); were it so, the link would be unbound: closed.
            (Ok(Received::Opened { .. }), None) => self.end_relay(from, epoch, out),
            (Ok(Received::Frame(frame)), _) => out.push(TransportEvent::Frame(from, frame)),
            (Ok(Received::Ignored), _) => {}
            (Err(e), _) if e.is_fatal() => {
                warn(&format!("cpc-sync: relayed link to {from}: {e}"));
                self.end_relay(from, epoch, out);
            }
            (Err(e), _) => refused(from, &e),
        }
    }

    /// Ends relayed link `epoch` to `from`; the links dial again.
    fn end_relay(&mut self, from: PeerId, epoch: u64, out: &mut Vec<TransportEvent>) {
        self.drop_relay(from);
        self.links.closed(from, epoch, now_ms(), jitter());
        out.push(TransportEvent::Link(from, LinkState::Closed));
    }
}

fn refused(from: PeerId, error: &RelayError) {
    warn(&format!(
        "cpc-sync: relayed message as from {from} refused: {error}"
    ));
}
