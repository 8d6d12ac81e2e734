//! Fuzzing the relay of a room with a secret, in process: pages that are
//! real `SyncNode`s of the room, on real relayed links
//! (`cpc_sync::protocol::relay`), through the server's own `handle` and
//! `relay_frame`. A member lies to another: its sync frames (the room's
//! handshake among them) mutated before it seals them, or what it sends
//! the server mutated after. Nothing panics; every relayed message is
//! forwarded or refused and counted; the other member takes no event a
//! writer did not sign, and then syncs with an honest member to the
//! writers' state.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the seed is printed and
//! `CPC_SEED=n` replays it.

use std::collections::HashMap;

use cpc_sync::protocol::relay::{address, unaddress, Received, RelayLink};
use cpc_sync::protocol::room::{KdfCost, RoomSecret};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::mutate::{self, checked_as_ours as checked};
use cpc_sync::protocol::testing::wire::{run_heavy, signed_events, unsealed};
use cpc_sync::protocol::{EngineConfig, EventId, Identity, P2PEvent, PeerId, ReconciliationEngine};
use proptest::prelude::*;

use super::fuzz::fuzz_config;
use super::outbox::Out;
use super::*;

fn secret() -> &'static RoomSecret {
    static SECRET: std::sync::OnceLock<RoomSecret> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| RoomSecret::with_cost("fuzzed", "k", KdfCost::TEST))
}

/// The writers' frames (three writers' runs), and their events by id.
type Stream = (Vec<Vec<u8>>, HashMap<EventId, P2PEvent>);

fn stream() -> &'static Stream {
    static STREAM: std::sync::OnceLock<Stream> = std::sync::OnceLock::new();
    STREAM.get_or_init(|| {
        let frames = run_heavy(3, 12, 6, 4);
        let honest = signed_events(&frames);
        (frames, honest)
    })
}

/// A member: its socket as the server sees it, its node and its links.
struct Page {
    conn: Conn,
    node: SyncNode,
    links: HashMap<PeerId, RelayLink>,
    nonces: u64,
    /// Refusals of its relayed links.
    refused: usize,
    /// Messages it handed the server.
    sent: std::cell::Cell<u64>,
    now: u64,
}

impl Page {
    /// Joins the room; `with_stream`: a member that has the writers' events.
    fn join(rooms: &Rooms, seed: u64, with_stream: bool) -> Page {
        let identity = Identity::from_seed(seed);
        let mut conn = Conn::new(rooms, [seed as u8; 32]);
        let join = ClientMessage::join(&identity, &hex(&conn.nonce), secret().room_id());
        assert_eq!(handle(rooms, &mut conn, &join.to_text()), None);
        assert!(!conn.attach, "no room peer in a room with a secret");
        let now = cpc_sync::protocol::testing::wire::WRITERS_NOW + 1_000_000;
        // A member of a room with a secret takes frames only after the
        // handshake: the writers' events go into its engine directly.
        let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        if with_stream {
            for frame in &stream().0 {
                if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(frame) {
                    for e in events {
                        engine.receive(e, now).expect("a writer's event");
                    }
                }
            }
        }
        let node = SyncNode::new(
            engine,
            SyncConfig {
                identity: Some(identity),
                room: Some(secret().clone()),
                nonce_seed: *blake3::hash(&seed.to_le_bytes()).as_bytes(),
                ..SyncConfig::default()
            },
        );
        conn.outbox.take();
        Page {
            conn,
            node,
            links: HashMap::new(),
            nonces: seed << 32,
            refused: 0,
            sent: std::cell::Cell::new(0),
            now,
        }
    }

    fn peer(&self) -> PeerId {
        self.node.peer()
    }

    fn fresh(&mut self) -> [u8; 32] {
        self.nonces += 1;
        *blake3::hash(&self.nonces.to_le_bytes()).as_bytes()
    }

    fn link(&mut self, peer: PeerId) -> &mut RelayLink {
        let nonce = self.fresh();
        let me = self.peer();
        self.links
            .entry(peer)
            .or_insert_with(|| RelayLink::new(secret(), me, peer, nonce))
    }

