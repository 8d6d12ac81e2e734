//! The always-on room peer: for each room that pages join, a `SyncNode`
//! on the server, durable in a redb database under `DATA_DIR`, reached
//! over the page's own `/signal` WebSocket (binary messages are sync
//! frames between the page and this peer; `{"type":"keep","peer"}` tells
//! the page the link is up). It is an ordinary peer of the room, with its
//! own identity: it verifies what it takes, signs nothing of its own
//! (it never writes), and is bounded and penalized like a browser peer.
//!
//! Rooms with a secret (`secret-...` ids) are not kept: the server never
//! holds their state, in the clear or otherwise.
//!
//! Each loaded room is a thread of its own (`room.rs`: a `SyncNode` is not
//! `Send`, its reconcile handler being the app's closure) fed through a
//! bounded channel;
//! a room with no page for `KEEP_IDLE_MS` is unloaded, and loaded from
//! disk on the next join.

mod config;
mod disk;
mod identity;
mod room;
mod shares;
mod stats;
mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use cpc_sync::protocol::{Identity, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::serve::ClientAddress;
pub use config::{KeepConfig, KeepError};
use disk::Disk;
use room::Command;
use shares::Shares;
use stats::Counters;
pub use stats::{readings, KeepStats};

/// Commands waiting for one room at most: a page whose frames come faster
/// than the room takes them waits (and so stops reading its socket).
const QUEUE: usize = 256;

/// How many times an attach meets a room being unloaded before it gives up.
const ATTACH_TRIES: usize = 3;

/// Whether a room name is a room with a secret (see
/// `cpc_sync::protocol::room`): such rooms are never kept.
pub fn is_secret(room: &str) -> bool {
    room.starts_with(cpc_sync::protocol::room::SECRET_ROOM_PREFIX)
}

/// A loaded room's queue, and the address it was loaded for.
type LoadedRoom = (mpsc::Sender<Command>, Option<IpAddr>);

/// Every kept room.
pub struct Keep {
    config: KeepConfig,
    identity: Identity,
    loaded: Mutex<HashMap<String, LoadedRoom>>,
    shares: Mutex<Shares>,
    disk: Mutex<Disk>,
    next_link: AtomicU64,
    counters: Counters,
    /// One log line per class of a room's failure per
    /// [`LOG_EVERY`](crate::limits::LOG_EVERY), as connections' refusals.
    logs: Mutex<HashMap<&'static str, crate::limits::LogLimit>>,
    /// `DATA_DIR/lock`, held locked while this server runs: a second
    /// server on the same folder stops at start rather than failing every
    /// room the first holds open.
    _lock: std::fs::File,
}

/// A page's link to its room's peer; dropping it detaches the page.
pub struct Tunnel {
    to: mpsc::Sender<Command>,
    page: PeerId,
    link: u64,
}

impl Tunnel {
    /// A frame from the page. Waits while the room is busy.
    pub async fn frame(&self, bytes: Vec<u8>) {
        let command = Command::Frame {
            page: self.page,
            link: self.link,
            bytes,
        };
        let _ = self.to.send(command).await;
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let detach = Command::Detach {
            page: self.page,
            link: self.link,
        };
        if let Err(mpsc::error::TrySendError::Full(detach)) = self.to.try_send(detach) {
            let to = self.to.clone();
            tokio::spawn(async move { to.send(detach).await });
        }
    }
}

/// `DATA_DIR/lock`, locked for this process, or why not (another server
/// holds it).
fn lock_folder(data_dir: &std::path::Path) -> Result<std::fs::File, String> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // The server needs Rust 1.90 (redb) whatever the library's
    // `rust-version` says (Cargo.toml); `File::try_lock` is 1.89's.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another cpc-signal keeps its rooms in {} (run one server per DATA_DIR)",
            data_dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Whether this process can make files in `rooms` (a folder made by
/// another user, say): found at start, not at the first room's write.
fn can_write(rooms: &std::path::Path) -> Result<(), String> {
    let probe = rooms.join(".write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write in {}: {e}", rooms.display()))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keep {
    /// Opens `DATA_DIR`: its identity (made on first start) and what rooms
    /// it holds.
    pub fn open(config: KeepConfig) -> Result<Keep, String> {
        let rooms = config.data_dir.join("rooms");
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        // The rooms' files are readable by this user only.
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder
            .create(&rooms)
            .map_err(|e| format!("cannot create {}: {e}", rooms.display()))?;
        // Made so by an earlier build, which left it and its files readable
        // by all (the mode above applies only to a folder it creates).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A folder another user owns stays as it is, said at each start.
            let private = |path: &std::path::Path, mode| {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            };
            let files = std::fs::read_dir(&rooms).into_iter().flatten().flatten();
            let made_private = private(&rooms, 0o700).and_then(|()| {
                files
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".redb"))
                    .try_for_each(|f| private(&f.path(), 0o600))
            });
            if let Err(e) = made_private {
                eprintln!(
                    "cpc-signal: warning: cannot make {} and its rooms readable by this user only: {e}",
                    rooms.display()
                );
            }
        }
        let lock = lock_folder(&config.data_dir)?;
        can_write(&rooms)?;
        let identity = identity::load_or_create(&config.data_dir)?;
        let mut disk = Disk::default();
        let listing = std::fs::read_dir(&rooms)
            .map_err(|e| format!("cannot read {}: {e}", rooms.display()))?;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(file) = name.strip_suffix(".redb") {
                disk.set(file, store::file_bytes(&entry.path()));
            }
        }
        Ok(Keep {
            config,
            identity,
            loaded: Mutex::default(),
            shares: Mutex::default(),
            disk: Mutex::new(disk),
            next_link: AtomicU64::new(1),
            counters: Counters::default(),
            logs: Mutex::default(),
            _lock: lock,
        })
    }

    /// Logs that `room` was `what` (not loaded, unloaded) for `error`:
    /// at most one line a class per [`LOG_EVERY`](crate::limits::LOG_EVERY),
    /// saying how many since the last (a burst of pages past a limit wrote
    /// a line each).
    pub(crate) fn log(&self, room: &str, what: &str, error: &KeepError) {
        let due = lock(&self.logs)
            .entry(error.as_str())
            .or_default()
            .note(std::time::Instant::now());
        if let Some(count) = due {
            eprintln!(
                "cpc-signal: keep: room {room:?} {what}: {error}; {count} rooms {what} for this \
                 reason since the last such line"
            );
        }
    }

    /// Where the rooms are kept (`DATA_DIR`), as the start-up line says it.
    pub fn folder(&self) -> String {
        let dir = &self.config.data_dir;
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    }

    /// The room peer's id (the same in every room).
    pub fn peer(&self) -> PeerId {
        self.identity.peer()
    }

    /// The counters now, for `/metrics`.
    pub fn stats(&self) -> KeepStats {
        let loaded = lock(&self.loaded).len() as u64;
        let (stored, bytes) = {
            let disk = lock(&self.disk);
            (disk.stored() as u64, (disk.total(), disk.loaded_total()))
        };
        self.counters.snapshot(loaded, stored, bytes)
    }

    /// The file a room is kept in (its name hashed: room names may hold
    /// any character, and be longer than a file name may).
    fn file_of(room: &str) -> String {
        blake3::hash(room.as_bytes()).to_hex()[..32].to_string()
    }

    fn path_of(&self, file: &str) -> PathBuf {
        self.config
            .data_dir
            .join("rooms")
            .join(format!("{file}.redb"))
    }

    /// Links `page` (a member of `room`, on the socket of `outbox`, from
    /// `address`) to the room's peer, loading the room first if it is not
    /// loaded.
    pub async fn attach(
        self: &Arc<Self>,
        room: &str,
        page: PeerId,
        address: Option<ClientAddress>,
        outbox: Arc<crate::signaling::Outbox>,
    ) -> Result<Tunnel, KeepError> {
        let by = address.map(|a| a.0);
        for _ in 0..ATTACH_TRIES {
            let to = self
                .room(room, by)
                .inspect_err(|e| self.counters.refused(e))?;
            let link = self.next_link.fetch_add(1, Relaxed);
            let (reply, answer) = oneshot::channel();
            let attach = Command::Attach {
                page,
                link,
                outbox: outbox.clone(),
                address: by,
                reply,
            };
            if to.send(attach).await.is_err() {
                continue; // unloaded meanwhile: load it again
            }
            match answer.await {
                Ok(Ok(())) => return Ok(Tunnel { to, page, link }),
                Ok(Err(e)) => {
                    self.counters.refused(&e);
                    return Err(e);
                }
                Err(_) => continue,
            }
        }
        Err(KeepError::Closed(
            "the room was being unloaded; join again".into(),
        ))
    }

    /// The loaded room's queue; a room not loaded is loaded for `by`,
    /// within the limits and its share.
    fn room(
        self: &Arc<Self>,
        room: &str,
        by: Option<IpAddr>,
    ) -> Result<mpsc::Sender<Command>, KeepError> {
        let mut loaded = lock(&self.loaded);
        if let Some((to, _)) = loaded.get(room) {
            return Ok(to.clone());
        }
        if loaded.len() >= self.config.max_loaded {
            return Err(KeepError::TooManyLoaded {
                max: self.config.max_loaded,
            });
        }
        let file = Keep::file_of(room);
        let mut disk = lock(&self.disk);
        {
            let config = &self.config;
            match disk.is_stored(&file) {
                None if disk.stored() >= config.max_rooms => {
                    return Err(KeepError::TooManyRooms {
                        max: config.max_rooms,
                    })
                }
                None if disk.total() >= config.max_disk_bytes => {
                    return Err(KeepError::DiskFull {
                        bytes: disk.total(),
                        max: config.max_disk_bytes,
                    })
                }
                Some(bytes) if bytes >= config.max_room_bytes => {
                    return Err(KeepError::RoomTooLarge {
                        bytes,
                        max: config.max_room_bytes,
                    })
                }
                _ => {}
            }
            disk.fits(&file, by, config)?;
        }
        let share = self.config.loaded_per_address;
        if by.is_some_and(|by| !lock(&self.shares).load(by, share)) {
            return Err(KeepError::AddressLoaded { max: share });
        }
        disk.load(&file, by);
        drop(disk);
        let (to, from) = mpsc::channel(QUEUE);
        if let Err(e) = room::spawn(self.clone(), room.to_string(), file.clone(), by, from) {
            self.unloaded(&file, by);
            return Err(e);
        }
        loaded.insert(room.to_string(), (to.clone(), by));
        Ok(to)
    }

    /// The room of `file`, loaded for `by`, is no longer: its share and
    /// its bytes in memory are free.
    fn unloaded(&self, file: &str, by: Option<IpAddr>) {
        lock(&self.disk).unload(file);
        if let Some(by) = by {
            lock(&self.shares).unload(by);
        }
    }

    /// Counts a new stored room started for `by` (the address its room
    /// was loaded for), unless that address started its share this hour.
    fn start_room(&self, by: Option<IpAddr>) -> Result<(), KeepError> {
        let share = self.config.started_per_address;
        let now = std::time::Instant::now();
        match by {
            Some(by) if !lock(&self.shares).start(by, share, now) => {
                Err(KeepError::AddressStarted { max: share })
            }
            _ => Ok(()),
        }
    }

    /// Unloads `room` unless a command waits for it: `Err` gives the room
    /// back. Under the lock, so that a new load of the room waits until
    /// this one's database is closed.
    fn unload<R>(&self, room: &str, queue: &mpsc::Receiver<Command>, state: R) -> Result<(), R> {
        let mut loaded = lock(&self.loaded);
        if !queue.is_empty() {
            return Err(state);
        }
        if let Some((_, by)) = loaded.remove(room) {
            self.unloaded(&Keep::file_of(room), by);
        }
        drop(state);
        self.counters.unloads.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Drops `room` from the loaded ones whatever waits (it failed), and
    /// its `state` with the lock held, as [`unload`](Self::unload) does: a
    /// join meanwhile must not open the database before this one closes.
    fn forget<R>(&self, room: &str, state: R) {
        let mut loaded = lock(&self.loaded);
        if let Some((_, by)) = loaded.remove(room) {
            self.unloaded(&Keep::file_of(room), by);
        }
        drop(state);
    }

    fn set_bytes(&self, file: &str, bytes: u64) {
        lock(&self.disk).set(file, bytes);
    }

    /// See [`Disk::reserve`].
    fn reserve(&self, file: &str, adding: u64) -> Result<(), KeepError> {
        lock(&self.disk).reserve(file, adding, &self.config)
    }

    /// Gives back a reservation, and sets the bytes of `file` after the
    /// commit (`None`: no database was made).
    fn settle(&self, reserved: u64, file: &str, bytes: Option<u64>) {
        let mut disk = lock(&self.disk);
        disk.release(file, reserved);
        if let Some(bytes) = bytes {
            disk.set(file, bytes);
        }
    }

    fn stored_rooms(&self) -> usize {
        lock(&self.disk).stored()
    }
}
