//! One kept room: its `SyncNode`, its database and the pages linked to it,
//! run as one task. The node's outputs are carried out as the browser
//! peer carries them out, with one rule more: every write a drain of
//! outputs asks for is committed, in one transaction, before any frame of
//! that drain goes out. So nothing the room peer sends (a relayed event,
//! a digest whose clock covers an event) reflects an event that is not on
//! disk: what it acknowledged survives a `kill -9`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cpc_sync::protocol::event::Hash32;
use cpc_sync::protocol::signal::ServerMessage;
use cpc_sync::protocol::sync::gzip::{gunzip_at_most, gzip};
use cpc_sync::protocol::sync::{
    Commit, Output, Persist, Relay, SyncConfig, SyncNode, VERIFY_WINDOW_MS,
};
use cpc_sync::protocol::{EngineConfig, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::store::{Store, StoreError, Stored};
use super::{Keep, KeepError};
use crate::signaling::{Outbox, Refused, FRAME_HIGH_WATER, FRAME_LOW_WATER};

/// Commands taken together before the outputs are carried out: the
/// events of many frames share one commit.
const BATCH: usize = 64;

pub enum Command {
    Attach {
        page: PeerId,
        link: u64,
        outbox: Arc<Outbox>,
        /// The address the page's socket comes from.
        address: Option<IpAddr>,
        reply: oneshot::Sender<Result<(), KeepError>>,
    },
    Frame {
        page: PeerId,
        link: u64,
        bytes: Vec<u8>,
    },
    Detach {
        page: PeerId,
        link: u64,
    },
}

/// The edge's gzip work, done off the room's thread and handed back.
enum Gzip {
    Gzipped(Arc<Vec<u8>>, Result<Vec<u8>, String>),
    Gunzipped(Hash32, Result<Vec<u8>, String>),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Seeds of a hash table and of handshake nonces (the room has no
    // secret, so no handshake): zeros only weaken the table's seed.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

impl From<StoreError> for KeepError {
    fn from(e: StoreError) -> KeepError {
        KeepError::Store(e.to_string())
    }
}

struct Room {
    keep: Arc<Keep>,
    name: String,
    file: String,
    node: SyncNode,
    /// `None` until the room's first write: a room that is only joined
    /// takes no file (nor a place among `KEEP_MAX_ROOMS`).
    store: Option<Store>,
    /// The address the room was loaded for: its first write starts a
    /// stored room on that address's share.
    by: Option<IpAddr>,
    bytes: u64,
    pages: HashMap<PeerId, (u64, Arc<Outbox>)>,
    /// The address each linked page comes from: a new stored room is
    /// started on one of them when its loader's share is spent.
    addresses: HashMap<PeerId, Option<IpAddr>>,
    /// Pages whose socket holds [`FRAME_HIGH_WATER`] of frames: what they
    /// are owed waits in the log until it drains.
    backlogged: Vec<PeerId>,
    /// Where gzip work done on the blocking pool comes back.
    gzip_done: mpsc::UnboundedSender<Gzip>,
    /// The log's length below which it is not folded for its weight
    /// again: what a fold left (events a page still lacks), doubled.
    refold_at: usize,
}

/// About what a logged event holds in memory: decoded, with the log's
/// and the Merkle digest's books. A tiny one takes a dozen bytes in the
/// database.
const LOGGED_EVENT_BYTES: u64 = 280;

/// What a loaded room may hold in memory for each byte of its database:
/// the ratio `KEEP_MAX_LOADED_BYTES` is sized by (README).
const MEMORY_PER_FILE_BYTE: u64 = 6;

/// A database counted at this much at least for the log's weight: a
/// small room's log folds after ~1,400 tiny events.
const FILE_FLOOR: u64 = 64 << 10;

/// Starts the room `name` (kept in `file`) on a thread of its own, with a
/// runtime of its own for its timers; it runs until it is unloaded.
pub fn spawn(
    keep: Arc<Keep>,
    name: String,
    file: String,
    by: Option<IpAddr>,
    queue: mpsc::Receiver<Command>,
) -> Result<(), KeepError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KeepError::Store(format!("no runtime for the room: {e}")))?;
    std::thread::Builder::new()
        .name("cpc-keep-room".into())
        .spawn(move || runtime.block_on(run(keep, name, file, by, queue)))
        .map_err(|e| KeepError::Store(format!("no thread for the room: {e}")))?;
    Ok(())
}

/// Runs the room until it is unloaded. Blocking calls (the store's) block
/// only this room's thread.
async fn run(
    keep: Arc<Keep>,
    name: String,
    file: String,
    by: Option<IpAddr>,
    mut queue: mpsc::Receiver<Command>,
) {
    let (gzip_done, mut gzipped) = mpsc::unbounded_channel();
    let opened = Room::open(&keep, &name, file, by, gzip_done);
    let mut room = match opened {
        Ok(room) => room,
        Err(e) => {
            keep.log(&name, "not loaded", &e);
            keep.forget(&name, ());
            return refuse_queued(queue, e);
        }
    };
    keep.counters.loads.fetch_add(1, Relaxed);
    let mut idle_since: Option<Instant> = None;
    loop {
        let wake = room.node.next_timer().saturating_sub(now_ms());
        let idle_at = idle_since.map(|since| since + keep.config.idle);
        let backlogs = room.backlogs();
        tokio::select! {
            command = queue.recv() => {
                let Some(command) = command else { break };
                room.take(command);
                for _ in 0..BATCH {
                    match queue.try_recv() {
                        Ok(command) => room.take(command),
                        Err(_) => break,
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(wake)) => room.node.tick(now_ms()),
            () = any_drained(&backlogs), if !backlogs.is_empty() => room.drained(),
            Some(done) = gzipped.recv() => match done {
                Gzip::Gzipped(bytes, result) => room.node.snapshot_gzipped(&bytes, result),
                Gzip::Gunzipped(id, result) => room.node.snapshot_gunzipped(id, result, now_ms()),
            },
            () = sleep_until(idle_at), if idle_at.is_some() => {
                match keep.unload(&name, &queue, room) {
                    Ok(()) => {
                        release_memory();
                        return refuse_queued(queue, KeepError::Closed("unloaded".into()));
                    }
                    Err(back) => room = back,
                }
            }
        }
        room.fold_if_heavy();
        if let Err(e) = room.carry_out() {
            keep.log(&name, "unloaded", &e);
            keep.counters.refused(&e);
            room.hang_up_all(&e);
            keep.forget(&name, room);
            // Joins queued meanwhile load the room again (and are told
            // only if they too would pass a limit).
            return refuse_queued(queue, KeepError::Closed("unloaded".into()));
        }
        if room.pages.is_empty() {
            idle_since.get_or_insert_with(Instant::now);
        } else {
            idle_since = None;
        }
    }
}

/// Gives what an unloaded room freed back to the system: glibc keeps it in
/// the arena of the thread that ran the room (a room of 100k entities left
/// 100 MiB resident after it unloaded; BENCHMARKS.md, "Issue 18").
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory of glibc's heap to
    // the system; it takes no pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits until one of `outboxes` holds no more than [`FRAME_LOW_WATER`]
/// of frames.
async fn any_drained(outboxes: &[Arc<Outbox>]) {
    let waits = outboxes
        .iter()
        .map(|outbox| Box::pin(outbox.frames_at_most(FRAME_LOW_WATER)));
    futures_util::future::select_all(waits).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The room is gone: attaches still queued get `error` (an attach that
/// finds its reply dropped tries again, and loads the room anew).
fn refuse_queued(mut queue: mpsc::Receiver<Command>, error: KeepError) {
    queue.close();
    while let Ok(command) = queue.try_recv() {
        if let Command::Attach { reply, .. } = command {
            if !matches!(error, KeepError::Closed(_)) {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

impl Room {
    fn open(
        keep: &Arc<Keep>,
        name: &str,
        file: String,
        by: Option<IpAddr>,
        gzip_done: mpsc::UnboundedSender<Gzip>,
    ) -> Result<Room, KeepError> {
        let path = keep.path_of(&file);
        let (store, stored) = if path.exists() {
            let (store, stored) = Store::open(&path, name)?;
            (Some(store), stored)
        } else {
            (None, Stored::default())
        };
        let identity = keep.identity.clone();
        let engine = EngineConfig {
            hash_seed: u64::from_le_bytes(random()),
            ..EngineConfig::default()
        };
        let sync = SyncConfig {
            identity: Some(identity.clone()),
            durable: true,
            nonce_seed: random(),
            verify_window_ms: Some(VERIFY_WINDOW_MS),
            compact_after: keep.config.compact_after,
            // The room's hub: a page that reaches the others only through
            // it (no WebRTC) gets their writes pushed at once, not
            // announced and pulled (three crossings of the socket a hop).
            relay: Relay::Flood,
            gzip_snapshots: true,
            intake: keep.config.intake.clone(),
            ..SyncConfig::default()
        };
        let mut node = SyncNode::restore(
            identity.peer(),
            engine,
            sync,
            stored.snapshot.as_deref(),
            stored.events,
        )
        .map_err(|e| KeepError::Store(format!("the stored snapshot does not load: {e}")))?;
        // Nobody here is told which keys changed.
        node.want_changes(false);
        let bytes = store.as_ref().map_or(0, Store::bytes);
        if store.is_some() {
            keep.set_bytes(&file, bytes);
        }
        Ok(Room {
            keep: keep.clone(),
            name: name.to_string(),
            file,
            node,
            store,
            by,
            bytes,
            pages: HashMap::new(),
            addresses: HashMap::new(),
            backlogged: Vec::new(),
            gzip_done,
            refold_at: 0,
        })
    }

    /// Folds the log once it holds more memory than the room's database
    /// is budgeted for (`KEEP_MAX_LOADED_BYTES` counts databases): a log
    /// of tiny writes, folded at `KEEP_COMPACT_AFTER` events when quiet
    /// and four times that while writes keep coming, held 21 times its
    /// database (a review: four such rooms on 2.5 MB of files took 55 MB).
    /// Folding costs about the database's size, and comes after a log
    /// six times that, so its cost per event stays bounded.
    fn fold_if_heavy(&mut self) {
        let logged = self.node.engine().log().len();
        let weight = logged as u64 * LOGGED_EVENT_BYTES;
        let budget = MEMORY_PER_FILE_BYTE * self.bytes.max(FILE_FLOOR);
        if logged < self.refold_at || weight <= budget {
            return;
        }
        // A page lacking more than half the log's budget gets a snapshot:
        // its digest of what it lacks does not keep the log heavy.
        let lag = budget / LOGGED_EVENT_BYTES / 2;
        self.node.fold_lagging(lag as usize);
        self.refold_at = self.node.engine().log().len().saturating_mul(2);
    }

    fn take(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Attach {
                page,
                link,
                outbox,
                address,
                reply,
            } => {
                if self.pages.remove(&page).is_some() {
                    // A reloaded tab, on a new socket.
                    self.backlogged.retain(|&p| p != page);
                    self.node.disconnect(page);
                } else {
                    self.keep.counters.links.fetch_add(1, Relaxed);
                }
                let server = self.node.peer();
                let hello = ServerMessage::Keep {
                    peer: server.to_string(),
                };
                // Before any frame of the link, on the same socket.
                let _ = outbox.push(hello.to_text());
                self.pages.insert(page, (link, outbox));
                self.addresses.insert(page, address);
                self.node.connect(page, now);
                let _ = reply.send(Ok(()));
            }
            Command::Frame { page, link, bytes } => {
                if self.pages.get(&page).is_some_and(|(l, _)| *l == link) {
                    self.keep.counters.frames_in.fetch_add(1, Relaxed);
                    self.node.receive_frame(page, &bytes, now);
                }
            }
            Command::Detach { page, link } => {
                if self.pages.get(&page).is_some_and(|(l, _)| *l == link) {
                    self.pages.remove(&page);
                    self.addresses.remove(&page);
                    self.backlogged.retain(|&p| p != page);
                    self.keep.counters.links.fetch_sub(1, Relaxed);
                    self.node.disconnect(page);
                }
            }
        }
    }

    /// Carries out the node's outputs: what they ask to persist first, in
    /// one commit, then what they send. `Err`: the store refused (a limit,
    /// or the disk): nothing of this drain was sent.
    fn carry_out(&mut self) -> Result<(), KeepError> {
        loop {
            let outputs = self.node.take_outputs();
            if outputs.is_empty() {
                return Ok(());
            }
            let mut writes = Vec::new();
            let mut last = None;
            let mut rest = Vec::new();
            for output in outputs {
                match output {
                    Output::Persist { token, write } => {
                        writes.push(write);
                        last = Some(token);
                    }
                    other => rest.push(other),
                }
            }
            if let Some(token) = last {
                self.commit(&writes)?;
                self.node.persisted(token);
            }
            for output in rest {
                match output {
                    Output::Send { to, frame } => self.send(to, frame),
                    Output::Close { peer, reason } => {
                        self.hang_up(peer, &KeepError::Closed(reason));
                    }
                    Output::Rejected { .. } => {
                        self.keep.counters.rejected.fetch_add(1, Relaxed);
                    }
                    // Seconds of a core at a million keys: on the blocking
                    // pool, not the room's thread.
                    Output::GzipSnapshot { bytes } => {
                        let done = self.gzip_done.clone();
                        tokio::task::spawn_blocking(move || {
                            let result = gzip(&bytes);
                            let _ = done.send(Gzip::Gzipped(bytes, result));
                        });
                    }
                    Output::GunzipSnapshot { id, bytes, limit } => {
                        let done = self.gzip_done.clone();
                        tokio::task::spawn_blocking(move || {
                            let result = gunzip_at_most(&bytes, limit);
                            let _ = done.send(Gzip::Gunzipped(id, result));
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn commit(&mut self, writes: &[Persist]) -> Result<(), KeepError> {
        // What the store writes: the last snapshot, if any, replacing all
        // before it (and compacted after), and the records after it.
        let commit = Persist::commit(writes);
        let adding = commit.snapshot.map_or(0, <[u8]>::len) as u64
            + commit.record.as_ref().map_or(0, Vec::len) as u64;
        // A fold leaves the room about what it writes, not that more: as
        // growth, a room whose log and snapshot passed the limit together
        // could never fold, and never shrink (a review).
        let projected = match commit.snapshot {
            Some(_) => adding,
            None => self.bytes + adding,
        };
        let config = &self.keep.config;
        if projected > config.max_room_bytes {
            return Err(KeepError::RoomTooLarge {
                bytes: self.bytes,
                max: config.max_room_bytes,
            });
        }
        self.keep.reserve(&self.file, adding)?;
        let committed = self.commit_reserved(&commit);
        if let Some(store) = &self.store {
            self.bytes = store.bytes();
        }
        let made = self.store.as_ref().map(|_| self.bytes);
        self.keep.settle(adding, &self.file, made);
        committed?;
        let events: usize = writes
            .iter()
            .map(|w| match w {
                Persist::Events { count, .. } => *count,
                Persist::Snapshot(_) => 0,
            })
            .sum();
        let counters = &self.keep.counters;
        counters.commits.fetch_add(1, Relaxed);
        counters.events_persisted.fetch_add(events as u64, Relaxed);
        Ok(())
    }

    /// Commits `writes`, within a reservation of their bytes; the room's
    /// database is made at its first write.
    fn commit_reserved(&mut self, commit: &Commit) -> Result<(), KeepError> {
        let store = match &mut self.store {
            Some(store) => store,
            None => {
                let (stored, max) = (self.keep.stored_rooms(), self.keep.config.max_rooms);
                if stored >= max {
                    return Err(KeepError::TooManyRooms { max });
                }
                // The loader's address first, then any linked page's: a
                // stranger whose share is spent, loading a room before its
                // owners' first write, does not cut them off (a review).
                let mut tried = std::iter::once(self.by)
                    .chain(self.addresses.values().copied())
                    .map(|by| self.keep.start_room(by));
                let first = tried.next().expect("the loader's address");
                if first.is_err() && !tried.any(|started| started.is_ok()) {
                    return first;
                }
                let path = self.keep.path_of(&self.file);
                let (store, _) = Store::open(&path, &self.name)?;
                self.store.insert(store)
            }
        };
        Ok(store.write(commit)?)
    }

    fn send(&mut self, to: PeerId, frame: Vec<u8>) {
        let Some((_, outbox)) = self.pages.get(&to) else {
            return;
        };
        match outbox.push_frame(frame) {
            Ok(()) => {
                self.keep.counters.frames_out.fetch_add(1, Relaxed);
                if outbox.frame_bytes() >= FRAME_HIGH_WATER && !self.backlogged.contains(&to) {
                    self.keep.counters.backlogs.fetch_add(1, Relaxed);
                    self.backlogged.push(to);
                    self.node.set_backlogged(to, true);
                }
            }
            // As a data channel whose queue overflows: the page is not
            // reading; it links again when it joins again.
            Err(Refused::Full) => {
                let why = "the page is not reading its frames".to_string();
                self.hang_up(to, &KeepError::Closed(why));
            }
            Err(Refused::Closed) => {} // its detach follows
        }
    }

    /// The outboxes of the backlogged pages.
    fn backlogs(&self) -> Vec<Arc<Outbox>> {
        let outbox = |page| self.pages.get(page).map(|(_, o)| o.clone());
        self.backlogged.iter().filter_map(outbox).collect()
    }

    /// Pages whose sockets drained to [`FRAME_LOW_WATER`] are sent what
    /// they are owed again (and closing ones are waited for no more: their
    /// wait ends at once, and would wake the room again and again).
    fn drained(&mut self) {
        let pages = &self.pages;
        let node = &mut self.node;
        self.backlogged.retain(|page| {
            let drained = pages.get(page).is_none_or(|(_, outbox)| {
                outbox.frame_bytes() <= FRAME_LOW_WATER || outbox.is_closing()
            });
            if drained {
                node.set_backlogged(*page, false);
            }
            !drained
        });
    }

    /// Unlinks `page`, telling it why.
    fn hang_up(&mut self, page: PeerId, why: &KeepError) {
        self.backlogged.retain(|&p| p != page);
        self.addresses.remove(&page);
        if let Some((_, outbox)) = self.pages.remove(&page) {
            self.keep.counters.links.fetch_sub(1, Relaxed);
            let reason = why.to_string();
            let _ = outbox.push(ServerMessage::Unkeep { reason }.to_text());
        }
        self.node.disconnect(page);
    }

    fn hang_up_all(&mut self, why: &KeepError) {
        let pages: Vec<PeerId> = self.pages.keys().copied().collect();
        for page in pages {
            self.hang_up(page, why);
        }
    }
}
