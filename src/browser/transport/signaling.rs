//! The two ways peers find each other: a BroadcastChannel between tabs of
//! one browser (no server at all), and a WebSocket to `cpc-signal`. Both
//! turn what they hear into [`SignalEvent`]s; the messages are those of
//! [`crate::protocol::signal`].

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::timers::callback::{Interval, Timeout};
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent, WebSocket};

use serde_json::Value;

use crate::protocol::room::RoomSecret;
use crate::protocol::signal::{ClientMessage, Negotiation, ServerMessage, TabMessage};
use crate::protocol::PeerId;

/// What signaling tells the transport.
#[derive(Debug)]
pub enum SignalEvent {
    /// Peers that were in the room before us: we call them.
    Present(Vec<PeerId>),
    /// A peer joined after us: it calls us.
    Joined(PeerId),
    Left(PeerId),
    Signal {
        from: PeerId,
        data: Negotiation,
    },
    /// The server refused something (logged; the socket stays).
    Error(String),
}

pub type Handler = Rc<dyn Fn(SignalEvent)>;

/// How a signal's payload travels: as JSON, or, in a room with a secret,
/// sealed with the room's signal key (the server relays a hex string it
/// can neither read nor forge).
#[derive(Clone, Default)]
pub struct SignalCodec(pub Option<Rc<RoomSecret>>);

impl SignalCodec {
    /// Sealed, a payload is bound to its sender and recipient (see
    /// `RoomSecret::seal_signal`).
    fn encode(&self, data: &Negotiation, from: PeerId, to: PeerId) -> Value {
        let mut nonce = [0u8; 12];
        if self.0.is_some() {
            let drawn = web_sys::window()
                .and_then(|w| w.crypto().ok())
                .is_some_and(|c| c.get_random_values_with_u8_array(&mut nonce).is_ok());
            if !drawn {
                // No CSPRNG, no sealed signal: better none than a reused nonce.
                return Value::Null;
            }
        }
        data.to_data(self.0.as_deref(), nonce, &from.to_string(), &to.to_string())
    }

    fn decode(&self, data: Value, from: PeerId, to: PeerId) -> Option<Negotiation> {
        Negotiation::from_data(data, self.0.as_deref(), &from.to_string(), &to.to_string())
    }
}

fn parse_peer(text: &str) -> Option<PeerId> {
    text.parse().ok()
}

fn warn(text: &str) {
    web_sys::console::warn_1(&JsValue::from_str(text));
}

/// Signaling between the tabs of one browser on the BroadcastChannel
/// `cpc-sync:<room>`.
pub struct Tabs {
    channel: BroadcastChannel,
    me: PeerId,
    codec: SignalCodec,
    _listener: EventListener,
}

impl Tabs {
    pub fn open(
        room: &str,
        me: PeerId,
        codec: SignalCodec,
        handler: Handler,
    ) -> Result<Tabs, JsValue> {
        let channel = BroadcastChannel::new(&format!("cpc-sync:{room}"))?;
        let reply = channel.clone();
        let decoder = codec.clone();
        let listener = EventListener::new(&channel, "message", move |event| {
            let Some(text) = event
                .dyn_ref::<MessageEvent>()
                .and_then(|e| e.data().as_string())
            else {
                return;
            };
            let Ok(message) = serde_json::from_str::<TabMessage>(&text) else {
                warn("cpc-sync: malformed tab signaling message dropped");
                return;
            };
            let mine = |to: &str| parse_peer(to) == Some(me);
            let event = match message {
                TabMessage::Hello { from } => {
                    let Some(peer) = parse_peer(&from) else {
                        return;
                    };
                    let here = TabMessage::Here {
                        from: me.to_string(),
                        to: from,
                    };
                    let _ = reply.post_message(&JsValue::from_str(&here.to_text()));
                    SignalEvent::Joined(peer)
                }
                TabMessage::Here { from, to } if mine(&to) => {
                    let Some(peer) = parse_peer(&from) else {
                        return;
                    };
                    SignalEvent::Present(vec![peer])
                }
                TabMessage::Signal { from, to, data } if mine(&to) => {
                    let Some(from) = parse_peer(&from) else {
                        warn("cpc-sync: malformed tab signal dropped");
                        return;
                    };
                    let Some(data) = decoder.decode(data, from, me) else {
                        warn("cpc-sync: malformed tab signal dropped");
                        return;
                    };
                    SignalEvent::Signal { from, data }
                }
                TabMessage::Bye { from } => {
                    let Some(peer) = parse_peer(&from) else {
                        return;
                    };
                    SignalEvent::Left(peer)
                }
                _ => return, // addressed to another tab
            };
            handler(event);
        });
        let tabs = Tabs {
            channel,
            me,
            codec,
            _listener: listener,
        };
        tabs.post(&TabMessage::Hello {
            from: me.to_string(),
        });
        Ok(tabs)
    }

    fn post(&self, message: &TabMessage) {
        let _ = self
            .channel
            .post_message(&JsValue::from_str(&message.to_text()));
    }

    pub fn signal(&self, to: PeerId, data: &Negotiation) {
        self.post(&TabMessage::Signal {
            from: self.me.to_string(),
            to: to.to_string(),
            data: self.codec.encode(data, self.me, to),
        });
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.post(&TabMessage::Bye {
            from: self.me.to_string(),
        });
        self.channel.close();
    }
}

