//! WebSocket signaling at `/signal`: rooms are created on demand; a peer
//! that joins learns who is there and the others learn it joined (in a
//! room of more than 33, a random sample of 32 each way: `sample.rs`);
//! every member hears of a leave; offers, answers and ICE candidates go to
//! the addressed peer only (any member, however it learned of it).
//!
//! Messages are JSON text:
//! - client: `{"type":"join","room","peer","key","proof"}`,
//!   `{"type":"signal","to","data"}`, `{"type":"leave"}`, `{"type":"ping"}`;
//! - server: `{"type":"hello","nonce"}` (first, on every connection),
//!   `{"type":"peers","room","peers":[...]}`, `{"type":"joined","peer"}`,
//!   `{"type":"left","peer"}`, `{"type":"signal","from","data"}`,
//!   `{"type":"error","message"}`, `{"type":"pong"}`, and from the room
//!   peer (`keep/`) `{"type":"keep","peer"}`, `{"type":"unkeep","reason"}`.
//!
//! Binary messages are sync frames between a page and its room's peer,
//! once `keep` said it is linked; they are held back by the room's queue,
//! not counted against the message rate. In a room with a secret they are
//! sealed frames between two pages, forwarded as they are (`relay.rs`);
//! one refused with an answer counts against the rate, as a text does.
//!
//! Only pages of the server's own origin may open a socket, unless
//! `ORIGINS` lists others or is `*` (`origin.rs`). A join proves the key
//! behind its peer id: a signature over this connection's nonce, the room
//! and the id (`cpc_sync::protocol::signal::verify_join`); a join without
//! it is refused. A second socket proving the same id in a room replaces
//! the first (a reloaded tab): the first is told why and closed, and the
//! others see no leave. A socket's signals go out as from the id it proved,
//! and `data` is relayed byte for byte, never re-serialized.
//!
//! Messages over 64 KiB and malformed ones are dropped with an `error`
//! reply (the socket stays); frames over 256 KiB close it; a socket silent
//! for 60 s is closed, and so is one a send to which takes over 10 s (it
//! stopped reading). A room holds at most `MAX_ROOM` peers (default
//! 1,024): a join beyond that gets an `error` ("room full"). Each socket
//! may send a burst of 1000 messages, then 100 per second (`limits.rs`),
//! a join or leave counting one more per 8 notices it makes the server
//! send (a leave is told to every member); beyond that messages are
//! dropped, with one `error` per burst of drops, and a socket that keeps
//! flooding is closed. At most 1 MiB waits for one socket (`outbox.rs`);
//! what is relayed beyond that is dropped.

mod origin;
mod outbox;
mod relay;
mod sample;
mod stats;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{close_code, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cpc_sync::protocol::signal::{verify_join, ClientMessage, ServerMessage, MAX_NAME};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::keep::{self, Keep, Tunnel};
use crate::limits::{RateLimit, Verdict, BURST, RATE};
use crate::serve::ClientAddress;
pub use origin::Origins;
pub use outbox::{Outbox, Refused, FRAME_HIGH_WATER, FRAME_LOW_WATER};
use outbox::{Written, OUTBOX_BYTES};
use stats::{Counters, OpenSocket};
pub use stats::{Refusal, SignalStats};

/// Largest message relayed.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest frame read at all; beyond it the socket is closed.
pub const MAX_FRAME: usize = 256 * 1024;
/// A socket that sends nothing (not even a ping) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// A send to a socket that takes longer than this closes it: its peer
/// stopped reading, and what is relayed to it would only pile up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a socket being closed by the server (replaced, flooding) is
/// given to take what is queued and the close frame.
const CLOSING: Duration = Duration::from_secs(2);
/// Most peers in one room unless `MAX_ROOM` says otherwise. Large rooms
/// are meant for pages that connect to a few others, not all.
pub const DEFAULT_MAX_ROOM: usize = 1024;

/// What the environment sets.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peers in one room at most (`MAX_ROOM`).
    pub max_room: usize,
    /// The pages that may open a socket (`ORIGINS`).
    pub origins: Origins,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_room: DEFAULT_MAX_ROOM,
            origins: Origins::Own,
        }
    }
}

