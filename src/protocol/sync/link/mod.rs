//! `Links`: the connection policy of a peer, sans-IO. The browser's
//! transport owns the RTCPeerConnections, the BroadcastChannel and the
//! WebSocket; it reports what they do (a message heard, a connection
//! opened or closed, the time) and carries out the [`LinkAction`]s this
//! answers with. Decided here:
//!
//! - whom to dial and when to retry: the [`Mesh`];
//! - which negotiation is current with each peer: [`Epochs`];
//! - which signaling route reaches each peer: [`Routes`];
//! - which tabs are present: the `Hello`/`Here`/`Bye` exchange;
//! - when to reconnect the signaling socket and ping it: [`Socket`];
//! - which peers go through the server's relay instead of WebRTC:
//!   [`Relays`];
//!
//! and when anything next falls due ([`next_wake`](Links::next_wake)), so
//! the browser arms one timeout instead of polling.

mod backoff;
mod epoch;
mod relay;
mod route;
mod socket;

use crate::protocol::json::Json;

pub use self::backoff::Backoff;
pub use self::epoch::{Epochs, Verdict};
pub use self::relay::{Relays, RELAY_AFTER};
pub use self::route::{Route, Routes};
pub use self::socket::{Socket, SocketConfig, SocketDue};
use super::mesh::{LinkState, Mesh, MeshAction, MeshConfig, OverlayMessage};
use crate::protocol::clock::PeerId;
use crate::protocol::identity::Identity;
use crate::protocol::signal::{ClientMessage, Negotiation, ServerMessage, TabMessage};

/// Departures, and relayed dials waiting for the join, held at most (the
/// owner takes the first after every input; the second go at the join).
const MAX_HELD: usize = 1024;

/// How a peer links to the others of its room.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The room's public name, as joined on the server.
    pub room: String,
    /// Whether there is a signaling server (otherwise tabs only).
    pub signaling_server: bool,
    pub mesh: MeshConfig,
    pub socket: SocketConfig,
    /// Signs the server join, proving the peer holds the key behind its id
    /// (the server refuses a join without it). Its peer id is the one
    /// `Links` is made for.
    pub identity: Option<Identity>,
    /// Peers whose WebRTC fails are linked through the signaling server's
    /// sealed relay (a room with a secret and a server: see [`Relays`]).
    pub relay: bool,
}

impl LinkConfig {
    pub fn new(room: impl Into<String>, signaling_server: bool) -> Self {
        LinkConfig {
            room: room.into(),
            signaling_server,
            mesh: MeshConfig::default(),
            socket: SocketConfig::default(),
            identity: None,
            relay: false,
        }
    }
}

/// What the browser must do.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkAction {
    /// Start a connection to `peer` that offers, named `epoch` in its
    /// signals, replacing any old one.
    Dial {
        peer: PeerId,
        epoch: u64,
    },
    /// Start a relayed link to `peer` (sealed frames through the
    /// signaling server), named `epoch`, replacing any connection.
    Relay {
        peer: PeerId,
        epoch: u64,
    },
    /// Drop the connection to `peer`.
    Hangup(PeerId),
    /// Open the room's BroadcastChannel.
    OpenTabs,
    /// Post on the BroadcastChannel.
    Post(TabMessage),
    CloseTabs,
    /// Open a new WebSocket to the signaling server.
    OpenSocket,
    /// Send on the WebSocket (dropped if it is not open).
    Send(ClientMessage),
    CloseSocket,
    /// The WebSocket did not open in `after_ms`: drop it and tell the app
    /// (a reconnect is due later).
    SocketTimedOut {
        after_ms: u64,
    },
}

