//! The two ways peers find each other: a BroadcastChannel between tabs of
//! one browser (no server at all), and a WebSocket to `cpc-signal`. Both
//! are pipes: they carry the messages of [`crate::protocol::signal`] and
//! report what they hear; [`Links`](crate::protocol::sync::Links) decides
//! what to say, when to reconnect and whom a signal is for.

use std::rc::Rc;

use gloo::events::EventListener;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, BroadcastChannel, MessageEvent, WebSocket};

use crate::protocol::json::Json;

use crate::protocol::room::RoomSecret;
use crate::protocol::signal::{ClientMessage, Negotiation, ServerMessage, TabMessage};
use crate::protocol::PeerId;

/// How a signal's payload travels: as JSON, or, in a room with a secret,
/// sealed with the room's signal key (the server relays a hex string it
/// can neither read nor forge).
#[derive(Clone, Default)]
pub struct SignalCodec(pub Option<Rc<RoomSecret>>);

impl SignalCodec {
    /// Sealed, a payload is bound to its sender and recipient (see
    /// `RoomSecret::seal_signal`).
    pub(super) fn encode(&self, data: &Negotiation, from: PeerId, to: PeerId) -> Json {
        let mut nonce = [0u8; 12];
        if self.0.is_some() {
            let drawn = web_sys::window()
                .and_then(|w| w.crypto().ok())
                .is_some_and(|c| c.get_random_values_with_u8_array(&mut nonce).is_ok());
            if !drawn {
                // No CSPRNG, no sealed signal: better none than a reused nonce.
                return Json::Null;
            }
        }
        data.to_data(self.0.as_deref(), nonce, &from.to_string(), &to.to_string())
    }

    pub(super) fn decode(&self, data: Json, from: PeerId, to: PeerId) -> Option<Negotiation> {
        Negotiation::from_data(data, self.0.as_deref(), &from.to_string(), &to.to_string())
    }
}

pub(super) fn warn(text: &str) {
    web_sys::console::warn_1(&JsValue::from_str(text));
}

/// The text of a `message` event, if it is text.
fn text_of(event: &web_sys::Event) -> Option<String> {
    event
        .dyn_ref::<MessageEvent>()
        .and_then(|e| e.data().as_string())
}

/// The bytes of a binary `message` event.
fn bytes_of(event: &web_sys::Event) -> Option<Vec<u8>> {
    let data = event.dyn_ref::<MessageEvent>()?.data();
    let buffer = data.dyn_ref::<js_sys::ArrayBuffer>()?;
    Some(js_sys::Uint8Array::new(buffer).to_vec())
}

/// The BroadcastChannel `cpc-sync:<room>` shared by the tabs of one
/// browser: every tab hears every message.
pub struct Tabs {
    channel: BroadcastChannel,
    _listener: EventListener,
}

impl Tabs {
    pub fn open(room: &str, heard: Rc<dyn Fn(TabMessage)>) -> Result<Tabs, JsValue> {
        let channel = BroadcastChannel::new(&format!("cpc-sync:{room}"))?;
        let listener = EventListener::new(&channel, "message", move |event| {
            let Some(text) = text_of(event) else { return };
            match TabMessage::from_text(&text) {
                Some(message) => heard(message),
                None => warn("cpc-sync: malformed tab signaling message dropped"),
            }
        });
        Ok(Tabs {
            channel,
            _listener: listener,
        })
    }

    pub fn post(&self, message: &TabMessage) {
        let _ = self
            .channel
            .post_message(&JsValue::from_str(&message.to_text()));
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.close();
    }
}

/// What the socket to the server reports.
pub enum SocketEvent {
    Open,
    Message(ServerMessage),
    /// A sync frame from the room's server peer (a binary message).
    Frame(Vec<u8>),
    /// Closed or failed to open.
    Closed,
}

/// One WebSocket to `cpc-signal`. It does not reconnect by itself: when it
/// closes, the links say when to open the next.
pub struct Server {
    socket: WebSocket,
    listeners: Vec<EventListener>,
}

impl Server {
    pub fn open(url: &str, report: Rc<dyn Fn(SocketEvent)>) -> Result<Server, JsValue> {
        let socket = WebSocket::new(url)?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let on = |kind: &'static str, report: Rc<dyn Fn(SocketEvent)>| {
            EventListener::new(&socket, kind, move |event| match kind {
                "open" => report(SocketEvent::Open),
                "close" => report(SocketEvent::Closed),
                _ => {
                    if let Some(bytes) = bytes_of(event) {
                        return report(SocketEvent::Frame(bytes));
                    }
                    let Some(text) = text_of(event) else { return };
                    match ServerMessage::from_text(&text) {
                        Ok(message) => report(SocketEvent::Message(message)),
                        Err(e) => warn(&format!(
                            "cpc-sync signaling: malformed server message dropped: {e}"
                        )),
                    }
                }
            })
        };
        let listeners = vec![
            on("open", report.clone()),
            on("message", report.clone()),
            on("close", report),
        ];
        Ok(Server { socket, listeners })
    }

    /// Sends if the socket is open, else drops the message: the join goes
    /// out on open, and a lost signal fails its connection, which is
    /// dialed again.
    pub fn send(&self, message: &ClientMessage) {
        if self.socket.ready_state() == WebSocket::OPEN {
            let _ = self.socket.send_with_str(&message.to_text());
        }
    }
}

impl Server {
    /// Sends a sync frame to the room's server peer. `false`: more than
    /// [`MAX_QUEUED`](super::connection::MAX_QUEUED) bytes wait in the
    /// socket, as on a data channel whose peer is not keeping up.
    pub fn send_frame(&self, frame: &[u8]) -> bool {
        if self.socket.ready_state() != WebSocket::OPEN {
            return true; // its close is reported; nothing to cut off
        }
        if self.socket.send_with_u8_array(frame).is_err() {
            return false;
        }
        self.buffered() <= super::connection::MAX_QUEUED
    }

    /// Bytes the socket has yet to send.
    pub fn buffered(&self) -> usize {
        self.socket.buffered_amount() as usize
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Listeners first, so closing reports nothing.
        self.listeners.clear();
        let _ = self.socket.close();
    }
}