impl Config {
    /// Reads `MAX_ROOM` and `ORIGINS`; says loudly when every site may
    /// use the server.
    pub fn from_env() -> Result<Config, String> {
        let max_room = match std::env::var("MAX_ROOM") {
            Err(_) => DEFAULT_MAX_ROOM,
            Ok(n) => match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(format!(
                        "MAX_ROOM must be a number of peers, 1 or more, not {n:?}"
                    ))
                }
            },
        };
        let origins = Origins::parse(std::env::var("ORIGINS").ok().as_deref())?;
        if origins == Origins::Any {
            eprintln!(
                "cpc-signal: WARNING: ORIGINS=* lets pages of EVERY website open /signal: \
                 any site a visitor opens can join and flood this server's rooms"
            );
        }
        Ok(Config { max_room, origins })
    }
}

type Members = HashMap<String, Arc<Outbox>>;
type RoomMap = HashMap<String, Members>;

/// Every room and its peers' outboxes, and the counters.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<RoomMap>,
    config: Config,
    counters: Arc<Counters>,
    /// The room peer, unless `KEEP=off`.
    keep: Option<Arc<Keep>>,
    relay: relay::RelayCounters,
}

/// A join the room could not take.
#[derive(Debug, PartialEq, Eq)]
struct RoomFull;

/// What became of a signal.
#[derive(Debug, PartialEq, Eq)]
enum Relay {
    Sent,
    /// The receiver's outbox is full (or closing): dropped.
    Dropped,
    NoSuchPeer,
    /// The sender is not (or no longer) the member under its id.
    NotMember,
}

impl Rooms {
    pub fn new(config: Config) -> Rooms {
        Rooms {
            config,
            ..Rooms::default()
        }
    }

    /// Runs the room peer in every room without a secret.
    pub fn with_keep(self, keep: Arc<Keep>) -> Rooms {
        Rooms {
            keep: Some(keep),
            ..self
        }
    }

    /// The counters now, for `/metrics`.
    pub fn stats(&self) -> SignalStats {
        let rooms = self.lock().len() as u64;
        self.counters.snapshot(rooms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomMap> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters here; keep serving.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox::new(OUTBOX_BYTES, self.counters.clone()))
    }

