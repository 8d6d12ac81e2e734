//! What the environment sets for the room peer, and why it refuses.

use std::path::PathBuf;
use std::time::Duration;

use cpc_sync::protocol::sync::{IntakeBudget, DEFAULT_INTAKE_BYTES};

/// How the room peer keeps rooms (`KEEP`, `DATA_DIR`, `KEEP_*`).
#[derive(Debug, Clone)]
pub struct KeepConfig {
    /// Where the identity and the rooms' databases live (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// Rooms kept on disk at most (`KEEP_MAX_ROOMS`).
    pub max_rooms: usize,
    /// Bytes one room's database may take (`KEEP_MAX_ROOM_BYTES`).
    pub max_room_bytes: u64,
    /// Bytes every room's database together may take (`KEEP_MAX_DISK_BYTES`).
    pub max_disk_bytes: u64,
    /// Bytes the databases of the rooms in memory may take together
    /// (`KEEP_MAX_LOADED_BYTES`): a loaded room holds up to ~6 times its
    /// database's bytes in memory (its state and log decoded), so this
    /// bounds the room peer's memory, where `KEEP_MAX_LOADED` counts rooms
    /// of any size.
    pub max_loaded_bytes: u64,
    /// Of those, what the rooms loaded for one client address may take
    /// (`KEEP_LOADED_BYTES_PER_ADDRESS`; an eighth of `max_loaded_bytes`).
    pub loaded_bytes_per_address: u64,
    /// A room with no page is unloaded from memory after this long
    /// (`KEEP_IDLE_MS`).
    pub idle: Duration,
    /// Rooms in memory at most, each a thread (`KEEP_MAX_LOADED`).
    pub max_loaded: usize,
    /// Rooms loaded for one client address at most
    /// (`KEEP_LOADED_PER_ADDRESS`; an eighth of `max_loaded`).
    pub loaded_per_address: usize,
    /// New stored rooms one client address may start an hour
    /// (`KEEP_NEW_ROOMS_PER_ADDRESS`; a hundredth of `max_rooms`).
    pub started_per_address: usize,
    /// Events in a room's log before it is folded into a snapshot
    /// (`KEEP_COMPACT_AFTER`; the browser's `compactAfter`).
    pub compact_after: usize,
    /// What snapshots being taken in by every room together may hold of
    /// memory (`KEEP_INTAKE_BYTES`): each room's node shares this budget,
    /// where each would otherwise hold up to ~1 GB of a member's
    /// snapshot at once.
    pub intake: IntakeBudget,
}

impl Default for KeepConfig {
    fn default() -> KeepConfig {
        KeepConfig {
            data_dir: PathBuf::from("data"),
            max_rooms: 10_000,
            max_room_bytes: 128 << 20,
            max_disk_bytes: 16 << 30,
            max_loaded_bytes: 1 << 30,
            loaded_bytes_per_address: 128 << 20,
            idle: Duration::from_secs(60),
            max_loaded: 1_000,
            loaded_per_address: 125,
            started_per_address: 100,
            compact_after: 50_000,
            intake: IntakeBudget::default(),
        }
    }
}

fn number(var: &str, default: u64) -> Result<u64, String> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{var} must be a number, 1 or more, not {text:?}")),
        },
    }
}

