//! The transport: WebRTC data channels to the other peers of the room,
//! found through signaling. It owns the browser's objects (the
//! RTCPeerConnections, the BroadcastChannel, the WebSocket, one timer),
//! reports what they do to [`Links`] and carries out the actions it
//! returns; the links decide whom to dial, when, over which route, and
//! which negotiation is current. The sync node decides what to send.
//!
//! Every browser callback holds a `Weak` to the transport's state and does
//! its work with the state borrowed, then hands what it learned to the
//! owner's handler with nothing borrowed, so the handler may call back in.

mod connection;
mod relay;
mod signaling;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::protocol::json::Json;
use gloo::events::EventListener;
use gloo::timers::callback::Timeout;
use wasm_bindgen::prelude::*;

use self::connection::{Connection, Happening};
pub use self::signaling::SignalCodec;
use self::signaling::{warn, Server, SocketEvent, Tabs};
use crate::browser::convert::describe;
use crate::protocol::room::Channel;
use crate::protocol::signal::{ServerMessage, TabMessage};
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::sync::{
    LinkAction, LinkConfig, LinkState, Links, MeshConfig, OverlayMessage, Route, Verdict,
};
use crate::protocol::{Identity, PeerId};

/// What the transport tells its owner.
pub enum TransportEvent {
    /// A connection opened: a data channel, whose DTLS the handshake is
    /// bound to, a relayed link, bound to its X25519 keys, or the link to
    /// the room's server peer, under no channel it can name
    /// ([`Channel::unbound`]).
    Opened(PeerId, Channel),
    /// A connection is gone or being made.
    Link(PeerId, LinkState),
    Frame(PeerId, Vec<u8>),
    /// Signaling says the peer left the room (not just a link closing).
    Left(PeerId),
    /// A message of a big room's partial view for the sync node to send
    /// to a linked peer (a shuffle or its reply).
    Overlay(PeerId, OverlayMessage),
    /// Frames to the peer wait in our queue, its data channel's buffer at
    /// its high-water mark (`true`), or the queue has emptied (`false`):
    /// the sync node holds back what the peer is owed meanwhile.
    Backlog(PeerId, bool),
    /// Something failed that the app should hear of (signaling, a
    /// connection that cannot be made); the transport goes on, retrying.
    Failed {
        peer: Option<PeerId>,
        reason: String,
    },
}

pub type Sink = Rc<dyn Fn(TransportEvent)>;

/// How a transport finds peers.
pub struct TransportConfig {
    /// The room's public name: its name, or in a room with a secret the
    /// opaque id derived from it.
    pub room: String,
    /// Seals signaling payloads in a room with a secret.
    pub codec: SignalCodec,
    /// A `ws:`/`wss:` URL of `cpc-signal`'s `/signal`; `None`: tabs only.
    pub signaling: Option<String>,
    /// `RTCConfiguration.iceServers`, or `undefined` (loopback and LAN).
    pub ice_servers: JsValue,
    /// Open links at most, and the rest of the partial view's sizes.
    pub mesh: MeshConfig,
}

pub struct Transport {
    state: Rc<RefCell<State>>,
}

