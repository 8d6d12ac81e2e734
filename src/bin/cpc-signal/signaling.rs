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
//! for 60 s is closed. A room holds at most 64 peers: a join beyond that
//! gets an `error` ("room full"). Each socket may send a burst of 1000
//! messages, then 100 per second (`limits.rs`); beyond that messages are
//! dropped, with one `error` per burst of drops, and a socket that keeps
//! flooding is closed. At most [`OUTBOX`] messages wait for one socket;
//! signals beyond that are dropped, not queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use cpc_sync::protocol::signal::{ClientMessage, ServerMessage, MAX_NAME};
use tokio::sync::mpsc;

use crate::limits::{RateLimit, Verdict, BURST, RATE};

/// Largest message relayed.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest frame read at all; beyond it the socket is closed.
pub const MAX_FRAME: usize = 256 * 1024;
/// A socket that sends nothing (not even a ping) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Most peers in one room. Every page connects to every other, so a room
/// of 64 already asks 63 WebRTC connections of each browser.
pub const MAX_PEERS_PER_ROOM: usize = 64;

/// Messages queued for one socket at most; beyond, what is relayed to it
/// is dropped (a reader that slow loses signals, not the server memory).
/// A newcomer to a full room is called by 63 peers at once, an offer and
/// a dozen candidates each: ~800 messages.
pub const OUTBOX: usize = 1024;

type Outbox = mpsc::Sender<String>;
type RoomMap = HashMap<String, HashMap<String, Outbox>>;

/// Every room and its peers' outboxes.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<RoomMap>,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoomMap> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters here; keep serving.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the socket of `outbox` from `previous` (if any) to `room` as
    /// `peer`; false, and nothing changed, when `room` is full.
    fn join(
        &self,
        room: &str,
        peer: &str,
        outbox: &Outbox,
        previous: Option<&(String, String)>,
    ) -> bool {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get(room) {
            // Taking a name already there, or renaming within the room,
            // does not add a peer.
            let stays = members.contains_key(peer)
                || previous.is_some_and(|(r, p)| {
                    r == room && members.get(p).is_some_and(|o| o.same_channel(outbox))
                });
            if members.len() >= MAX_PEERS_PER_ROOM && !stays {
                return false;
            }
        }
        if let Some((old_room, old_peer)) = previous {
            leave(&mut rooms, old_room, old_peer, outbox);
        }
        let members = rooms.entry(room.to_string()).or_default();
        let others: Vec<&str> = members
            .keys()
            .filter(|p| *p != peer)
            .map(String::as_str)
            .collect();
        let _ = outbox.try_send(
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
                let _ = out.try_send(notice.clone());
            }
        }
        // A peer id joining again (a reloaded tab) replaces its old socket.
        members.insert(peer.to_string(), outbox.clone());
        true
    }

    fn leave(&self, room: &str, peer: &str, outbox: &Outbox) {
        leave(&mut self.lock(), room, peer, outbox);
    }

    fn relay(&self, room: &str, from: &str, to: &str, data: &serde_json::Value) -> bool {
        let rooms = self.lock();
        match rooms.get(room).and_then(|m| m.get(to)) {
            // A full outbox drops the signal (a reader that slow); only a
            // closed one means the peer is gone.
            Some(out) => !matches!(
                out.try_send(
                    ServerMessage::Signal {
                        from: from.to_string(),
                        data: data.clone(),
                    }
                    .to_text(),
                ),
                Err(mpsc::error::TrySendError::Closed(_))
            ),
            None => false,
        }
    }
}

fn leave(rooms: &mut RoomMap, room: &str, peer: &str, outbox: &Outbox) {
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
        let _ = out.try_send(notice.clone());
    }
    if members.is_empty() {
        rooms.remove(room);
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
    let (outbox, mut inbox) = mpsc::channel::<String>(OUTBOX);
    let mut joined: Option<(String, String)> = None;
    let mut limit = RateLimit::new(tokio::time::Instant::now().into_std());
    let mut flooded = false;
    loop {
        tokio::select! {
            incoming = tokio::time::timeout(IDLE, socket.recv()) => {
                let message = match incoming {
                    Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
                    Ok(Some(Ok(message))) => message,
                };
                match limit.check(tokio::time::Instant::now().into_std()) {
                    Verdict::Pass => {}
                    Verdict::Drop { notify } => {
                        if notify {
                            let message = format!(
                                "over the rate limit of {RATE} messages/s (burst {BURST}): \
                                 messages dropped, {} so far",
                                limit.dropped()
                            );
                            let _ = outbox.try_send(ServerMessage::Error { message }.to_text());
                        }
                        continue;
                    }
                    Verdict::Close => {
                        flooded = true;
                        break;
                    }
                }
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        let error = ServerMessage::Error { message: "messages are JSON text".into() };
                        let _ = outbox.try_send(error.to_text());
                        continue;
                    }
                    _ => continue,
                };
                if let Some(reply) = handle(&rooms, &mut joined, &outbox, text.as_str()) {
                    let _ = outbox.try_send(reply.to_text());
                }
            }
            () = crate::shutdown::requested() => { crate::shutdown::going_away(&mut socket).await; break; }
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
    if flooded {
        close_flooding(socket, inbox, limit.dropped()).await;
    }
}