    /// Sends `message` to `to` through the server; whether the server
    /// forwarded it (a refusal is counted there).
    fn send(&self, rooms: &Rooms, bytes: &[u8]) -> bool {
        self.sent.set(self.sent.get() + 1);
        rooms
            .relay_frame(self.conn.joined.as_ref(), &self.conn.outbox, bytes)
            .is_ok()
    }

    fn dial(&mut self, rooms: &Rooms, peer: PeerId) {
        let hello = self.link(peer).hello();
        self.send(rooms, &address(peer, &hello));
    }

    /// Takes what the server forwarded to it.
    fn read(&mut self, rooms: &Rooms) {
        for out in self.conn.outbox.take() {
            let Out::Binary(bytes) = out else { continue };
            let Some((from, sealed)) = unaddress(&bytes) else {
                panic!("the server forwarded an unaddressed frame");
            };
            let nonce = self.fresh();
            match self.link(from).receive(sealed, || nonce) {
                Ok(Received::Opened { reply, .. }) => {
                    if let Some(reply) = reply {
                        self.send(rooms, &address(from, &reply));
                    }
                    let channel = self.link(from).channel().expect("open");
                    self.node.connect_over(from, &channel, self.now);
                }
                Ok(Received::Frame(frame)) => self.node.receive_frame(from, &frame, self.now),
                Ok(Received::Ignored) => {}
                Err(_) => self.refused += 1,
            }
        }
    }

    /// Seals and sends what the node has to send, each frame `tamper`ed
    /// first (what goes into the seal) and its message then (what the
    /// server is handed).
    fn flush(&mut self, rooms: &Rooms, tamper: &mut dyn FnMut(Vec<u8>, bool) -> Vec<u8>) -> usize {
        let mut sent = 0;
        for _ in 0..8 {
            let outputs = self.node.take_outputs();
            if outputs.is_empty() {
                break;
            }
            for output in outputs {
                match output {
                    Output::Send { to, frame } => {
                        let frame = tamper(frame, false);
                        let Some(link) = self.links.get_mut(&to).filter(|l| l.is_open()) else {
                            continue;
                        };
                        let Ok(sealed) = link.seal(&frame) else {
                            continue;
                        };
                        let message = tamper(address(to, &sealed), true);
                        self.send(rooms, &message);
                        sent += 1;
                    }
                    Output::Close { peer, .. } => {
                        self.links.remove(&peer);
                    }
                    _ => {}
                }
            }
        }
        sent
    }

    fn step(&mut self, ms: u64) {
        self.now += ms;
        if self.node.next_timer() <= self.now {
            self.node.tick(self.now);
        }
    }

    /// Every event it holds is one a writer signed.
    fn holds_only_signed(&self) -> Result<(), TestCaseError> {
        let honest = &stream().1;
        for e in self.node.engine().log().iter() {
            prop_assert!(
                honest.get(&e.id) == Some(&unsealed(e)),
                "{} took an event no writer signed: {:?}",
                self.peer(),
                e
            );
        }
        Ok(())
    }
}

fn honest(frame: Vec<u8>, _: bool) -> Vec<u8> {
    frame
}

/// Runs `pages` (`liar` tampering with what it sends) for `ms` of their
/// time, 10 at a time.
fn run(
    rooms: &Rooms,
    pages: &mut [&mut Page],
    ms: u64,
    tamper: &mut dyn FnMut(Vec<u8>, bool) -> Vec<u8>,
) {
    for _ in 0..ms / 10 {
        for (i, page) in pages.iter_mut().enumerate() {
            page.read(rooms);
            if i == 0 {
                page.flush(rooms, tamper);
            } else {
                page.flush(rooms, &mut honest);
            }
            page.step(10);
        }
    }
}

/// One edit of a frame (`testing::mutate::edit`): `(kind, where, a byte, a length)`.
type Edit = (u8, prop::sample::Index, u8, usize);

fn edit(frame: &mut Vec<u8>, (kind, at, byte, len): Edit) {
    // Seven kinds: the one that copies from another frame is left out.
    mutate::edit(frame, kind % 7, |n| at.index(n), byte, len, |_| 0, &[]);
}

