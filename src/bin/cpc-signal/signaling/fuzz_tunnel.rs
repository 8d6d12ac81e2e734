//! Fuzzing the room peer through the tunnel of a page's socket, in
//! process: the server's own `handle` and `attach`, a real `Keep` on a
//! temporary `DATA_DIR` (its rooms on their threads, their redb files),
//! and pages that are real `SyncNode`s reading their sockets' outboxes.
//! No network; the room's time is the wall clock.
//!
//! A liar page sends frames of a signed stream (three writers' runs) and
//! of every message kind (the handshake's, snapshot requests for the
//! room's real snapshot, ...), mutated. The room peer never panics, never
//! stores or floods to another page an event no writer signed, counts
//! what it refuses, cuts the liar off only having counted, and then
//! loads again from its store (a restart) and serves honest pages to the
//! writers' state.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the seed is printed and
//! `CPC_SEED=n` replays it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpc_sync::protocol::sync::gzip::{gunzip_at_most, gzip};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::mutate::{self, checked_as_ours as checked};
use cpc_sync::protocol::testing::wire::{neighbour, signed_events, signed_stream, unsealed};
use cpc_sync::protocol::{
    EngineConfig, EventId, Identity, P2PEvent, PeerId, ReconciliationEngine, VectorClock,
};
use proptest::prelude::*;

use super::fuzz::fuzz_config;
use super::outbox::Out;
use super::*;
use crate::keep::{Keep, KeepConfig, KeepStats};

const ROOM: &str = "fuzzed";
/// A wait for pages to get somewhere: beyond it the case fails.
const BUDGET: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A `DATA_DIR` of its own, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> DataDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cpc-fuzz-tunnel-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server's rooms with the room peer, as `main` puts them together.
fn server(data: &DataDir, compact_after: usize) -> (Rooms, Arc<Keep>) {
    let config = KeepConfig {
        data_dir: data.0.clone(),
        idle: Duration::from_millis(20),
        compact_after,
        ..KeepConfig::default()
    };
    let keep = Arc::new(Keep::open(config).expect("the room peer opens its DATA_DIR"));
    let rooms = Rooms::new(Config {
        max_room: 16,
        origins: Origins::Own,
    })
    .with_keep(keep.clone());
    (rooms, keep)
}

/// Unloads the room (its pages gone, it idles out) and drops the server:
/// what a stop does to the store. Waits for the rooms' tasks to let go of
/// the room peer too: it holds `DATA_DIR/lock` until the last of them
/// does, and a server opened on the folder before then is refused.
async fn stop(rooms: Rooms, keep: Arc<Keep>) {
    drop(rooms);
    let deadline = Instant::now() + BUDGET;
    while keep.stats().loaded > 0 || Arc::strong_count(&keep) > 1 {
        assert!(Instant::now() < deadline, "the room never unloaded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(keep);
}

/// A page: its socket as the server sees it, and its node.
struct Page {
    conn: Conn,
    node: SyncNode,
    keeper: Option<PeerId>,
    unkept: Option<String>,
    /// Every event the room peer sent it.
    got: Vec<P2PEvent>,
    /// Every message the room peer sent it.
    heard: Vec<Message>,
    /// The clock of each digest the room peer sent it: the first is
    /// what the room peer held when the page linked.
    digests: Vec<VectorClock>,
}

fn signed(seed: u64) -> SyncNode {
    let identity = Identity::from_seed(seed);
    let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            gzip_snapshots: true,
            ..SyncConfig::default()
        },
    )
}

impl Page {
    /// Joins `ROOM` with `node`'s identity (`seed`'s) and links to the
    /// room peer.
    async fn join(rooms: &Rooms, seed: u64, node: SyncNode) -> Page {
        let mut conn = Conn::new(rooms, [seed as u8; 32]);
        let join = ClientMessage::join(&Identity::from_seed(seed), &hex(&conn.nonce), ROOM);
        assert_eq!(handle(rooms, &mut conn, &join.to_text()), None);
        assert!(std::mem::take(&mut conn.attach), "a room peer to attach");
        attach(rooms, &mut conn).await;
        let mut page = Page {
            conn,
            node,
            keeper: None,
            unkept: None,
            got: Vec::new(),
            heard: Vec::new(),
            digests: Vec::new(),
        };
        page.read();
        assert!(page.keeper.is_some(), "not linked: {:?}", page.unkept);
        page
    }