    /// Moves the socket of `outbox` from `previous` (if any) to `room` as
    /// `peer` (an id it proved); nothing changes when `room` is full.
    fn join(
        &self,
        room: &str,
        peer: &str,
        outbox: &Arc<Outbox>,
        previous: Option<&(String, String)>,
    ) -> Result<usize, RoomFull> {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get(room) {
            // Taking an id already there (it replaces that socket), or
            // taking another id within the room, does not add a peer.
            let stays = members.contains_key(peer)
                || previous.is_some_and(|(r, p)| {
                    r == room && members.get(p).is_some_and(|o| Arc::ptr_eq(o, outbox))
                });
            if members.len() >= self.config.max_room && !stays {
                return Err(RoomFull);
            }
        }
        let mut notices = 0;
        if let Some((old_room, old_peer)) = previous {
            notices += leave(&mut rooms, old_room, old_peer, outbox);
        }
        let members = rooms.entry(room.to_string()).or_default();
        let notice = ServerMessage::Joined {
            peer: peer.to_string(),
        }
        .to_text();
        // In a big room a sample of the members hears of the newcomer, and
        // it hears of them (`sample.rs`); its partial view learns the rest
        // by shuffles.
        let others = members.iter().filter(|(p, _)| *p != peer);
        let others_count = members.len() - usize::from(members.contains_key(peer));
        let known = sample::sample(others, sample::SAMPLE, sample::seed());
        let sampled = known.len() < others_count;
        for (_, out) in &known {
            let _ = out.push(notice.clone());
        }
        notices += known.len() + 1;
        // After the notices: once the newcomer hears who is there, each of
        // them has its notice queued ahead of anything it sends later.
        let peers = known.into_iter().map(|(p, _)| p.clone()).collect();
        let _ = outbox.push(
            ServerMessage::Peers {
                room: room.to_string(),
                peers,
                sampled,
            }
            .to_text(),
        );
        let replaced = members.insert(peer.to_string(), outbox.clone());
        if let Some(old) = replaced.filter(|old| !Arc::ptr_eq(old, outbox)) {
            // The same key on a new socket: a reloaded tab, most likely.
            // The old socket's leave finds itself replaced and says nothing.
            let message = format!("replaced: peer {peer} joined from another connection");
            let _ = old.push(ServerMessage::Error { message }.to_text());
            old.close(close_code::POLICY, "replaced by another connection");
            self.counters
                .replaced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(notices)
    }

    /// Takes the socket of `outbox` out of `room`; returns how many
    /// members were told.
    fn leave(&self, room: &str, peer: &str, outbox: &Arc<Outbox>) -> usize {
        leave(&mut self.lock(), room, peer, outbox)
    }

    /// Relays `data` as it came, from `from` (the id the socket of
    /// `outbox` proved) to `to`.
    fn relay(
        &self,
        room: &str,
        from: &str,
        outbox: &Arc<Outbox>,
        to: &str,
        data: &RawValue,
    ) -> Relay {
        let from_json = serde_json::to_string(from).unwrap_or_default();
        let text = format!(
            r#"{{"type":"signal","from":{from_json},"data":{}}}"#,
            data.get()
        );
        let rooms = self.lock();
        let Some(members) = rooms.get(room) else {
            return Relay::NotMember;
        };
        if !members.get(from).is_some_and(|o| Arc::ptr_eq(o, outbox)) {
            return Relay::NotMember;
        }
        let Some(out) = members.get(to) else {
            return Relay::NoSuchPeer;
        };
        match out.push(text) {
            Ok(()) => Relay::Sent,
            // Full: a reader that slow loses signals, not the server its
            // memory. Closed: it is on its way out, its leave follows.
            Err(Refused::Full | Refused::Closed) => Relay::Dropped,
        }
    }
}

/// Takes `peer` (the socket of `outbox`) out of `room` and tells every
/// member, unless the server is stopping; returns how many it told.
fn leave(rooms: &mut RoomMap, room: &str, peer: &str, outbox: &Arc<Outbox>) -> usize {
    let Some(members) = rooms.get_mut(room) else {
        return 0;
    };
    if !members.get(peer).is_some_and(|o| Arc::ptr_eq(o, outbox)) {
        return 0; // replaced by a newer socket of the same peer
    }
    members.remove(peer);
    // When the server is stopping, not the peer leaving, no one is told: a
    // `left` would have the room's pages close their links to it, which
    // need no server (a deploy cut every page off from the others until
    // the server was back and they had linked again).
    let told = if crate::shutdown::begun() {
        0
    } else {
        let notice = ServerMessage::Left {
            peer: peer.to_string(),
        }
        .to_text();
        for out in members.values() {
            let _ = out.push(notice.clone());
        }
        members.len()
    };
    if members.is_empty() {
        rooms.remove(room);
    }
    told
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
    address: Option<Extension<ClientAddress>>,
    State(rooms): State<Arc<Rooms>>,
) -> Response {
    // A header that is not text matches no origin (and no host).
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{0}"));
    let host = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => uri.authority().map(|a| a.as_str()), // HTTP/2
    };
    if !rooms.config.origins.allows(origin, host) {
        let (origin, host) = (origin.unwrap_or("(none)"), host.unwrap_or("(none)"));
        let detail = format!("a page of {origin:?} (Host {host:?})");
        rooms.counters.refused(Refusal::Origin, &detail);
        let body = "cpc-signal: pages of this origin may not open /signal (see ORIGINS: a \
                    server reached by a name, not an address or localhost, lists its own \
                    origin there)\n";
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let mut nonce = [0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        let body = "cpc-signal: no randomness for a join nonce\n";
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    // tungstenite's default read buffer is 128 KiB a socket: 2,200 idle
    // sockets held 289 MiB before a signal was sent (BENCHMARKS.md,
    // "Signaling server under load"). Signals are small; 4 KiB reads them.
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| session(socket, rooms, nonce, address.map(|a| a.0)))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One socket as `handle` sees it.
struct Conn {
    outbox: Arc<Outbox>,
    /// What this connection's joins sign (sent in `Hello`).
    nonce: [u8; 32],
    /// The room and the id proved in it.
    joined: Option<(String, String)>,
    /// The link to the room's peer, once attached.
    tunnel: Option<Tunnel>,
    /// A join succeeded: the room's peer is to be attached.
    attach: bool,
    /// Notices the last message made the server send to others (a join's
    /// or a leave's), charged against the socket's rate.
    notices: usize,
    /// Where the socket connects from: the room peer's shares count by it.
    address: Option<ClientAddress>,
}

impl Conn {
    fn new(rooms: &Rooms, nonce: [u8; 32]) -> Conn {
        let outbox = rooms.outbox();
        let hello = ServerMessage::Hello { nonce: hex(&nonce) };
        let _ = outbox.push(hello.to_text());
        Conn {
            outbox,
            nonce,
            joined: None,
            tunnel: None,
            attach: false,
            notices: 0,
            address: None,
        }
    }

    fn reply(&self, message: ServerMessage) {
        let _ = self.outbox.push(message.to_text());
    }

    fn leave(&mut self, rooms: &Rooms) {
        self.tunnel = None;
        if let Some((room, peer)) = self.joined.take() {
            self.notices += rooms.leave(&room, &peer, &self.outbox);
        }
    }
}

async fn session(
    socket: WebSocket,
    rooms: Arc<Rooms>,
    nonce: [u8; 32],
    address: Option<ClientAddress>,
) {
    let _open = OpenSocket::new(&rooms.counters);
    let (sink, mut stream) = socket.split();
    let mut conn = Conn::new(&rooms, nonce);
    conn.address = address;
    let mut writer = tokio::spawn(outbox::write(sink, conn.outbox.clone(), SEND_TIMEOUT));
    let mut limit = RateLimit::new(tokio::time::Instant::now().into_std());
    // Set once the server closes the socket: when it must be done by.
    let mut closing: Option<tokio::time::Instant> = None;
    let close_sent = loop {
        let deadline = async {
            match closing {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            written = &mut writer => break matches!(written, Ok(Written::Closed)),
            () = deadline => break false,
            // The server is shutting down: "going away", then the client's
            // close (or the deadline).
            () = crate::shutdown::requested(), if closing.is_none() => {
                conn.outbox.close(close_code::AWAY, "server shutting down");
                closing = Some(tokio::time::Instant::now() + CLOSING);
            }
            incoming = tokio::time::timeout(IDLE, stream.next()) => {
                let message = match incoming {
                    Err(_) => {
                        if closing.is_none() {
                            rooms.counters.idle_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        break false;
                    }
                    Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => break false,
                    Ok(Some(Ok(message))) => message,
                };
                if closing.is_some() {
                    continue; // read only to see the client's close
                }
                // Sync frames for the room's peer: bounded by the room's
                // queue (the socket is not read while it is full) and by
                // the node's penalties, not by the message rate.
                if let (Message::Binary(bytes), Some(tunnel)) = (&message, &conn.tunnel) {
                    tunnel.frame(bytes.to_vec()).await;
                    continue;
                }
                // Sealed frames between pages of a room with a secret
                // (`relay.rs`): bounded by the recipient's queue. One
                // refused with an answer counts against the rate limit, as
                // a text does: a socket sending them without end is
                // dropped, then closed.
                let mut refused_frame = None;
                if let Message::Binary(bytes) = &message {
                    if relay::takes(conn.joined.as_ref()) {
                        let relayed = rooms.relay_frame(conn.joined.as_ref(), &conn.outbox, bytes);
                        match relayed.err().and_then(|why| why.message()) {
                            Some(message) => refused_frame = Some(message),
                            None => continue,
                        }
                    }
                }
                match limit.check(tokio::time::Instant::now().into_std()) {
                    Verdict::Pass => {}
                    Verdict::Drop { notify } => {
                        let message = format!(
                            "over the rate limit of {RATE} messages/s (burst {BURST}): \
                             messages dropped, {} so far",
                            limit.dropped()
                        );
                        rooms.counters.refused(Refusal::RateLimited, &message);
                        if notify {
                            conn.reply(ServerMessage::Error { message });
                        }
                        continue;
                    }
                    Verdict::Close => {
                        let message = format!(
                            "closed: still flooding after {} messages over the rate limit",
                            limit.dropped()
                        );
                        rooms.counters.refused(Refusal::Flooding, &message);
                        conn.leave(&rooms);
                        conn.reply(ServerMessage::Error { message });
                        conn.outbox.close(close_code::POLICY, "flooding");
                        closing = Some(tokio::time::Instant::now() + CLOSING);
                        continue;
                    }
                }
                if let Some(message) = refused_frame {
                    conn.reply(ServerMessage::Error { message });
                    continue;
                }
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        let message = "messages are JSON text (binary ones are frames for the \
                                       room's server peer, and none is linked)"
                            .to_string();
                        rooms.counters.refused(Refusal::Binary, &message);
                        conn.reply(ServerMessage::Error { message });
                        continue;
                    }
                    _ => continue,
                };
                if let Some(reply) = handle(&rooms, &mut conn, text.as_str()) {
                    conn.reply(reply);
                }
                // A join or leave is charged for the notices it caused.
                let notices = std::mem::take(&mut conn.notices);
                if notices > 0 {
                    limit.charge(tokio::time::Instant::now().into_std(), notices);
                }
                if std::mem::take(&mut conn.attach) {
                    attach(&rooms, &mut conn).await;
                }
                if closing.is_none() && conn.outbox.is_closing() {
                    // Replaced by another socket: the close is queued.
                    closing = Some(tokio::time::Instant::now() + CLOSING);
                }
            }
        }
    };
    conn.leave(&rooms);
    conn.outbox.shut();
    if close_sent {
        // Read what is still in flight until the client's close: dropping
        // a socket with unread input resets the connection, and the
        // browser would lose the error and the close frame already sent.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
        })
        .await;
    }
    writer.abort();
}