/// The connection policy: see the module documentation.
#[derive(Debug)]
pub struct Links {
    me: PeerId,
    room: String,
    identity: Option<Identity>,
    /// The owner wants to be online (`go_online`/`go_offline`).
    wanted: bool,
    /// The page is hidden: unloading, or going into the back/forward cache.
    hidden: bool,
    /// In signaling: wanted and not hidden.
    online: bool,
    mesh: Mesh,
    epochs: Epochs,
    routes: Routes,
    socket: Option<Socket>,
    relays: Relays,
    actions: Vec<LinkAction>,
    /// Relayed dials made while the socket had not joined (the server
    /// refuses to relay for it until then), sent once it has.
    relays_waiting: Vec<(PeerId, u64)>,
    /// Peers signaling said left the room, for the sync node
    /// ([`take_departed`](Self::take_departed)).
    departed: Vec<PeerId>,
    /// Peers we are linked with that the server's last list of the room
    /// lacked (it restarted, and their sockets have not joined again): kept
    /// while the link lasts, gone when it closes unless the server names
    /// them meanwhile.
    unlisted: Vec<PeerId>,
}

fn parse_peer(text: &str) -> Option<PeerId> {
    text.parse().ok()
}

impl Links {
    /// Offline until [`go_online`](Self::go_online).
    pub fn new(me: PeerId, config: LinkConfig) -> Self {
        Links {
            me,
            room: config.room,
            identity: config.identity,
            wanted: false,
            hidden: false,
            online: false,
            mesh: Mesh::new(me, config.mesh),
            epochs: Epochs::default(),
            routes: Routes::default(),
            socket: config.signaling_server.then(|| Socket::new(config.socket)),
            relays: Relays::new(config.relay && config.signaling_server),
            actions: Vec::new(),
            departed: Vec::new(),
            unlisted: Vec::new(),
            relays_waiting: Vec::new(),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Joins signaling: opens the routes, announces this tab (at once, or
    /// when the page shows again).
    pub fn go_online(&mut self, now_ms: u64) {
        self.wanted = true;
        if !self.hidden {
            self.join(now_ms);
        }
    }

    /// Leaves signaling and drops every connection.
    pub fn go_offline(&mut self, now_ms: u64) {
        self.wanted = false;
        self.leave(now_ms);
    }

    /// The page is being hidden (`pagehide`): closed, reloaded or put in
    /// the back/forward cache. The other tabs are told now; a tab that
    /// vanished without a `Bye` would be redialed forever.
    pub fn page_hidden(&mut self, now_ms: u64) {
        self.hidden = true;
        self.leave(now_ms);
    }

    /// The page shows again (`pageshow`, back from the cache).
    pub fn page_shown(&mut self, now_ms: u64) {
        self.hidden = false;
        if self.wanted {
            self.join(now_ms);
        }
    }

    fn join(&mut self, now_ms: u64) {
        if std::mem::replace(&mut self.online, true) {
            return;
        }
        self.actions.push(LinkAction::OpenTabs);
        self.actions.push(LinkAction::Post(TabMessage::Hello {
            from: self.me.to_string(),
        }));
        if let Some(socket) = &mut self.socket {
            socket.opening(now_ms);
            self.actions.push(LinkAction::OpenSocket);
        }
    }

    fn leave(&mut self, now_ms: u64) {
        if !std::mem::replace(&mut self.online, false) {
            return;
        }
        self.mesh.clear();
        self.drain_mesh(now_ms);
        self.routes.clear();
        self.epochs.clear();
        self.relays.clear();
        self.relays_waiting.clear();
        self.unlisted.clear();
        self.actions.push(LinkAction::Post(TabMessage::Bye {
            from: self.me.to_string(),
        }));
        self.actions.push(LinkAction::CloseTabs);
        if let Some(socket) = &mut self.socket {
            socket.stop();
            self.actions.push(LinkAction::Send(ClientMessage::Leave));
            self.actions.push(LinkAction::CloseSocket);
        }
    }

    /// A message on the BroadcastChannel. A signal addressed to us comes
    /// back, sender and data, for the browser to open and hand to
    /// [`negotiation`](Self::negotiation).
    pub fn tab_message(&mut self, message: TabMessage, now_ms: u64) -> Option<(PeerId, Json)> {
        if !self.online {
            return None;
        }
        let me = self.me;
        let mine = |to: &str| parse_peer(to) == Some(me);
        match message {
            TabMessage::Hello { from } => {
                let peer = parse_peer(&from).filter(|p| *p != me)?;
                // It joined after us: it calls us, we tell it we are here.
                self.routes.heard(peer, Route::Tabs);
                self.mesh.rejoined(peer);
                self.mesh.discovered(peer, false, now_ms);
                self.actions.push(LinkAction::Post(TabMessage::Here {
                    from: me.to_string(),
                    to: from,
                }));
            }
            TabMessage::Here { from, to } if mine(&to) => {
                let peer = parse_peer(&from).filter(|p| *p != me)?;
                self.routes.heard(peer, Route::Tabs);
                self.mesh.discovered(peer, true, now_ms);
            }
            TabMessage::Signal { from, to, data } if mine(&to) => {
                return Some((parse_peer(&from)?, data));
            }
            TabMessage::Bye { from } => {
                let peer = parse_peer(&from)?;
                self.left(peer, Route::Tabs);
            }
            _ => {} // addressed to another tab
        }
        self.drain_mesh(now_ms);
        None
    }

    /// A message from the signaling server; like
    /// [`tab_message`](Self::tab_message). (`Error`s are the browser's to
    /// show; they change nothing here.)
    pub fn server_message(
        &mut self,
        message: ServerMessage,
        now_ms: u64,
    ) -> Option<(PeerId, Json)> {
        if !self.online {
            return None;
        }
        match message {
            ServerMessage::Peers { peers, sampled, .. } => {
                if let Some(socket) = &mut self.socket {
                    socket.joined();
                }
                for (peer, epoch) in std::mem::take(&mut self.relays_waiting) {
                    if self.is_current(peer, epoch) {
                        self.actions.push(LinkAction::Relay { peer, epoch });
                    }
                }
                // The whole room as the server sees it: whoever we knew
                // there and is missing left while our socket was down. A
                // sample of a big room says nothing of who is missing, nor
                // does a server just restarted of a peer we are linked
                // with: its socket has not joined again yet (the first
                // page back closed its links to every other and dialed
                // them again as they joined).
                let present: Vec<PeerId> = peers
                    .iter()
                    .filter_map(|p| parse_peer(p))
                    .filter(|p| *p != self.me)
                    .collect();
                let missing: Vec<PeerId> = self
                    .routes
                    .on(Route::Server)
                    .filter(|p| !sampled && !present.contains(p))
                    .collect();
                self.unlisted.retain(|p| !present.contains(p));
                for peer in missing {
                    if self.mesh.state(peer) != Some(LinkState::Open) {
                        self.left(peer, Route::Server);
                    } else if !self.unlisted.contains(&peer) && self.unlisted.len() < MAX_HELD {
                        self.unlisted.push(peer);
                    }
                }
                for peer in &present {
                    self.routes.heard(*peer, Route::Server);
                }
                self.mesh.discovered_all(&present, true, now_ms);
            }
            ServerMessage::Joined { peer } => {
                let peer = parse_peer(&peer).filter(|p| *p != self.me)?;
                self.unlisted.retain(|p| *p != peer);
                self.routes.heard(peer, Route::Server);
                self.mesh.rejoined(peer);
                self.mesh.discovered(peer, false, now_ms);
            }
            ServerMessage::Left { peer } => {
                let peer = parse_peer(&peer)?;
                self.left(peer, Route::Server);
            }
            ServerMessage::Signal { from, data } => return Some((parse_peer(&from)?, data)),
            // The server's nonce: join, signing it.
            ServerMessage::Hello { nonce } => {
                if let Some(identity) = &self.identity {
                    let join = ClientMessage::join(identity, &nonce, &self.room);
                    self.actions.push(LinkAction::Send(join));
                }
            }
            // The room's server peer is the transport's, not the mesh's:
            // it is reached over this socket, never dialed.
            ServerMessage::Error { .. }
            | ServerMessage::Pong
            | ServerMessage::Keep { .. }
            | ServerMessage::Unkeep { .. } => {}
        }
        self.drain_mesh(now_ms);
        None
    }

    /// The signaling socket opened; the join follows the server's `Hello`.
    pub fn socket_opened(&mut self, now_ms: u64) {
        if let Some(socket) = &mut self.socket {
            socket.opened(now_ms);
        }
    }

    /// The signaling socket closed or failed; `jitter` in `[0, 1)`.
    pub fn socket_closed(&mut self, now_ms: u64, jitter: f64) {
        if let Some(socket) = &mut self.socket {
            socket.closed(now_ms, jitter);
        }
    }

    /// A negotiation step from `from`, heard on `route`: what to do with
    /// it (see [`Verdict`]).
    pub fn negotiation(
        &mut self,
        from: PeerId,
        route: Route,
        step: &Negotiation,
        now_ms: u64,
    ) -> Verdict {
        if !self.online || from == self.me {
            return Verdict::Ignore;
        }
        if !self.routes.knows(from) {
            // Its signal overtook its presence.
            self.routes.heard(from, route);
        }
        let verdict = self.epochs.receive(from, step, now_ms);
        if let Verdict::Accept { .. } = verdict {
            if !self.mesh.incoming(from, now_ms) {
                // `max_connections` links already: the offer goes
                // unanswered, and the caller tries another peer when it
                // times out.
                self.epochs.hang_up(from);
                return Verdict::Ignore;
            }
        }
        verdict
    }

    /// Sends a negotiation step's signaling `data` to `to` on its route.
    pub fn signal(&mut self, to: PeerId, data: Json) {
        let me = self.me.to_string();
        let to_text = to.to_string();
        match self.routes.route(to) {
            Some(Route::Tabs) => self.actions.push(LinkAction::Post(TabMessage::Signal {
                from: me,
                to: to_text,
                data,
            })),
            Some(Route::Server) => self.actions.push(LinkAction::Send(ClientMessage::Signal {
                to: to_text,
                data,
            })),
            // Named by a shuffle, never heard on a route: the server
            // relays within the room.
            None if self.socket.is_some() && self.mesh.state(to).is_some() => {
                self.actions.push(LinkAction::Send(ClientMessage::Signal {
                    to: to_text,
                    data,
                }))
            }
            None => {} // it left
        }
    }

    /// Names in `step`, which our connection `step.epoch()` sends to
    /// `to`, the remote connection it is paired with, if known (see
    /// [`Negotiation::set_reply_to`]).
    pub fn stamp(&self, to: PeerId, step: &mut Negotiation) {
        step.set_reply_to(self.epochs.reply_to(to, step.epoch()));
    }

    /// Whether `epoch` names the current connection to `peer`; events of
    /// replaced connections are dropped.
    pub fn is_current(&self, peer: PeerId, epoch: u64) -> bool {
        self.epochs.is_current(peer, epoch)
    }

    /// The connection `epoch` to `peer` opened; `false` if it is not
    /// current.
    pub fn opened(&mut self, peer: PeerId, epoch: u64, now_ms: u64) -> bool {
        if !self.is_current(peer, epoch) {
            return false;
        }
        self.mesh.opened(peer, now_ms);
        self.relays.opened(peer);
        true
    }

    /// No RTCPeerConnection could be made for connection `epoch` to
    /// `peer`. Where the relay is enabled it takes over (a
    /// [`LinkAction::Relay`] of the same epoch, and every later dial);
    /// otherwise the connection failed, as [`closed`](Self::closed).
    /// Whether the relay took over.
    pub fn cannot_connect(&mut self, peer: PeerId, epoch: u64, now_ms: u64, jitter: f64) -> bool {
        if self.is_current(peer, epoch) && self.relays.no_webrtc() {
            self.relays.dial(peer);
            self.relay(peer, epoch);
            return true;
        }
        self.closed(peer, epoch, now_ms, jitter);
        false
    }

    /// `peer` opened a relayed link to us (its hello checked out): the
    /// epoch to name ours, or `None` to leave it unanswered (no relay
    /// here, or no room for another link).
    pub fn relay_offered(&mut self, peer: PeerId, now_ms: u64) -> Option<u64> {
        if !self.online || peer == self.me || !self.relays.enabled() {
            return None;
        }
        if !self.routes.knows(peer) {
            self.routes.heard(peer, Route::Server);
        }
        if !self.mesh.incoming(peer, now_ms) {
            return None;
        }
        self.relays.offered(peer);
        Some(self.epochs.dial(peer, now_ms))
    }

    /// Whether `peer` is linked (or to be) through the relay.
    pub fn is_relayed(&self, peer: PeerId) -> bool {
        self.relays.is_relayed(peer)
    }

    /// The connection `epoch` to `peer` closed or failed by itself; `false`
    /// if it is not current. The browser drops it; the mesh retries.
    pub fn closed(&mut self, peer: PeerId, epoch: u64, now_ms: u64, jitter: f64) -> bool {
        if !self.is_current(peer, epoch) {
            return false;
        }
        self.epochs.hang_up(peer);
        self.mesh.closed(peer, now_ms, jitter);
        if self.unlisted_gone(peer) {
            self.drain_mesh(now_ms);
        }
        true
    }

    /// `peer`'s link ended: if the server has not named it since it lost
    /// its list, it is gone from the server's side too (unless it joins
    /// again); whether it was.
    fn unlisted_gone(&mut self, peer: PeerId) -> bool {
        let Some(at) = self.unlisted.iter().position(|p| *p == peer) else {
            return false;
        };
        self.unlisted.swap_remove(at);
        self.left(peer, Route::Server);
        true
    }

    /// Drop the connection to `peer` (the owner asked, or it is not
    /// reading); dialed again later.
    pub fn hang_up(&mut self, peer: PeerId, now_ms: u64, jitter: f64) {
        self.end(peer, now_ms, jitter, false);
    }

    /// Hang up on `peer` for what it sent: as [`hang_up`](Self::hang_up),
    /// then neither dialed nor answered for a while ([`Mesh::refused`]).
    pub fn refuse(&mut self, peer: PeerId, now_ms: u64, jitter: f64) {
        self.end(peer, now_ms, jitter, true);
    }

    fn end(&mut self, peer: PeerId, now_ms: u64, jitter: f64, refused: bool) {
        if matches!(
            self.mesh.state(peer),
            Some(LinkState::Connecting | LinkState::Open)
        ) {
            self.epochs.hang_up(peer);
            if refused {
                self.mesh.refused(peer, now_ms, jitter);
            } else {
                self.mesh.closed(peer, now_ms, jitter);
            }
            self.actions.push(LinkAction::Hangup(peer));
            if self.unlisted_gone(peer) {
                self.drain_mesh(now_ms);
            }
        }
    }

    /// Drop the connection to `peer` and dial it at once.
    pub fn redial(&mut self, peer: PeerId, now_ms: u64) {
        if self.online {
            self.mesh.redial(peer, now_ms);
            self.drain_mesh(now_ms);
        }
    }

    /// Timer: whatever fell due by `now_ms`.
    pub fn tick(&mut self, now_ms: u64, jitter: f64) {
        self.mesh.tick(now_ms, jitter);
        self.drain_mesh(now_ms);
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let after_ms = socket.open_timeout_ms();
        match socket.tick(now_ms, jitter) {
            Some(SocketDue::Reconnect) => self.actions.push(LinkAction::OpenSocket),
            Some(SocketDue::Ping) => self.actions.push(LinkAction::Send(ClientMessage::Ping)),
            Some(SocketDue::GiveUp) => self.actions.push(LinkAction::SocketTimedOut { after_ms }),
            None => {}
        }
    }

    /// When [`tick`](Self::tick) next has work; `None` while nothing is
    /// pending (every link open or idle, the socket quiet).
    pub fn next_wake(&self) -> Option<u64> {
        let socket = self.socket.as_ref().and_then(Socket::next_wake);
        match (self.mesh.next_wake(), socket) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether this side yields when both offer at once (perfect
    /// negotiation's polite peer).
    pub fn polite(&self, peer: PeerId) -> bool {
        self.mesh.polite(peer)
    }

    pub fn state(&self, peer: PeerId) -> Option<LinkState> {
        self.mesh.state(peer)
    }

    /// Every known peer and its connection state.
    pub fn links(&self) -> impl Iterator<Item = (PeerId, LinkState)> + '_ {
        self.mesh.links()
    }

    /// The route `peer` is signaled on.
    pub fn route(&self, peer: PeerId) -> Option<Route> {
        self.routes.route(peer)
    }

    pub fn take_actions(&mut self) -> Vec<LinkAction> {
        std::mem::take(&mut self.actions)
    }

    /// An overlay message from a linked peer, as the sync node took it
    /// off the wire ([`SyncNode::take_overlay`](crate::protocol::sync::SyncNode::take_overlay)).
    pub fn overlay_message(&mut self, from: PeerId, message: OverlayMessage, now_ms: u64) {
        if self.online {
            self.mesh.receive(from, message, now_ms);
            self.drain_mesh(now_ms);
        }
    }

    /// The sync layer's round trip to `peer` (its session's `rtt_ms`).
    pub fn rtt(&mut self, peer: PeerId, rtt_ms: f64) {
        self.mesh.rtt(peer, rtt_ms);
    }

    /// Overlay messages for the sync node to send
    /// ([`SyncNode::send_overlay`](crate::protocol::sync::SyncNode::send_overlay)).
    pub fn take_overlay_messages(&mut self) -> Vec<(PeerId, OverlayMessage)> {
        self.mesh.take_messages()
    }

    /// Peers that left the room since the last call (gone from every
    /// signaling route): their presence goes at once
    /// ([`SyncNode::peer_left`](crate::protocol::sync::SyncNode::peer_left)).
    pub fn take_departed(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.departed)
    }

    /// `peer` left `route`; gone from every route, it is hung up.
    fn left(&mut self, peer: PeerId, route: Route) {
        if self.routes.left(peer, route) {
            self.mesh.left(peer);
            self.epochs.forget(peer);
            if self.departed.len() < MAX_HELD {
                self.departed.push(peer);
            }
            self.relays.forget(peer);
        }
    }

    /// A relayed link `epoch` to `peer`: at once if the socket has joined
    /// (the server relays only between members), else once it has.
    fn relay(&mut self, peer: PeerId, epoch: u64) {
        if self.socket.as_ref().is_some_and(Socket::is_joined) {
            self.actions.push(LinkAction::Relay { peer, epoch });
        } else if self.relays_waiting.len() < MAX_HELD {
            self.relays_waiting.retain(|(p, _)| *p != peer);
            self.relays_waiting.push((peer, epoch));
        }
    }

    /// The mesh's decisions, as actions: a dial gets its epoch.
    fn drain_mesh(&mut self, now_ms: u64) {
        let mut gone = false;
        for action in self.mesh.take_actions() {
            match action {
                MeshAction::Dial(peer) => {
                    let epoch = self.epochs.dial(peer, now_ms);
                    if self.relays.dial(peer) {
                        self.relay(peer, epoch);
                    } else {
                        self.actions.push(LinkAction::Dial { peer, epoch });
                    }
                }
                MeshAction::Hangup(peer) => {
                    self.epochs.hang_up(peer);
                    self.actions.push(LinkAction::Hangup(peer));
                    gone |= self.unlisted_gone(peer);
                }
            }
        }
        if gone {
            self.drain_mesh(now_ms);
        }
    }
}

#[cfg(test)]
mod tests;
