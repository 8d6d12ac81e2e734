//! The per-socket rate limit of `/signal`: a token bucket, plus a debt of
//! dropped messages that closes a socket which keeps flooding; and the
//! limit on log lines per refusal class. Sans-IO: the caller passes the
//! time, so tests need no clock.

use std::time::{Duration, Instant};

/// Messages a socket may send at once. The largest legitimate burst is a
/// page joining a room of 64 that calls the 63 others at once, an offer
/// and a dozen or so trickled ICE candidates each (host, reflexive,
/// relay); pages of larger rooms (up to `MAX_ROOM`) call a few, not all.
pub const BURST: u32 = 1000;
/// Messages per second a socket may keep sending. A client pings once per
/// 20 s and negotiates now and then; a redial storm after a network change
/// is a burst again, refilled within 10 s.
pub const RATE: u32 = 100;
/// Dropped messages a socket may owe before it is closed. Drops are
/// forgiven at [`RATE`] per second, so a socket sending at k times the rate
/// is closed `DROP_LIMIT / ((k - 2) * RATE)` s after its burst is spent:
/// 2.5 s at 10x, 20 s at 3x; at 2x or less it is only throttled.
pub const DROP_LIMIT: u32 = 2000;
/// Notices (`joined`, `left`, `peers`) a socket's join or leave makes the
/// server send, per message it is charged: a leave in a room of 1,000 is
/// told to every member, and cycling join and leave at the message rate
/// made one socket queue 300 notices a message in a room of 300.
pub const NOTICES_PER_MESSAGE: usize = 8;
/// Drops closer together than this are one burst, told with one error.
pub const DROP_BURST_GAP: Duration = Duration::from_secs(1);

/// What to do with a message a socket just sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the rate: drop it; `notify` on the first drop of a burst.
    Drop {
        notify: bool,
    },
    /// Flooding: close the socket.
    Close,
}

#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    debt: f64,
    dropped: u64,
    last: Instant,
    last_drop: Option<Instant>,
}

impl RateLimit {
    pub fn new(now: Instant) -> RateLimit {
        RateLimit {
            tokens: f64::from(BURST),
            debt: 0.0,
            dropped: 0,
            last: now,
            last_drop: None,
        }
    }

    /// Counts one message sent at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        // A `now` before the last one (it should not happen) counts as the last.
        let now = self.last.max(now);
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        self.dropped += 1;
        self.debt += 1.0;
        if self.debt >= f64::from(DROP_LIMIT) {
            return Verdict::Close;
        }
        let notify = self
            .last_drop
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_BURST_GAP);
        self.last_drop = Some(now);
        Verdict::Drop { notify }
    }

    /// Charges, at `now`, for `notices` the server sent because of the
    /// message just passed: one message more per [`NOTICES_PER_MESSAGE`].
    /// The bucket may go below empty: the messages after it are dropped
    /// until it refills.
    pub fn charge(&mut self, now: Instant, notices: usize) {
        self.refill(now);
        self.tokens -= notices as f64 / NOTICES_PER_MESSAGE as f64;
    }

    /// Adds the tokens earned, and forgives the drops owed, since the last
    /// message (a `now` before it counts as its time).
    fn refill(&mut self, now: Instant) {
        let now = self.last.max(now);
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * f64::from(RATE);
        self.last = now;
        self.tokens = (self.tokens + refill).min(f64::from(BURST));
        self.debt = (self.debt - refill).max(0.0);
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// One line per refusal class per this long, with the count since the last.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether to log a refusal of one class now: at most one line per [`LOG_EVERY`], which
/// says how many were refused since the previous line. Sans-IO: the caller
/// passes the time.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<Instant>,
    since: u64,
}

impl LogLimit {
    /// Counts one refusal at `now`; `Some(n)` when a line is due, `n`
    /// refusals since the previous line (this one included).
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let t0 = Instant::now();
        let mut limit = LogLimit::default();
        assert_eq!(limit.note(t0), Some(1));
        for i in 1..=500 {
            assert_eq!(limit.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.note(t0 + LOG_EVERY), Some(501));
        assert_eq!(limit.note(t0 + LOG_EVERY), None);
        assert_eq!(limit.note(t0 + 3 * LOG_EVERY), Some(2));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `count` messages evenly over `over` from `start`; tallies verdicts.
    fn send(limit: &mut RateLimit, start: Instant, count: u64, over: Duration) -> Vec<Verdict> {
        (0..count)
            .map(|i| limit.check(start + over.mul_f64(i as f64 / count as f64)))
            .collect()
    }

    #[test]
    fn keepalive_pings_for_a_day_pass() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        for i in 0..(24 * 3600 / 20) {
            assert_eq!(limit.check(t0 + Duration::from_secs(20 * i)), Verdict::Pass);
        }
        assert_eq!(limit.dropped(), 0);
    }