impl KeepConfig {
    /// `None` when `KEEP=off` turns the room peer off.
    pub fn from_env() -> Result<Option<KeepConfig>, String> {
        match std::env::var("KEEP").as_deref() {
            Err(_) | Ok("on") => {}
            Ok("off") => return Ok(None),
            Ok(other) => return Err(format!("KEEP must be on or off, not {other:?}")),
        }
        let default = KeepConfig::default();
        let max_rooms = number("KEEP_MAX_ROOMS", default.max_rooms as u64)? as usize;
        let max_loaded = number("KEEP_MAX_LOADED", default.max_loaded as u64)? as usize;
        let max_loaded_bytes = number("KEEP_MAX_LOADED_BYTES", default.max_loaded_bytes)?;
        let loaded_bytes_per_address = number(
            "KEEP_LOADED_BYTES_PER_ADDRESS",
            (max_loaded_bytes / 8).max(1),
        )?;
        let max_room_bytes = number("KEEP_MAX_ROOM_BYTES", loaded_bytes_per_address)?;
        for (name, bound, of, bytes) in [
            (
                "KEEP_LOADED_BYTES_PER_ADDRESS",
                loaded_bytes_per_address,
                "KEEP_MAX_LOADED_BYTES",
                max_loaded_bytes,
            ),
            (
                "KEEP_MAX_ROOM_BYTES",
                max_room_bytes,
                "KEEP_LOADED_BYTES_PER_ADDRESS",
                loaded_bytes_per_address,
            ),
        ] {
            if bound > bytes {
                return Err(format!(
                    "{name} ({bound}) is more than {of} ({bytes}): a room that large could not be loaded"
                ));
            }
        }
        let share = |var: &str, of: usize, part: usize| {
            number(var, (of / part).max(1) as u64).map(|n| n as usize)
        };
        Ok(Some(KeepConfig {
            data_dir: match std::env::var_os("DATA_DIR") {
                None => default.data_dir,
                Some(dir) if dir.is_empty() => {
                    return Err(
                        "DATA_DIR is empty: name a folder, or leave it unset (./data)".into(),
                    )
                }
                Some(dir) => PathBuf::from(dir),
            },
            max_rooms,
            max_room_bytes,
            max_disk_bytes: number("KEEP_MAX_DISK_BYTES", default.max_disk_bytes)?,
            max_loaded_bytes,
            loaded_bytes_per_address,
            idle: Duration::from_millis(number("KEEP_IDLE_MS", 60_000)?),
            max_loaded,
            loaded_per_address: share("KEEP_LOADED_PER_ADDRESS", max_loaded, 8)?,
            started_per_address: share("KEEP_NEW_ROOMS_PER_ADDRESS", max_rooms, 100)?,
            compact_after: number("KEEP_COMPACT_AFTER", default.compact_after as u64)? as usize,
            intake: IntakeBudget::new(number("KEEP_INTAKE_BYTES", DEFAULT_INTAKE_BYTES)?),
        }))
    }
}

/// Why the room peer does not (or no longer) keep a room for a page: sent
/// to the page as `{"type":"unkeep","reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    #[error("the server keeps at most {max} rooms (KEEP_MAX_ROOMS) and keeps no new one")]
    TooManyRooms { max: usize },
    #[error("this room takes {bytes} bytes on the server, its limit is {max} (KEEP_MAX_ROOM_BYTES): the server keeps no more of it")]
    RoomTooLarge { bytes: u64, max: u64 },
    #[error("the server's rooms take {bytes} bytes, the limit is {max} (KEEP_MAX_DISK_BYTES): it keeps no more")]
    DiskFull { bytes: u64, max: u64 },
    #[error("the server has {max} rooms in memory, the most it keeps loaded (KEEP_MAX_LOADED)")]
    TooManyLoaded { max: usize },
    #[error("the server's rooms in memory take {bytes} bytes on disk, and it keeps at most {max} loaded (KEEP_MAX_LOADED_BYTES): it keeps no more until rooms are unloaded")]
    MemoryFull { bytes: u64, max: u64 },
    #[error("the rooms loaded on the server for this address took {bytes} bytes on disk as they loaded, and this one would take it past {max}, the most one address may (KEEP_LOADED_BYTES_PER_ADDRESS); a room is unloaded KEEP_IDLE_MS after its last page leaves")]
    AddressMemory { bytes: u64, max: u64 },
    #[error("this address has {max} rooms loaded on the server, the most one address may (KEEP_LOADED_PER_ADDRESS); a room is unloaded KEEP_IDLE_MS after its last page leaves")]
    AddressLoaded { max: usize },
    #[error("this address started {max} kept rooms within the hour, the most one address may (KEEP_NEW_ROOMS_PER_ADDRESS)")]
    AddressStarted { max: usize },
    #[error("the server cannot store this room: {0}")]
    Store(String),
    #[error("closed by the server peer: {0}")]
    Closed(String),
}

impl KeepError {
    /// Its name as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeepError::TooManyRooms { .. } => "too_many_rooms",
            KeepError::RoomTooLarge { .. } => "room_too_large",
            KeepError::DiskFull { .. } => "disk_full",
            KeepError::TooManyLoaded { .. } => "too_many_loaded",
            KeepError::MemoryFull { .. } => "memory_full",
            KeepError::AddressMemory { .. } => "address_memory",
            KeepError::AddressLoaded { .. } => "address_loaded",
            KeepError::AddressStarted { .. } => "address_started",
            KeepError::Store(_) => "store",
            KeepError::Closed(_) => "closed",
        }
    }
}