struct State {
    me: PeerId,
    config: TransportConfig,
    links: Links,
    connections: SortedMap<PeerId, Connection>,
    tabs: Option<Tabs>,
    server: Option<Server>,
    /// The room's server peer, linked over the signaling socket (its
    /// frames are the socket's binary messages) while the socket lasts.
    keeper: Option<PeerId>,
    /// Whether the signaling socket of this attempt opened (one closed
    /// before it did was refused, or found no server).
    socket_opened: bool,
    /// The socket was given up, not open in time: kept until the next is
    /// made, in case it opens after all (a slow path), and its close is
    /// no news (the links wait to try again already).
    socket_given_up: bool,
    /// Relayed links, in a room with a secret and a server (`relay.rs`).
    relay: Option<relay::Relay>,
    sink: Sink,
    /// Connections dropped from inside their own callbacks, freed by
    /// `sweep` once those have returned.
    dropped: Vec<Connection>,
    sweep: Option<Timeout>,
    /// The one timer, armed for `links.next_wake()`: an idle room has none.
    timer: Option<(u64, Timeout)>,
    /// `pagehide` and `pageshow` on the window.
    page: Vec<EventListener>,
    weak: Weak<RefCell<State>>,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn jitter() -> f64 {
    js_sys::Math::random()
}

impl Transport {
    /// A transport of `identity`'s peer (it signs the server join).
    pub fn new(identity: Identity, config: TransportConfig, sink: Sink) -> Transport {
        let me = identity.peer();
        let relay = (config.codec.0.clone())
            .filter(|_| config.signaling.is_some())
            .map(|room| relay::Relay::new(room, me));
        let links = Links::new(
            me,
            LinkConfig {
                identity: Some(identity),
                mesh: config.mesh.clone(),
                relay: relay.is_some(),
                ..LinkConfig::new(config.room.clone(), config.signaling.is_some())
            },
        );
        let state = Rc::new_cyclic(|weak| {
            RefCell::new(State {
                me,
                config,
                links,
                connections: SortedMap::new(),
                tabs: None,
                server: None,
                keeper: None,
                socket_opened: false,
                socket_given_up: false,
                relay,
                sink,
                dropped: Vec::new(),
                sweep: None,
                timer: None,
                page: Vec::new(),
                weak: weak.clone(),
            })
        });
        if let Some(window) = web_sys::window() {
            let weak = Rc::downgrade(&state);
            let hide = EventListener::new(&window, "pagehide", move |_| {
                run(&weak, |s, _| s.links.page_hidden(now_ms()))
            });
            let weak = Rc::downgrade(&state);
            let show = EventListener::new(&window, "pageshow", move |_| {
                run(&weak, |s, _| s.links.page_shown(now_ms()))
            });
            state.borrow_mut().page = vec![hide, show];
        }
        let transport = Transport { state };
        transport.go_online();
        transport
    }

    /// Sends a frame to a connected peer (dropped if it is not connected:
    /// anti-entropy resends what matters once it is).
    pub fn send(&self, to: PeerId, frame: Vec<u8>) {
        run_later(&Rc::downgrade(&self.state), |s, out| {
            if s.keeper == Some(to) {
                let keeping_up = s
                    .server
                    .as_ref()
                    .is_none_or(|server| server.send_frame(&frame));
                if !keeping_up {
                    s.socket_lagging(out);
                }
                return;
            }
            if let Some(relay) = s.relay.as_mut().filter(|r| r.has(to)) {
                if !relay.send(to, &frame, s.server.as_ref()) {
                    s.socket_lagging(out);
                }
                return;
            }
            let keeping_up = match s.connections.get_mut(&to) {
                Some(c) if c.is_open() => {
                    let keeping_up = c.send(frame);
                    if let Some(backlogged) = c.backlog_changed() {
                        out.push(TransportEvent::Backlog(to, backlogged));
                    }
                    keeping_up
                }
                _ => true,
            };
            if !keeping_up {
                warn(&format!("cpc-sync: {to} is not reading; closing"));
                s.links.hang_up(to, now_ms(), jitter());
            }
        });
    }

    /// Drops the connection to `peer` for what it sent; it is dialed (and
    /// answered) again after a wait that grows with each such close.
    pub fn close(&self, peer: PeerId) {
        run_later(&Rc::downgrade(&self.state), |s, out| {
            if s.keeper == Some(peer) {
                // Until the socket joins again.
                s.unkeep(out);
                return;
            }
            s.links.refuse(peer, now_ms(), jitter())
        });
    }

    /// Drops the connection to `peer` and dials it at once (both sides
    /// doing so together is the perfect-negotiation case).
    pub fn redial(&self, peer: PeerId) {
        run_later(&Rc::downgrade(&self.state), |s, _| {
            s.links.redial(peer, now_ms())
        });
    }

