//! The transport: WebRTC data channels to the other peers of the room,
//! found through signaling. It moves frames; the [`Mesh`] decides whom to
//! dial and when, the sync node decides what to send.
//!
//! Every browser callback holds a `Weak` to the transport's state and does
//! its work with the state borrowed, then hands what it learned to the
//! owner's handler with nothing borrowed, so the handler may call back in.

mod connection;
mod signaling;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use gloo::timers::callback::Interval;
use wasm_bindgen::prelude::*;

use self::connection::{Connection, Happening};
pub use self::signaling::SignalCodec;
use self::signaling::{Server, SignalEvent, Tabs};
use crate::protocol::signal::Negotiation;
use crate::protocol::sync::{LinkState, Mesh, MeshAction, MeshConfig};
use crate::protocol::PeerId;

/// What the transport tells its owner.
pub enum TransportEvent {
    /// A connection changed state (the data channel opened, or the
    /// connection is gone or being made).
    Link(PeerId, LinkState),
    Frame(PeerId, Vec<u8>),
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
}

pub struct Transport {
    state: Rc<RefCell<State>>,
}

struct State {
    me: PeerId,
    config: TransportConfig,
    mesh: Mesh,
    connections: HashMap<PeerId, Connection>,
    /// Peers heard of only through the server (the rest share our browser
    /// and are signaled over the BroadcastChannel).
    via_server: HashSet<PeerId>,
    tabs: Option<Tabs>,
    server: Option<Server>,
    online: bool,
    last_epoch: u64,
    sink: Sink,
    /// Connections dropped from inside their own callbacks, freed later.
    dropped: Vec<Connection>,
    timer: Option<Interval>,
    weak: Weak<RefCell<State>>,
}

const TICK_MS: u32 = 250;

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

impl Transport {
    pub fn new(me: PeerId, config: TransportConfig, sink: Sink) -> Transport {
        let state = Rc::new_cyclic(|weak| {
            RefCell::new(State {
                me,
                config,
                mesh: Mesh::new(me, MeshConfig::default()),
                connections: HashMap::new(),
                via_server: HashSet::new(),
                tabs: None,
                server: None,
                online: false,
                last_epoch: 0,
                sink,
                dropped: Vec::new(),
                timer: None,
                weak: weak.clone(),
            })
        });
        let weak = Rc::downgrade(&state);
        state.borrow_mut().timer = Some(Interval::new(TICK_MS, move || {
            run(&weak, |s, out| {
                s.dropped.clear();
                s.mesh.tick(now_ms(), js_sys::Math::random());
                s.act(out);
            })
        }));
        let transport = Transport { state };
        transport.go_online();
        transport
    }

    /// Sends a frame to a connected peer (dropped if it is not connected:
    /// anti-entropy resends what matters once it is).
    pub fn send(&self, to: PeerId, frame: Vec<u8>) {
        run_later(&Rc::downgrade(&self.state), |s, out| {
            let keeping_up = match s.connections.get_mut(&to) {
                Some(c) if c.is_open() => c.send(frame),
                _ => true,
            };
            if !keeping_up {
                web_sys::console::warn_1(&format!("cpc-sync: {to} is not reading; closing").into());
                s.hang_up(to, out);
            }
        });
    }

    /// Drops the connection to `peer`; the mesh dials it again later.
    pub fn close(&self, peer: PeerId) {
        run_later(&Rc::downgrade(&self.state), |s, out| s.hang_up(peer, out));
    }

    /// Drops the connection to `peer` and dials it at once (both sides
    /// doing so together is the perfect-negotiation case).
    pub fn redial(&self, peer: PeerId) {
        run_later(&Rc::downgrade(&self.state), |s, out| {
            if s.online {
                s.mesh.redial(peer, now_ms());
                s.act(out);
            }
        });
    }

    /// Leaves signaling and drops every connection.
    pub fn go_offline(&self) {
        run_later(&Rc::downgrade(&self.state), |s, out| {
            s.online = false;
            s.tabs = None;
            s.server = None;
            s.via_server.clear();
            s.mesh.clear();
            s.act(out);
        });
    }

