//! The forms a page stored before event batches ([`super::events`]): a log
//! record as postcard's `Vec<P2PEvent>`, a snapshot of format 2 (postcard
//! after the magic bytes). Read once, when a page's storage migrates on
//! open; never written (but by tests, to have something to migrate).

use serde::{Deserialize, Serialize};

use crate::protocol::clock::VectorClock;
use crate::protocol::event::P2PEvent;
use crate::protocol::snapshot::{SnapshotError, StateSnapshot};

const MAGIC: &[u8; 4] = b"CPCS";
/// The snapshot format this module reads.
pub const SNAPSHOT_FORMAT: u8 = 2;

#[derive(Serialize, Deserialize)]
struct SnapshotV2 {
    version_vector: VectorClock,
    events: Vec<P2PEvent>,
    live: Vec<u8>,
}

/// A log record of the previous form: its events.
pub fn decode_record(bytes: &[u8]) -> Result<Vec<P2PEvent>, SnapshotError> {
    postcard::from_bytes(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))
}

/// A snapshot of format 2.
pub fn decode_snapshot(bytes: &[u8]) -> Result<StateSnapshot, SnapshotError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadMagic)?;
    let (&format, body) = body.split_first().ok_or(SnapshotError::BadMagic)?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::UnsupportedFormat(format));
    }
    let old: SnapshotV2 =
        postcard::from_bytes(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    if old.live.len() != old.events.len().div_ceil(8) {
        return Err(SnapshotError::Malformed(
            "the live bitmap does not match the events".into(),
        ));
    }
    let live = (0..old.events.len())
        .map(|i| old.live[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    Ok(StateSnapshot {
        version_vector: old.version_vector,
        events: old.events,
        live,
    })
}

/// Rewrites stored bytes in today's forms: a snapshot, and the log records
/// after it. A record that does not decode is dropped and counted (it was
/// unreadable before, too; anti-entropy refetches its events).
pub fn migrate(snapshot: Option<&[u8]>, records: &[Vec<u8>]) -> Result<Migrated, SnapshotError> {
    let snapshot = snapshot
        .map(|bytes| decode_snapshot(bytes).map(|s| s.encode()))
        .transpose()?;
    let mut events = Vec::new();
    let mut damaged = 0;
    for record in records {
        match decode_record(record) {
            Ok(batch) => events.extend(batch),
            Err(_) => damaged += 1,
        }
    }
    Ok(Migrated {
        snapshot,
        record: (!events.is_empty()).then(|| P2PEvent::encode_batch(&events)),
        damaged,
    })
}

/// Stored bytes in today's forms.
#[derive(Debug)]
pub struct Migrated {
    pub snapshot: Option<Vec<u8>>,
    /// The log after the snapshot, as one record.
    pub record: Option<Vec<u8>>,
    pub damaged: usize,
}

/// A log record of the previous form (for migration tests).
#[cfg(any(test, feature = "testing"))]
pub fn encode_record(events: &[P2PEvent]) -> Vec<u8> {
    postcard::to_allocvec(events).unwrap_or_default()
}

/// A snapshot of format 2 (for migration tests).
#[cfg(any(test, feature = "testing"))]
pub fn encode_snapshot(snapshot: &StateSnapshot) -> Vec<u8> {
    let mut live = vec![0u8; snapshot.live.len().div_ceil(8)];
    for (i, _) in snapshot.live.iter().enumerate().filter(|(_, l)| **l) {
        live[i / 8] |= 1 << (i % 8);
    }
    let old = SnapshotV2 {
        version_vector: snapshot.version_vector.clone(),
        events: snapshot.events.clone(),
        live,
    };
    let mut out = MAGIC.to_vec();
    out.push(SNAPSHOT_FORMAT);
    postcard::to_extend(&old, out).unwrap_or_default()
}