    /// Leaves signaling and drops every connection.
    pub fn go_offline(&self) {
        run_later(&Rc::downgrade(&self.state), |s, _| {
            s.links.go_offline(now_ms())
        });
    }

    /// Joins signaling again; peers are found and dialed.
    pub fn go_online(&self) {
        run_later(&Rc::downgrade(&self.state), |s, _| {
            s.links.go_online(now_ms())
        });
    }

    /// An overlay message a linked peer sent (the sync node took it off
    /// the wire): the partial view learns peers from it.
    pub fn overlay_message(&self, from: PeerId, message: OverlayMessage) {
        run_later(&Rc::downgrade(&self.state), |s, _| {
            s.links.overlay_message(from, message, now_ms())
        });
    }

    /// The sync layer's smoothed round trip to `peer`: the partial view
    /// keeps its near links by it.
    pub fn rtt(&self, peer: PeerId, rtt_ms: f64) {
        if let Ok(mut s) = self.state.try_borrow_mut() {
            s.links.rtt(peer, rtt_ms);
        }
    }

    /// Every known peer: its connection state and bytes waiting to go out
    /// (the room's server peer last).
    pub fn links(&self) -> Vec<(PeerId, LinkState, usize)> {
        let s = self.state.borrow();
        let mut links: Vec<_> = s
            .links
            .links()
            .map(|(peer, state)| {
                let buffered = match s.connections.get(&peer) {
                    Some(c) => c.buffered(),
                    None if s.relay.as_ref().is_some_and(|r| r.has(peer)) => {
                        s.server.as_ref().map_or(0, Server::buffered)
                    }
                    None => 0,
                };
                (peer, state, buffered)
            })
            .collect();
        if let Some(keeper) = s.keeper {
            let buffered = s.server.as_ref().map_or(0, Server::buffered);
            links.push((keeper, LinkState::Open, buffered));
        }
        links
    }

    /// The room's server peer, while it is linked.
    pub fn keeper(&self) -> Option<PeerId> {
        self.state.borrow().keeper
    }

    /// Whether `peer` is linked (or being linked) through the server's
    /// sealed relay.
    pub fn is_relayed(&self, peer: PeerId) -> bool {
        let s = self.state.borrow();
        s.relay.as_ref().is_some_and(|r| r.has(peer))
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.go_offline();
        let mut s = self.state.borrow_mut();
        s.page.clear();
        s.timer = None;
        s.sweep = None;
        s.tabs = None;
        s.server = None;
        s.connections.clear();
        s.dropped.clear();
    }
}

/// For the owner's calls: like [`run`], but what `f` produced reaches the
/// sink in a microtask, so the owner may call while it holds its own state.
fn run_later(weak: &Weak<RefCell<State>>, f: impl FnOnce(&mut State, &mut Vec<TransportEvent>)) {
    let Some(state) = weak.upgrade() else { return };
    let mut out = Vec::new();
    let sink = {
        let mut s = state.borrow_mut();
        f(&mut s, &mut out);
        s.settle(&mut out);
        s.sink.clone()
    };
    if !out.is_empty() {
        wasm_bindgen_futures::spawn_local(async move {
            for event in out {
                sink(event);
            }
        });
    }
}

/// For browser callbacks: runs `f` on the state, carries out what the
/// links decided, then hands what it produced to the sink with the state
/// released.
fn run(weak: &Weak<RefCell<State>>, f: impl FnOnce(&mut State, &mut Vec<TransportEvent>)) {
    let Some(state) = weak.upgrade() else { return };
    let mut out = Vec::new();
    let sink = {
        let Ok(mut s) = state.try_borrow_mut() else {
            // Browser events never run nested inside our calls; should one
            // ever, it is dropped rather than a panic.
            return;
        };
        f(&mut s, &mut out);
        s.settle(&mut out);
        s.sink.clone()
    };
    for event in out {
        sink(event);
    }
}

impl State {
    /// After every input: perform the links' actions, free what was
    /// dropped (later), arm the timer for the next thing due.
    fn settle(&mut self, out: &mut Vec<TransportEvent>) {
        // Carrying out one action may report back (a connection that cannot
        // be made fails at once), so until there are none.
        loop {
            let actions = self.links.take_actions();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.act(action, out);
            }
        }
        out.extend(
            self.links
                .take_departed()
                .into_iter()
                .map(TransportEvent::Left),
        );
        let overlay = self.links.take_overlay_messages();
        out.extend(
            overlay
                .into_iter()
                .map(|(to, m)| TransportEvent::Overlay(to, m)),
        );
        if !self.dropped.is_empty() && self.sweep.is_none() {
            let weak = self.weak.clone();
            self.sweep = Some(Timeout::new(0, move || {
                run(&weak, |s, _| {
                    s.sweep = None;
                    s.dropped.clear();
                })
            }));
        }
        let wake = self.links.next_wake();
        if self.timer.as_ref().map(|(at, _)| *at) != wake {
            self.timer = wake.map(|at| {
                let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
                let weak = self.weak.clone();
                let timeout = Timeout::new(delay, move || {
                    run(&weak, |s, _| {
                        s.timer = None;
                        s.links.tick(now_ms(), jitter());
                    })
                });
                (at, timeout)
            });
        }
    }

