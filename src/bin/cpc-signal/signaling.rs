//! WebSocket signaling at `/signal`: rooms are created on demand; a peer
//! that joins learns who is there and the others learn it joined; offers,
//! answers and ICE candidates go to the addressed peer only.
//!
//! Messages are JSON text:
//! - client: `{"type":"join","room","peer"}`, `{"type":"signal","to","data"}`,
//!   `{"type":"leave"}`, `{"type":"ping"}`;
//! - server: `{"type":"peers","room","peers":[...]}`, `{"type":"joined","peer"}`,
//!   `{"type":"left","peer"}`, `{"type":"signal","from","data"}`,
//!   `{"type":"error","message"}`, `{"type":"pong"}`.
//!
//! Messages over 64 KiB and malformed ones are dropped with an `error`
//! reply (the socket stays); frames over 256 KiB close it; a socket silent
//! for 60 s is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use cpc_sync::protocol::signal::{ClientMessage, ServerMessage, MAX_NAME};
use tokio::sync::mpsc;

/// Largest message relayed.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest frame read at all; beyond it the socket is closed.
pub const MAX_FRAME: usize = 256 * 1024;
/// A socket that sends nothing (not even a ping) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);

type Outbox = mpsc::UnboundedSender<String>;

/// Every room and its peers' outboxes.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<String, Outbox>>>,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Outbox>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters here; keep serving.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, room: &str, peer: &str, outbox: Outbox) {
        let mut rooms = self.lock();
        let members = rooms.entry(room.to_string()).or_default();
        let others: Vec<&str> = members
            .keys()
            .filter(|p| *p != peer)
            .map(String::as_str)
            .collect();
        let _ = outbox.send(
            ServerMessage::Peers {
                room: room.to_string(),
                peers: others.into_iter().map(String::from).collect(),
            }
            .to_text(),
        );
        let notice = ServerMessage::Joined {
            peer: peer.to_string(),
        }
        .to_text();
        for (other, out) in members.iter() {
            if other != peer {
                let _ = out.send(notice.clone());
            }
        }
        // A peer id joining again (a reloaded tab) replaces its old socket.
        members.insert(peer.to_string(), outbox);
    }

    fn leave(&self, room: &str, peer: &str, outbox: &Outbox) {
        let mut rooms = self.lock();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        if !members.get(peer).is_some_and(|o| o.same_channel(outbox)) {
            return; // replaced by a newer socket of the same peer
        }
        members.remove(peer);
        let notice = ServerMessage::Left {
            peer: peer.to_string(),
        }
        .to_text();
        for out in members.values() {
            let _ = out.send(notice.clone());
        }
        if members.is_empty() {
            rooms.remove(room);
        }
    }

    fn relay(&self, room: &str, from: &str, to: &str, data: &serde_json::Value) -> bool {
        let rooms = self.lock();
        match rooms.get(room).and_then(|m| m.get(to)) {
            Some(out) => out
                .send(
                    ServerMessage::Signal {
                        from: from.to_string(),
                        data: data.clone(),
                    }
                    .to_text(),
                )
                .is_ok(),
            None => false,
        }
    }
}

pub async fn upgrade(ws: WebSocketUpgrade, State(rooms): State<Arc<Rooms>>) -> Response {
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| session(socket, rooms))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME
}

async fn session(mut socket: WebSocket, rooms: Arc<Rooms>) {
    let (outbox, mut inbox) = mpsc::unbounded_channel::<String>();
    let mut joined: Option<(String, String)> = None;
    loop {
        tokio::select! {
            incoming = tokio::time::timeout(IDLE, socket.recv()) => {
                let text = match incoming {
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(Message::Binary(_)))) => {
                        let error = ServerMessage::Error { message: "messages are JSON text".into() };
                        let _ = outbox.send(error.to_text());
                        continue;
                    }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
                    Ok(Some(Ok(_))) => continue,
                };
                if let Some(reply) = handle(&rooms, &mut joined, &outbox, text.as_str()) {
                    let _ = outbox.send(reply.to_text());
                }
            }
            Some(text) = inbox.recv() => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some((room, peer)) = joined {
        rooms.leave(&room, &peer, &outbox);
    }
}

/// Handles one client message; returns the reply to send back, if any.
fn handle(
    rooms: &Rooms,
    joined: &mut Option<(String, String)>,
    outbox: &Outbox,
    text: &str,
) -> Option<ServerMessage> {
    let error = |message: String| Some(ServerMessage::Error { message });
    if text.len() > MAX_MESSAGE {
        return error(format!(
            "message of {} bytes dropped: the limit is {MAX_MESSAGE}",
            text.len()
        ));
    }
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return error(format!("malformed message dropped: {e}")),
    };
    match message {
        ClientMessage::Join { room, peer } => {
            if !valid_name(&room) || !valid_name(&peer) {
                return error(format!("room and peer must be 1 to {MAX_NAME} bytes"));
            }
            if let Some((old_room, old_peer)) = joined.take() {
                rooms.leave(&old_room, &old_peer, outbox);
            }
            rooms.join(&room, &peer, outbox.clone());
            *joined = Some((room, peer));
            None
        }
        ClientMessage::Signal { to, data } => {
            let Some((room, from)) = joined.as_ref() else {
                return error("join a room before signaling".into());
            };
            if rooms.relay(room, from, &to, &data) {
                None
            } else {
                error(format!("no peer {to:?} in room {room:?}"))
            }
        }
        ClientMessage::Leave => {
            if let Some((room, peer)) = joined.take() {
                rooms.leave(&room, &peer, outbox);
            }
            None
        }
        ClientMessage::Ping => Some(ServerMessage::Pong),
    }
}