/// Links a socket that just joined a room to the room's peer; a room the
/// peer will not keep is said so (`unkeep`), and the page syncs with its
/// other peers only.
async fn attach(rooms: &Rooms, conn: &mut Conn) {
    let (Some(keep), Some((room, peer))) = (&rooms.keep, &conn.joined) else {
        return;
    };
    let Ok(page) = peer.parse() else {
        return; // not a peer id: it can signal, but not sync
    };
    match keep
        .attach(room, page, conn.address, conn.outbox.clone())
        .await
    {
        Ok(tunnel) => conn.tunnel = Some(tunnel),
        Err(e) => conn.reply(ServerMessage::Unkeep {
            reason: e.to_string(),
        }),
    }
}

/// The one message whose `data` the server relays untouched, so never
/// parses into a value: `ClientMessage::Signal` as it arrives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingSignal<'a> {
    #[serde(rename = "type")]
    _kind: serde::de::IgnoredAny,
    to: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Just the `type` of a client message.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// Handles one client message; returns the reply to send back, if any.
fn handle(rooms: &Rooms, conn: &mut Conn, text: &str) -> Option<ServerMessage> {
    let refuse = |why: Refusal, message: String| {
        rooms.counters.refused(why, &message);
        Some(ServerMessage::Error { message })
    };
    if text.len() > MAX_MESSAGE {
        let message = format!(
            "message of {} bytes dropped: the limit is {MAX_MESSAGE}",
            text.len()
        );
        return refuse(Refusal::TooLarge, message);
    }
    let malformed = |e: serde_json::Error| {
        refuse(
            Refusal::Malformed,
            format!("malformed message dropped: {e}"),
        )
    };
    let kind = match serde_json::from_str::<Kind>(text) {
        Ok(k) => k.kind,
        Err(e) => return malformed(e),
    };
    if kind == "signal" {
        let signal = match serde_json::from_str::<IncomingSignal>(text) {
            Ok(s) => s,
            Err(e) => return malformed(e),
        };
        let Some((room, from)) = conn.joined.as_ref() else {
            return refuse(Refusal::NotJoined, "join a room before signaling".into());
        };
        let to = signal.to.as_ref();
        return match rooms.relay(room, from, &conn.outbox, to, signal.data) {
            Relay::Sent => {
                let relayed = &rooms.counters.relayed;
                relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Relay::Dropped => None,
            Relay::NoSuchPeer => {
                let dropped = &rooms.counters.dropped_no_peer;
                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(ServerMessage::Error {
                    message: format!("no peer {to:?} in room {room:?}"),
                })
            }
            Relay::NotMember => refuse(
                Refusal::NotJoined,
                format!("not in room {room:?} as {from}: replaced by another connection"),
            ),
        };
    }
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return malformed(e),
    };
    match message {
        ClientMessage::Join {
            room,
            peer,
            key,
            proof,
        } => {
            if !valid_name(&room) || !valid_name(&peer) {
                let message = format!("room and peer must be 1 to {MAX_NAME} bytes");
                return refuse(Refusal::BadName, message);
            }
            if let Err(e) = verify_join(&conn.nonce, &room, &peer, &key, &proof) {
                return refuse(Refusal::from(&e), format!("join refused: {e}"));
            }
            match rooms.join(&room, &peer, &conn.outbox, conn.joined.as_ref()) {
                Ok(notices) => conn.notices += notices,
                Err(RoomFull) => {
                    let max = rooms.config.max_room;
                    let message = format!("room full: {room:?} has {max} peers, the most allowed");
                    return refuse(Refusal::RoomFull, message);
                }
            }
            conn.tunnel = None;
            conn.attach = rooms.keep.is_some() && !keep::is_secret(&room);
            conn.joined = Some((room, peer));
            None
        }
        // Taken above, with its data raw.
        ClientMessage::Signal { .. } => None,
        ClientMessage::Leave => {
            conn.leave(rooms);
            None
        }
        ClientMessage::Ping => Some(ServerMessage::Pong),
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod fuzz_relay;
#[cfg(test)]
mod fuzz_tunnel;
#[cfg(test)]
mod tests;