    fn act(&mut self, action: LinkAction, out: &mut Vec<TransportEvent>) {
        match action {
            LinkAction::Dial { peer, epoch } => {
                self.connect(peer, epoch, true, out);
            }
            LinkAction::Relay { peer, epoch } => self.relay_to(peer, epoch, out),
            LinkAction::Hangup(peer) => {
                if self.drop_connection(peer) | self.drop_relay(peer) {
                    out.push(TransportEvent::Link(peer, LinkState::Closed));
                }
            }
            LinkAction::OpenTabs => {
                let weak = self.weak.clone();
                let heard = Rc::new(move |m| run(&weak, |s, out| s.on_tab(m, out)));
                match Tabs::open(&self.config.room, heard) {
                    Ok(tabs) => self.tabs = Some(tabs),
                    Err(e) => out.push(TransportEvent::Failed {
                        peer: None,
                        reason: format!("no BroadcastChannel: {}", describe(&e)),
                    }),
                }
            }
            LinkAction::Post(message) => {
                if let Some(tabs) = &self.tabs {
                    tabs.post(&message);
                }
            }
            LinkAction::CloseTabs => self.tabs = None,
            LinkAction::OpenSocket => {
                let Some(url) = self.config.signaling.clone() else {
                    return;
                };
                let weak = self.weak.clone();
                let report = Rc::new(move |e| run(&weak, |s, out| s.on_socket(e, out)));
                // Replaces the old socket, closed by now (or given up),
                // dropped before the new one is made.
                self.unlink_socket_peers(out);
                self.socket_given_up = false;
                self.socket_opened = false;
                self.server = None;
                self.server = match Server::open(&url, report) {
                    Ok(server) => Some(server),
                    Err(e) => {
                        // As a socket that closed: tried again later, not
                        // given up as one that did not answer.
                        self.links.socket_closed(now_ms(), jitter());
                        out.push(TransportEvent::Failed {
                            peer: None,
                            reason: format!("cannot open signaling {url:?}: {}", describe(&e)),
                        });
                        None
                    }
                };
            }
            LinkAction::Send(message) => {
                if let Some(server) = &self.server {
                    server.send(&message);
                }
            }
            LinkAction::CloseSocket => {
                self.unlink_socket_peers(out);
                self.socket_given_up = false;
                self.server = None;
            }
            LinkAction::SocketTimedOut { after_ms } => {
                self.socket_given_up = true;
                let url = self.config.signaling.as_deref().unwrap_or_default();
                let reason = format!(
                    "the signaling server at {url} did not answer in {} s; trying again",
                    after_ms / 1000
                );
                out.push(TransportEvent::Failed { peer: None, reason });
            }
        }
    }

