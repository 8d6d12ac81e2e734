use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock timestamp: 48 bits of wall-clock milliseconds and a
/// 16-bit logical counter, packed so that the `u64` order is the HLC order.
///
/// Last-Write-Wins compares `(Timestamp, PeerId)`: a write made after seeing
/// another carries a larger timestamp (Kulkarni et al., "Logical Physical
/// Clocks", 2014), and equal timestamps break by peer id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
const MAX_MILLIS: u64 = u64::MAX >> LOGICAL_BITS;

impl Timestamp {
    pub fn new(millis: u64, logical: u16) -> Self {
        Timestamp((millis.min(MAX_MILLIS) << LOGICAL_BITS) | logical as u64)
    }

    pub fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

/// A remote timestamp too far ahead of the local wall clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp is {ahead_ms} ms ahead of the local clock (allowed skew: {max_skew_ms} ms)")]
pub struct ClockSkewError {
    pub ahead_ms: u64,
    pub max_skew_ms: u64,
}

/// The local hybrid logical clock. The caller passes wall time in; the clock
/// has no time source of its own.
///
/// Bounded skew: a remote timestamp more than `max_skew_ms` ahead of the local
/// wall clock is *rejected* ([`ClockSkewError`]), not clamped. Clamping would
/// change what the event says; rejecting it leaves the event to be offered
/// again by anti-entropy once local time has caught up. So one peer with a
/// broken clock cannot drag every other peer's clock into the future, nor win
/// every Last-Write-Wins race for the length of its error.
#[derive(Debug, Clone)]
pub struct HybridClock {
    last: Timestamp,
    max_skew_ms: u64,
}

impl HybridClock {
    pub const DEFAULT_MAX_SKEW_MS: u64 = 60_000;

    pub fn new(max_skew_ms: u64) -> Self {
        HybridClock {
            last: Timestamp::default(),
            max_skew_ms,
        }
    }

    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A timestamp for a local event, greater than every timestamp seen.
    pub fn tick(&mut self, wall_ms: u64) -> Timestamp {
        let wall = wall_ms.min(MAX_MILLIS);
        let next = if wall > self.last.millis() {
            Timestamp::new(wall, 0)
        } else if self.last.logical() < u16::MAX {
            Timestamp(self.last.0 + 1)
        } else if self.last.millis() < MAX_MILLIS {
            // Logical counter exhausted within one millisecond: borrow the next one.
            Timestamp::new(self.last.millis() + 1, 0)
        } else {
            // The top of the range (a clock past the year 10889): it stays
            // there, where borrowing wrapped back to `(MAX, 0)`.
            self.last
        };
        self.last = next;
        next
    }

    /// Checks a remote timestamp against the skew bound without observing it.
    pub fn check(&self, remote: Timestamp, wall_ms: u64) -> Result<(), ClockSkewError> {
        let limit = wall_ms.saturating_add(self.max_skew_ms);
        if remote.millis() > limit {
            return Err(ClockSkewError {
                ahead_ms: remote.millis() - wall_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// Moves the clock past a remote timestamp (already checked, or trusted:
    /// loaded from our own snapshot).
    pub fn observe(&mut self, remote: Timestamp) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_monotonic_even_when_the_wall_clock_goes_back() {
        let mut c = HybridClock::new(1000);
        let a = c.tick(5000);
        let b = c.tick(4000);
        let d = c.tick(5000);
        assert!(a < b && b < d);
        assert_eq!(c.tick(6000), Timestamp::new(6000, 0));
    }

    #[test]
    fn a_write_after_seeing_another_orders_after_it() {
        let mut fast = HybridClock::new(10_000);
        let mut slow = HybridClock::new(10_000);
        let seen = fast.tick(9_000);
        slow.check(seen, 1_000).unwrap();
        slow.observe(seen);
        assert!(slow.tick(1_000) > seen);
    }

    #[test]
    fn future_timestamps_beyond_the_skew_are_rejected() {
        let c = HybridClock::new(1000);
        assert!(c.check(Timestamp::new(2000, 0), 1000).is_ok());
        let err = c.check(Timestamp::new(2001, 3), 1000).unwrap_err();
        assert_eq!(err.ahead_ms, 1001);
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut c = HybridClock::new(0);
        c.observe(Timestamp::new(10, u16::MAX));
        assert_eq!(c.tick(10), Timestamp::new(11, 0));
    }
}