    #[test]
    fn joining_a_full_room_passes() {
        // 63 offers at once, then 15 candidates each trickled over 2 s,
        // and the same again a minute later (a redial after a network change).
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        for start in [t0, t0 + Duration::from_secs(60)] {
            let offers = send(&mut limit, start, 63, Duration::ZERO);
            let candidates = send(&mut limit, start, 63 * 15, ms(2000));
            assert!(offers
                .iter()
                .chain(&candidates)
                .all(|v| *v == Verdict::Pass));
        }
        assert_eq!(limit.dropped(), 0);
    }

    #[test]
    fn the_sustained_rate_passes_after_the_burst() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        let burst = send(&mut limit, t0, u64::from(BURST), Duration::ZERO);
        assert!(burst.iter().all(|v| *v == Verdict::Pass));
        // At the rate (with slack for rounding), forever.
        let steady = send(&mut limit, t0 + ms(20), 60 * u64::from(RATE), ms(61_000));
        assert!(steady.iter().all(|v| *v == Verdict::Pass));
    }

    #[test]
    fn over_the_burst_drops_with_one_notice_per_burst() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        send(&mut limit, t0, u64::from(BURST), Duration::ZERO);
        let over = send(&mut limit, t0, 100, Duration::ZERO);
        assert_eq!(over[0], Verdict::Drop { notify: true });
        assert!(over[1..]
            .iter()
            .all(|v| *v == Verdict::Drop { notify: false }));
        assert_eq!(limit.dropped(), 100);
        // A second later the bucket holds RATE tokens again.
        let later = send(
            &mut limit,
            t0 + Duration::from_secs(1),
            u64::from(RATE),
            Duration::ZERO,
        );
        assert!(later.iter().all(|v| *v == Verdict::Pass));
        // The next drop, over a second after the last, starts a new burst.
        assert_eq!(
            limit.check(t0 + Duration::from_secs(1)),
            Verdict::Drop { notify: true }
        );
    }

    #[test]
    fn twice_the_rate_is_throttled_not_closed() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        let verdicts = send(
            &mut limit,
            t0,
            120 * 2 * u64::from(RATE),
            Duration::from_secs(120),
        );
        assert!(!verdicts.contains(&Verdict::Close));
        let passed = verdicts.iter().filter(|v| **v == Verdict::Pass).count() as u64;
        // What passes is the burst plus the rate, give or take a message.
        assert!(
            passed.abs_diff(u64::from(BURST + 120 * RATE)) <= 1,
            "{passed}"
        );
        let notices = verdicts
            .iter()
            .filter(|v| **v == Verdict::Drop { notify: true })
            .count();
        assert_eq!(notices, 1, "one burst of drops, one notice");
    }

    #[test]
    fn ten_times_the_rate_is_closed_within_seconds() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        let verdicts = send(
            &mut limit,
            t0,
            10 * 10 * u64::from(RATE),
            Duration::from_secs(10),
        );
        let closed_at = verdicts.iter().position(|v| *v == Verdict::Close);
        let closed_at = closed_at.expect("closed") as f64 / (10.0 * f64::from(RATE));
        assert!(
            (2.0..4.0).contains(&closed_at),
            "closed after {closed_at} s"
        );
    }

    #[test]
    fn an_instant_flood_is_closed_after_the_burst_and_the_drop_limit() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(t0);
        let verdicts = send(&mut limit, t0, 5000, Duration::ZERO);
        let closed_at = verdicts.iter().position(|v| *v == Verdict::Close);
        assert_eq!(closed_at, Some((BURST + DROP_LIMIT - 1) as usize));
        assert_eq!(limit.dropped(), 5000 - u64::from(BURST));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut limit = RateLimit::new(t0);
        send(&mut limit, t0, u64::from(BURST), Duration::ZERO);
        assert_eq!(
            limit.check(t0 - Duration::from_secs(5)),
            Verdict::Drop { notify: true }
        );
        assert_eq!(limit.check(t0), Verdict::Drop { notify: false });
    }
}
