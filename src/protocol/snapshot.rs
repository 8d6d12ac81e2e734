//! `StateSnapshot`: the whole state and its version vector, in a compact
//! binary form.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::clock::VectorClock;
use super::entity::Entity;

const MAGIC: &[u8; 4] = b"CPCS";
const FORMAT: u8 = 1;

/// Snapshot bytes that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a cpc-sync snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot format {0} is not supported (this build reads format {FORMAT})")]
    UnsupportedFormat(u8),
    #[error("snapshot is malformed: {0}")]
    Malformed(String),
    #[error("snapshot holds key {0:?} twice")]
    DuplicateKey(String),
}

/// A peer's replicated state as of `version_vector`.
#[derive(Debug, Clone)]
pub struct StateSnapshot {
    pub version_vector: VectorClock,
    pub entities: Vec<(Arc<str>, Entity)>,
}

/// The wire layout; encoding borrows from the engine instead of cloning it.
#[derive(Serialize)]
struct Wire<'a> {
    version_vector: &'a VectorClock,
    entities: Vec<(&'a str, &'a Entity)>,
}

impl StateSnapshot {
    /// Encodes borrowed parts: `MAGIC`, the format byte, then postcard.
    pub fn encode_parts<'a>(
        version_vector: &'a VectorClock,
        entities: impl Iterator<Item = (&'a str, &'a Entity)>,
    ) -> Vec<u8> {
        let wire = Wire {
            version_vector,
            entities: entities.collect(),
        };
        let mut out = Vec::with_capacity(16 + wire.entities.len() * 32);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        // Writing plain data into a growing Vec cannot fail.
        postcard::to_extend(&wire, out).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let entities = self.entities.iter().map(|(k, e)| (&**k, e));
        Self::encode_parts(&self.version_vector, entities)
    }

    /// Decodes and checks a snapshot; any defect is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadMagic)?;
        let (&format, body) = body.split_first().ok_or(SnapshotError::BadMagic)?;
        if format != FORMAT {
            return Err(SnapshotError::UnsupportedFormat(format));
        }
        let (version_vector, entities): (VectorClock, Vec<(Arc<str>, Entity)>) =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        let mut seen = HashSet::with_capacity(entities.len());
        for (key, _) in &entities {
            if !seen.insert(&**key) {
                return Err(SnapshotError::DuplicateKey(key.to_string()));
            }
        }
        Ok(StateSnapshot {
            version_vector,
            entities,
        })
    }
}