    /// What the room peer queued for this page, taken in.
    fn read(&mut self) {
        let now = now_ms();
        for out in self.conn.outbox.take() {
            match out {
                Out::Text(text) => match serde_json::from_str(&text) {
                    Ok(ServerMessage::Keep { peer }) => {
                        let peer: PeerId = peer.parse().expect("the room peer's id");
                        self.keeper = Some(peer);
                        self.node.connect(peer, now);
                    }
                    Ok(ServerMessage::Unkeep { reason }) => {
                        if let Some(keeper) = self.keeper.take() {
                            self.node.disconnect(keeper);
                        }
                        self.unkept = Some(reason);
                    }
                    _ => {}
                },
                Out::Binary(frame) => {
                    if let Ok(Decoded::Message(message)) = wire::decode(&frame) {
                        match &message {
                            Message::Events(events) => self.got.extend(events.iter().cloned()),
                            Message::Digest { clock, .. } => self.digests.push(clock.clone()),
                            _ => {}
                        }
                        self.heard.push(message);
                    }
                    if let Some(keeper) = self.keeper {
                        self.node.receive_frame(keeper, &frame, now);
                    }
                }
                Out::Close(..) => {}
            }
        }
    }

    /// Reads, then sends what the node has to send through the tunnel.
    async fn pump(&mut self) {
        self.read();
        let now = now_ms();
        if self.node.next_timer() <= now {
            self.node.tick(now);
        }
        for _ in 0..8 {
            let outputs = self.node.take_outputs();
            if outputs.is_empty() {
                break;
            }
            for output in outputs {
                match output {
                    Output::Send { frame, .. } => {
                        if let Some(tunnel) = &self.conn.tunnel {
                            tunnel.frame(frame).await;
                        }
                    }
                    Output::GzipSnapshot { bytes } => {
                        self.node.snapshot_gzipped(&bytes, gzip(&bytes));
                    }
                    Output::GunzipSnapshot { id, bytes, limit } => {
                        let inflated = gunzip_at_most(&bytes, limit);
                        self.node.snapshot_gunzipped(id, inflated, now);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Whether it holds all the room peer says it has, and the room peer
    /// all it has (as the room peer's last digest says: one came).
    fn level(&self) -> bool {
        let Some(keeper) = self.keeper else {
            return false;
        };
        let mine = self.node.engine().clock();
        !self.digests.is_empty()
            && self
                .node
                .remote_view(keeper)
                .is_some_and(|(theirs, _)| mine.descends(theirs) && theirs.descends(mine))
    }

    /// Whether it has what the room peer held when it linked.
    fn has_first(&self) -> bool {
        self.digests
            .first()
            .is_some_and(|first| self.node.engine().clock().descends(first))
    }
}

/// What the room peer holds now: the clock of the digest it sends a page
/// that links.
async fn room_clock(rooms: &Rooms, seed: u64) -> VectorClock {
    let mut probe = Page::join(rooms, seed, signed(seed)).await;
    let heard = run_until(&mut [&mut probe], |p| !p[0].digests.is_empty()).await;
    assert!(heard, "the room peer sent a newcomer no digest");
    probe.digests[0].clone()
}

/// Pumps `pages` until `done` holds of them (or the budget).
async fn run_until(pages: &mut [&mut Page], done: impl Fn(&[&mut Page]) -> bool) -> bool {
    let deadline = Instant::now() + BUDGET;
    loop {
        for page in pages.iter_mut() {
            page.pump().await;
        }
        if done(pages) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The signed stream the native fuzzers mutate (`signed_stream`): three
/// writers' runs, one a frame and then three; a digest and two queries.
fn stream() -> &'static [Vec<u8>] {
    static STREAM: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    STREAM.get_or_init(signed_stream)
}

/// The stream's events, as their writers signed them (seal aside: a run
/// carries one).
fn honest() -> &'static HashMap<EventId, P2PEvent> {
    static HONEST: std::sync::OnceLock<HashMap<EventId, P2PEvent>> = std::sync::OnceLock::new();
    HONEST.get_or_init(|| signed_events(stream()))
}

/// Whether every writer signed `e` as it is.
fn is_signed(e: &P2PEvent) -> bool {
    honest().get(&e.id) == Some(&unsealed(e))
}

/// A node that took the whole stream: an honest page of the room.
fn with_stream(seed: u64) -> SyncNode {
    let mut node = signed(seed);
    node.connect(neighbour(), 0);
    for frame in stream() {
        node.receive_frame(neighbour(), frame, now_ms());
    }
    node.disconnect(neighbour());
    node.take_outputs();
    assert_eq!(node.engine().log().iter().count(), honest().len());
    node
}

/// Frames of every other message kind, to mutate; `heard` (what the room
/// peer sent the liar) adds requests for the snapshot it offers and
/// answers to its queries.
fn kinds(heard: &[Message]) -> Vec<Vec<u8>> {
    let mut e = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    e.set(
        "r",
        cpc_sync::protocol::JsonValue::parse("[1,2]").expect("json"),
        10,
    )
    .expect("a write");
    let snapshot = e.encode_snapshot();
    let id = e.digest();
    let mut messages = vec![
        Message::SnapshotRequest { id, offset: 0 },
        Message::SnapshotOffer {
            id,
            total: snapshot.len() as u64,
            clock: e.clock().clone(),
            gzip: Some(wire::Gzipped { id, total: 17 }),
        },
        Message::SnapshotChunk {
            id,
            offset: 0,
            total: snapshot.len() as u64,
            bytes: snapshot,
        },
        Message::MerkleNodes {
            depth: 1,
            index: 0,
            children: vec![id; 4],
        },
        Message::LeafState {
            index: 7,
            state: e.leaf_state(7).encode(),
        },
        Message::Ping { sent_ms: 5 },
        Message::Pong { sent_ms: 5 },
        Message::Hello { nonce: [7; 32] },
        Message::Proof(cpc_sync::protocol::room::Proof {
            key: [1; 32],
            mac: [2; 32],
            signature: [[3; 32], [4; 32]],
            channel: [5; 32],
        }),
        Message::Prune,
        Message::IHave(vec![(PeerId(3), 4)]),
        Message::Graft(vec![(PeerId(3), 1)]),
    ];
    for message in heard {
        match message {
            Message::SnapshotOffer {
                id, total, gzip, ..
            } => {
                messages.push(Message::SnapshotRequest { id: *id, offset: 0 });
                messages.push(Message::SnapshotRequest {
                    id: *id,
                    offset: total / 2,
                });
                if let Some(g) = gzip {
                    messages.push(Message::SnapshotRequest {
                        id: g.id,
                        offset: 0,
                    });
                }
            }
            Message::MerkleQuery { depth, index } => messages.push(Message::MerkleNodes {
                depth: *depth,
                index: *index,
                children: Vec::new(),
            }),
            Message::Digest { .. } | Message::Hello { .. } => messages.push(message.clone()),
            _ => {}
        }
    }
    messages.iter().flat_map(|m| wire::encode(m, 9)).collect()
}

/// One edit of a frame: `(kind, where, a byte, a length, another frame's
/// place)`, as `testing::mutate::edit` takes it.
type Edit = (u8, prop::sample::Index, u8, usize, prop::sample::Index);

fn edit(frame: &mut Vec<u8>, (kind, at, byte, len, from): Edit, other: &[u8]) {
    mutate::edit(
        frame,
        kind,
        |n| at.index(n),
        byte,
        len,
        |n| from.index(n),
        other,
    );
}

/// A bit of a frame's body flipped, and the check made right: an event
/// or its run's seal changed in a frame that still decodes, mostly (a
/// forgery, or a lie about what a writer wrote).
fn forged(mut frame: Vec<u8>, at: prop::sample::Index, bit: u8) -> Vec<u8> {
    if frame.len() > 6 {
        let at = 2 + at.index(frame.len() - 6);
        frame[at] ^= 1 << (bit % 8);
    }
    checked(frame)
}

/// One frame the liar sends: from the stream or another kind, its edits,
/// whether its check is made right, a forgery of its seal, and the
/// milliseconds after the last.
type Bad = (
    bool,
    prop::sample::Index,
    Vec<Edit>,
    bool,
    Option<(prop::sample::Index, u8)>,
    u64,
);

fn bad() -> impl Strategy<Value = Bad> {
    let edit = (
        any::<u8>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<usize>(),
        any::<prop::sample::Index>(),
    );
    (
        prop::bool::weighted(0.6),
        any::<prop::sample::Index>(),
        prop::collection::vec(edit, 0..4),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.3, (any::<prop::sample::Index>(), any::<u8>())),
        prop_oneof![3 => Just(0u64), 1 => 1u64..4],
    )
}

/// Waits until the room took every frame sent so far (its count of
/// frames in stands still), then a verify window more.
async fn settled(keep: &Keep) -> KeepStats {
    let mut last = keep.stats().frames_in;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = keep.stats();
        if now.frames_in == last {
            return now;
        }
        last = now.frames_in;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// The case: `before` stream frames from an honest page first (so the
/// room has a log, and with `compact_after` small a snapshot to offer),
/// then the liar's frames, `rounds` times; checks, a restart from the
/// store, and an honest page's sync.
async fn check(
    before: usize,
    compact_after: usize,
    frames: Vec<Bad>,
    rounds: usize,
) -> Result<(), TestCaseError> {
    let data = DataDir::new();
    let (rooms, keep) = server(&data, compact_after);
    // An observer, linked throughout: what the room floods to it.
    let mut observer = Page::join(&rooms, 30, signed(30)).await;
    if before > 0 {
        let mut early = signed(31);
        early.connect(neighbour(), 0);
        for frame in &stream()[..before.min(stream().len())] {
            early.receive_frame(neighbour(), frame, now_ms());
        }
        early.disconnect(neighbour());
        early.take_outputs();
        let mut early = Page::join(&rooms, 31, early).await;
        let synced = run_until(&mut [&mut early, &mut observer], |p| {
            p[0].level() && p[1].level()
        })
        .await;
        prop_assert!(
            synced,
            "an honest page's first writes never reached the room"
        );
    }

    let mut liar = Page::join(&rooms, 20, signed(20)).await;
    liar.read();
    let pool: Vec<Vec<u8>> = stream().to_vec();
    let others = kinds(&liar.heard);
    'send: for _ in 0..rounds {
        for (from_stream, which, edits, check, forge, dt) in &frames {
            let source = if *from_stream { &pool } else { &others };
            let original = &source[which.index(source.len())];
            let mut frame = original.clone();
            for e in edits {
                edit(&mut frame, *e, original);
            }
            if *check {
                frame = checked(frame);
            }
            if let Some((at, bit)) = forge {
                frame = forged(frame, *at, *bit);
            }
            let Some(tunnel) = &liar.conn.tunnel else {
                break 'send;
            };
            tunnel.frame(frame).await;
            if *dt > 0 {
                tokio::time::sleep(Duration::from_millis(*dt)).await;
            }
            observer.pump().await;
            // (its node hears, but says nothing)
            liar.read();
            if liar.unkept.is_some() {
                break 'send;
            }
        }
    }
    let stats = settled(&keep).await;
    liar.read();
    // Refusals are counted; a cut-off comes after counted ones.
    if let Some(reason) = &liar.unkept {
        prop_assert!(
            reason.starts_with("closed by the server peer"),
            "{}",
            reason
        );
        prop_assert!(
            stats.rejected > 0,
            "cut off ({}) with nothing counted",
            reason
        );
        let refused = stats
            .refused
            .iter()
            .find(|(r, _)| *r == "closed")
            .map_or(0, |r| r.1);
        prop_assert_eq!(refused, 0, "a cut-off is not a refused link");
        // Cut off: what it sends now is not even taken in.
        if let Some(tunnel) = &liar.conn.tunnel {
            tunnel.frame(stream()[0].clone()).await;
        }
        let after = settled(&keep).await;
        prop_assert_eq!(
            after.frames_in,
            stats.frames_in,
            "a cut-off page's frame taken"
        );
    }
    // The observer's link, and the liar's unless it was cut off (the
    // early page left).
    let links = 1 + u64::from(liar.unkept.is_none());
    prop_assert_eq!(keep.stats().links, links, "links counted");
    // The observer got no event a writer did not sign.
    let synced = run_until(&mut [&mut observer], |p| p[0].level()).await;
    prop_assert!(synced, "the observer never levelled with the room peer");
    if let Some(e) = observer.got.iter().find(|e| !is_signed(e)) {
        prop_assert!(
            false,
            "the room peer flooded an event no writer signed: {:?}",
            e
        );
    }

    // What the room peer holds, all taken in (a verify window is 2 ms).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let acknowledged = room_clock(&rooms, 35).await;

    // The room peer stops; it loads again from its store alone, with all
    // it acknowledged.
    drop((liar, observer));
    stop(rooms, keep).await;
    let (rooms, keep) = server(&data, compact_after);
    let mut reader = Page::join(&rooms, 40, signed(40)).await;
    let synced = run_until(&mut [&mut reader], |p| p[0].has_first()).await;
    prop_assert!(
        synced,
        "a reader never caught up with the reloaded room peer"
    );
    check_signed(&reader.node)?;
    prop_assert_eq!(
        &reader.digests[0],
        &acknowledged,
        "the store lost or gained events"
    );
    if let Some(e) = reader.got.iter().find(|e| !is_signed(e)) {
        prop_assert!(
            false,
            "the reloaded room peer sent an event no writer signed: {:?}",
            e
        );
    }
    prop_assert_eq!(keep.stats().refused.iter().map(|r| r.1).sum::<u64>(), 0);

    // An honest page with the whole stream: the room peer, and the reader
    // through it, end with exactly its state.
    let mut writer = Page::join(&rooms, 50, with_stream(50)).await;
    let reference = writer.node.engine().state_json();
    let synced = run_until(&mut [&mut writer, &mut reader], |p| {
        p[0].level() && p[1].level() && p[1].node.engine().clock() == p[0].node.engine().clock()
    })
    .await;
    prop_assert!(
        synced,
        "the honest pages never synced through the room peer: {:?} vs {:?}",
        reader.node.engine().clock(),
        writer.node.engine().clock()
    );
    prop_assert_eq!(reader.node.engine().state_json(), reference.clone());
    prop_assert_eq!(writer.node.engine().state_json(), reference);
    drop((reader, writer));
    stop(rooms, keep).await;
    Ok(())
}

/// Every event `node` holds is one a writer signed, and its clock claims
/// nothing beyond them.
fn check_signed(node: &SyncNode) -> Result<(), TestCaseError> {
    if let Some(e) = node.engine().log().iter().find(|e| !is_signed(e)) {
        prop_assert!(
            false,
            "{} holds an event no writer signed: {:?}",
            node.peer(),
            e
        );
    }
    let mut writers = VectorClock::new();
    for id in honest().keys() {
        writers.observe(id.peer, id.seq);
    }
    for (origin, seq) in node.engine().clock().iter() {
        prop_assert!(
            seq <= writers.get(origin),
            "clock claims {}:{}",
            origin,
            seq
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config("fuzz_tunnel", 12))]

    /// A page's mutated frames through its tunnel: refused and counted,
    /// never stored or flooded unsigned; the room peer reloads from its
    /// store and an honest page syncs through it to the writers' state.
    #[test]
    fn mutated_frames_through_the_tunnel_are_refused_and_the_room_serves_on(
        before in prop_oneof![Just(0usize), 1usize..12],
        compact_after in prop::sample::select(vec![4usize, 9, 50_000]),
        frames in prop::collection::vec(bad(), 1..10),
        rounds in prop_oneof![2 => Just(1usize), 1 => 2usize..12],
    ) {
        runtime().block_on(check(before, compact_after, frames, rounds))?;
    }
}

/// A page that forges seals (a signature byte flipped, the check made
/// right) is cut off at its fourth forgery, each counted, and nothing of
/// it is stored.
#[test]
fn four_forgeries_through_the_tunnel_cut_the_page_off() {
    runtime().block_on(async {
        let data = DataDir::new();
        let (rooms, keep) = server(&data, 50_000);
        let mut liar = Page::join(&rooms, 20, signed(20)).await;
        let mut sent = 0;
        for frame in stream().iter().take(8) {
            let mut frame = frame.clone();
            let at = frame.len() - 5;
            frame[at] ^= 1;
            if let Some(tunnel) = &liar.conn.tunnel {
                tunnel.frame(checked(frame)).await;
                sent += 1;
            }
            settled(&keep).await;
            liar.read();
            if liar.unkept.is_some() {
                break;
            }
        }
        let stats = keep.stats();
        assert!(liar.unkept.is_some(), "not cut off after {sent} forgeries");
        assert_eq!((sent, stats.rejected), (4, 4));
        assert_eq!(stats.events_persisted, 0);
        assert_eq!(stats.links, 0);
        drop(liar);
        stop(rooms, keep).await;
    });
}