    /// Joins signaling again; peers are found and dialed.
    pub fn go_online(&self) {
        let weak = Rc::downgrade(&self.state);
        run_later(&weak, |s, _| {
            if s.online {
                return;
            }
            s.online = true;
            let me = s.me;
            let from_tabs = {
                let weak = weak.clone();
                Rc::new(move |event| run(&weak, |s, out| s.on_signal(event, false, out)))
            };
            match Tabs::open(&s.config.room, me, s.config.codec.clone(), from_tabs) {
                Ok(tabs) => s.tabs = Some(tabs),
                Err(e) => web_sys::console::warn_2(&"cpc-sync: no BroadcastChannel".into(), &e),
            }
            if let Some(url) = s.config.signaling.clone() {
                let weak = weak.clone();
                let from_server =
                    Rc::new(move |event| run(&weak, |s, out| s.on_signal(event, true, out)));
                s.server = Some(Server::open(
                    &url,
                    &s.config.room,
                    me,
                    s.config.codec.clone(),
                    from_server,
                ));
            }
        });
    }

    /// Every known peer: its connection state and bytes waiting to go out.
    pub fn links(&self) -> Vec<(PeerId, LinkState, usize)> {
        let s = self.state.borrow();
        s.mesh
            .links()
            .map(|(peer, state)| {
                let buffered = s.connections.get(&peer).map_or(0, |c| c.buffered());
                (peer, state, buffered)
            })
            .collect()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.go_offline();
        let mut s = self.state.borrow_mut();
        s.timer = None;
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

/// For browser callbacks: runs `f` on the state, then hands what it
/// produced to the sink with the state released.
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
        s.sink.clone()
    };
    for event in out {
        sink(event);
    }
}

impl State {
    fn next_epoch(&mut self) -> u64 {
        // Increasing across reloads of the tab: milliseconds, then a count.
        self.last_epoch = (now_ms() * 1000).max(self.last_epoch + 1);
        self.last_epoch
    }

    fn on_signal(&mut self, event: SignalEvent, server: bool, out: &mut Vec<TransportEvent>) {
        if !self.online {
            return;
        }
        let now = now_ms();
        let heard = |s: &mut State, peer: PeerId| {
            if server {
                if s.mesh.state(peer).is_none() || s.via_server.contains(&peer) {
                    s.via_server.insert(peer);
                }
            } else {
                s.via_server.remove(&peer);
            }
        };
        match event {
            SignalEvent::Present(peers) => {
                for peer in peers {
                    heard(self, peer);
                    self.mesh.discovered(peer, true, now);
                }
            }
            SignalEvent::Joined(peer) => {
                heard(self, peer);
                self.mesh.discovered(peer, false, now);
            }
            SignalEvent::Left(peer) => {
                self.via_server.remove(&peer);
                self.mesh.left(peer);
            }
            SignalEvent::Signal { from, data } => {
                if self.mesh.state(from).is_none() {
                    heard(self, from);
                }
                self.on_negotiation(from, data, out);
            }
            SignalEvent::Error(message) => {
                web_sys::console::warn_1(&format!("cpc-sync signaling: {message}").into());
            }
        }
        self.act(out);
    }

