//! The room peer of `cpc-signal` (`KEEP`), against a real server process
//! and a real redb database on disk, with clients that are real
//! `SyncNode`s speaking over the `/signal` WebSocket as pages do: what it
//! keeps survives a restart and a `kill -9` mid-write, idle rooms unload
//! and load again, its limits refuse with clear reasons, and bad input is
//! refused and counted without reaching the disk.
//!
//! `cargo test --features server --test native keep::`.

use crate::common;
use crate::server;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cpc_sync::protocol::signal::{ClientMessage, ServerMessage};
use cpc_sync::protocol::sync::gzip::{gunzip_at_most, gzip};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message as WireMessage, PROTOCOL_VERSION};
use cpc_sync::protocol::sync::{LocalWrite, Output, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::Rng;
use cpc_sync::protocol::{
    EngineConfig, Identity, JsonValue, P2PEvent, PeerId, ReconciliationEngine, VectorClock,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use server::{Server, Ws};

/// A wait for a link to reach what a test expects: beyond it the test
/// fails (a bound on a hang, not a measure of speed).
const BUDGET: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A data directory of its own, removed on drop.
pub(crate) struct DataDir(PathBuf);

impl DataDir {
    pub(crate) fn new(test: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!("cpc-keep-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn keeping(data: &DataDir, more: &[(&str, &str)]) -> Server {
    let mut env = vec![("KEEP", "on"), ("DATA_DIR", data.path())];
    env.extend_from_slice(more);
    Server::start(&env)
}

/// A client that joins a room as a page does and syncs with the room's
/// peer over the socket.
pub(crate) struct Page {
    pub(crate) ws: Ws,
    pub(crate) node: SyncNode,
    /// The room peer, once linked.
    pub(crate) keeper: Option<PeerId>,
    /// Why the room peer would not keep the room, or hung up.
    pub(crate) unkept: Option<String>,
    /// The room peer's last digest: what it acknowledges having (it sends
    /// nothing that reflects an event before the event is on its disk).
    acked: VectorClock,
    /// Snapshots that came gzipped (pages and the room peer gzip them).
    gunzipped: usize,
}

impl Page {
    pub(crate) async fn join(server: &Server, identity: Identity, room: &str) -> Page {
        Page::join_with(server, identity, room, &[]).await
    }

    /// Joins over a socket whose upgrade carries `headers`.
    pub(crate) async fn join_with(
        server: &Server,
        identity: Identity,
        room: &str,
        headers: &[(&'static str, &str)],
    ) -> Page {
        let mut ws = server.connect_with(headers).await.expect("connect");
        let nonce = match next_text(&mut ws).await {
            Some(ServerMessage::Hello { nonce }) => nonce,
            other => panic!("expected a hello, got {other:?}"),
        };
        let join = ClientMessage::join(&identity, &nonce, room);
        ws.send(Message::Text(join.to_text().into()))
            .await
            .expect("join");
        let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        let config = SyncConfig {
            identity: Some(identity),
            gzip_snapshots: true,
            ..SyncConfig::default()
        };
        let mut page = Page {
            ws,
            node: SyncNode::new(engine, config),
            keeper: None,
            unkept: None,
            acked: VectorClock::new(),
            gunzipped: 0,
        };
        // Until the room peer links, or says it will not.
        while page.keeper.is_none() && page.unkept.is_none() {
            match next_text(&mut page.ws).await {
                Some(message) => page.hear(message),
                None => panic!("the socket closed before the room peer answered"),
            }
        }
        page
    }

    /// Takes the same node to another server (after a restart).
    async fn rejoin(mut self, server: &Server, identity: Identity, room: &str) -> Page {
        let mut fresh = Page::join(server, identity, room).await;
        if let Some(old) = self.keeper {
            self.node.disconnect(old);
        }
        if let Some(keeper) = fresh.keeper {
            self.node.connect(keeper, now_ms());
        }
        fresh.node = self.node;
        fresh.acked = VectorClock::new();
        fresh
    }

    fn hear(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Keep { peer } => {
                let peer: PeerId = peer.parse().expect("the room peer's id");
                self.keeper = Some(peer);
                self.node.connect(peer, now_ms());
            }
            ServerMessage::Unkeep { reason } => {
                if let Some(keeper) = self.keeper.take() {
                    self.node.disconnect(keeper);
                }
                self.unkept = Some(reason);
            }
            _ => {}
        }
    }

    fn me(&self) -> PeerId {
        self.node.peer()
    }

    /// Writes `count` registers under `prefix`.
    fn write(&mut self, prefix: &str, count: usize) {
        self.write_padded(prefix, count, 40);
    }

    /// Writes `count` registers under `prefix`, each `pad` bytes and more.
    fn write_padded(&mut self, prefix: &str, count: usize, pad: usize) {
        for i in 0..count {
            let key = format!("{prefix}/{i}");
            let value = JsonValue::parse(&format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(pad)))
                .expect("json");
            self.node
                .apply(LocalWrite::Set { key, value }, now_ms())
                .expect("write");
        }
    }

    /// How many of `origin`'s events the room peer said it has.
    fn acknowledged(&self, origin: PeerId) -> u64 {
        self.acked.get(origin)
    }

    /// Sends what the node has to send, and gzips or inflates snapshots
    /// as a page's edge does.
    async fn flush(&mut self) -> bool {
        for output in self.node.take_outputs() {
            match output {
                Output::Send { frame, .. } => {
                    let sent = self.ws.send(Message::Binary(frame.into())).await;
                    if sent.is_err() {
                        return false;
                    }
                }
                Output::GzipSnapshot { bytes } => {
                    self.node.snapshot_gzipped(&bytes, gzip(&bytes));
                }
                Output::GunzipSnapshot { id, bytes, limit } => {
                    self.gunzipped += 1;
                    let inflated = gunzip_at_most(&bytes, limit);
                    self.node.snapshot_gunzipped(id, inflated, now_ms());
                }
                _ => {}
            }
        }
        true
    }

    /// Runs the link until `done`, or the socket ends, or the budget.
    pub(crate) async fn run_until(&mut self, mut done: impl FnMut(&mut Page) -> bool) -> bool {
        let deadline = Instant::now() + BUDGET;
        loop {
            if !self.flush().await {
                return false;
            }
            if done(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            let wait = self.node.next_timer().saturating_sub(now_ms()).clamp(1, 50);
            match tokio::time::timeout(Duration::from_millis(wait), self.ws.next()).await {
                Err(_) => self.node.tick(now_ms()),
                Ok(Some(Ok(Message::Binary(frame)))) => {
                    let Some(keeper) = self.keeper else {
                        panic!("a frame from no room peer")
                    };
                    if let Ok(Decoded::Message(WireMessage::Digest { clock, .. })) =
                        wire::decode(&frame)
                    {
                        self.acked = clock;
                    }
                    self.node.receive_frame(keeper, &frame, now_ms());
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(message) = serde_json::from_str(&text) {
                        self.hear(message);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(None | Some(Err(_))) => return false,
            }
        }
    }

    /// Writes batches of 1,000 registers, each acknowledged, until the room
    /// peer hangs up; its reason.
    async fn fill(&mut self) -> String {
        let me = self.me();
        let mut round = 0;
        while self.unkept.is_none() {
            self.write(&format!("big{round}"), 1000);
            round += 1;
            let written = self.node.engine().clock().get(me);
            let settled = self
                .run_until(|p| p.unkept.is_some() || p.acknowledged(me) >= written)
                .await;
            assert!(settled, "neither acknowledged nor refused");
        }
        self.unkept.clone().unwrap_or_default()
    }

    /// Runs the link until this page has all the room peer has.
    pub(crate) async fn catch_up(&mut self) -> bool {
        self.run_until(|p| {
            let Some(keeper) = p.keeper else { return false };
            let mine = p.node.engine().clock().clone();
            p.node
                .remote_view(keeper)
                .is_some_and(|(theirs, _)| mine.descends(theirs))
        })
        .await
    }
}

/// Bytes `room` takes on disk once written to (a server of its own writes
/// one event there, then is killed); the room stays in `data`.
async fn one_room_on_disk(data: &DataDir, room: &str) -> u64 {
    let mut probe = keeping(data, &[]);
    let mut page = Page::join(&probe, Identity::from_seed(40), room).await;
    page.write("first", 1);
    let me = page.me();
    assert!(page.run_until(|p| p.acknowledged(me) >= 1).await);
    let bytes = probe.reading("cpc_signal_keep_disk_bytes").await;
    probe.kill();
    bytes
}

async fn next_text(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(BUDGET, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Binary(_)) | Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_outlives_its_pages_and_the_server_restarts_from_disk() {
    let data = DataDir::new("restart");
    // The log folds into a snapshot every 200 events: the restart loads a
    // snapshot and the events after it.
    let folding = [("KEEP_COMPACT_AFTER", "200")];
    let mut server = keeping(&data, &folding);
    let writer_id = Identity::from_seed(11);
    let mut writer = Page::join(&server, writer_id, "notes").await;
    assert!(writer.keeper.is_some(), "{:?}", writer.unkept);
    writer.write("note", 500);
    let me = writer.me();
    assert!(writer.run_until(|p| p.acknowledged(me) >= 500).await);
    let digest = writer.node.digest();
    drop(writer);
    server.kill();

    let server = keeping(&data, &folding);
    let mut reader = Page::join(&server, Identity::from_seed(12), "notes").await;
    assert!(reader.catch_up().await);
    assert_eq!(reader.node.engine().clock().get(me), 500);
    assert_eq!(reader.node.digest(), digest);
    assert!(server.reading("cpc_signal_keep_rooms_stored").await >= 1);
}

/// A newcomer behind the room peer's fold takes its snapshot gzipped (the
/// room peer gzips it on its blocking pool, as a page's edge would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_the_room_peers_snapshot_gzipped() {
    let data = DataDir::new("gzip");
    let server = keeping(&data, &[("KEEP_COMPACT_AFTER", "200")]);
    let mut writer = Page::join(&server, Identity::from_seed(21), "gzipped").await;
    writer.write("note", 1_000);
    let me = writer.me();
    assert!(writer.run_until(|p| p.acknowledged(me) >= 1_000).await);
    // The room peer folds at its first quiet tick.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let digest = writer.node.digest();
    drop(writer);

    let mut reader = Page::join(&server, Identity::from_seed(22), "gzipped").await;
    assert!(reader.catch_up().await);
    assert_eq!(reader.node.digest(), digest);
    assert_eq!(reader.gunzipped, 1, "the room peer's snapshot came gzipped");
}

/// A newcomer that reads its frames slowly is sent what it lacks as it
/// reads, not cut off: a room of large values owes it more than the
/// 16 MiB of frames a page may have waiting, and the room peer sends
/// while its socket's queue is below a megabyte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_that_reads_slowly_is_paced_not_cut_off() {
    let data = DataDir::new("paced");
    let server = keeping(&data, &[]);
    let mut writer = Page::join(&server, Identity::from_seed(31), "paced").await;
    let me = writer.me();
    // 1,500 values of 20 KB, 30 MB, in runs of 50 (a run goes whole: the
    // answer can be sliced at each run's end).
    for round in 0..30 {
        writer.write_padded(&format!("big{round}"), 50, 20_000);
        assert!(writer.flush().await);
    }
    assert!(writer.run_until(|p| p.acknowledged(me) >= 1_500).await);
    let digest = writer.node.digest();
    drop(writer);

    let mut reader = Page::join(&server, Identity::from_seed(32), "paced").await;
    assert!(
        reader
            .run_until(|p| p.node.engine().clock().get(me) > 0)
            .await
    );
    // It stops reading while the answer is under way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let caught_up = reader.catch_up().await;
    assert_eq!(reader.unkept, None, "cut off");
    assert!(caught_up);
    assert_eq!(reader.node.digest(), digest);
    assert_eq!(reader.node.engine().clock().get(me), 1_500);
    let backlogs = server.reading("cpc_signal_keep_backlogs_total").await;
    assert!(backlogs > 0, "the answer never waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_loses_nothing_the_room_peer_acknowledged() {
    let seed = common::seed("kill_9_mid_write");
    let mut rng = Rng::new(seed);
    let kills: usize = std::env::var("CPC_KEEP_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let data = DataDir::new("kill9");
    // Folds happen between kills too: a snapshot replaces the log in the
    // same kind of transaction.
    let folding = [("KEEP_COMPACT_AFTER", "1000")];
    let mut server = keeping(&data, &folding);
    let writer_id = Identity::from_seed(21);
    let mut writer = Page::join(&server, writer_id.clone(), "crash").await;
    let me = writer.me();
    for round in 0..kills {
        // Bursts of writes, the link run between them; the server dies
        // right after a random one, its commit likely in flight.
        let bursts = 3 + rng.below(30);
        for burst in 0..bursts {
            writer.write(&format!("r{round}/b{burst}"), 1 + rng.below(200));
            let until = now_ms() + 20 + rng.below(80) as u64;
            writer.run_until(|_| now_ms() >= until).await;
        }
        writer.flush().await;
        let acknowledged = writer.acknowledged(me);
        server.kill();
        println!(
            "round {round}: killed with {} written, {acknowledged} acknowledged",
            writer.node.engine().clock().get(me)
        );

        server = keeping(&data, &folding);
        let mut reader =
            Page::join(&server, Identity::from_seed(1000 + round as u64), "crash").await;
        assert!(
            reader.catch_up().await,
            "round {round}: the reader did not catch up"
        );
        let kept = reader.node.engine().clock().get(me);
        assert!(
            kept >= acknowledged,
            "round {round} (seed {seed}): {acknowledged} acknowledged, {kept} kept"
        );
        writer = writer.rejoin(&server, writer_id.clone(), "crash").await;
    }
    // And the writer's last events all reach the restarted peer.
    let written = writer.node.engine().clock().get(me);
    assert!(writer.run_until(|p| p.acknowledged(me) >= written).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_room_is_unloaded_then_loaded_on_the_next_join() {
    let data = DataDir::new("idle");
    let server = keeping(&data, &[("KEEP_IDLE_MS", "100")]);
    let mut writer = Page::join(&server, Identity::from_seed(31), "idle").await;
    let me = writer.me();
    writer.write("k", 50);
    assert!(writer.run_until(|p| p.acknowledged(me) >= 50).await);
    drop(writer);
    let deadline = Instant::now() + BUDGET;
    while server.reading("cpc_signal_keep_unloads_total").await < 1 {
        assert!(
            Instant::now() < deadline,
            "the idle room was never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.reading("cpc_signal_keep_rooms_loaded").await, 0);
    let mut reader = Page::join(&server, Identity::from_seed(32), "idle").await;
    assert!(reader.catch_up().await);
    assert_eq!(reader.node.engine().clock().get(me), 50);
    assert_eq!(server.reading("cpc_signal_keep_loads_total").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_new_rooms_and_full_rooms_with_a_clear_reason() {
    let data = DataDir::new("limits");
    // What a new room's database takes, to set the limit just above.
    let empty = one_room_on_disk(&data, "one").await;
    let max_room = (empty + 500_000).to_string();
    let server = keeping(
        &data,
        &[("KEEP_MAX_ROOMS", "1"), ("KEEP_MAX_ROOM_BYTES", &max_room)],
    );
    let mut first = Page::join(&server, Identity::from_seed(41), "one").await;
    assert!(first.keeper.is_some());
    let other = Page::join(&server, Identity::from_seed(42), "two").await;
    let reason = other.unkept.expect("a second room is refused");
    assert!(reason.contains("at most 1 rooms"), "{reason}");
    // A room that grows past its bytes is cut off, and stays so.
    let reason = first.fill().await;
    assert!(reason.contains("KEEP_MAX_ROOM_BYTES"), "{reason}");
    // Refused at the join when the file is at the limit already, else at
    // the first write that would pass it.
    let mut again = Page::join(&server, Identity::from_seed(43), "one").await;
    let reason = match again.unkept.clone() {
        Some(reason) => reason,
        None => again.fill().await,
    };
    assert!(reason.contains("KEEP_MAX_ROOM_BYTES"), "{reason}");
    assert!(
        server
            .reading("cpc_signal_keep_refused_total{reason=\"room_too_large\"}")
            .await
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_refused_counted_and_cut_off_and_a_secret_room_is_never_kept() {
    let data = DataDir::new("bad");
    let server = keeping(&data, &[]);
    let mut page = Page::join(&server, Identity::from_seed(51), "bad").await;
    assert!(page.keeper.is_some());
    // Frames of this protocol version that fail their checksum: a point
    // each, cut off at 100.
    for i in 0..150u32 {
        let mut frame = vec![PROTOCOL_VERSION, 0];
        frame.extend_from_slice(&i.to_le_bytes());
        frame.extend_from_slice(&[7; 8]);
        if page.ws.send(Message::Binary(frame.into())).await.is_err() {
            break;
        }
    }
    assert!(page.run_until(|p| p.unkept.is_some()).await);
    let reason = page.unkept.clone().unwrap_or_default();
    assert!(reason.contains("closed by the server peer"), "{reason}");
    assert!(server.reading("cpc_signal_keep_rejected_total").await >= 100);
    assert_eq!(
        server
            .reading("cpc_signal_keep_events_persisted_total")
            .await,
        0
    );
    // A room with a secret goes by an opaque `secret-` id: no room peer
    // answers there, the server stores nothing of it.
    let mut secret = server.connect(None).await.expect("connect");
    let identity = Identity::from_seed(52);
    let Some(ServerMessage::Hello { nonce }) = next_text(&mut secret).await else {
        panic!("no hello")
    };
    let room = "secret-00112233445566778899aabbccddeeff";
    let join = ClientMessage::join(&identity, &nonce, room);
    secret
        .send(Message::Text(join.to_text().into()))
        .await
        .expect("join");
    secret
        .send(Message::Text(ClientMessage::Ping.to_text().into()))
        .await
        .expect("ping");
    loop {
        match next_text(&mut secret).await {
            Some(ServerMessage::Pong) => break,
            Some(ServerMessage::Keep { .. } | ServerMessage::Unkeep { .. }) => {
                panic!("the room peer answered in a secret room")
            }
            Some(_) => {}
            None => panic!("the socket closed"),
        }
    }
    // Joined, never written: no file.
    assert_eq!(server.reading("cpc_signal_keep_rooms_stored").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_forging_another_origin_is_cut_off_and_nothing_reaches_disk() {
    let data = DataDir::new("forge");
    let server = keeping(&data, &[]);
    let mut mallory = Page::join(&server, Identity::from_seed(61), "forged").await;
    let victim = Identity::from_seed(62).peer();
    // Her own sealed events, renamed to be the victim's: the seal no
    // longer vouches for them (25 points each, cut off at 100).
    for round in 0..10 {
        if mallory.unkept.is_some() {
            break;
        }
        mallory.write(&format!("forged{round}"), 3);
        for output in mallory.node.take_outputs() {
            let Output::Send { frame, .. } = output else {
                continue;
            };
            let Ok(Decoded::Message(WireMessage::Events(mut events))) = wire::decode(&frame) else {
                continue;
            };
            for event in &mut events {
                event.id.peer = victim;
            }
            for frame in wire::encode(&WireMessage::Events(events), round) {
                mallory
                    .ws
                    .send(Message::Binary(frame.into()))
                    .await
                    .expect("send");
            }
        }
        let until = now_ms() + 50;
        mallory
            .run_until(|p| p.unkept.is_some() || now_ms() >= until)
            .await;
    }
    assert!(mallory.run_until(|p| p.unkept.is_some()).await);
    let reason = mallory.unkept.clone().unwrap_or_default();
    assert!(reason.contains("closed by the server peer"), "{reason}");
    assert!(server.reading("cpc_signal_keep_rejected_total").await >= 4);
    // An honest newcomer sees none of it: what reached the disk is
    // Mallory's own genuine events (anti-entropy fetched them from her
    // with their true origin), not one in the victim's name.
    let persisted = server
        .reading("cpc_signal_keep_events_persisted_total")
        .await;
    let mut reader = Page::join(&server, Identity::from_seed(63), "forged").await;
    assert!(reader.catch_up().await);
    assert_eq!(reader.node.engine().clock().get(mallory.me()), persisted);
    assert_eq!(reader.node.engine().clock().get(victim), 0);
}

/// The figures of BENCHMARKS.md's "Issue 18" (not a check; run it with
/// `cargo test --release --features server --test native keep::figures --
/// --ignored --nocapture`): durable events/s through the room peer, a
/// newcomer's time to the full state of 100k entities from it, and the
/// server's memory per loaded and per unloaded room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn figures() {
    let entities: usize = std::env::var("CPC_KEEP_ENTITIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let data = DataDir::new("figures");
    let server = keeping(&data, &[("KEEP_IDLE_MS", "300")]);
    let idle_rss = server.rss_kib();

    // Small rooms: one page each, a write each.
    const ROOMS: usize = 50;
    let mut pages = Vec::new();
    for i in 0..ROOMS {
        let mut page = Page::join(
            &server,
            Identity::from_seed(100 + i as u64),
            &format!("small{i}"),
        )
        .await;
        page.write("k", 1);
        let me = page.me();
        assert!(page.run_until(|p| p.acknowledged(me) >= 1).await);
        pages.push(page);
    }
    let loaded_rss = server.rss_kib();
    drop(pages);
    while server.reading("cpc_signal_keep_rooms_loaded").await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unloaded_rss = server.rss_kib();
    println!(
        "memory: {idle_rss} KiB at start; {ROOMS} small rooms loaded: +{:.0} KiB a room; \
         unloaded: +{:.1} KiB a room",
        (loaded_rss.saturating_sub(idle_rss)) as f64 / ROOMS as f64,
        (unloaded_rss.saturating_sub(idle_rss)) as f64 / ROOMS as f64,
    );

    // One writer: `entities` registers, in bursts of 1,000 (a page's
    // burst of writes is one sealed run), acknowledged by digests.
    let mut writer = Page::join(&server, Identity::from_seed(7), "big").await;
    let me = writer.me();
    let before = server.rss_kib();
    let base = server
        .reading("cpc_signal_keep_events_persisted_total")
        .await;
    let commits = server.reading("cpc_signal_keep_commits_total").await;
    let started = Instant::now();
    for burst in 0..entities.div_ceil(1000) {
        writer.write(&format!("e{burst}"), 1000.min(entities - burst * 1000));
        writer.flush().await;
    }
    let written = writer.node.engine().clock().get(me);
    // Until the server says they are on disk (polled every 10 ms), then
    // until its digest acknowledges them (digests go out once a second).
    while server
        .reading("cpc_signal_keep_events_persisted_total")
        .await
        < base + written as u64
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let durable = started.elapsed();
    assert!(writer.run_until(|p| p.acknowledged(me) >= written).await);
    let acknowledged = started.elapsed();
    println!(
        "durable: {written} events from one page on disk in {:.2} s: {:.0} events/s, in {} \
         commits; acknowledged by a digest after {:.2} s",
        durable.as_secs_f64(),
        written as f64 / durable.as_secs_f64(),
        server.reading("cpc_signal_keep_commits_total").await - commits,
        acknowledged.as_secs_f64(),
    );
    let big_rss = server.rss_kib();
    println!(
        "memory: the room of {written} entities loaded: +{} KiB",
        big_rss.saturating_sub(before)
    );
    drop(writer);
    while server.reading("cpc_signal_keep_rooms_loaded").await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("memory: after it unloaded: {} KiB", server.rss_kib());

    // A newcomer: the room loads from disk, then syncs to the newcomer.
    let started = Instant::now();
    let mut newcomer = Page::join(&server, Identity::from_seed(8), "big").await;
    let linked = started.elapsed();
    assert!(newcomer.catch_up().await);
    let took = started.elapsed();
    assert_eq!(newcomer.node.engine().clock().get(me), written);
    println!(
        "newcomer: full state of {written} entities in {:.2} s (the room loaded from disk \
         and linked in {:.2} s of it)",
        took.as_secs_f64(),
        linked.as_secs_f64()
    );
    drop(newcomer);
    for cycle in 0..3 {
        while server.reading("cpc_signal_keep_rooms_loaded").await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "memory: after it loaded and unloaded again ({cycle}): {} KiB",
            server.rss_kib()
        );
        let mut again = Page::join(&server, Identity::from_seed(9 + cycle), "big").await;
        assert!(again.catch_up().await);
    }
    println!(
        "disk: {} bytes for the rooms",
        server.reading("cpc_signal_keep_disk_bytes").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_limit_cuts_off_a_room_that_would_pass_it_and_keeps_what_was_acknowledged() {
    let data = DataDir::new("disk");
    let one_room = one_room_on_disk(&data, "x").await;
    let max_disk = (one_room + 400_000).to_string();
    let server = keeping(&data, &[("KEEP_MAX_DISK_BYTES", &max_disk)]);
    let mut writer = Page::join(&server, Identity::from_seed(81), "x").await;
    let reason = writer.fill().await;
    assert!(reason.contains("KEEP_MAX_DISK_BYTES"), "{reason}");
    let acknowledged = writer.acknowledged(writer.me());
    assert!(acknowledged > 0, "something fitted before the limit");
    // What it acknowledged before refusing is there for the next page.
    let mut reader = Page::join(&server, Identity::from_seed(82), "x").await;
    assert!(reader.keeper.is_some(), "{:?}", reader.unkept);
    assert!(reader.catch_up().await);
    assert!(reader.node.engine().clock().get(writer.me()) >= acknowledged);
}

/// What the rooms in memory hold is bounded by their databases' bytes
/// together (`KEEP_MAX_LOADED_BYTES`), not only by their number: a
/// stranger writing a room of millions of tiny keys made the server hold
/// ~6 times its file in memory, 1.5 GiB for a 258 MB room, and a few such
/// rooms loaded at once took the host's memory (a helper's review). A
/// stored room that does not fit is not loaded, a room growing past it is
/// cut off as at the disk limit, and a room loads once another unloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_in_memory_are_bounded_in_bytes_not_only_in_number() {
    let data = DataDir::new("loaded-bytes");
    one_room_on_disk(&data, "x").await;
    one_room_on_disk(&data, "y").await;
    // Each room's bytes once loaded (redb may grow a file as it opens it).
    let mut probe = keeping(&data, &[]);
    let _x = Page::join(&probe, Identity::from_seed(90), "x").await;
    let one_room = probe.reading("cpc_signal_keep_loaded_bytes").await;
    let _y = Page::join(&probe, Identity::from_seed(90), "y").await;
    assert_eq!(
        probe.reading("cpc_signal_keep_loaded_bytes").await,
        2 * one_room
    );
    probe.kill();
    let max = (one_room * 3 / 2).to_string();
    let server = keeping(
        &data,
        &[
            ("KEEP_MAX_LOADED_BYTES", &max),
            ("KEEP_LOADED_BYTES_PER_ADDRESS", &max),
            ("KEEP_MAX_ROOM_BYTES", &max),
            ("KEEP_IDLE_MS", "300"),
        ],
    );
    let x = Page::join(&server, Identity::from_seed(91), "x").await;
    assert!(x.keeper.is_some(), "{:?}", x.unkept);
    let y = Page::join(&server, Identity::from_seed(92), "y").await;
    let reason = y
        .unkept
        .expect("a stored room past the budget is not loaded");
    assert!(reason.contains("KEEP_MAX_LOADED_BYTES"), "{reason}");
    assert_eq!(
        server.reading("cpc_signal_keep_loaded_bytes").await,
        one_room
    );
    // A new room has no file and loads; its writes are cut off at the budget.
    let mut z = Page::join(&server, Identity::from_seed(93), "z").await;
    assert!(z.keeper.is_some(), "{:?}", z.unkept);
    let reason = z.fill().await;
    assert!(reason.contains("KEEP_MAX_LOADED_BYTES"), "{reason}");
    assert!(server.reading("cpc_signal_keep_loaded_bytes").await <= one_room * 3 / 2);
    // Once the others unload, `y` loads.
    drop((x, z));
    while server.reading("cpc_signal_keep_rooms_loaded").await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.reading("cpc_signal_keep_loaded_bytes").await, 0);
    let y = Page::join(&server, Identity::from_seed(94), "y").await;
    assert!(y.keeper.is_some(), "{:?}", y.unkept);
}

/// `rooms` written on disk in `data`, and the bytes one of them takes
/// once loaded (redb may grow a file as it opens it).
async fn rooms_on_disk(data: &DataDir, rooms: &[&str]) -> u64 {
    for room in rooms {
        one_room_on_disk(data, room).await;
    }
    let mut probe = keeping(data, &[]);
    let _page = Page::join(&probe, Identity::from_seed(90), rooms[0]).await;
    let bytes = probe.reading("cpc_signal_keep_loaded_bytes").await;
    probe.kill();
    bytes
}

/// A server on `data` keeping `max` bytes of rooms in memory, `share` of
/// them (and a room's at most) an address's, behind a trusted proxy at
/// 127.0.0.1 (pages name their address in `X-Forwarded-For`).
fn behind_a_proxy(data: &DataDir, share: u64, max: u64) -> Server {
    let (share, max) = (share.to_string(), max.to_string());
    keeping(
        data,
        &[
            ("KEEP_MAX_LOADED_BYTES", &max),
            ("KEEP_LOADED_BYTES_PER_ADDRESS", &share),
            ("KEEP_MAX_ROOM_BYTES", &share),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
}

/// A page of `room` joining from `address` through the proxy.
async fn join_from(server: &Server, seed: u64, room: &str, address: &str) -> Page {
    let headers = [("X-Forwarded-For", address)];
    Page::join_with(server, Identity::from_seed(seed), room, &headers).await
}

/// One address has a share of the bytes in memory: a stranger had filled
/// the whole budget from one address by joining two stored rooms (after
/// writing them once), and cut off every room whose next commit did not
/// fit (a review). Its share full, it is refused, and other addresses
/// still load theirs. (Addresses as a trusted proxy names them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_takes_its_share_of_the_bytes_in_memory_not_all() {
    let data = DataDir::new("loaded-share");
    let one_room = rooms_on_disk(&data, &["x", "y", "w"]).await;
    let server = behind_a_proxy(&data, one_room * 3 / 2, one_room * 4);
    let x = join_from(&server, 91, "x", "203.0.113.7").await;
    assert!(x.keeper.is_some(), "{:?}", x.unkept);
    let y = join_from(&server, 92, "y", "203.0.113.7").await;
    let reason = y.unkept.expect("past its share");
    assert!(reason.contains("KEEP_LOADED_BYTES_PER_ADDRESS"), "{reason}");
    let w = join_from(&server, 93, "w", "198.51.100.4").await;
    assert!(w.keeper.is_some(), "another address: {:?}", w.unkept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_in_memory_are_bounded_and_a_room_that_is_only_joined_takes_no_file() {
    let data = DataDir::new("loaded");
    let server = keeping(&data, &[("KEEP_MAX_LOADED", "1")]);
    let first = Page::join(&server, Identity::from_seed(71), "a").await;
    assert!(first.keeper.is_some());
    let second = Page::join(&server, Identity::from_seed(72), "b").await;
    let reason = second.unkept.expect("a second loaded room is refused");
    assert!(reason.contains("KEEP_MAX_LOADED"), "{reason}");
    assert_eq!(server.reading("cpc_signal_keep_rooms_stored").await, 0);
    // The room in memory still takes its page.
    let again = Page::join(&server, Identity::from_seed(73), "a").await;
    assert!(again.keeper.is_some());
}

/// One client address gets its share of the room peer, not all of it: a
/// socket joining room after room held every loaded slot for
/// `KEEP_IDLE_MS`, and one client writing in room after room filled
/// `KEEP_MAX_ROOMS` for good (a helper's review). Every page here comes
/// from 127.0.0.1, one address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_loads_and_starts_only_its_share_of_rooms() {
    let data = DataDir::new("shares");
    let server = keeping(
        &data,
        &[
            ("KEEP_LOADED_PER_ADDRESS", "2"),
            ("KEEP_NEW_ROOMS_PER_ADDRESS", "1"),
        ],
    );
    let mut first = Page::join(&server, Identity::from_seed(91), "s1").await;
    let mut second = Page::join(&server, Identity::from_seed(92), "s2").await;
    assert!(first.keeper.is_some() && second.keeper.is_some());
    let third = Page::join(&server, Identity::from_seed(93), "s3").await;
    let reason = third.unkept.expect("a third room loaded for the address");
    assert!(reason.contains("KEEP_LOADED_PER_ADDRESS"), "{reason}");
    // A room loaded already takes the address's pages all the same.
    let again = Page::join(&server, Identity::from_seed(94), "s1").await;
    assert!(again.keeper.is_some(), "{:?}", again.unkept);
    // The first room written starts a stored room; the second is refused.
    first.write("a", 10);
    let me = first.me();
    assert!(first.run_until(|p| p.acknowledged(me) >= 10).await);
    let reason = second.fill().await;
    assert!(reason.contains("KEEP_NEW_ROOMS_PER_ADDRESS"), "{reason}");
    assert_eq!(server.reading("cpc_signal_keep_rooms_stored").await, 1);
    for reason in ["address_loaded", "address_started"] {
        let refused = format!("cpc_signal_keep_refused_total{{reason=\"{reason}\"}}");
        assert!(server.reading(&refused).await >= 1, "{reason}");
    }
}

/// Behind a proxy listed in `TRUSTED_PROXIES`, the room peer's shares
/// count each client by the last address of its `X-Forwarded-For` (the
/// one the proxy appended), so two clients of one proxy each start their
/// room; one client writing another address before it is still itself.
/// Unlisted, every page is the proxy's address, and the second is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_clients_each_get_their_share() {
    for trusted in [true, false] {
        let data = DataDir::new(if trusted { "proxied" } else { "unproxied" });
        let proxies = if trusted {
            "10.9.9.9, 127.0.0.1"
        } else {
            "10.9.9.9"
        };
        let server = keeping(
            &data,
            &[
                ("KEEP_NEW_ROOMS_PER_ADDRESS", "1"),
                ("TRUSTED_PROXIES", proxies),
            ],
        );
        let server = &server;
        let join = |seed, room, forwarded| async move {
            let headers = [("X-Forwarded-For", forwarded)];
            Page::join_with(server, Identity::from_seed(seed), room, &headers).await
        };
        let mut first = join(101, "p1", "203.0.113.7").await;
        first.write("a", 10);
        let me = first.me();
        assert!(first.run_until(|p| p.acknowledged(me) >= 10).await);
        // The second client's header starts with the first's address:
        // only the last entry counts.
        let mut second = join(102, "p2", "203.0.113.7, 198.51.100.4").await;
        if trusted {
            second.write("a", 10);
            let me = second.me();
            assert!(second.run_until(|p| p.acknowledged(me) >= 10).await);
            let stored = server.reading("cpc_signal_keep_rooms_stored").await;
            assert_eq!(stored, 2, "each client started its room");
        } else {
            let reason = second.fill().await;
            assert!(reason.contains("KEEP_NEW_ROOMS_PER_ADDRESS"), "{reason}");
            let stored = server.reading("cpc_signal_keep_rooms_stored").await;
            assert_eq!(stored, 1, "one address: the proxy's");
        }
    }
}

/// A stranger that loads an honest room first (a bare join, its share
/// near full) does not make the room's writes its own: when a room's
/// growth was charged to the address that loaded it, the honest writer
/// was cut off with `AddressMemory` (a review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_loading_a_room_first_does_not_cut_off_its_writers() {
    let data = DataDir::new("loader");
    let one_room = rooms_on_disk(&data, &["x", "f"]).await;
    let server = behind_a_proxy(&data, one_room * 2, one_room * 16);
    let server = &server;
    let join = |seed, room, address| join_from(server, seed, room, address);
    // The stranger: bare joins of its filler and of the honest room.
    let f = join(91, "f", "203.0.113.66").await;
    assert!(f.keeper.is_some(), "{:?}", f.unkept);
    let sx = join(92, "x", "203.0.113.66").await;
    assert!(sx.keeper.is_some(), "{:?}", sx.unkept);
    // An honest page of another address writes ten events in `x`.
    let mut honest = join(93, "x", "198.51.100.4").await;
    assert!(honest.keeper.is_some(), "{:?}", honest.unkept);
    writes_uncut(&mut honest, "the stranger's share").await;
}

/// A stranger's writes in a room another address loaded do not use up
/// that address's share: charged to it, one address filled others'
/// shares while its own stayed empty (a review). They count against the
/// budget of the rooms in memory alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_writes_are_not_charged_to_the_room_s_loader() {
    let data = DataDir::new("writer");
    let one_room = rooms_on_disk(&data, &["y"]).await;
    let server = behind_a_proxy(&data, one_room * 3, one_room * 16);
    let server = &server;
    let join = |seed, room, address| join_from(server, seed, room, address);
    // An honest address opens a new public room `p`.
    let honest = join(91, "p", "198.51.100.4").await;
    assert!(honest.keeper.is_some(), "{:?}", honest.unkept);
    // The stranger writes it full.
    let mut stranger = join(92, "p", "203.0.113.66").await;
    let me = stranger.me();
    let mut round = 0;
    while server.reading("cpc_signal_keep_loaded_bytes").await < one_room * 5 / 2 {
        stranger.write_padded(&format!("s{round}"), 20, 400);
        round += 1;
        let written = stranger.node.engine().clock().get(me);
        assert!(
            stranger
                .run_until(|p| p.unkept.is_some() || p.acknowledged(me) >= written)
                .await
        );
        assert!(stranger.unkept.is_none(), "{:?}", stranger.unkept);
    }
    // The honest address still loads its own stored room `y`.
    let hy = join(93, "y", "198.51.100.4").await;
    assert!(
        hy.keeper.is_some(),
        "the honest address was locked out by the stranger's writes: {:?}",
        hy.unkept
    );
}

// ---- rev-keep: attacks on the room peer ----

/// `runs` runs of `run` events written by `identity` (one seal a run),
/// as whole `Events` frames, one a run.
fn frames_of_runs(identity: Identity, runs: usize, run: usize, prefix: &str) -> Vec<Vec<u8>> {
    signed_runs(identity, runs, run, prefix)
        .chunks(run)
        .flat_map(|chunk| wire::encode(&WireMessage::Events(chunk.to_vec()), 0))
        .collect()
}

/// `runs` runs of `run` events written by `identity`, one seal a run.
fn signed_runs(identity: Identity, runs: usize, run: usize, prefix: &str) -> Vec<P2PEvent> {
    let peer = identity.peer();
    let engine = ReconciliationEngine::new(peer, EngineConfig::default());
    let config = SyncConfig {
        identity: Some(identity),
        ..SyncConfig::default()
    };
    let mut node = SyncNode::new(engine, config);
    for r in 0..runs {
        for i in 0..run {
            let key = format!("{prefix}/{r}/{i}");
            let value = JsonValue::parse(&format!("{{\"n\":{i}}}")).expect("json");
            node.apply(LocalWrite::Set { key, value }, now_ms())
                .expect("write");
        }
        let _ = node.take_outputs(); // seals the burst as one run
    }
    let total = (runs * run) as u64;
    let logged: Vec<P2PEvent> = node
        .engine()
        .logged(&[(peer, 0, total)])
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(logged.len() as u64, total);
    logged
}

/// A member relays another member's signed runs to the room peer in an
/// order of its choosing (a run, then the run before it, then the rest;
/// behind a frame that keeps the room's thread busy, so they are taken
/// in one drain). The room peer takes and acknowledges every event; its
/// store records the runs applied whole ahead of the two it applied from
/// its holding queue, and when the room is next loaded, replay holds
/// those ahead of their predecessors until the per-origin holding bound
/// (25,000) refuses the rest: the room peer forgets thousands of
/// events it acknowledged, and a newcomer never gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_relayed_out_of_order_are_all_kept_when_the_room_loads_again() {
    let data = DataDir::new("reorder");
    let server = keeping(&data, &[("KEEP_IDLE_MS", "200")]);
    let honest = Identity::from_seed(301);
    let h = honest.peer();
    let runs = 40;
    let frames = frames_of_runs(honest, runs, 1000, "h");
    assert_eq!(frames.len(), runs, "one frame a run");
    // The relay's own burst keeps the room's thread busy meanwhile.
    let busy = busy_frames(Identity::from_seed(303));
    let mut relay = Page::join(&server, Identity::from_seed(302), "reorder").await;
    assert!(relay.keeper.is_some(), "{:?}", relay.unkept);
    let mut order: Vec<&Vec<u8>> = busy.iter().collect();
    order.push(&frames[1]);
    order.push(&frames[0]);
    order.extend(frames[2..].iter());
    for frame in order {
        relay
            .ws
            .send(Message::Binary(frame.clone().into()))
            .await
            .expect("send");
    }
    let total = (runs * 1000) as u64;
    assert!(
        relay.run_until(|p| p.acknowledged(h) >= total).await,
        "the room peer never acknowledged the relayed runs: {}",
        relay.acknowledged(h)
    );
    println!("acknowledged {} of {h}", relay.acknowledged(h));
    drop(relay);
    let deadline = Instant::now() + BUDGET;
    while server.reading("cpc_signal_keep_unloads_total").await < 1 {
        assert!(Instant::now() < deadline, "never unloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reader = Page::join(&server, Identity::from_seed(304), "reorder").await;
    assert!(reader.catch_up().await, "the reader did not catch up");
    let kept = reader.node.engine().clock().get(h);
    assert_eq!(
        kept, total,
        "the room peer acknowledged {total} events of {h}, and after a reload serves {kept}"
    );
}

/// The same order through a page's own storage (`SyncNode::restore`, as
/// the browser's IndexedDB restores it): a page that took a member's
/// relayed runs out of order and then wrote reloads without the runs
/// past the holding bound, and without its own write that rests on them,
/// whose sequence number it then makes again: an equivocation every peer
/// that took the first write refuses.
#[test]
fn a_page_restored_from_its_store_keeps_what_it_stored_and_its_own_write() {
    use cpc_sync::protocol::sync::Persist;
    let honest = Identity::from_seed(311);
    let h = honest.peer();
    let frames = frames_of_runs(honest, 40, 1000, "h");
    let relay = Identity::from_seed(312).peer();
    let me = Identity::from_seed(313);
    let engine = ReconciliationEngine::new(me.peer(), EngineConfig::default());
    let config = SyncConfig {
        identity: Some(me.clone()),
        durable: true,
        ..SyncConfig::default()
    };
    let mut page = SyncNode::new(engine, config.clone());
    page.connect(relay, now_ms());
    let mut store: Vec<Persist> = Vec::new();
    let drain = |page: &mut SyncNode, store: &mut Vec<Persist>| {
        for output in page.take_outputs() {
            if let Output::Persist { token, write } = output {
                store.push(write);
                page.persisted(token);
            }
        }
    };
    drain(&mut page, &mut store);
    let mut order: Vec<&Vec<u8>> = vec![&frames[1], &frames[0]];
    order.extend(frames[2..].iter());
    for frame in order {
        page.receive_frame(relay, frame, now_ms());
    }
    drain(&mut page, &mut store);
    assert_eq!(page.engine().clock().get(h), 40_000);
    page.apply(
        LocalWrite::Set {
            key: "mine".into(),
            value: JsonValue::parse("1").unwrap(),
        },
        now_ms(),
    )
    .unwrap();
    drain(&mut page, &mut store);
    assert_eq!(page.durable_upto(), 1, "the page's write is durable");
    // Reload: what storage holds, read back as a store reads it.
    let commit = Persist::commit(&store);
    assert!(commit.snapshot.is_none());
    let events = P2PEvent::decode_batch(&commit.record.unwrap()).unwrap();
    let engine = ReconciliationEngine::new(me.peer(), EngineConfig::default());
    let restored = SyncNode::restore(me.peer(), engine.config().clone(), config, None, events)
        .expect("restores");
    let (theirs, mine) = (
        restored.engine().clock().get(h),
        restored.engine().clock().get(me.peer()),
    );
    assert_eq!(
        (theirs, mine),
        (40_000, 1),
        "stored 40000 of the member's events and our write 1; restored {theirs} and {mine}"
    );
}

/// A busy frame: 1,000 one-event runs of `identity`'s, 1,000 seals for
/// the room peer to verify in one go (its thread busy meanwhile, so the
/// frames sent behind it are taken in one drain).
fn busy_frames(identity: Identity) -> Vec<Vec<u8>> {
    wire::encode(&WireMessage::Events(signed_runs(identity, 1000, 1, "b")), 0)
}

/// The stranger needs nobody's events but its own: it sends its own runs
/// out of order (as above), an honest member then catches up from the
/// room peer and writes, and leaves. When the room loads again, the
/// stranger's later events are refused at replay, and the honest write,
/// which rests on them, is held for good: the room peer acknowledged it,
/// and a newcomer never gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_own_runs_out_of_order_do_not_make_the_room_peer_forget_an_honest_write() {
    let data = DataDir::new("reorder-own");
    let server = keeping(&data, &[("KEEP_IDLE_MS", "200")]);
    let stranger = Identity::from_seed(321);
    let s = stranger.peer();
    let frames = frames_of_runs(stranger.clone(), 40, 1000, "s");
    let busy = busy_frames(Identity::from_seed(323));
    let mut attacker = Page::join(&server, stranger, "reorder-own").await;
    assert!(attacker.keeper.is_some(), "{:?}", attacker.unkept);
    let mut order: Vec<&Vec<u8>> = busy.iter().collect();
    order.push(&frames[1]);
    order.push(&frames[0]);
    order.extend(frames[2..].iter());
    for frame in order {
        let message = Message::Binary(frame.clone().into());
        attacker.ws.send(message).await.expect("send");
    }
    assert!(attacker.run_until(|p| p.acknowledged(s) >= 40_000).await);
    drop(attacker);
    // An honest member catches up, writes ten keys, is acknowledged, leaves.
    let mut honest = Page::join(&server, Identity::from_seed(324), "reorder-own").await;
    assert!(honest.catch_up().await);
    assert_eq!(honest.node.engine().clock().get(s), 40_000);
    honest.write("mine", 10);
    let me = honest.me();
    assert!(honest.run_until(|p| p.acknowledged(me) >= 10).await);
    drop(honest);
    let deadline = Instant::now() + BUDGET;
    while server.reading("cpc_signal_keep_unloads_total").await < 1 {
        assert!(Instant::now() < deadline, "never unloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reader = Page::join(&server, Identity::from_seed(325), "reorder-own").await;
    assert!(reader.catch_up().await, "the reader did not catch up");
    let kept = reader.node.engine().clock().get(me);
    assert_eq!(
        kept, 10,
        "the room peer acknowledged the honest member's 10 writes, and after a reload serves {kept}"
    );
}

/// A stranger whose hourly share of new rooms is spent loads a room that
/// is not stored yet (a bare join, before its owners' first write): the
/// room's first write is then charged to the stranger's address, refused
/// (`KEEP_NEW_ROOMS_PER_ADDRESS`), and the honest writers are cut off,
/// though their own address started nothing. (The same class as
/// `a_stranger_loading_a_room_first_does_not_cut_off_its_writers`, fixed
/// for memory, open for new rooms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_loading_a_new_room_first_does_not_cut_off_its_first_writer() {
    let data = DataDir::new("starter");
    let server = keeping(
        &data,
        &[
            ("KEEP_NEW_ROOMS_PER_ADDRESS", "1"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let server = &server;
    let join = |seed, room, address| join_from(server, seed, room, address);
    // The stranger spends its share on a room of its own...
    let mut spent = join(401, "spent", "203.0.113.66").await;
    spent.write("s", 1);
    let me = spent.me();
    assert!(spent.run_until(|p| p.acknowledged(me) >= 1).await);
    // ...then loads the honest room before anyone writes in it.
    let squatter = join(402, "fresh", "203.0.113.66").await;
    assert!(squatter.keeper.is_some(), "{:?}", squatter.unkept);
    // An honest page of another address, which started nothing, writes.
    let mut honest = join(403, "fresh", "198.51.100.4").await;
    assert!(honest.keeper.is_some(), "{:?}", honest.unkept);
    writes_uncut(&mut honest, "the stranger's spent share").await;
}

/// `KEEP_MAX_LOADED_BYTES` counts a loaded room at its file's bytes, on
/// the word that a room holds up to ~6 times its file in memory. A
/// stranger's log of one key set and deleted in turn (a few bytes an
/// event on disk, each kept decoded in memory until a fold at 50,000)
/// held ~20 times its file: eight addresses holding their share of such
/// rooms loaded took ~3.5 times the memory the README's sizing promises
/// (a review). The room peer now folds a log heavier than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_room_holds_about_its_budgeted_bytes_in_memory() {
    let data = DataDir::new("ratio");
    let mut server = keeping(&data, &[]);
    let rooms = 4;
    for room in 0..rooms {
        let name = format!("ratio{room}");
        let mut writer = Page::join(&server, Identity::from_seed(331), &name).await;
        let me = writer.me();
        for run in 0..49u64 {
            for i in 0..1000u64 {
                let n = run * 1000 + i;
                // One key set and deleted in turn: a few bytes an event
                // in the store's columns.
                let write = set_or_delete("k", n);
                writer.node.apply(write, now_ms()).unwrap();
            }
            writer.flush().await;
        }
        let written = writer.node.engine().clock().get(me);
        assert!(writer.run_until(|p| p.acknowledged(me) >= written).await);
    }
    server.kill();
    let server = keeping(&data, &[]);
    let before = server.rss_kib();
    let mut pages = Vec::new();
    for room in 0..rooms {
        let page = Page::join(
            &server,
            Identity::from_seed(340 + room),
            &format!("ratio{room}"),
        )
        .await;
        assert!(page.keeper.is_some());
        pages.push(page);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let loaded = server.reading("cpc_signal_keep_loaded_bytes").await;
    let held = (after.saturating_sub(before)) * 1024;
    println!("{rooms} rooms: {loaded} bytes budgeted, {held} bytes more resident");
    assert!(
        held <= 6 * loaded + (8 << 20),
        "{rooms} loaded rooms are budgeted at {loaded} bytes and hold {held} bytes more in memory"
    );
}

/// `events_persisted` counts every event the room peer made durable, a
/// fold amid a stream of writes too: the log folded for its weight
/// stored a snapshot in place of the records of the events that waited
/// for one, and the count stayed short of the writes for good (the
/// browser peer's benchmark, polling it, waited forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_stored_is_counted_when_the_log_folds_amid_writes() {
    let data = DataDir::new("counted");
    let server = keeping(&data, &[]);
    let mut writer = Page::join(&server, Identity::from_seed(351), "counted").await;
    let me = writer.me();
    for run in 0..8u64 {
        for i in 0..1000u64 {
            let value = JsonValue::parse(&(run * 1000 + i).to_string()).unwrap();
            let key = format!("k{}", i % 10);
            writer
                .node
                .apply(LocalWrite::Set { key, value }, now_ms())
                .unwrap();
        }
        writer.flush().await;
    }
    assert!(writer.run_until(|p| p.acknowledged(me) >= 8000).await);
    let deadline = Instant::now() + BUDGET;
    let mut counted = 0;
    while counted < 8000 && Instant::now() < deadline {
        counted = server
            .reading("cpc_signal_keep_events_persisted_total")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 8000, "events persisted, by the server's metrics");
}

// ---- rev-fold: the room peer's fold for weight, against a member ----

/// `rooms` rooms, each written 49,000 tiny events (one key set and
/// deleted in turn) by one page; with `stale`, the page follows each
/// burst with a digest that says it has nothing (a member's digest is
/// taken as what it has). Returns (bytes budgeted, bytes more resident)
/// while the writers are still linked, and the rooms' bytes on disk.
async fn tiny_writes_held(stale: bool, rooms: u64) -> (u64, u64, u64) {
    use cpc_sync::protocol::event::Hash32;
    let data = DataDir::new(if stale {
        "stale-digest"
    } else {
        "honest-digest"
    });
    let server = keeping(&data, &[]);
    let before = server.rss_kib();
    let mut writers = Vec::new();
    for room in 0..rooms {
        let name = format!("stale{room}");
        let mut writer = Page::join(&server, Identity::from_seed(351 + room), &name).await;
        assert!(writer.keeper.is_some(), "{:?}", writer.unkept);
        for run in 0..49u64 {
            for i in 0..1000u64 {
                let write = set_or_delete("k", run * 1000 + i);
                writer.node.apply(write, now_ms()).unwrap();
            }
            writer.flush().await;
            if stale {
                let digest = WireMessage::Digest {
                    clock: VectorClock::new(),
                    root: Hash32::ZERO,
                };
                for frame in wire::encode(&digest, 0) {
                    writer.ws.send(Message::Binary(frame.into())).await.unwrap();
                }
            }
        }
        writers.push(writer);
    }
    let want = rooms * 49_000;
    let deadline = Instant::now() + BUDGET;
    while server
        .reading("cpc_signal_keep_events_persisted_total")
        .await
        < want
    {
        assert!(Instant::now() < deadline, "never persisted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writers read (and drop) what they are sent from now on, so
    // nothing waits in the server's outboxes; a member keeps sending its
    // digest of nothing, as it would at each gossip.
    let mut sinks = Vec::new();
    for writer in writers {
        let (sink, mut stream) = writer.ws.split();
        tokio::spawn(async move { while stream.next().await.is_some() {} });
        sinks.push(sink);
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stale {
            for sink in &mut sinks {
                let digest = WireMessage::Digest {
                    clock: VectorClock::new(),
                    root: Hash32::ZERO,
                };
                for frame in wire::encode(&digest, 0) {
                    let _ = sink.send(Message::Binary(frame.into())).await;
                }
            }
        }
    }
    let after = server.rss_kib();
    let loaded = server.reading("cpc_signal_keep_loaded_bytes").await;
    let disk = server.reading("cpc_signal_keep_disk_bytes").await;
    let held = after.saturating_sub(before) * 1024;
    println!(
        "stale digests {stale}: {rooms} rooms, {loaded} bytes budgeted, {disk} on disk, \
         {held} bytes more resident"
    );
    drop(sinks);
    (loaded, held, disk)
}

/// The fold for weight (`fold_if_heavy`) keeps what a linked page's
/// digest says it lacks (`stable_clock`, any synced page within
/// `KEEP_COMPACT_AFTER`): a member who writes tiny events and says after
/// each burst that it has nothing keeps the log unfolded for as long as
/// it stays linked, and the rooms hold what they held before the fold
/// for weight (a review: 12-35 MB for 4 rooms, against 7-11 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_saying_it_lacks_its_own_writes_does_not_keep_a_heavy_log_unfolded() {
    let (_, honest_held, honest_disk) = tiny_writes_held(false, 4).await;
    let (loaded, held, disk) = tiny_writes_held(true, 4).await;
    // A fold leaves a file of the snapshot: the log of 49,000 records
    // left in it says the log was never folded, in memory either.
    assert!(
        disk <= 2 * honest_disk,
        "the rooms' files: {disk} bytes while their writer says it lacks its writes, \
         {honest_disk} otherwise: their logs were never folded"
    );
    println!(
        "4 rooms are budgeted at {loaded} bytes and hold {held} bytes more in memory while \
         their writer says it lacks its writes ({honest_held} otherwise)"
    );
}

/// `events_persisted` counts each event once, whatever folds (for the
/// weight of the log, or at `KEEP_COMPACT_AFTER`) store it in a snapshot
/// amid the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_persisted_counts_each_event_once_amid_folds() {
    let data = DataDir::new("count-once");
    let server = keeping(&data, &[("KEEP_COMPACT_AFTER", "1000")]);
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let page = Page::join(&server, Identity::from_seed(371 + w), "count").await;
        writers.push(page);
    }
    let mut written = 0u64;
    for run in 0..30u64 {
        for (w, writer) in writers.iter_mut().enumerate() {
            for i in 0..700u64 {
                let write = set_or_delete(&format!("k{w}"), run * 700 + i);
                writer.node.apply(write, now_ms()).unwrap();
                written += 1;
            }
            writer.flush().await;
        }
    }
    for writer in &mut writers {
        let me = writer.me();
        let mine = writer.node.engine().clock().get(me);
        assert!(writer.run_until(|p| p.acknowledged(me) >= mine).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let persisted = server
        .reading("cpc_signal_keep_events_persisted_total")
        .await;
    assert_eq!(
        persisted, written,
        "events persisted, counted: {persisted} of {written} written"
    );
}

/// A tiny write: `key` set when `n` is even, deleted when odd (a few
/// bytes an event in the store's columns).
fn set_or_delete(key: &str, n: u64) -> LocalWrite {
    let key = key.to_string();
    match n % 2 {
        0 => LocalWrite::Set {
            key,
            value: JsonValue::parse("1").unwrap(),
        },
        _ => LocalWrite::Delete { key },
    }
}

/// `honest` writes ten events: not cut off (`why` says by what it was).
async fn writes_uncut(honest: &mut Page, why: &str) {
    honest.write("mine", 10);
    let me = honest.me();
    honest
        .run_until(|p| p.unkept.is_some() || p.acknowledged(me) >= 10)
        .await;
    assert!(
        honest.unkept.is_none(),
        "the honest writer was cut off by {why}: {:?}",
        honest.unkept
    );
}

/// A fold that keeps events a linked page lacks stores them again after
/// its snapshot, and the room peer counted that record's events in
/// `events_persisted` again: the count passed the events written, where
/// it counts each event once, whatever folds
/// (`events_persisted_counts_each_event_once_amid_folds`; a review). Here a member
/// says (its digest) it has the first 600 of the writer's 1,200 events:
/// the fold at `KEEP_COMPACT_AFTER` = 1,000 keeps the other 600 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_kept_for_a_lagging_page_are_not_counted_again_at_a_fold() {
    use cpc_sync::protocol::event::Hash32;
    let data = DataDir::new("rvb-tail-count");
    let server = keeping(&data, &[("KEEP_COMPACT_AFTER", "1000")]);
    let mut writer = Page::join(&server, Identity::from_seed(391), "rvb").await;
    let mut lagging = Page::join(&server, Identity::from_seed(392), "rvb").await;
    let me = writer.me();
    assert!(lagging.catch_up().await);
    writer.write("r0", 600);
    assert!(writer.run_until(|p| p.acknowledged(me) >= 600).await);
    assert!(lagging.catch_up().await);
    // From here on the lagging page reads nothing (a slow one).
    writer.write("r1", 600);
    assert!(writer.run_until(|p| p.acknowledged(me) >= 1200).await);
    // It says it has 600 of the writer's (as one behind would, at each gossip).
    let mut said = VectorClock::new();
    said.set(me, 600);
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let digest = WireMessage::Digest {
            clock: said.clone(),
            root: Hash32::ZERO,
        };
        for frame in wire::encode(&digest, 0) {
            lagging
                .ws
                .send(Message::Binary(frame.into()))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let persisted = server
        .reading("cpc_signal_keep_events_persisted_total")
        .await;
    let commits = server.reading("cpc_signal_keep_commits_total").await;
    let disk = server.reading("cpc_signal_keep_disk_bytes").await;
    println!(
        "events persisted {persisted} of 1200 written; {commits} commits; {disk} bytes on disk"
    );
    assert_eq!(
        persisted, 1200,
        "events persisted, counted: {persisted} of 1200 written"
    );
}
