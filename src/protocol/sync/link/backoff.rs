//! `Backoff`: how long to wait before trying again after failures, the
//! one schedule used for both redialing a peer and reconnecting to the
//! signaling server.

/// Exponential backoff: the first retry waits `base_ms`, each failure
/// doubles the wait up to `max_ms`, a success starts over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    failures: u32,
}

impl Backoff {
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            base_ms,
            max_ms,
            failures: 0,
        }
    }

    /// Counts a failure and returns the wait before the next attempt.
    /// `stretch` in `[0, 1]` lengthens it by that fraction: random jitter
    /// keeps many clients from retrying in step.
    pub fn fail(&mut self, stretch: f64) -> u64 {
        // 2^16 times any sane base is past any sane cap; the shift stays small.
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let delay = self.base_ms.saturating_mul(1 << exponent).min(self.max_ms);
        delay.saturating_add((delay as f64 * stretch.clamp(0.0, 1.0)) as u64)
    }

    /// An attempt succeeded: the next failure waits `base_ms` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(500, 30_000);
        let delays: Vec<u64> = (0..10).map(|_| b.fail(0.0)).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(b.failures(), 10);
        b.reset();
        assert_eq!(b.fail(0.0), 500);
    }

    #[test]
    fn stretch_lengthens_by_a_fraction_and_never_overflows() {
        let mut b = Backoff::new(1000, 8000);
        assert_eq!(b.fail(0.5), 1500);
        assert_eq!(b.fail(2.0), 4000, "stretch is clamped to 1");
        let mut huge = Backoff::new(u64::MAX / 2, u64::MAX);
        for _ in 0..40 {
            assert!(huge.fail(1.0) >= u64::MAX / 2);
        }
    }
}
