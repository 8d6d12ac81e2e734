//! What the room peer counts, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::KeepError;
use crate::metrics::{Reading, ReadingKind};

/// Refusal classes, as metric labels.
pub const REFUSALS: [&str; 10] = [
    "too_many_rooms",
    "too_many_loaded",
    "memory_full",
    "address_memory",
    "address_loaded",
    "address_started",
    "room_too_large",
    "disk_full",
    "store",
    "closed",
];

#[derive(Default)]
pub struct Counters {
    pub links: AtomicU64,
    pub loads: AtomicU64,
    pub unloads: AtomicU64,
    pub commits: AtomicU64,
    pub events_persisted: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Times a page's socket held `FRAME_HIGH_WATER` of frames and what it
    /// was owed waited.
    pub backlogs: AtomicU64,
    /// What pages sent that the room's node refused (typed refusals).
    pub rejected: AtomicU64,
    refused: [AtomicU64; REFUSALS.len()],
}

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct KeepStats {
    pub loaded: u64,
    pub stored: u64,
    pub disk_bytes: u64,
    pub loaded_bytes: u64,
    pub links: u64,
    pub loads: u64,
    pub unloads: u64,
    pub commits: u64,
    pub events_persisted: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub backlogs: u64,
    pub rejected: u64,
    pub refused: Vec<(&'static str, u64)>,
}

impl Counters {
    pub fn refused(&self, error: &KeepError) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == error.as_str()) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    /// The counters, with the registry's gauges.
    pub fn snapshot(&self, loaded: u64, stored: u64, disk: (u64, u64)) -> KeepStats {
        KeepStats {
            loaded,
            stored,
            disk_bytes: disk.0,
            loaded_bytes: disk.1,
            links: self.links.load(Relaxed),
            loads: self.loads.load(Relaxed),
            unloads: self.unloads.load(Relaxed),
            commits: self.commits.load(Relaxed),
            events_persisted: self.events_persisted.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            backlogs: self.backlogs.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            refused: REFUSALS
                .iter()
                .zip(&self.refused)
                .map(|(r, n)| (*r, n.load(Relaxed)))
                .collect(),
        }
    }
}

/// The room peer's readings for `/metrics` (`cpc_signal_keep_*`).
pub fn readings(stats: &KeepStats) -> Vec<Reading> {
    let reading = |name, help, kind, value| Reading {
        name,
        help,
        kind,
        labels: vec![],
        value,
    };
    let (gauge, counter) = (ReadingKind::Gauge, ReadingKind::Counter);
    let mut readings = vec![
        reading(
            "keep_rooms_loaded",
            "Kept rooms in memory",
            gauge,
            stats.loaded,
        ),
        reading(
            "keep_rooms_stored",
            "Kept rooms on disk",
            gauge,
            stats.stored,
        ),
        reading(
            "keep_disk_bytes",
            "Bytes the kept rooms take on disk",
            gauge,
            stats.disk_bytes,
        ),
        reading(
            "keep_loaded_bytes",
            "Bytes the databases of the rooms in memory take on disk",
            gauge,
            stats.loaded_bytes,
        ),
        reading(
            "keep_links",
            "Pages linked to their room's peer",
            gauge,
            stats.links,
        ),
        reading("keep_loads", "Rooms loaded from disk", counter, stats.loads),
        reading(
            "keep_unloads",
            "Idle rooms unloaded from memory",
            counter,
            stats.unloads,
        ),
        reading(
            "keep_commits",
            "Transactions committed",
            counter,
            stats.commits,
        ),
        reading(
            "keep_events_persisted",
            "Events committed to disk",
            counter,
            stats.events_persisted,
        ),
        reading(
            "keep_frames_in",
            "Sync frames from pages",
            counter,
            stats.frames_in,
        ),
        reading(
            "keep_frames_out",
            "Sync frames to pages",
            counter,
            stats.frames_out,
        ),
        reading(
            "keep_backlogs",
            "Times a page's socket held a megabyte of frames and what it was owed waited",
            counter,
            stats.backlogs,
        ),
        reading(
            "keep_rejected",
            "What pages sent that the room peer refused",
            counter,
            stats.rejected,
        ),
    ];
    for (reason, value) in &stats.refused {
        readings.push(Reading {
            labels: vec![("reason", reason.to_string())],
            ..reading(
                "keep_refused",
                "Links refused or cut, by reason",
                counter,
                *value,
            )
        });
    }
    readings
}
