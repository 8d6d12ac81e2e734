//! Each client's share of the room peer: one address (`serve.rs`
//! `address_key`) may have at most `KEEP_LOADED_PER_ADDRESS` rooms loaded
//! on its behalf (an eighth of `KEEP_MAX_LOADED`), and may start at most
//! `KEEP_NEW_ROOMS_PER_ADDRESS` new stored rooms an hour (a hundredth of
//! `KEEP_MAX_ROOMS`). Without them one socket joining room after room held
//! every loaded slot for `KEEP_IDLE_MS`, and one client writing an event
//! in each of 10,000 rooms filled `KEEP_MAX_ROOMS` within minutes. Sans-IO:
//! the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::serve::AddressCounts;

/// The window new stored rooms are counted in.
pub const START_WINDOW: Duration = Duration::from_secs(3600);

/// Addresses whose windows are remembered before old ones are forgotten.
const REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub struct Shares {
    /// Rooms loaded now on behalf of each address.
    loaded: AddressCounts,
    /// Per address: when its window began, and the rooms it started since.
    started: HashMap<IpAddr, (Instant, usize)>,
}

impl Shares {
    /// Counts a room loaded for `by`, unless it has `share` loaded already.
    pub fn load(&mut self, by: IpAddr, share: usize) -> bool {
        self.loaded.take(by, share)
    }

    /// A room loaded for `by` is unloaded.
    pub fn unload(&mut self, by: IpAddr) {
        self.loaded.release(by);
    }

    /// Counts a new stored room started for `by` at `now`, unless it has
    /// started `share` within the window.
    pub fn start(&mut self, by: IpAddr, share: usize, now: Instant) -> bool {
        let current = |at: Instant| now.saturating_duration_since(at) < START_WINDOW;
        if self.started.len() >= REMEMBERED && !self.started.contains_key(&by) {
            self.started.retain(|_, (at, _)| current(*at));
        }
        let (at, count) = self.started.entry(by).or_insert((now, 0));
        if !current(*at) {
            (*at, *count) = (now, 0);
        }
        if *count >= share {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_loads_its_share_and_starts_its_share_a_window() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut shares = Shares::default();
        assert!(shares.load(a, 2) && shares.load(a, 2));
        assert!(!shares.load(a, 2), "a third");
        assert!(shares.load(b, 2), "another address has its own");
        shares.unload(a);
        assert!(shares.load(a, 2), "one was unloaded");

        let t0 = Instant::now();
        assert!(shares.start(a, 1, t0));
        assert!(!shares.start(a, 1, t0 + START_WINDOW / 2));
        assert!(shares.start(b, 1, t0));
        assert!(shares.start(a, 1, t0 + START_WINDOW), "a new window");
    }
}