/// Keepalive period: the server closes sockets silent for 60 s.
const PING_MS: u32 = 20_000;
const RETRY_BASE_MS: u32 = 500;
const RETRY_MAX_MS: u32 = 30_000;

/// Signaling through `cpc-signal` over a WebSocket, reconnecting with
/// backoff when the socket drops.
pub struct Server {
    state: Rc<RefCell<ServerState>>,
}

struct ServerState {
    url: String,
    room: String,
    me: PeerId,
    codec: SignalCodec,
    handler: Handler,
    socket: Option<WebSocket>,
    listeners: Vec<EventListener>,
    keepalive: Option<Interval>,
    retry: Option<Timeout>,
    failures: u32,
}

impl Server {
    pub fn open(url: &str, room: &str, me: PeerId, codec: SignalCodec, handler: Handler) -> Server {
        let state = Rc::new(RefCell::new(ServerState {
            url: url.to_string(),
            room: room.to_string(),
            me,
            codec,
            handler,
            socket: None,
            listeners: Vec::new(),
            keepalive: None,
            retry: None,
            failures: 0,
        }));
        connect(&state);
        Server { state }
    }

    pub fn signal(&self, to: PeerId, data: &Negotiation) {
        let state = self.state.borrow();
        state.send(&ClientMessage::Signal {
            to: to.to_string(),
            data: state.codec.encode(data, state.me, to),
        });
    }
}

impl ServerState {
    fn send(&self, message: &ClientMessage) {
        if let Some(socket) = &self.socket {
            if socket.ready_state() == WebSocket::OPEN {
                let _ = socket.send_with_str(&message.to_text());
            }
        }
    }
}

fn connect(state: &Rc<RefCell<ServerState>>) {
    let mut s = state.borrow_mut();
    let socket = match WebSocket::new(&s.url) {
        Ok(socket) => socket,
        Err(_) => {
            warn(&format!("cpc-sync: bad signaling URL {:?}", s.url));
            return;
        }
    };
    let weak = Rc::downgrade(state);
    let on_open = {
        let weak = weak.clone();
        EventListener::new(&socket, "open", move |_| {
            let Some(state) = weak.upgrade() else { return };
            let mut s = state.borrow_mut();
            s.failures = 0;
            s.send(&ClientMessage::Join {
                room: s.room.clone(),
                peer: s.me.to_string(),
            });
            let weak = weak.clone();
            s.keepalive = Some(Interval::new(PING_MS, move || {
                if let Some(state) = weak.upgrade() {
                    state.borrow().send(&ClientMessage::Ping);
                }
            }));
        })
    };
    let on_message = {
        let weak = weak.clone();
        EventListener::new(&socket, "message", move |event| {
            let Some(state) = weak.upgrade() else { return };
            let Some(text) = event
                .dyn_ref::<MessageEvent>()
                .and_then(|e| e.data().as_string())
            else {
                return;
            };
            let event = match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Peers { peers, .. }) => {
                    SignalEvent::Present(peers.iter().filter_map(|p| parse_peer(p)).collect())
                }
                Ok(ServerMessage::Joined { peer }) => match parse_peer(&peer) {
                    Some(peer) => SignalEvent::Joined(peer),
                    None => return,
                },
                Ok(ServerMessage::Left { peer }) => match parse_peer(&peer) {
                    Some(peer) => SignalEvent::Left(peer),
                    None => return,
                },
                Ok(ServerMessage::Signal { from, data }) => {
                    let data = parse_peer(&from).and_then(|peer| {
                        let state = state.borrow();
                        state.codec.decode(data, peer, state.me)
                    });
                    match (parse_peer(&from), data) {
                        (Some(from), Some(data)) => SignalEvent::Signal { from, data },
                        _ => SignalEvent::Error(format!("malformed signal from {from:?} dropped")),
                    }
                }
                Ok(ServerMessage::Error { message }) => SignalEvent::Error(message),
                Ok(ServerMessage::Pong) => return,
                Err(e) => SignalEvent::Error(format!("malformed server message dropped: {e}")),
            };
            // Release the state before the handler runs: it may signal.
            let handler = state.borrow().handler.clone();
            handler(event);
        })
    };
    let on_close = EventListener::new(&socket, "close", move |_| {
        let Some(state) = weak.upgrade() else { return };
        let mut s = state.borrow_mut();
        s.keepalive = None;
        let delay = RETRY_BASE_MS
            .saturating_mul(1 << s.failures.min(8))
            .min(RETRY_MAX_MS);
        s.failures += 1;
        let weak = weak.clone();
        s.retry = Some(Timeout::new(delay, move || {
            if let Some(state) = weak.upgrade() {
                connect(&state);
            }
        }));
    });
    // The old socket's listeners go with it (possibly from inside one of
    // them: gloo defers freeing a closure that is running).
    s.listeners = vec![on_open, on_message, on_close];
    s.socket = Some(socket);
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut s = self.state.borrow_mut();
        s.send(&ClientMessage::Leave);
        s.listeners.clear();
        s.keepalive = None;
        s.retry = None;
        if let Some(socket) = s.socket.take() {
            let _ = socket.close();
        }
    }
}
