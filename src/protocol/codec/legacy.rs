//! The forms a page stored before event batches ([`super::events`]): a log
//! record as postcard's `Vec<P2PEvent>`, a snapshot of format 2 (postcard
//! after the magic bytes). Read once, when a page's storage migrates on
//! open, by hand ([`Postcard`]: no serde in the wasm); never written (but
//! by tests, with postcard, to have something to migrate).
//!
//! An event's postcard form is its content bytes ([`super::content`])
//! then its seal as an `Option`: the first sequence number it covers, the
//! key, the signature.

use super::read::Postcard;
use super::CodecError;
use crate::protocol::clock::{Timestamp, VectorClock};
use crate::protocol::event::{
    CounterOp, CounterShare, EventId, Operation, P2PEvent, RegisterOp, SetOp,
};
use crate::protocol::seal::Seal;
use crate::protocol::snapshot::{SnapshotError, StateSnapshot};
use crate::protocol::value::JsonValue;

const MAGIC: &[u8; 4] = b"CPCS";
/// The snapshot format this module reads.
pub const SNAPSHOT_FORMAT: u8 = 2;

/// The smallest event: its dot (9 bytes), an empty key, a register's
/// delete of an empty clock (3), empty deps, its time and no seal.
const MIN_EVENT: usize = 9 + 1 + 3 + 1 + 1 + 1;

/// A log record of the previous form: its events. (Bytes after them are
/// left, as postcard left them.)
pub fn decode_record(bytes: &[u8]) -> Result<Vec<P2PEvent>, SnapshotError> {
    let mut r = Postcard::new(bytes, "stored record");
    let events = r.many(MIN_EVENT, event);
    r.finish(events, false).map_err(malformed)
}

/// A snapshot of format 2.
pub fn decode_snapshot(bytes: &[u8]) -> Result<StateSnapshot, SnapshotError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadMagic)?;
    let (&format, body) = body.split_first().ok_or(SnapshotError::BadMagic)?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::UnsupportedFormat(format));
    }
    let mut r = Postcard::new(body, "stored snapshot");
    let read = (r.clock(), r.many(MIN_EVENT, event), r.slice());
    let (version_vector, events, live) = r.finish(read, false).map_err(malformed)?;
    if live.len() != events.len().div_ceil(8) {
        return Err(SnapshotError::Malformed(
            "the live bitmap does not match the events".into(),
        ));
    }
    let live = (0..events.len())
        .map(|i| live[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    Ok(StateSnapshot {
        version_vector,
        events,
        live,
    })
}

fn malformed(e: CodecError) -> SnapshotError {
    SnapshotError::Malformed(e.to_string())
}

/// One event in postcard's form (a placeholder where the reader failed:
/// its error sticks, see [`Postcard`]).
fn event(r: &mut Postcard) -> P2PEvent {
    let id = EventId::new(r.peer(), r.u64());
    let key = r.str().into();
    let value = |r: &mut Postcard| {
        JsonValue::verbatim(r.str()).unwrap_or_else(|e| {
            r.fail(CodecError::Json(e.to_string()));
            JsonValue::null()
        })
    };
    let unknown = |r: &mut Postcard, index: u32| {
        r.unknown(index.into());
        Operation::Register(RegisterOp::Delete {
            observed: VectorClock::new(),
        })
    };
    let op = match r.u32() {
        0 => match r.u32() {
            0 => Operation::Register(RegisterOp::Write {
                value: value(r),
                observed: r.clock(),
                resolution: r.bool(),
            }),
            1 => Operation::Register(RegisterOp::Delete {
                observed: r.clock(),
            }),
            other => unknown(r, other),
        },
        1 => match r.u32() {
            0 => Operation::Counter(CounterOp::Increment {
                by: r.i64(),
                sum: r.i64(),
            }),
            1 => Operation::Counter(CounterOp::Delete {
                observed: r.many(8 + 1 + 1, |r| CounterShare {
                    peer: r.peer(),
                    seq: r.u64(),
                    sum: r.i64(),
                }),
            }),
            other => unknown(r, other),
        },
        2 => match r.u32() {
            0 => Operation::Set(SetOp::Add {
                member: value(r),
                observed: r.clock(),
            }),
            1 => Operation::Set(SetOp::Remove {
                member: value(r),
                observed: r.clock(),
            }),
            2 => Operation::Set(SetOp::Delete {
                observed: r.clock(),
            }),
            other => unknown(r, other),
        },
        other => unknown(r, other),
    };
    let deps = r.clock();
    let hlc = Timestamp(r.u64());
    let seal = r.bool().then(|| {
        let first = r.u64();
        let key = r.array();
        Box::new(Seal::new(first, key, [r.array(), r.array()]))
    });
    P2PEvent {
        id,
        key,
        op,
        deps,
        hlc,
        seal,
    }
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
    #[derive(serde::Serialize)]
    struct SnapshotV2<'a> {
        version_vector: &'a VectorClock,
        events: &'a [P2PEvent],
        live: Vec<u8>,
    }
    let mut live = vec![0u8; snapshot.live.len().div_ceil(8)];
    for (i, _) in snapshot.live.iter().enumerate().filter(|(_, l)| **l) {
        live[i / 8] |= 1 << (i % 8);
    }
    let old = SnapshotV2 {
        version_vector: &snapshot.version_vector,
        events: &snapshot.events,
        live,
    };
    let mut out = MAGIC.to_vec();
    out.push(SNAPSHOT_FORMAT);
    postcard::to_extend(&old, out).unwrap_or_default()
}
