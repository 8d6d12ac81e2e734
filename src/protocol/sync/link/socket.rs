//! `Socket`: the life of the WebSocket to `cpc-signal`: reconnecting with
//! [`Backoff`] after it drops, and pinging while it is open (the server
//! closes sockets silent for 60 s).

use super::Backoff;

/// Timing of the signaling socket.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Keepalive period while open.
    pub ping_ms: u64,
    /// First reconnect delay; it doubles per failure up to
    /// `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A socket not open this long after it was opened is given up and
    /// tried again: a server (or a proxy, a firewall) that takes the
    /// connection and never answers kept it opening for minutes, and the
    /// app heard nothing. The socket given up is kept until the next is
    /// made (its timeout and the backoff's delay: as the delay grows, a
    /// server behind a slow path still opens), and the next is made as
    /// soon as ever after an outage.
    pub open_timeout_ms: u64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            ping_ms: 20_000,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            open_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not wanted (offline), or waiting to reconnect at `retry_at_ms`.
    Down {
        retry_at_ms: Option<u64>,
    },
    Opening {
        give_up_at_ms: u64,
    },
    Open {
        ping_at_ms: u64,
    },
}

/// What falls due on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDue {
    /// Open a new socket.
    Reconnect,
    /// Send a keepalive.
    Ping,
    /// The socket did not open in time: drop it (a reconnect is due later).
    GiveUp,
}

#[derive(Debug)]
pub struct Socket {
    config: SocketConfig,
    phase: Phase,
    backoff: Backoff,
    /// The server answered this socket's join: it relays for us now.
    joined: bool,
}

impl Socket {
    pub fn new(config: SocketConfig) -> Self {
        let backoff = Backoff::new(config.backoff_base_ms, config.backoff_max_ms);
        Socket {
            config,
            phase: Phase::Down { retry_at_ms: None },
            backoff,
            joined: false,
        }
    }

    /// A socket is being opened.
    pub fn opening(&mut self, now_ms: u64) {
        self.phase = Phase::Opening {
            give_up_at_ms: now_ms + self.config.open_timeout_ms,
        };
        self.joined = false;
    }

    /// It opened (the join goes out now).
    pub fn opened(&mut self, now_ms: u64) {
        self.phase = Phase::Open {
            ping_at_ms: now_ms + self.config.ping_ms,
        };
        self.joined = false;
    }

    /// The server answered the join: the connection works, and the next
    /// failure starts the backoff over. (Not on open: a server that accepts
    /// and drops at once must not be hammered.)
    pub fn joined(&mut self) {
        self.backoff.reset();
        self.joined = self.is_open();
    }

    /// Open and joined: what is sent on it reaches the room.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// It dropped or never opened; `jitter` in `[0, 1)` spreads the
    /// reconnects of many clients after a server restart.
    pub fn closed(&mut self, now_ms: u64, jitter: f64) {
        self.joined = false;
        if self.phase == (Phase::Down { retry_at_ms: None }) {
            return; // closed by us
        }
        let delay = self.backoff.fail(jitter.clamp(0.0, 1.0) / 2.0);
        self.phase = Phase::Down {
            retry_at_ms: Some(now_ms + delay),
        };
    }

    /// No socket wanted (going offline); no reconnects.
    pub fn stop(&mut self) {
        self.joined = false;
        self.phase = Phase::Down { retry_at_ms: None };
    }

