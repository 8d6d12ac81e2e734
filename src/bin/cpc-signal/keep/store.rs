//! A kept room on disk: one redb database per room, holding what the
//! room's `SyncNode` asks to persist
//! ([`Persist`](cpc_sync::protocol::sync::Persist)): batches of events
//! appended in order, and the snapshot that replaces them when the log is
//! folded. One write transaction carries every write of one drain of the
//! node's outputs, and is committed (fsync'd) before anything those
//! outputs send leaves: redb commits are atomic and durable
//! (`Durability::Immediate`), so a `kill -9` at any moment leaves either
//! the whole transaction or none of it.

use std::path::{Path, PathBuf};

use cpc_sync::protocol::sync::Commit;
#[cfg(test)]
use cpc_sync::protocol::sync::Persist;
use cpc_sync::protocol::P2PEvent;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Batches of events, by append order.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `snapshot`: the latest fold of the log ([`CHUNKED`] and the number of
/// its pieces in [`SNAPSHOT`], or, as earlier builds wrote it, whole);
/// `room`: the room's name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The snapshot's pieces, in order.
const SNAPSHOT: TableDefinition<u32, &[u8]> = TableDefinition::new("snapshot");
/// Bytes of a snapshot's piece at most. redb gives each value a region of
/// a power of two pages: a snapshot of 32 MiB held as one value kept a
/// 128 MiB file however often it was compacted, and one of 64 MiB passed
/// `KEEP_MAX_ROOM_BYTES` by itself (a review). Pieces a page under 1 MiB
/// (room for redb's header of a value) keep the file near what it holds:
/// 34.6 MB for a snapshot of 33.5 MB, where pieces of 1 MiB exactly took
/// 69.2 MB.
const PIECE: usize = (1 << 20) - (4 << 10);
/// What `meta["snapshot"]` starts with when the snapshot is in pieces; an
/// earlier build reads it as a snapshot with bad magic bytes and loads
/// nothing of the room, where it would have taken the room for empty.
const CHUNKED: &[u8; 4] = b"CPCP";

/// What a store could not do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the room's database failed: {0}")]
    Database(#[from] redb::Error),
    #[error("the room's stored events do not decode (the file is damaged): {0}")]
    Damaged(String),
    /// A record whose format byte names a format this build does not
    /// read: most likely a newer build's (or damage that hit that byte).
    #[error("the room's stored events are of event batch format {0}, which this build does not read (it reads 1 to {max}): written by a newer cpc-signal, or damaged; the file is left as it is", max = cpc_sync::protocol::codec::FORMAT)]
    Newer(u8),
    #[error("the room's file cannot be made: {0}")]
    File(#[from] std::io::Error),
}

fn failed<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Database(e.into())
}

/// What a room's database held when it was opened.
#[derive(Default)]
pub struct Stored {
    pub snapshot: Option<Vec<u8>>,
    pub events: Vec<P2PEvent>,
}

/// Makes the database of `room` at `path`: made and committed under
/// another name, then renamed, so `path` never holds a database torn
/// before its first commit (a server killed, or stopped, within the few
/// ms of a room's first write left one whose header was never written,
/// and every later open of the room failed: "Not a redb database").
fn create(path: &Path, room: &str) -> Result<(), StoreError> {
    let new = path.with_extension("redb.new");
    // One left by a making interrupted.
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let db = Database::create(&new).map_err(failed)?;
    // The room's data is this user's only, as its folder is.
    #[cfg(unix)]
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let txn = db.begin_write().map_err(failed)?;
    {
        let mut meta = txn.open_table(META).map_err(failed)?;
        meta.insert("room", room.as_bytes()).map_err(failed)?;
        txn.open_table(EVENTS).map_err(failed)?;
    }
    txn.commit().map_err(failed)?;
    drop(db);
    std::fs::rename(&new, path)?;
    // The rename itself made durable.
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// A file at `path` torn by an earlier build before its first commit (no
/// redb header: its first bytes zeros) holds nothing: it is renamed
/// `*.redb.torn` and the room made anew, where every open of it failed.
fn set_aside_if_torn(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let read = match std::fs::File::open(path) {
        Ok(mut file) => file.read(&mut head)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if head[..read].iter().all(|b| *b == 0) {
        std::fs::rename(path, path.with_extension("redb.torn"))?;
    }
    Ok(())
}

/// The snapshot's `count` pieces (the marker's little-endian `u32`).
fn read_pieces(read: &redb::ReadTransaction, count: &[u8]) -> Result<Vec<u8>, StoreError> {
    let count = <[u8; 4]>::try_from(count)
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::Damaged("the snapshot's marker is cut short".into()))?;
    let table = read.open_table(SNAPSHOT).map_err(failed)?;
    let mut snapshot = Vec::new();
    for index in 0..count {
        let piece = (table.get(index).map_err(failed)?)
            .ok_or_else(|| StoreError::Damaged(format!("the snapshot lacks its piece {index}")))?;
        snapshot.extend_from_slice(piece.value());
    }
    Ok(snapshot)
}

/// One room's database.
pub struct Store {
    db: Database,
    path: PathBuf,
    next_key: u64,
}

impl Store {
    /// Opens (or creates) the database at `path` for `room`, and reads it.
    pub fn open(path: &Path, room: &str) -> Result<(Store, Stored), StoreError> {
        set_aside_if_torn(path)?;
        if !path.exists() {
            create(path, room)?;
        }
        let db = Database::create(path).map_err(failed)?;
        let read = db.begin_read().map_err(failed)?;
        let meta = read.open_table(META).map_err(failed)?;
        let snapshot = match meta.get("snapshot").map_err(failed)? {
            None => None,
            Some(value) => match value.value().strip_prefix(CHUNKED) {
                None => Some(value.value().to_vec()),
                Some(count) => Some(read_pieces(&read, count)?),
            },
        };
        let table = read.open_table(EVENTS).map_err(failed)?;
        let mut events = Vec::new();
        let mut next_key = 0;
        for entry in table.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            next_key = key.value() + 1;
            let bytes = value.value();
            let batch = P2PEvent::decode_batch(bytes).map_err(|e| match bytes.first() {
                Some(&format) if format > cpc_sync::protocol::codec::FORMAT => {
                    StoreError::Newer(format)
                }
                _ => StoreError::Damaged(e.to_string()),
            })?;
            events.extend(batch);
        }
        drop((meta, table, read));
        let store = Store {
            db,
            path: path.to_path_buf(),
            next_key,
        };
        Ok((store, Stored { snapshot, events }))
    }

    /// Makes `writes` durable, in order, in one transaction: `Ok` once it
    /// is committed to disk.
    #[cfg(test)]
    pub fn commit(&mut self, writes: &[Persist]) -> Result<(), StoreError> {
        self.write(&Persist::commit(writes))
    }

    /// Makes one commit's writes
    /// ([`Persist::commit`](cpc_sync::protocol::sync::Persist::commit))
    /// durable in one transaction: `Ok` once it is committed to disk.
    pub fn write(&mut self, commit: &Commit) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(failed)?;
        let mut next_key = self.next_key;
        {
            let mut events = txn.open_table(EVENTS).map_err(failed)?;
            let mut meta = txn.open_table(META).map_err(failed)?;
            if let Some(bytes) = commit.snapshot {
                // It covers every event persisted so far.
                events.retain(|_, _| false).map_err(failed)?;
                let mut pieces = txn.open_table(SNAPSHOT).map_err(failed)?;
                pieces.retain(|_, _| false).map_err(failed)?;
                let mut count = 0u32;
                for piece in bytes.chunks(PIECE) {
                    pieces.insert(count, piece).map_err(failed)?;
                    count += 1;
                }
                let marker = [&CHUNKED[..], &count.to_le_bytes()].concat();
                meta.insert("snapshot", marker.as_slice()).map_err(failed)?;
            }
            if let Some(record) = &commit.record {
                events.insert(next_key, record.as_slice()).map_err(failed)?;
                next_key += 1;
            }
        }
        txn.commit().map_err(failed)?;
        self.next_key = next_key;
        if commit.snapshot.is_some() {
            self.compact();
        }
        Ok(())
    }

    /// Gives the pages a fold freed back to the file system. redb reuses
    /// freed pages but never shrinks its file by itself: a room stayed at
    /// the size of the largest log it ever held between folds (a room
    /// overwriting 100 keys, 11.5 KB of state, kept a 35.7 MB file, and
    /// that length counts against the room's and the disk's limits).
    /// Compacting copies what is live (the snapshot, a few records) to the
    /// file's start and truncates it, in transactions as crash-safe as a
    /// commit. Its failure loses nothing: the file stays as it was.
    fn compact(&mut self) {
        let _ = self.db.compact();
    }

    /// Bytes the database file takes on disk.
    pub fn bytes(&self) -> u64 {
        file_bytes(&self.path)
    }
}

pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of its own under the temp dir, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(test: &str) -> Folder {
            let dir = std::env::temp_dir().join(format!("cpc-store-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a temp folder");
            Folder(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn snapshot(bytes: &[u8]) -> Persist {
        Persist::Snapshot(std::sync::Arc::new(bytes.to_vec()))
    }

    /// A server killed or stopped within the few ms of a room's first
    /// write left its file with no redb header (zeros where redb writes
    /// its magic), and every later open of the room failed for good:
    /// "Not a redb database". Such a file held nothing: it is set aside and
    /// the room made anew; a room is made under another name and renamed
    /// once committed, so no file of a room is left torn again.
    #[test]
    fn a_room_file_torn_before_its_first_commit_is_set_aside_and_made_anew() {
        let folder = Folder::new("torn");
        let path = folder.0.join("room.redb");
        std::fs::write(&path, vec![0u8; 73_728]).unwrap();
        let (mut store, stored) = Store::open(&path, "room").expect("made anew");
        assert!(stored.snapshot.is_none() && stored.events.is_empty());
        assert!(folder.0.join("room.redb.torn").exists(), "kept aside");
        store.commit(&[snapshot(b"state")]).unwrap();
        drop(store);
        let (_, stored) = Store::open(&path, "room").expect("opens");
        assert_eq!(stored.snapshot.as_deref(), Some(&b"state"[..]));
        assert!(!folder.0.join("room.redb.new").exists());
    }

    /// A fold gives the log's pages back: the file shrinks to about what
    /// is live, where it stayed at its largest.
    #[test]
    fn a_fold_shrinks_the_file_to_what_is_live() {
        let folder = Folder::new("fold");
        let path = folder.0.join("room.redb");
        let (mut store, _) = Store::open(&path, "room").expect("made");
        for _ in 0..200 {
            let record = vec![7u8; 64 << 10];
            store
                .commit(&[Persist::Events { record, count: 1 }])
                .unwrap();
        }
        let grown = store.bytes();
        assert!(grown >= 200 * (64 << 10), "{grown}");
        store.commit(&[snapshot(&[1u8; 1024])]).unwrap();
        let folded = store.bytes();
        assert!(folded < grown / 10, "{grown} -> {folded}");
        drop(store);
        let (_, stored) = Store::open(&path, "room").expect("opens");
        assert_eq!(stored.snapshot.as_deref(), Some(&[1u8; 1024][..]));
        assert!(stored.events.is_empty());
    }

    /// An interrupted making leaves only the file under the other name,
    /// which the next open makes again.
    #[test]
    fn a_room_made_halfway_is_made_again() {
        let folder = Folder::new("halfway");
        let path = folder.0.join("room.redb");
        std::fs::write(path.with_extension("redb.new"), vec![0u8; 4_096]).unwrap();
        let (_, stored) = Store::open(&path, "room").expect("made");
        assert!(stored.snapshot.is_none() && stored.events.is_empty());
        assert!(!path.with_extension("redb.new").exists());
    }

    /// A snapshot of 32 MiB (in pieces) keeps a file about its size once
    /// folded: held as one value, 128 MiB; and a fold of a log of small
    /// records into a 16 MiB snapshot shrinks the file, where it grew it
    /// from 71 to 100 MB (a review's cases).
    #[test]
    fn a_big_snapshot_keeps_a_file_about_its_size() {
        let folder = Folder::new("big");
        let path = folder.0.join("room.redb");
        let (mut store, _) = Store::open(&path, "room").expect("made");
        let live = 32usize << 20;
        for round in 0..3u8 {
            let record = vec![round; 1000];
            store
                .commit(&[Persist::Events { record, count: 1 }])
                .unwrap();
            store.commit(&[snapshot(&vec![round; live])]).unwrap();
        }
        let bytes = store.bytes();
        assert!(bytes < live as u64 * 5 / 4, "{bytes} bytes for {live} live");
        // A smaller snapshot leaves none of the larger one's pieces.
        store.commit(&[snapshot(&[7u8; 1 << 20])]).unwrap();
        let bytes = store.bytes();
        assert!(bytes < 4 << 20, "{bytes} bytes for 1 MiB live");
        drop(store);
        let (_, stored) = Store::open(&path, "room").expect("opens");
        assert_eq!(stored.snapshot, Some(vec![7u8; 1 << 20]));

        let path = folder.0.join("log.redb");
        let (mut store, _) = Store::open(&path, "log").expect("made");
        for i in 0..4000usize {
            let batch: Vec<Persist> = (0..50)
                .map(|j| Persist::Events {
                    record: vec![((i + j) % 251) as u8; 200],
                    count: 1,
                })
                .collect();
            store.commit(&batch).unwrap();
        }
        let grown = store.bytes();
        store.commit(&[snapshot(&vec![3u8; 16 << 20])]).unwrap();
        let folded = store.bytes();
        assert!(folded < grown / 2, "the fold: {grown} -> {folded}");
    }

    /// A snapshot an earlier build stored whole is read as it is.
    #[test]
    fn a_snapshot_stored_whole_is_read() {
        let folder = Folder::new("whole");
        let path = folder.0.join("room.redb");
        drop(Store::open(&path, "room").expect("made"));
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("snapshot", &b"CPCS whole"[..])
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let (_, stored) = Store::open(&path, "room").expect("opens");
        assert_eq!(stored.snapshot.as_deref(), Some(&b"CPCS whole"[..]));
    }

    /// Events of a batch format newer than this build's are not damage:
    /// the room fails saying so, and the file stays as it is.
    #[test]
    fn events_a_newer_build_stored_are_named_so_and_left_as_they_are() {
        let folder = Folder::new("newer");
        let path = folder.0.join("room.redb");
        let (mut store, _) = Store::open(&path, "room").expect("made");
        let newer = vec![cpc_sync::protocol::codec::FORMAT + 1, 0, 0];
        let record = Persist::Events {
            record: newer,
            count: 1,
        };
        store.commit(&[record]).unwrap();
        drop(store);
        let Err(refused) = Store::open(&path, "room") else {
            panic!("opened")
        };
        assert!(matches!(refused, StoreError::Newer(_)), "{refused}");
        assert!(
            refused.to_string().contains("newer cpc-signal"),
            "{refused}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the room's file is this user's only");
        }
    }

    /// A file with bytes in its header is damaged, not torn: its room
    /// fails, and the file stays for someone to look at.
    #[test]
    fn a_damaged_room_file_is_not_set_aside() {
        let folder = Folder::new("damaged");
        let damaged = folder.0.join("other.redb");
        std::fs::write(&damaged, b"not zeros, not redb").unwrap();
        assert!(Store::open(&damaged, "other").is_err());
        assert!(damaged.exists());
        assert!(!damaged.with_extension("redb.torn").exists());
    }
}
