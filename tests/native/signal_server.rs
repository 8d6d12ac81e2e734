//! `cpc-signal`'s `/signal` against a real server process on 127.0.0.1,
//! with WebSocket clients that sign their joins as browsers do: origins,
//! ids bound to keys, byte-for-byte relay, bounded memory with a reader
//! that stalls, room size, bad input and floods. Each test starts its own
//! server (with its own `ORIGINS`, `MAX_ROOM`) and is bounded in time.
//!
//! `cargo test --features server --test native signal_server::`.

use crate::server;

use std::time::{Duration, Instant};

use cpc_sync::protocol::signal::{ClientMessage, ServerMessage};
use cpc_sync::protocol::Identity;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use server::{Server, Ws};

/// A test's whole budget.
const BUDGET: Duration = Duration::from_secs(40);
/// Waiting for one message at most.
const WAIT: Duration = Duration::from_secs(5);

/// Clients of a server, as this file's tests make them.
trait Clients {
    /// A client of `identity`, its hello read.
    async fn client(&self, identity: Identity) -> Client;
    /// A client of the identity of `seed` that joined `room`, its `peers`
    /// read.
    async fn member(&self, seed: u64, room: &str) -> (Client, Vec<String>);
}

impl Clients for Server {
    async fn client(&self, identity: Identity) -> Client {
        let ws = self.connect(None).await.expect("connect");
        Client::new(ws, identity).await
    }

    async fn member(&self, seed: u64, room: &str) -> (Client, Vec<String>) {
        let mut client = self.client(Identity::from_seed(seed)).await;
        client.join(room).await;
        match client.message().await {
            Some(ServerMessage::Peers { peers, .. }) => (client, peers),
            other => panic!("expected peers, got {other:?}"),
        }
    }
}

struct Client {
    ws: Ws,
    nonce: String,
    identity: Identity,
}

/// What a client read next.
#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Binary,
    Close(Option<(CloseCode, String)>),
    /// The connection ended without a close frame.
    Gone,
    /// Nothing within [`WAIT`].
    Nothing,
}