    /// How long an opening socket is given.
    pub fn open_timeout_ms(&self) -> u64 {
        self.config.open_timeout_ms
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// What is due at `now_ms`, if anything.
    /// `jitter` in `[0, 1)`, as for [`closed`](Self::closed).
    pub fn tick(&mut self, now_ms: u64, jitter: f64) -> Option<SocketDue> {
        // A time due further off than its longest wait was set by a wall
        // clock since set back: due now (else the socket neither pinged
        // nor reconnected until real time reached the old reading).
        let (due, longest) = match &mut self.phase {
            Phase::Down { retry_at_ms } => (retry_at_ms.as_mut(), self.config.backoff_max_ms * 2),
            Phase::Opening { give_up_at_ms } => (Some(give_up_at_ms), self.config.open_timeout_ms),
            Phase::Open { ping_at_ms } => (Some(ping_at_ms), self.config.ping_ms),
        };
        if let Some(at) = due.filter(|at| **at > now_ms.saturating_add(longest)) {
            *at = now_ms;
        }
        match self.phase {
            Phase::Down {
                retry_at_ms: Some(at),
            } if now_ms >= at => {
                self.opening(now_ms);
                Some(SocketDue::Reconnect)
            }
            Phase::Opening { give_up_at_ms } if now_ms >= give_up_at_ms => {
                self.closed(now_ms, jitter);
                Some(SocketDue::GiveUp)
            }
            Phase::Open { ping_at_ms } if now_ms >= ping_at_ms => {
                self.phase = Phase::Open {
                    ping_at_ms: now_ms + self.config.ping_ms,
                };
                Some(SocketDue::Ping)
            }
            _ => None,
        }
    }

    pub fn next_wake(&self) -> Option<u64> {
        match self.phase {
            Phase::Down { retry_at_ms } => retry_at_ms,
            Phase::Opening { give_up_at_ms } => Some(give_up_at_ms),
            Phase::Open { ping_at_ms } => Some(ping_at_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Advances to the socket's next wake and returns what fell due.
    fn wake(s: &mut Socket) -> (u64, Option<SocketDue>) {
        let at = s.next_wake().expect("a wake");
        (at, s.tick(at, 0.0))
    }

    #[test]
    fn reconnects_back_off_doubling_up_to_the_cap_and_reset_once_joined() {
        let mut s = Socket::new(SocketConfig::default());
        s.opening(0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            s.closed(now, 0.0);
            let (at, due) = wake(&mut s);
            assert_eq!(due, Some(SocketDue::Reconnect));
            delays.push(at - now);
            now = at;
            // It opens, but the server drops it before answering the join.
            s.opened(now);
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        s.joined();
        s.closed(now, 0.0);
        assert_eq!(wake(&mut s), (now + 500, Some(SocketDue::Reconnect)));
    }

    #[test]
    fn jitter_spreads_reconnects_by_up_to_half() {
        let mut a = Socket::new(SocketConfig::default());
        let mut b = Socket::new(SocketConfig::default());
        a.opening(0);
        b.opening(0);
        a.closed(0, 0.0);
        b.closed(0, 0.99);
        assert_eq!(a.next_wake(), Some(500));
        assert_eq!(b.next_wake(), Some(747));
    }

    #[test]
    fn an_open_socket_pings_and_a_stopped_one_sleeps() {
        let mut s = Socket::new(SocketConfig::default());
        assert_eq!(s.next_wake(), None, "nothing before it is wanted");
        s.opening(0);
        assert_eq!(s.next_wake(), Some(10_000), "given up if it does not open");
        s.opened(1000);
        assert!(s.is_open());
        assert_eq!(s.tick(20_999, 0.0), None);
        assert_eq!(wake(&mut s), (21_000, Some(SocketDue::Ping)));
        assert_eq!(wake(&mut s), (41_000, Some(SocketDue::Ping)));
        s.stop();
        s.closed(50_000, 0.0);
        assert_eq!(s.next_wake(), None, "closed by us: no reconnect");
        assert_eq!(s.tick(1_000_000, 0.0), None);
    }

    /// A server that takes the connection and never answers: the socket
    /// is given up after the timeout and tried again, backing off.
    #[test]
    fn a_socket_that_does_not_open_is_given_up_and_tried_again() {
        let mut s = Socket::new(SocketConfig::default());
        s.opening(0);
        assert_eq!(s.tick(9_999, 0.0), None);
        assert_eq!(wake(&mut s), (10_000, Some(SocketDue::GiveUp)));
        assert_eq!(wake(&mut s), (10_500, Some(SocketDue::Reconnect)));
        assert_eq!(wake(&mut s), (20_500, Some(SocketDue::GiveUp)));
        assert_eq!(wake(&mut s), (21_500, Some(SocketDue::Reconnect)));
        // The socket given up opens late, before the next is made.
        assert_eq!(wake(&mut s), (31_500, Some(SocketDue::GiveUp)));
        s.opened(32_000);
        assert_eq!(s.next_wake(), Some(52_000), "open: its ping, no retry");
    }

    /// The device's clock set back a month while the socket waited to
    /// reconnect, and while it was open: the retry and the keepalive fall
    /// due within their own delays, where they waited for real time to
    /// reach the old reading (a review).
    #[test]
    fn a_clock_set_back_keeps_the_reconnects_and_pings() {
        const MONTH: u64 = 30 * 86_400_000;
        let mut s = Socket::new(SocketConfig::default());
        s.opening(MONTH);
        s.closed(MONTH, 0.0);
        assert_eq!(s.tick(1_000, 0.0), Some(SocketDue::Reconnect));
        s.opened(2_000);
        let mut t = Socket::new(SocketConfig::default());
        t.opening(MONTH);
        t.opened(MONTH);
        assert_eq!(t.tick(1_000, 0.0), Some(SocketDue::Ping));
        assert_eq!(t.next_wake(), Some(1_000 + SocketConfig::default().ping_ms));
    }
}