/// Sends what is queued (the rate limit's `error` among it), says why and
/// closes, a second for each; a client that does not read cannot hold it
/// up longer.
async fn close_flooding(mut socket: WebSocket, mut inbox: mpsc::Receiver<String>, dropped: u64) {
    let message = format!("closed: still flooding after {dropped} messages over the rate limit");
    let close = CloseFrame {
        code: close_code::POLICY,
        reason: "flooding".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(text) = inbox.try_recv() {
            socket.send(Message::Text(text.into())).await?;
        }
        socket
            .send(Message::Text(
                ServerMessage::Error { message }.to_text().into(),
            ))
            .await?;
        socket.send(Message::Close(Some(close))).await
    })
    .await;
    // Read what is still in flight until the client's close: dropping a
    // socket with unread input resets the connection, and the browser
    // would lose the error and the close frame already sent.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
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
        ClientMessage::Join { room, peer, .. } => {
            if !valid_name(&room) || !valid_name(&peer) {
                return error(format!("room and peer must be 1 to {MAX_NAME} bytes"));
            }
            if !rooms.join(&room, &peer, outbox, joined.as_ref()) {
                return error(format!(
                    "room full: {room:?} has {MAX_PEERS_PER_ROOM} peers, the most allowed"
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    type Inbox = mpsc::Receiver<String>;
    /// A socket of a test: its outbox, what it received, where it joined.
    type Member = (Outbox, Inbox, Option<(String, String)>);

    fn socket() -> (Outbox, Inbox) {
        mpsc::channel(OUTBOX)
    }

    fn drain(inbox: &mut Inbox) -> Vec<ServerMessage> {
        std::iter::from_fn(|| inbox.try_recv().ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect()
    }

    fn join(room: &str, peer: &str) -> String {
        ClientMessage::Join {
            room: room.into(),
            peer: peer.into(),
            key: String::new(),
            proof: String::new(),
        }
        .to_text()
    }

    /// Fills room "r" with peers p0.. through `handle`; keeps their sockets.
    fn full_room(rooms: &Rooms) -> Vec<Member> {
        (0..MAX_PEERS_PER_ROOM)
            .map(|i| {
                let (out, inbox) = socket();
                let mut joined = None;
                assert_eq!(
                    handle(rooms, &mut joined, &out, &join("r", &format!("p{i}"))),
                    None
                );
                (out, inbox, joined)
            })
            .collect()
    }

    #[test]
    fn a_join_beyond_the_room_cap_is_refused_and_not_added() {
        let rooms = Rooms::default();
        let mut members = full_room(&rooms);
        for (_, inbox, _) in &mut members {
            drain(inbox);
        }
        let (out, mut inbox) = socket();
        let mut joined = None;
        let reply = handle(&rooms, &mut joined, &out, &join("r", "late"));
        let Some(ServerMessage::Error { message }) = reply else {
            panic!("{reply:?}");
        };
        assert!(message.starts_with("room full"), "{message}");
        assert_eq!(joined, None);
        assert!(drain(&mut inbox).is_empty());
        assert!(members
            .iter_mut()
            .all(|(_, inbox, _)| drain(inbox).is_empty()));
        assert_eq!(rooms.lock()["r"].len(), MAX_PEERS_PER_ROOM);

        // One leaves: now there is room.
        let (out0, _, mut joined0) = members.remove(0);
        handle(&rooms, &mut joined0, &out0, &ClientMessage::Leave.to_text());
        assert_eq!(handle(&rooms, &mut joined, &out, &join("r", "late")), None);
        assert!(
            matches!(&drain(&mut inbox)[..], [ServerMessage::Peers { peers, .. }]
            if peers.len() == MAX_PEERS_PER_ROOM - 1)
        );
    }

    #[test]
    fn a_full_room_still_takes_a_reloaded_tab_and_a_rename() {
        let rooms = Rooms::default();
        let mut members = full_room(&rooms);
        // A new socket for an id already there replaces the old one.
        let (out, mut inbox) = socket();
        let mut joined = None;
        assert_eq!(handle(&rooms, &mut joined, &out, &join("r", "p1")), None);
        assert!(matches!(
            &drain(&mut inbox)[..],
            [ServerMessage::Peers { .. }]
        ));
        // A member taking a new name in its own room.
        let (out0, _, joined0) = &mut members[0];
        assert_eq!(handle(&rooms, joined0, out0, &join("r", "renamed")), None);
        assert_eq!(rooms.lock()["r"].len(), MAX_PEERS_PER_ROOM);
    }

    #[test]
    fn a_refused_join_keeps_the_socket_in_its_room() {
        let rooms = Rooms::default();
        let _members = full_room(&rooms);
        let (out, _inbox) = socket();
        let mut joined = None;
        assert_eq!(
            handle(&rooms, &mut joined, &out, &join("other", "me")),
            None
        );
        let reply = handle(&rooms, &mut joined, &out, &join("r", "me"));
        assert!(matches!(reply, Some(ServerMessage::Error { .. })));
        assert_eq!(joined, Some(("other".into(), "me".into())));
        assert!(rooms.lock()["other"].contains_key("me"));
    }

    #[test]
    fn a_full_outbox_drops_signals_and_keeps_the_peer() {
        let rooms = Rooms::default();
        let (a, _from_a) = socket();
        let (b, mut to_b) = socket();
        assert!(rooms.join("r", "a", &a, None));
        assert!(rooms.join("r", "b", &b, None));
        drain(&mut to_b);
        for _ in 0..OUTBOX + 10 {
            assert!(rooms.relay("r", "a", "b", &serde_json::json!(1)));
        }
        assert_eq!(drain(&mut to_b).len(), OUTBOX);
        assert!(
            rooms.relay("r", "a", "b", &serde_json::json!(2)),
            "b is still there"
        );
    }
}
