//! A kept room on disk: one redb database per room, holding what the
//! room's `SyncNode` asks to persist ([`Persist`]): batches of events
//! appended in order, and the snapshot that replaces them when the log is
//! folded. One write transaction carries every write of one drain of the
//! node's outputs, and is committed (fsync'd) before anything those
//! outputs send leaves: redb commits are atomic and durable
//! (`Durability::Immediate`), so a `kill -9` at any moment leaves either
//! the whole transaction or none of it.

use std::path::{Path, PathBuf};

use cpc_sync::protocol::sync::Persist;
use cpc_sync::protocol::P2PEvent;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Batches of events, by append order.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `snapshot`: the latest fold of the log; `room`: the room's name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What a store could not do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the room's database failed: {0}")]
    Database(#[from] redb::Error),
    #[error("the room's stored events do not decode (the file is damaged): {0}")]
    Damaged(String),
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

/// One room's database.
pub struct Store {
    db: Database,
    path: PathBuf,
    next_key: u64,
}

impl Store {
    /// Opens (or creates) the database at `path` for `room`, and reads it.
    pub fn open(path: &Path, room: &str) -> Result<(Store, Stored), StoreError> {
        let db = Database::create(path).map_err(failed)?;
        let txn = db.begin_write().map_err(failed)?;
        {
            let mut meta = txn.open_table(META).map_err(failed)?;
            meta.insert("room", room.as_bytes()).map_err(failed)?;
            txn.open_table(EVENTS).map_err(failed)?;
        }
        txn.commit().map_err(failed)?;
        let read = db.begin_read().map_err(failed)?;
        let meta = read.open_table(META).map_err(failed)?;
        let snapshot = meta
            .get("snapshot")
            .map_err(failed)?
            .map(|v| v.value().to_vec());
        let table = read.open_table(EVENTS).map_err(failed)?;
        let mut events = Vec::new();
        let mut next_key = 0;
        for entry in table.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            next_key = key.value() + 1;
            let batch = P2PEvent::decode_batch(value.value())
                .map_err(|e| StoreError::Damaged(e.to_string()))?;
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
    pub fn commit(&mut self, writes: &[Persist]) -> Result<(), StoreError> {
        let commit = Persist::commit(writes);
        let txn = self.db.begin_write().map_err(failed)?;
        let mut next_key = self.next_key;
        {
            let mut events = txn.open_table(EVENTS).map_err(failed)?;
            let mut meta = txn.open_table(META).map_err(failed)?;
            if let Some(bytes) = commit.snapshot {
                // It covers every event persisted so far.
                events.retain(|_, _| false).map_err(failed)?;
                meta.insert("snapshot", bytes).map_err(failed)?;
            }
            if let Some(record) = &commit.record {
                events.insert(next_key, record.as_slice()).map_err(failed)?;
                next_key += 1;
            }
        }
        txn.commit().map_err(failed)?;
        self.next_key = next_key;
        Ok(())
    }

    /// Bytes the database file takes on disk.
    pub fn bytes(&self) -> u64 {
        file_bytes(&self.path)
    }
}

pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
