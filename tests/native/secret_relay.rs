//! The relay of rooms with a secret, against a real `cpc-signal`: two
//! clients that are real `SyncNode`s link through the server with sealed
//! frames (`cpc_sync::protocol::relay`), run the room's secret handshake
//! inside the link and sync both ways; the server forwards ciphertext as
//! from the id each socket proved, and a third member cannot inject.
//!
//! `cargo test --features server --test native secret_relay::`.

use crate::common;
use crate::server;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cpc_sync::protocol::relay::{address, unaddress, Received, RelayLink};
use cpc_sync::protocol::room::{KdfCost, RoomSecret};
use cpc_sync::protocol::signal::{ClientMessage, ServerMessage};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message as WireMessage};
use cpc_sync::protocol::sync::{LocalWrite, Output, SyncConfig, SyncNode};
use cpc_sync::protocol::{Identity, JsonValue, PeerId};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use server::{Server, Ws};

const BUDGET: Duration = Duration::from_secs(30);
const MARKER: &str = "plaintext-the-server-must-not-see";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn next_text(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// A client of the room: its socket, its sync node, a relayed link per
/// peer, and what each link refused.
struct Page {
    ws: Ws,
    node: SyncNode,
    room: RoomSecret,
    links: HashMap<PeerId, RelayLink>,
    nonces: u64,
    /// Every relayed message the server handed this page, as it came.
    wire: Vec<Vec<u8>>,
    refused: Vec<(PeerId, String)>,
    /// Frames the links opened, by sender.
    accepted: HashMap<PeerId, usize>,
    /// What the first frames the links opened were, in order.
    first: Vec<&'static str>,
}

impl Page {
    async fn join(server: &Server, seed: u64, room: RoomSecret) -> Page {
        let identity = Identity::from_seed(seed);
        let mut ws = server.connect(None).await.expect("connect");
        let Some(ServerMessage::Hello { nonce }) = next_text(&mut ws).await else {
            panic!("no hello")
        };
        let join = ClientMessage::join(&identity, &nonce, room.room_id());
        ws.send(Message::Text(join.to_text().into()))
            .await
            .expect("join");
        assert!(matches!(
            next_text(&mut ws).await,
            Some(ServerMessage::Peers { .. })
        ));
        let config = SyncConfig {
            room: Some(room.clone()),
            nonce_seed: *blake3::hash(&seed.to_le_bytes()).as_bytes(),
            ..SyncConfig::default()
        };
        Page {
            ws,
            node: common::signed_node(seed, config),
            room,
            links: HashMap::new(),
            nonces: seed << 32,
            wire: Vec::new(),
            refused: Vec::new(),
            accepted: HashMap::new(),
            first: Vec::new(),
        }
    }

    fn fresh(&mut self) -> [u8; 32] {
        self.nonces += 1;
        *blake3::hash(&self.nonces.to_le_bytes()).as_bytes()
    }

    fn link(&mut self, peer: PeerId) -> &mut RelayLink {
        let nonce = self.fresh();
        let (room, me) = (&self.room, self.node.peer());
        self.links
            .entry(peer)
            .or_insert_with(|| RelayLink::new(room, me, peer, nonce))
    }

    async fn send(&mut self, to: PeerId, message: &[u8]) {
        let bytes = address(to, message);
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Opens the relayed link to `peer` (its hello).
    async fn dial(&mut self, peer: PeerId) {
        let hello = self.link(peer).hello();
        self.send(peer, &hello).await;
    }

    /// Sends what the node has to send, sealed.
    async fn flush(&mut self) {
        for output in self.node.take_outputs() {
            if let Output::Send { to, frame } = output {
                let Some(link) = self.links.get_mut(&to).filter(|l| l.is_open()) else {
                    continue;
                };
                let sealed = link.seal(&frame).expect("seal");
                self.send(to, &sealed).await;
            }
        }
    }

    /// One message from the server, if one comes soon.
    async fn hear(&mut self) {
        let wait = Duration::from_millis(20);
        let Ok(Some(Ok(message))) = tokio::time::timeout(wait, self.ws.next()).await else {
            self.node.tick(now_ms());
            return;
        };
        let Message::Binary(bytes) = message else {
            return;
        };
        self.wire.push(bytes.to_vec());
        let (from, sealed) = unaddress(&bytes).expect("an addressed frame");
        let nonce = self.fresh();
        let received = self.link(from).receive(sealed, || nonce);
        match received {
            Ok(Received::Opened { reply, .. }) => {
                if let Some(reply) = reply {
                    self.send(from, &reply).await;
                }
                // Bound to the link's keys, as the browser's edge binds it.
                let channel = self.link(from).channel().expect("open");
                self.node.connect_over(from, &channel, now_ms());
            }
            Ok(Received::Frame(frame)) => {
                *self.accepted.entry(from).or_default() += 1;
                if self.first.len() < 2 {
                    self.first.push(match wire::decode(&frame) {
                        Ok(Decoded::Message(WireMessage::Hello { .. })) => "hello",
                        Ok(Decoded::Message(WireMessage::Proof(_))) => "proof",
                        _ => "other",
                    });
                }
                self.node.receive_frame(from, &frame, now_ms());
            }
            Ok(Received::Ignored) => {}
            Err(e) => self.refused.push((from, e.to_string())),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.node.engine().state_json().contains(key)
    }
}

async fn run(pages: &mut [&mut Page], done: impl Fn(&[&mut Page]) -> bool) {
    let deadline = Instant::now() + BUDGET;
    while !done(pages) {
        assert!(Instant::now() < deadline, "the pages did not get there");
        for page in pages.iter_mut() {
            page.flush().await;
            page.hear().await;
        }
    }
}

fn set(page: &mut Page, key: &str, value: &str) {
    let value = JsonValue::parse(&format!("\"{value}\"")).expect("json");
    page.node
        .apply(
            LocalWrite::Set {
                key: key.into(),
                value,
            },
            now_ms(),
        )
        .expect("write");
}

#[tokio::test]
async fn two_pages_sync_through_the_relay_and_a_third_cannot_inject() {
    let server = Server::start(&[]);
    let room = RoomSecret::with_cost("team", "a long secret", KdfCost::TEST);
    let mut a = Page::join(&server, 1, room.clone()).await;
    let mut b = Page::join(&server, 2, room.clone()).await;
    // The third knows the room's id (the server's name for it), not the
    // secret: it joins, and tries its best.
    let mut c = {
        let identity = Identity::from_seed(3);
        let mut ws = server.connect(None).await.expect("connect");
        let Some(ServerMessage::Hello { nonce }) = next_text(&mut ws).await else {
            panic!("no hello")
        };
        let join = ClientMessage::join(&identity, &nonce, room.room_id());
        ws.send(Message::Text(join.to_text().into())).await.unwrap();
        ws
    };
    let (ida, idb, idc) = (a.node.peer(), b.node.peer(), Identity::from_seed(3).peer());
    a.dial(idb).await;
    set(&mut a, "from-a", MARKER);
    run(&mut [&mut a, &mut b], |p| p[1].has("from-a")).await;
    set(&mut b, "from-b", "b's");
    run(&mut [&mut a, &mut b], |p| p[0].has("from-b")).await;
    assert_eq!(a.node.engine().state_json(), b.node.engine().state_json());
    assert!(b.refused.is_empty(), "{:?}", b.refused);
    // What the server handed on was ciphertext, stamped with the sender.
    assert!(b.wire.iter().all(|m| unaddress(m).unwrap().0 == ida));
    let marker = MARKER.as_bytes();
    assert!(!b
        .wire
        .iter()
        .any(|m| m.windows(marker.len()).any(|w| w == marker)));
    // The secret handshake ran inside the link, first: each node's first
    // frames are its nonce and its proof (tests/native/handshake.rs).
    assert_eq!(a.first, ["hello", "proof"]);
    assert_eq!(b.first, ["hello", "proof"]);
    assert!(a.accepted[&idb] > 2 && b.accepted[&ida] > 2);

    // C replays what B got from A, names A as the recipient's sender,
    // sends junk and a hello under the wrong secret: the server stamps
    // C's id on all of it, and B's links take none.
    let before = b.node.engine().state_json();
    let mut injected = b.wire.clone();
    injected.push(address(ida, b"junk"));
    injected.push(vec![2; 40]);
    let forged = RelayLink::new(
        &RoomSecret::with_cost("team", "a guess", KdfCost::TEST),
        idc,
        idb,
        [9; 32],
    );
    injected.push(address(idb, &forged.hello()));
    for message in &injected {
        let body = unaddress(message).map_or(&message[..], |(_, rest)| rest);
        c.send(Message::Binary(address(idb, body).into()))
            .await
            .unwrap();
    }
    let count = b.wire.len();
    let deadline = Instant::now() + BUDGET;
    while b.wire.len() < count + injected.len() {
        assert!(Instant::now() < deadline, "C's frames did not arrive");
        b.hear().await;
    }
    assert!(b.wire[count..]
        .iter()
        .all(|m| unaddress(m).unwrap().0 == idc));
    assert_eq!(b.accepted.get(&idc), None, "B took a frame from C");
    assert!(!b.links.get(&idc).is_some_and(RelayLink::is_open));
    assert_eq!(b.refused.len(), injected.len(), "{:?}", b.refused);
    assert_eq!(b.node.engine().state_json(), before);
    // A and B go on.
    set(&mut a, "after", "x");
    run(&mut [&mut a, &mut b], |p| p[1].has("after")).await;

    // To no one in the room, and from a socket in no room: refused,
    // counted; the server relayed every frame of A's and B's.
    c.send(Message::Binary(address(PeerId(0x42), b"x").into()))
        .await
        .unwrap();
    let mut lone = server.connect(None).await.expect("connect");
    lone.send(Message::Binary(address(ida, b"x").into()))
        .await
        .unwrap();
    let said = loop {
        match next_text(&mut lone).await {
            Some(ServerMessage::Error { message }) => break message,
            Some(_) => continue,
            None => panic!("no refusal"),
        }
    };
    assert!(said.contains("join one first"), "{said}");
    let deadline = Instant::now() + BUDGET;
    loop {
        let metrics = server.metrics().await;
        let line = |needle: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(needle))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let relayed = line("cpc_signal_relayed_frames_total");
        let unknown = line("cpc_signal_relay_refused_total{reason=\"unknown_recipient\"}");
        let unjoined = line("cpc_signal_relay_refused_total{reason=\"not_joined\"}");
        let expected = (a.wire.len() + b.wire.len()) as u64;
        if relayed >= expected && unknown == 1 && unjoined == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "metrics: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