    fn on_tab(&mut self, message: TabMessage, out: &mut Vec<TransportEvent>) {
        if let Some((from, data)) = self.links.tab_message(message, now_ms()) {
            self.on_signal(from, Route::Tabs, data, out);
        }
    }

    fn on_socket(&mut self, event: SocketEvent, out: &mut Vec<TransportEvent>) {
        let now = now_ms();
        match event {
            SocketEvent::Open => {
                self.socket_given_up = false;
                self.socket_opened = true;
                self.links.socket_opened(now)
            }
            SocketEvent::Closed if std::mem::take(&mut self.socket_given_up) => {
                self.server = None;
            }
            SocketEvent::Closed => {
                self.unlink_socket_peers(out);
                self.links.socket_closed(now, jitter());
                let url = self.config.signaling.as_deref().unwrap_or_default();
                // The browser hides why a WebSocket was refused (a 403 for
                // an origin not in the server's ORIGINS looks like no
                // server at all).
                let reason = if std::mem::take(&mut self.socket_opened) {
                    format!("the signaling connection to {url} closed; reconnecting")
                } else {
                    format!(
                        "the signaling connection to {url} did not open (no server there, not \
                         its path: cpc-signal's is /signal, or it refused this page: is the page's \
                         origin among its ORIGINS?); trying again"
                    )
                };
                out.push(TransportEvent::Failed { peer: None, reason });
            }
            SocketEvent::Frame(bytes) if self.relay.is_some() => self.on_relayed(&bytes, out),
            SocketEvent::Frame(bytes) => {
                if let Some(keeper) = self.keeper {
                    out.push(TransportEvent::Frame(keeper, bytes));
                }
            }
            // The server keeps no room with a secret (it would read it):
            // one that says so is lying, and its link would be unbound.
            SocketEvent::Message(ServerMessage::Keep { .. } | ServerMessage::Unkeep { .. })
                if self.relay.is_some() => {}
            SocketEvent::Message(ServerMessage::Keep { peer }) => {
                let Ok(peer) = peer.parse::<PeerId>() else {
                    return;
                };
                if self.keeper != Some(peer) && peer != self.me {
                    self.unkeep(out);
                    self.keeper = Some(peer);
                    out.push(TransportEvent::Opened(peer, Channel::unbound()));
                }
            }
            SocketEvent::Message(ServerMessage::Unkeep { reason }) => {
                let peer = self.keeper;
                self.unkeep(out);
                out.push(TransportEvent::Failed {
                    peer,
                    reason: format!("the room's server peer does not keep this room: {reason}"),
                });
            }
            SocketEvent::Message(ServerMessage::Error { message }) => {
                out.push(TransportEvent::Failed {
                    peer: None,
                    reason: format!("the signaling server says: {message}"),
                });
            }
            SocketEvent::Message(message) => {
                if let Some((from, data)) = self.links.server_message(message, now) {
                    self.on_signal(from, Route::Server, data, out);
                }
            }
        }
    }

    /// The signaling socket is not taking what is sent on it: it is
    /// dropped, with every link over it, and opened again.
    fn socket_lagging(&mut self, out: &mut Vec<TransportEvent>) {
        warn("cpc-sync: the signaling socket is not keeping up; reconnecting");
        self.server = None;
        self.unlink_socket_peers(out);
        self.links.socket_closed(now_ms(), jitter());
    }

    /// Every link over the signaling socket is gone with it: the room's
    /// server peer and the relayed peers.
    fn unlink_socket_peers(&mut self, out: &mut Vec<TransportEvent>) {
        self.unkeep(out);
        self.unrelay_all(out);
    }

    /// The link to the room's server peer is gone (the socket closed or
    /// was replaced, or either side hung up).
    fn unkeep(&mut self, out: &mut Vec<TransportEvent>) {
        if let Some(keeper) = self.keeper.take() {
            out.push(TransportEvent::Link(keeper, LinkState::Closed));
        }
    }