    /// A negotiation step from `from`: for our current connection to it, a
    /// newer one it started (replacing ours), or a stale one (ignored).
    fn on_negotiation(&mut self, from: PeerId, data: Negotiation, out: &mut Vec<TransportEvent>) {
        if from == self.me {
            return;
        }
        let epoch = data.epoch();
        let current = self.connections.get(&from).map(|c| c.remote_epoch);
        match current {
            Some(Some(remote)) if epoch == remote => {}
            Some(Some(remote)) if epoch < remote => return,
            Some(None) => {
                // Our dial; this is its first answer, or its own offer at
                // the same time (perfect negotiation settles that).
                if let Some(c) = self.connections.get_mut(&from) {
                    c.remote_epoch = Some(epoch);
                }
            }
            _ => {
                // A new connection from the remote side.
                if !matches!(data, Negotiation::Description { .. }) {
                    return; // a candidate of a connection we never saw
                }
                let was_open = self.mesh.state(from) == Some(LinkState::Open);
                self.mesh.incoming(from, now_ms());
                if was_open {
                    out.push(TransportEvent::Link(from, LinkState::Connecting));
                }
                if !self.connect(from, false) {
                    return;
                }
                if let Some(c) = self.connections.get_mut(&from) {
                    c.remote_epoch = Some(epoch);
                }
                out.push(TransportEvent::Link(from, LinkState::Connecting));
            }
        }
        if let Some(c) = self.connections.get_mut(&from) {
            c.negotiate(data);
        }
    }

    /// Starts a connection to `peer`, replacing any old one.
    fn connect(&mut self, peer: PeerId, dial: bool) -> bool {
        if let Some(old) = self.connections.remove(&peer) {
            self.dropped.push(old);
        }
        let epoch = self.next_epoch();
        let weak = self.weak.clone();
        let report = Rc::new(move |happening| {
            run(&weak, |s, out| s.on_happening(peer, epoch, happening, out))
        });
        let polite = self.mesh.polite(peer);
        match Connection::new(epoch, polite, dial, &self.config.ice_servers, report) {
            Ok(connection) => {
                self.connections.insert(peer, connection);
                true
            }
            Err(e) => {
                web_sys::console::warn_2(&"cpc-sync: cannot create RTCPeerConnection".into(), &e);
                self.mesh.closed(peer, now_ms(), js_sys::Math::random());
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
        if self.connections.get(&peer).map(|c| c.epoch) != Some(epoch) {
            return; // a connection already replaced
        }
        match happening {
            Happening::Open => {
                self.mesh.opened(peer, now_ms());
                out.push(TransportEvent::Link(peer, LinkState::Open));
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.drain();
                }
            }
            Happening::Closed => {
                if let Some(old) = self.connections.remove(&peer) {
                    self.dropped.push(old);
                }
                self.mesh.closed(peer, now_ms(), js_sys::Math::random());
                out.push(TransportEvent::Link(peer, LinkState::Closed));
            }
            Happening::Frame(bytes) => out.push(TransportEvent::Frame(peer, bytes)),
            Happening::Signal(data) => self.signal(peer, &data),
            Happening::Writable => {
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.drain();
                }
            }
        }
    }

    fn signal(&self, to: PeerId, data: &Negotiation) {
        match (&self.server, &self.tabs) {
            (Some(server), _) if self.via_server.contains(&to) => server.signal(to, data),
            (_, Some(tabs)) => tabs.signal(to, data),
            (Some(server), None) => server.signal(to, data),
            (None, None) => {}
        }
    }

    fn hang_up(&mut self, peer: PeerId, out: &mut Vec<TransportEvent>) {
        if let Some(old) = self.connections.remove(&peer) {
            self.dropped.push(old);
            self.mesh.closed(peer, now_ms(), js_sys::Math::random());
            out.push(TransportEvent::Link(peer, LinkState::Closed));
        }
    }

    /// Carries out what the mesh decided.
    fn act(&mut self, out: &mut Vec<TransportEvent>) {
        for action in self.mesh.take_actions() {
            match action {
                MeshAction::Dial(peer) => {
                    if self.connections.contains_key(&peer) {
                        out.push(TransportEvent::Link(peer, LinkState::Closed));
                    }
                    if self.connect(peer, true) {
                        out.push(TransportEvent::Link(peer, LinkState::Connecting));
                    }
                }
                MeshAction::Hangup(peer) => {
                    if let Some(old) = self.connections.remove(&peer) {
                        self.dropped.push(old);
                        out.push(TransportEvent::Link(peer, LinkState::Closed));
                    }
                }
            }
        }
    }
}