impl Client {
    async fn new(mut ws: Ws, identity: Identity) -> Client {
        let hello = tokio::time::timeout(WAIT, ws.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = hello else {
            panic!("no hello: {hello:?}");
        };
        let Ok(ServerMessage::Hello { nonce }) = serde_json::from_str(&text) else {
            panic!("the first message is not a hello: {text}");
        };
        assert_eq!(nonce.len(), 64, "{nonce}");
        Client {
            ws,
            nonce,
            identity,
        }
    }

    fn id(&self) -> String {
        self.identity.peer().to_string()
    }

    async fn send(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    async fn join(&mut self, room: &str) {
        let join = ClientMessage::join(&self.identity, &self.nonce, room);
        self.send(join.to_text()).await;
    }

    async fn signal(&mut self, to: &str, data: &str) {
        self.send(format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#))
            .await;
    }

    async fn got(&mut self, wait: Duration) -> Got {
        loop {
            return match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => Got::Nothing,
                Ok(None | Some(Err(_))) => Got::Gone,
                Ok(Some(Ok(Message::Text(text)))) => Got::Text(text.to_string()),
                Ok(Some(Ok(Message::Binary(_)))) => Got::Binary,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    Got::Close(frame.map(|f| (f.code, f.reason.to_string())))
                }
                Ok(Some(Ok(_))) => continue, // ping, pong
            };
        }
    }

    async fn text(&mut self) -> Option<String> {
        match self.got(WAIT).await {
            Got::Text(text) => Some(text),
            _ => None,
        }
    }

    async fn message(&mut self) -> Option<ServerMessage> {
        let text = self.text().await?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    /// The next error's message, skipping nothing.
    async fn error(&mut self) -> String {
        match self.message().await {
            Some(ServerMessage::Error { message }) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Every message that arrives until none has for `quiet`.
    async fn settle(&mut self, quiet: Duration) -> Vec<ServerMessage> {
        let mut all = Vec::new();
        while let Got::Text(text) = self.got(quiet).await {
            all.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")));
        }
        all
    }

    /// A ping's pong comes back after everything sent before it.
    async fn sync(&mut self) -> Vec<ServerMessage> {
        self.send(ClientMessage::Ping.to_text()).await;
        let mut all = Vec::new();
        loop {
            match self.message().await {
                Some(ServerMessage::Pong) => return all,
                Some(message) => all.push(message),
                None => panic!("no pong after {all:?}"),
            }
        }
    }
}

/// Runs a test body within [`BUDGET`].
async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(BUDGET, body)
        .await
        .expect("the test took too long");
}

fn status_of(result: Result<Ws, WsError>) -> u16 {
    match result {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn by_default_only_pages_of_the_servers_own_origin_may_signal() {
    bounded(async {
        let server = Server::start(&[]);
        let own = format!("http://{}", server.addr());
        assert_eq!(status_of(server.connect(Some(&own)).await), 101);
        assert_eq!(status_of(server.connect(None).await), 101, "not a page");
        for other in ["https://evil.example", "null", "http://127.0.0.1:1"] {
            assert_eq!(status_of(server.connect(Some(other)).await), 403, "{other}");
        }
        // The refusals are counted and logged: one line for the class.
        server.stderr_with("refused (origin)").await;
        // Time for a repeat of the line, were there one, to come too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = server.stderr_with("refused (origin)").await;
        let origin = lines.iter().filter(|l| l.contains("refused (origin)"));
        assert_eq!(origin.count(), 1, "{lines:?}");
    })
    .await;
}

#[tokio::test]
async fn origins_lists_more_and_a_star_allows_all_loudly() {
    bounded(async {
        let listed = Server::start(&[("ORIGINS", "https://a.example,https://b.example")]);
        assert_eq!(
            status_of(listed.connect(Some("https://a.example")).await),
            101
        );
        assert_eq!(
            status_of(listed.connect(Some("https://b.example")).await),
            101
        );
        let own = format!("http://{}", listed.addr());
        assert_eq!(status_of(listed.connect(Some(&own)).await), 101);
        let evil = listed.connect(Some("https://evil.example")).await;
        assert_eq!(status_of(evil), 403);

        let any = Server::start(&[("ORIGINS", "*")]);
        let evil = any.connect(Some("https://evil.example")).await;
        assert_eq!(status_of(evil), 101);
        let lines = any.stderr_with("WARNING: ORIGINS=*").await;
        assert!(
            lines.iter().any(|l| l.contains("WARNING: ORIGINS=*")),
            "{lines:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_join_must_prove_the_key_behind_its_id_for_this_connection_and_room() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut member, _) = server.member(1, "r").await;
        let mut c = server.client(Identity::from_seed(2)).await;
        let id = c.id();
        // No proof at all.
        c.send(format!(r#"{{"type":"join","room":"r","peer":"{id}"}}"#))
            .await;
        assert!(c.error().await.starts_with("malformed"));
        // A proof made for another connection's nonce.
        let stolen = ClientMessage::join(&c.identity, &"ab".repeat(32), "r");
        c.send(stolen.to_text()).await;
        let message = c.error().await;
        assert!(message.starts_with("join refused: the proof"), "{message}");
        // A proof made for another room.
        let ClientMessage::Join {
            peer, key, proof, ..
        } = ClientMessage::join(&c.identity, &c.nonce, "elsewhere")
        else {
            unreachable!()
        };
        let moved = ClientMessage::Join {
            room: "r".into(),
            peer: peer.clone(),
            key: key.clone(),
            proof: proof.clone(),
        };
        c.send(moved.to_text()).await;
        assert!(c.error().await.starts_with("join refused: the proof"));
        // Another's id (the member's) with one's own key and a good proof.
        let ClientMessage::Join { key, proof, .. } = ClientMessage::join(&c.identity, &c.nonce, "r")
        else {
            unreachable!()
        };
        let theirs = ClientMessage::Join {
            room: "r".into(),
            peer: member.id(),
            key,
            proof,
        };
        c.send(theirs.to_text()).await;
        let message = c.error().await;
        assert!(message.contains("not the one the key derives"), "{message}");
        // Refused joins do not count as members: no signal goes through.
        let to = member.id();
        c.signal(&to, "1").await;
        assert!(c.error().await.starts_with("join a room before signaling"));
        assert_eq!(member.sync().await, []);
        // Many more bad proofs: still one log line for the class.
        for _ in 0..20 {
            c.send(stolen.to_text()).await;
        }
        c.join("r").await;
        let t = Instant::now();
        let after = c.sync().await;
        println!("21 joins verified in {:?}", t.elapsed());
        assert!(
            matches!(after.last(), Some(ServerMessage::Peers { peers, .. }) if *peers == [to.as_str()]),
            "{after:?}"
        );
        let lines = server.stderr_with("refused (bad_proof)").await;
        let logged = lines.iter().filter(|l| l.contains("refused (bad_proof)"));
        assert_eq!(logged.count(), 1, "{lines:?}");
        assert_eq!(member.sync().await, [ServerMessage::Joined { peer: id }]);
    })
    .await;
}

#[tokio::test]
async fn a_second_socket_proving_the_id_replaces_the_first_which_is_told_and_closed() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut a, _) = server.member(1, "r").await;
        let (mut b, _) = server.member(2, "r").await;
        assert_eq!(
            a.message().await,
            Some(ServerMessage::Joined { peer: b.id() })
        );
        let (mut reloaded, peers) = server.member(1, "r").await;
        assert_eq!(peers, [b.id()]);
        let id = a.id();
        assert_eq!(
            a.error().await,
            format!("replaced: peer {id} joined from another connection")
        );
        match a.got(WAIT).await {
            Got::Close(Some((CloseCode::Policy, reason))) => assert!(reason.contains("replaced")),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // b hears the id joined again, never that it left; what b sends
        // it reaches the new socket.
        b.signal(&id, r#""for the new one""#).await;
        let heard = b.sync().await;
        assert_eq!(heard, [ServerMessage::Joined { peer: id.clone() }]);
        assert_eq!(
            reloaded.text().await.as_deref(),
            Some(
                format!(
                    r#"{{"type":"signal","from":"{}","data":"for the new one"}}"#,
                    b.id()
                )
                .as_str()
            )
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.sync().await, [], "no spurious leave");
    })
    .await;
}

#[tokio::test]
async fn signals_reach_the_addressed_peer_only_byte_for_byte() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut a, peers) = server.member(1, "room1").await;
        assert_eq!(peers, Vec::<String>::new());
        let (mut b, peers) = server.member(2, "room1").await;
        assert_eq!(peers, [a.id()]);
        let (mut c, _) = server.member(3, "room1").await;
        let (mut other, peers) = server.member(4, "room2").await;
        assert!(peers.is_empty(), "rooms are separate");
        let joined: Vec<_> = a.sync().await;
        assert_eq!(
            joined,
            [
                ServerMessage::Joined { peer: b.id() },
                ServerMessage::Joined { peer: c.id() }
            ]
        );
        assert_eq!(b.sync().await, [ServerMessage::Joined { peer: c.id() }]);
        for data in [
            "9e15",
            r#"{ "sdp" : "offer from a", "n": 1.50 }"#,
            r#""\u00e9""#,
        ] {
            let to = b.id();
            a.signal(&to, data).await;
            let expected = format!(r#"{{"type":"signal","from":"{}","data":{data}}}"#, a.id());
            assert_eq!(b.text().await, Some(expected));
        }
        a.signal("nobody", "{}").await;
        assert!(a.error().await.starts_with(r#"no peer "nobody""#));
        // Not the signal's sender: a "from" is not the client's to say.
        let to = b.id();
        let forged = format!(r#"{{"type":"signal","to":"{to}","from":"x","data":1}}"#);
        a.send(forged).await;
        assert!(a.error().await.starts_with("malformed"));
        let (c_id, c_got) = (c.id(), c.sync().await);
        assert!(
            c_got
                .iter()
                .all(|m| !matches!(m, ServerMessage::Signal { .. })),
            "{c_got:?}"
        );
        c.ws.close(None).await.expect("close");
        assert_eq!(a.message().await, Some(ServerMessage::Left { peer: c_id }));
        assert_eq!(other.sync().await, []);
        assert_eq!(b.sync().await.len(), 1, "c left");
    })
    .await;
}

#[tokio::test]
async fn a_reader_that_stalls_costs_the_server_a_bounded_outbox_then_is_closed() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut sender, _) = server.member(1, "stall").await;
        let (stalled, _) = server.member(2, "stall").await; // never reads again
        let to = stalled.id();
        assert_eq!(
            sender.message().await,
            Some(ServerMessage::Joined { peer: to.clone() })
        );
        let before = server.rss_kib();
        // 900 signals of 58 KiB: 51 MiB, within the rate limit's burst.
        let data = format!("\"{}\"", "x".repeat(58 * 1024));
        let started = Instant::now();
        let mut peak = before;
        for i in 0..900 {
            sender.signal(&to, &data).await;
            if i % 50 == 0 {
                peak = peak.max(server.rss_kib());
            }
        }
        let pushed = started.elapsed();
        // The send to the stalled reader times out (10 s): it is closed,
        // and its room hears it left, even while a send to it is blocked.
        let mut left = None;
        while started.elapsed() < Duration::from_secs(30) {
            peak = peak.max(server.rss_kib());
            match sender.got(Duration::from_millis(200)).await {
                Got::Text(text) => {
                    if let Ok(ServerMessage::Left { peer }) = serde_json::from_str(&text) {
                        left = Some((peer, started.elapsed()));
                        break;
                    }
                }
                Got::Nothing => {}
                other => panic!("the sender lost its socket: {other:?}"),
            }
        }
        let after = server.rss_kib();
        println!(
            "stalled reader: RSS {before} KiB before, peak {peak} KiB, {after} KiB after \
             51 MiB pushed in {pushed:?}; closed after {:?}",
            left.as_ref().map(|l| l.1)
        );
        let (peer, at) = left.expect("the stalled reader was never closed");
        assert_eq!(peer, to);
        assert!(
            at >= Duration::from_secs(9),
            "closed for a send timeout: {at:?}"
        );
        assert!(
            peak < before + 64 * 1024,
            "RSS went from {before} to {peak} KiB"
        );
        // The sender was not closed: what exceeded the outbox was dropped.
        assert_eq!(sender.sync().await, []);
        drop(stalled);
    })
    .await;
}

#[tokio::test]
async fn a_room_takes_max_room_peers_then_room_full_until_one_leaves() {
    bounded(async {
        let server = Server::start(&[("MAX_ROOM", "4")]);
        let mut members = Vec::new();
        for seed in 0..4 {
            members.push(server.member(seed, "crowd").await.0);
        }
        let mut late = server.client(Identity::from_seed(10)).await;
        late.join("crowd").await;
        let message = late.error().await;
        assert!(
            message.starts_with(r#"room full: "crowd" has 4 peers"#),
            "{message}"
        );
        // A reloaded tab takes its own place in a full room.
        let (_reloaded, peers) = server.member(1, "crowd").await;
        assert_eq!(peers.len(), 3);
        let gone = members[2].id();
        members.remove(2).ws.close(None).await.expect("close");
        tokio::time::sleep(Duration::from_millis(200)).await;
        late.join("crowd").await;
        match late.message().await {
            Some(ServerMessage::Peers { peers, .. }) => assert_eq!(peers.len(), 3),
            other => panic!("{other:?}"),
        }
        let notices: Vec<String> = members[0]
            .sync()
            .await
            .into_iter()
            .map(|m| match m {
                ServerMessage::Joined { peer } => format!("joined {peer}"),
                ServerMessage::Left { peer } => format!("left {peer}"),
                other => format!("{other:?}"),
            })
            .collect();
        let expected = [
            format!("joined {}", members[1].id()),
            format!("left {gone}"),
            format!("joined {}", late.id()),
        ];
        assert_eq!(notices[notices.len() - 3..], expected, "{notices:?}");
    })
    .await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_are_dropped_huge_frames_close_only_that_socket() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut a, _) = server.member(1, "room3").await;
        let (mut b, _) = server.member(2, "room3").await;
        a.message().await; // b joined
        a.send("{not json").await;
        a.send(r#"{"type":"explode"}"#).await;
        let to = b.id();
        a.signal(&to, &format!("\"{}\"", "x".repeat(70 * 1024)))
            .await;
        a.ws.send(Message::Binary(vec![1, 2, 3].into()))
            .await
            .expect("send");
        let errors: Vec<String> = a
            .sync()
            .await
            .into_iter()
            .map(|m| match m {
                ServerMessage::Error { message } => message,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("malformed"));
        assert!(errors[1].starts_with("malformed"));
        assert!(errors[2].contains("dropped: the limit is 65536"));
        assert!(errors[3].contains("JSON text"));
        // A frame over 256 KiB closes b's socket, and only it.
        let big = format!(
            r#"{{"type":"signal","to":"x","data":"{}"}}"#,
            "x".repeat(300 * 1024)
        );
        let _ = b.ws.send(Message::Text(big.into())).await;
        assert!(matches!(b.got(WAIT).await, Got::Close(_) | Got::Gone));
        assert_eq!(a.message().await, Some(ServerMessage::Left { peer: to }));
        let (_c, peers) = server.member(3, "room3").await;
        assert_eq!(peers, [a.id()], "the server still serves the room");
    })
    .await;
}

#[tokio::test]
async fn a_flooding_socket_is_told_once_then_closed_its_room_keeps_working() {
    bounded(async {
        let server = Server::start(&[]);
        let (mut a, _) = server.member(1, "flood").await;
        let (mut b, _) = server.member(2, "flood").await;
        let (mut c, _) = server.member(3, "flood").await;
        let to = b.id();
        let flood = tokio::spawn(async move {
            for i in 0..5000 {
                let text = format!(r#"{{"type":"signal","to":"{to}","data":{i}}}"#);
                if a.ws.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let mut errors = Vec::new();
            loop {
                match a.got(WAIT).await {
                    Got::Text(text) => {
                        if let Ok(ServerMessage::Error { message }) = serde_json::from_str(&text) {
                            errors.push(message);
                        }
                    }
                    end => return (errors, end),
                }
            }
        });
        let (errors, end) = flood.await.expect("flood");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("over the rate limit of 100 messages/s (burst 1000)"));
        assert!(errors[1].starts_with("closed: still flooding"));
        assert!(
            matches!(&end, Got::Close(Some((CloseCode::Policy, reason))) if reason == "flooding"),
            "{end:?}"
        );
        c.signal(&b.id(), r#""after the flood""#).await;
        let got = b.settle(Duration::from_millis(500)).await;
        let from_a = got
            .iter()
            .filter(|m| matches!(m, ServerMessage::Signal { from, .. } if *from != c.id()))
            .count();
        // The burst of 1,000 messages includes a's join; the refill at 100
        // a second adds what the flood's few seconds allow.
        assert!(
            (999..1500).contains(&from_a),
            "{from_a} of 5000 relayed: the burst, not the flood"
        );
        assert!(got.iter().any(|m| matches!(m, ServerMessage::Left { .. })));
        let c_id = c.id();
        assert!(got
            .iter()
            .any(|m| matches!(m, ServerMessage::Signal { from, data }
            if *from == c_id && data == "after the flood")));
        assert_eq!(b.sync().await, []);
    })
    .await;
}

/// A socket cycling join and leave in a room of 60, where each leave is
/// told to every member, is charged for the notices it makes the server
/// send: 600 cycles (1,200 messages, within the burst of 1,000 and its
/// refill) told a member of 600 leaves before; now of the ~80 the burst
/// pays for, plus what the refill adds while they are sent. (A helper's
/// review found 300 notices a message in a room of 300.)
#[tokio::test]
async fn a_socket_cycling_join_and_leave_is_charged_for_the_notices() {
    bounded(async {
        let server = Server::start(&[]);
        let mut members = Vec::new();
        for seed in 1..=60 {
            members.push(server.member(seed, "churn").await.0);
        }
        let mut cycler = server.client(Identity::from_seed(1000)).await;
        for _ in 0..600 {
            cycler.join("churn").await;
            cycler.send(ClientMessage::Leave.to_text()).await;
        }
        let id = cycler.id();
        // Its answers (lists, errors) end once the server read it all.
        let answers = cycler.settle(Duration::from_millis(500)).await;
        assert!(answers
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { message } if message.starts_with("over the rate limit"))));
        let heard = members[0].settle(Duration::from_millis(500)).await;
        let leaves = heard
            .iter()
            .filter(|m| matches!(m, ServerMessage::Left { peer } if *peer == id))
            .count();
        assert!(
            (1..250).contains(&leaves),
            "{leaves} leaves of 600 told: charged by message, not by notice"
        );
        // The room is still served.
        let (_late, peers) = server.member(2000, "churn").await;
        assert_eq!(peers.len(), 32);
    })
    .await;
}

/// `tests/e2e/secret.test.mjs` signs a join in Node (its Ed25519) with the
/// key of `Identity::from_seed(1)`; Node has no blake3 to derive the id,
/// so the file carries it. This keeps the two in step.
#[test]
fn the_e2e_join_fixture_is_the_identity_of_seed_1() {
    let identity = Identity::from_seed(1);
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    println!(
        "secret {} key {} id {}",
        hex(&identity.secret()),
        hex(&identity.public_key()),
        identity.peer()
    );
    let e2e = include_str!("../e2e/secret.test.mjs");
    assert!(e2e.contains(&hex(&identity.secret())));
    assert!(e2e.contains(&identity.peer().to_string()));
}

/// Binary messages refused with an answer (a socket in no room, or
/// malformed frames in a room with a secret) count against the rate
/// limit: a socket sending them without end is closed as a text flood
/// is. They skipped it, each answered with an error. (A helper's review.)
#[tokio::test]
async fn a_socket_flooding_refused_binary_messages_is_closed_like_a_text_flood() {
    bounded(async {
        let server = Server::start(&[]);
        let mut a = server.client(Identity::from_seed(1)).await;
        let flood = tokio::spawn(async move {
            for _ in 0..5000 {
                if a.ws.send(Message::Binary(vec![0; 4].into())).await.is_err() {
                    break;
                }
            }
            let mut errors = 0;
            loop {
                match a.got(WAIT).await {
                    Got::Text(_) => errors += 1,
                    end => return (errors, end),
                }
            }
        });
        let (errors, end) = flood.await.expect("flood");
        assert!(
            matches!(&end, Got::Close(Some((CloseCode::Policy, reason))) if reason == "flooding"),
            "5000 refused binary messages: {errors} errors back, then {end:?}"
        );
    })
    .await;
}

/// DNS rebinding: a site's page at `http://rebind.example:PORT` whose
/// name the attacker's DNS points at 127.0.0.1 opens
/// `ws://rebind.example:PORT/signal` on the visitor's own server. The
/// browser sends `Host: rebind.example:PORT` and `Origin:
/// http://rebind.example:PORT`, which the default check took for the
/// server's own page. (A helper's review.)
#[tokio::test]
async fn a_rebound_name_is_not_the_servers_own_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    bounded(async {
        let server = Server::start(&[]);
        let port = server
            .addr()
            .rsplit(':')
            .next()
            .expect("a port")
            .to_string();
        let name = format!("rebind.attacker.example:{port}");
        let mut request = format!("ws://{}/signal", server.addr())
            .into_client_request()
            .expect("request");
        let headers = request.headers_mut();
        headers.insert("Host", name.parse().expect("host"));
        headers.insert("Origin", format!("http://{name}").parse().expect("origin"));
        let status = status_of(
            tokio_tungstenite::connect_async(request)
                .await
                .map(|(ws, _)| ws),
        );
        assert_eq!(
            status, 403,
            "a page of http://{name} (a name rebound to 127.0.0.1) may signal"
        );
    })
    .await;
}

/// A `DATA_DIR` an earlier build made (its `rooms/` and files readable by
/// all) is made this user's only when a server starts on it.
#[cfg(unix)]
#[test]
fn an_earlier_builds_rooms_are_made_private_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("cpc-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rooms = dir.join("rooms");
    std::fs::create_dir_all(&rooms).unwrap();
    std::fs::set_permissions(&rooms, std::fs::Permissions::from_mode(0o755)).unwrap();
    let room = rooms.join("0123456789abcdef0123456789abcdef.redb");
    std::fs::write(&room, b"").unwrap();
    std::fs::set_permissions(&room, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(&[("KEEP", "on"), ("DATA_DIR", dir.to_str().unwrap())]);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&rooms), 0o700);
    assert_eq!(mode(&room), 0o600);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A room allowed more bytes than one address's share of the rooms in
/// memory could never be loaded: such settings stop the server at start.
#[test]
fn a_room_limit_past_the_memory_limit_stops_the_server_at_start() {
    let dir = std::env::temp_dir().join(format!("cpc-loaded-bytes-{}", std::process::id()));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_cpc-signal"))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("KEEP", "on")
        .env("DATA_DIR", &dir)
        .env("KEEP_MAX_ROOM_BYTES", "2000")
        .env("KEEP_MAX_LOADED_BYTES", "1000")
        .output()
        .expect("run cpc-signal");
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "it started: {said}");
    assert!(
        said.contains(
            "KEEP_MAX_ROOM_BYTES (2000) is more than KEEP_LOADED_BYTES_PER_ADDRESS (125)"
        ),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two servers on one `DATA_DIR`: the second stops at start with a clear
/// line, where it started and then failed every room the first held open
/// ("Database already open"). A server's start-up says where it keeps
/// rooms and which pages may signal; the folder is this user's only.
#[test]
fn a_second_server_on_the_same_data_dir_stops_at_start() {
    let dir = std::env::temp_dir().join(format!("cpc-two-servers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("a path");
    let first = Server::start(&[("KEEP", "on"), ("DATA_DIR", data)]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_cpc-signal"))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("KEEP", "on")
        .env("DATA_DIR", data)
        .output()
        .expect("run cpc-signal");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second started: {said}");
    assert!(
        said.contains("another cpc-signal keeps its rooms in"),
        "{said}"
    );
    let lines = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(first.stderr_with("pages may signal from"));
    let started = lines.join("\n");
    assert!(started.contains("keeping rooms as peer"), "{started}");
    assert!(
        started.contains(&*dir.canonicalize().unwrap().to_string_lossy()),
        "{started}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("rooms"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "rooms/ is this user's only");
    }
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}