    /// A signal from `from`: opened, judged by the links, applied to the
    /// connection it belongs to.
    fn on_signal(&mut self, from: PeerId, route: Route, data: Json, out: &mut Vec<TransportEvent>) {
        let Some(step) = self.config.codec.decode(data, from, self.me) else {
            warn(&format!("cpc-sync: malformed signal from {from} dropped"));
            return;
        };
        match self.links.negotiation(from, route, &step, now_ms()) {
            Verdict::Ignore => return,
            Verdict::Apply => {}
            Verdict::Accept { epoch } => {
                if !self.connect(from, epoch, false, out) {
                    return;
                }
            }
        }
        if let Some(c) = self.connections.get_mut(&from) {
            c.negotiate(step);
        }
    }

    /// Starts connection `epoch` to `peer`, replacing any old one.
    fn connect(
        &mut self,
        peer: PeerId,
        epoch: u64,
        dial: bool,
        out: &mut Vec<TransportEvent>,
    ) -> bool {
        if self.drop_connection(peer) | self.drop_relay(peer) {
            out.push(TransportEvent::Link(peer, LinkState::Closed));
        }
        let weak = self.weak.clone();
        let report = Rc::new(move |happening| {
            run(&weak, |s, out| s.on_happening(peer, epoch, happening, out))
        });
        let polite = self.links.polite(peer);
        match Connection::new(epoch, polite, dial, &self.config.ice_servers, report) {
            Ok(connection) => {
                self.connections.insert(peer, connection);
                out.push(TransportEvent::Link(peer, LinkState::Connecting));
                true
            }
            Err(e) => {
                // In a room with a secret, the server's relay takes over.
                if !self.links.cannot_connect(peer, epoch, now_ms(), jitter()) {
                    out.push(TransportEvent::Failed {
                        peer: Some(peer),
                        reason: format!("cannot create an RTCPeerConnection: {}", describe(&e)),
                    });
                }
                false
            }
        }
    }

    fn on_happening(
        &mut self,
        peer: PeerId,
        epoch: u64,
        happening: Happening,
        out: &mut Vec<TransportEvent>,
    ) {
        if !self.links.is_current(peer, epoch) {
            return; // a connection already replaced
        }
        match happening {
            Happening::Open => {
                let Some(channel) = self.connections.get(&peer).and_then(Connection::channel)
                else {
                    // Descriptions naming no readable fingerprint: a
                    // forwarder's doing, as no browser makes them.
                    out.push(TransportEvent::Failed {
                        peer: Some(peer),
                        reason: "the connection's descriptions name no DTLS fingerprint \
                                 the handshake can be bound to"
                            .into(),
                    });
                    self.links.closed(peer, epoch, now_ms(), jitter());
                    if self.drop_connection(peer) {
                        out.push(TransportEvent::Link(peer, LinkState::Closed));
                    }
                    return;
                };
                self.links.opened(peer, epoch, now_ms());
                out.push(TransportEvent::Opened(peer, channel));
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.drain();
                }
            }
            Happening::Closed => {
                self.links.closed(peer, epoch, now_ms(), jitter());
                if self.drop_connection(peer) {
                    out.push(TransportEvent::Link(peer, LinkState::Closed));
                }
            }
            Happening::Frame(bytes) => out.push(TransportEvent::Frame(peer, bytes)),
            Happening::Signal(mut step) => {
                self.links.stamp(peer, &mut step);
                let data = self.config.codec.encode(&step, self.me, peer);
                self.links.signal(peer, data);
            }
            Happening::Writable => {
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.drain();
                    if let Some(backlogged) = c.backlog_changed() {
                        out.push(TransportEvent::Backlog(peer, backlogged));
                    }
                }
            }
        }
    }

    /// Drops the connection to `peer`, if any, freeing it later: this may
    /// run inside one of its callbacks.
    fn drop_connection(&mut self, peer: PeerId) -> bool {
        match self.connections.remove(&peer) {
            Some(old) => {
                self.dropped.push(old);
                true
            }
            None => false,
        }
    }
}
