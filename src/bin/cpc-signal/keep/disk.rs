//! What the stored rooms take on disk, and what the rooms in memory take
//! of it: the room peer's bounds on both are kept here, in file bytes
//! (a loaded room holds up to ~6 times its file in memory).
//!
//! The bytes a room takes when it is loaded are charged to the address it
//! was loaded for, as its loaded slot is (`shares.rs`): one address may
//! have `KEEP_LOADED_BYTES_PER_ADDRESS` of them at most (an eighth of
//! `KEEP_MAX_LOADED_BYTES`), so holding stored rooms loaded with bare joins
//! until the budget is full takes eight addresses. What a room grows by
//! while loaded counts against the budget alone: writes come from any of
//! its pages, and charged to the address that loaded it, a stranger who
//! loaded an honest room first could cut its writers off, and a stranger
//! writing into rooms others loaded used up their shares (a review).
//! Sans-IO: the caller measures the files.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{KeepConfig, KeepError};

#[derive(Default)]
pub struct Disk {
    /// Each stored room's bytes, by file.
    files: HashMap<String, u64>,
    /// The files' bytes, with what is reserved.
    total: u64,
    /// The files of the rooms in memory, the address each was loaded for,
    /// and what it was charged then.
    loaded: HashMap<String, (Option<IpAddr>, u64)>,
    /// Their bytes, with what is reserved (every commit is a loaded
    /// room's).
    loaded_total: u64,
    /// What the rooms were charged as they were loaded, by address.
    by_address: HashMap<IpAddr, u64>,
}

impl Disk {
    pub fn stored(&self) -> usize {
        self.files.len()
    }

    pub fn is_stored(&self, file: &str) -> Option<u64> {
        self.files.get(file).copied()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn loaded_total(&self) -> u64 {
        self.loaded_total
    }

    /// Adds `delta` bytes (less, if negative) to what the room of `file`
    /// holds in memory, when it is loaded.
    fn charge(&mut self, file: &str, delta: i128) {
        if self.loaded.contains_key(file) {
            self.loaded_total = (i128::from(self.loaded_total) + delta).max(0) as u64;
        }
    }

    /// The room of `file` takes `bytes` on disk now.
    pub fn set(&mut self, file: &str, bytes: u64) {
        let old = self.files.insert(file.to_string(), bytes).unwrap_or(0);
        self.total = self.total - old + bytes;
        self.charge(file, i128::from(bytes) - i128::from(old));
    }

    /// Whether the room of `file` may be loaded for `by`: its bytes within
    /// the budget of the rooms in memory, and within `by`'s share of it.
    pub fn fits(
        &self,
        file: &str,
        by: Option<IpAddr>,
        config: &KeepConfig,
    ) -> Result<(), KeepError> {
        let bytes = self.is_stored(file).unwrap_or(0);
        self.within_budget(bytes, config)?;
        let Some(by) = by else {
            return Ok(());
        };
        let share = self.by_address.get(&by).copied().unwrap_or(0);
        if share + bytes > config.loaded_bytes_per_address {
            return Err(KeepError::AddressMemory {
                bytes: share,
                max: config.loaded_bytes_per_address,
            });
        }
        Ok(())
    }

    fn within_budget(&self, adding: u64, config: &KeepConfig) -> Result<(), KeepError> {
        if self.loaded_total + adding > config.max_loaded_bytes {
            return Err(KeepError::MemoryFull {
                bytes: self.loaded_total,
                max: config.max_loaded_bytes,
            });
        }
        Ok(())
    }

    /// The room of `file` is in memory, loaded for `by`.
    pub fn load(&mut self, file: &str, by: Option<IpAddr>) {
        if self.loaded.contains_key(file) {
            return;
        }
        let bytes = self.is_stored(file).unwrap_or(0);
        self.loaded.insert(file.to_string(), (by, bytes));
        self.charge(file, i128::from(bytes));
        if let Some(by) = by {
            *self.by_address.entry(by).or_default() += bytes;
        }
    }

    /// The room of `file` is no longer in memory.
    pub fn unload(&mut self, file: &str) {
        let bytes = self.is_stored(file).unwrap_or(0);
        self.charge(file, -i128::from(bytes));
        let Some((by, charged)) = self.loaded.remove(file) else {
            return;
        };
        if let Some(by) = by {
            let share = self.by_address.entry(by).or_default();
            *share = share.saturating_sub(charged);
            if *share == 0 {
                self.by_address.remove(&by);
            }
        }
    }

    /// Reserves `adding` bytes for a commit of the loaded room of `file`,
    /// within the disk's limit and the budget of the rooms in memory:
    /// checked and counted at once, so rooms committing together pass them
    /// by at most a commit's growth of the file beyond its records (redb's
    /// pages).
    pub fn reserve(
        &mut self,
        file: &str,
        adding: u64,
        config: &KeepConfig,
    ) -> Result<(), KeepError> {
        if self.total + adding > config.max_disk_bytes {
            return Err(KeepError::DiskFull {
                bytes: self.total,
                max: config.max_disk_bytes,
            });
        }
        self.within_budget(adding, config)?;
        self.total += adding;
        self.charge(file, i128::from(adding));
        Ok(())
    }

    /// Gives back what [`reserve`](Self::reserve) took for `file`.
    pub fn release(&mut self, file: &str, reserved: u64) {
        self.total -= reserved;
        self.charge(file, -i128::from(reserved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KeepConfig {
        KeepConfig {
            max_loaded_bytes: 800,
            loaded_bytes_per_address: 100,
            max_disk_bytes: 10_000,
            ..KeepConfig::default()
        }
    }

    /// Each address has its share of the bytes rooms take as they load;
    /// their growth counts against the budget alone; what is unloaded or
    /// released comes back.
    #[test]
    fn the_bytes_in_memory_are_shared_by_address_and_given_back() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let config = config();
        let mut disk = Disk::default();
        disk.set("x", 80);
        disk.set("y", 80);
        assert!(disk.fits("x", Some(a), &config).is_ok());
        disk.load("x", Some(a));
        assert_eq!(
            disk.fits("y", Some(a), &config),
            Err(KeepError::AddressMemory {
                bytes: 80,
                max: 100
            })
        );
        assert!(disk.fits("y", Some(b), &config).is_ok());
        disk.load("y", Some(b));
        assert_eq!(disk.loaded_total(), 160);
        // `x` grows past `a`'s share: the budget's alone.
        disk.reserve("x", 500, &config).unwrap();
        assert!(disk.reserve("x", 141, &config).is_err(), "past the budget");
        disk.release("x", 500);
        disk.set("x", 95);
        assert_eq!(disk.loaded_total(), 175);
        assert_eq!(disk.by_address.get(&a), Some(&80), "charged as it loaded");
        disk.unload("x");
        disk.unload("y");
        assert_eq!((disk.loaded_total(), disk.total()), (0, 175));
        assert!(disk.by_address.is_empty());
    }
}