/// Which of the liar's outgoing frames are changed, and how: the `n`th
/// sent (counted over sealed frames and messages apart), whether in the
/// seal (`false`) or the message after, its edits, its check made right
/// again, and a bit of its body flipped with the check made right (an
/// event or its run's seal changed in a frame that still decodes).
type Lie = (
    usize,
    bool,
    Vec<Edit>,
    bool,
    Option<(prop::sample::Index, u8)>,
);

fn lie() -> impl Strategy<Value = Lie> {
    let edit = (
        any::<u8>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<usize>(),
    );
    (
        0usize..10,
        prop::bool::weighted(0.3),
        prop::collection::vec(edit, 0..4),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.5, (any::<prop::sample::Index>(), any::<u8>())),
    )
}

/// Every relayed message: forwarded, or refused and counted.
fn relay_counted(rooms: &Rooms) -> u64 {
    rooms
        .relay_readings()
        .iter()
        .filter(|r| r.name == "relayed_frames" || r.name == "relay_refused")
        .map(|r| r.value)
        .sum()
}

fn check(lies: Vec<Lie>) -> Result<(), TestCaseError> {
    let rooms = Rooms::new(Config {
        max_room: 8,
        origins: Origins::Own,
    });
    let mut liar = Page::join(&rooms, 1, true);
    let mut other = Page::join(&rooms, 2, false);
    liar.dial(&rooms, other.peer());
    type Change = (Vec<Edit>, bool, Option<(prop::sample::Index, u8)>);
    let lies: HashMap<(usize, bool), Change> = lies
        .into_iter()
        .map(|(n, after, edits, check, forge)| ((n, after), (edits, check, forge)))
        .collect();
    let mut count = [0usize; 2];
    let mut tamper = |frame: Vec<u8>, after: bool| {
        let n = count[usize::from(after)];
        count[usize::from(after)] += 1;
        match lies.get(&(n, after)) {
            Some((edits, check, forge)) => {
                let mut frame = frame;
                for e in edits {
                    edit(&mut frame, *e);
                }
                if *check && !after {
                    frame = checked(frame);
                }
                if let Some((at, bit)) = forge.filter(|_| !after && frame.len() > 6) {
                    let at = 2 + at.index(frame.len() - 6);
                    frame[at] ^= 1 << (bit % 8);
                    frame = checked(frame);
                }
                frame
            }
            None => frame,
        }
    };
    run(&rooms, &mut [&mut liar, &mut other], 3_000, &mut tamper);
    prop_assert!(count[1] > 0, "the liar's link never opened");
    // Each message either sent was forwarded, or refused and counted.
    let sent = liar.sent.get() + other.sent.get();
    prop_assert_eq!(relay_counted(&rooms), sent, "relayed messages uncounted");
    other.holds_only_signed()?;

    // An honest member with the writers' events: the other member ends
    // with exactly its state.
    let mut member = Page::join(&rooms, 3, true);
    member.dial(&rooms, other.peer());
    let reference = member.node.engine().state_json();
    run(&rooms, &mut [&mut member, &mut other], 5_000, &mut honest);
    other.holds_only_signed()?;
    prop_assert_eq!(other.node.engine().state_json(), reference);
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config("fuzz_relay", 512))]

    /// A member's frames to another, mutated inside the seal or outside
    /// it: the other takes no event a writer did not sign, and syncs on
    /// with an honest member.
    #[test]
    fn a_lying_member_on_the_relay_spreads_no_unsigned_event(
        lies in prop::collection::vec(lie(), 1..6),
    ) {
        check(lies)?;
    }
}

/// Without a lie the two members sync through the relay (the fuzz's
/// baseline: its checks are reached).
#[test]
fn members_sync_through_the_relay() {
    let rooms = Rooms::new(Config {
        max_room: 8,
        origins: Origins::Own,
    });
    let mut a = Page::join(&rooms, 1, true);
    let mut b = Page::join(&rooms, 2, false);
    a.dial(&rooms, b.peer());
    run(&rooms, &mut [&mut a, &mut b], 3_000, &mut honest);
    assert_eq!(b.refused, 0);
    assert_eq!(b.node.engine().state_json(), a.node.engine().state_json());
    assert_eq!(b.node.engine().log().iter().count(), stream().1.len());
}
