//! `Mesh`: which remote peers this peer connects to, in what state each
//! connection is, and when to dial again after one fails. Sans-IO like
//! [`SyncNode`](super::SyncNode): signaling and the transport report what
//! happened, the mesh answers with [`Dial`](MeshAction::Dial) and
//! [`Hangup`](MeshAction::Hangup) actions, time and jitter are passed in.
//!
//! Who dials: a peer that joins dials everyone already in the room (they
//! learn of it and wait), so two peers rarely offer at once; when they do,
//! the transport's perfect negotiation settles it. After a connection
//! drops while both peers are still in the room, both dial again with
//! exponential backoff, the higher id a beat later, and the first
//! connection to open wins.

use crate::protocol::sorted_map::SortedMap;

use serde::Serialize;

use super::link::Backoff;
use crate::protocol::clock::PeerId;

/// Timing of connection attempts.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// A connection not open after this long has failed.
    pub connect_timeout_ms: u64,
    /// First retry delay; it doubles per failure up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            connect_timeout_ms: 15_000,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

/// A connection's state, as `peers()` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Connecting,
    Open,
    Closed,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Open => "open",
            LinkState::Closed => "closed",
        }
    }
}

/// What the transport must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshAction {
    /// Start a new connection to the peer (dropping any old one).
    Dial(PeerId),
    /// Drop the connection to the peer.
    Hangup(PeerId),
}

#[derive(Debug, Clone)]
struct Link {
    state: LinkState,
    /// The wait before the next dial; reset when a connection opens.
    backoff: Backoff,
    /// When the state last changed.
    since_ms: u64,
    /// When to dial again, while closed.
    retry_at_ms: Option<u64>,
}

impl Link {
    fn closed(now_ms: u64, config: &MeshConfig) -> Link {
        Link {
            state: LinkState::Closed,
            backoff: Backoff::new(config.backoff_base_ms, config.backoff_max_ms),
            since_ms: now_ms,
            retry_at_ms: None,
        }
    }

    fn connecting(&mut self, now_ms: u64) {
        self.state = LinkState::Connecting;
        self.since_ms = now_ms;
        self.retry_at_ms = None;
    }
}

/// The peers this peer knows of through signaling, and its connections.
#[derive(Debug)]
pub struct Mesh {
    me: PeerId,
    config: MeshConfig,
    links: SortedMap<PeerId, Link>,
    actions: Vec<MeshAction>,
}

impl Mesh {
    pub fn new(me: PeerId, config: MeshConfig) -> Self {
        Mesh {
            me,
            config,
            links: SortedMap::new(),
            actions: Vec::new(),
        }
    }

    /// The link to `peer`, made (closed) if new; `None` for ourselves.
    fn link(&mut self, peer: PeerId, now_ms: u64) -> Option<&mut Link> {
        if peer == self.me {
            return None;
        }
        let config = &self.config;
        Some(
            self.links
                .get_or_insert_with(peer, || Link::closed(now_ms, config)),
        )
    }

    /// Whether this side yields when both offer at once (perfect
    /// negotiation's "polite" peer): the higher id does.
    pub fn polite(&self, peer: PeerId) -> bool {
        self.me > peer
    }

    /// Signaling says `peer` is in the room. `dial`: it was there before us
    /// (we joined), so we call it; otherwise it calls us.
    pub fn discovered(&mut self, peer: PeerId, dial: bool, now_ms: u64) {
        let timeout = self.config.connect_timeout_ms;
        let Some(link) = self.link(peer, now_ms) else {
            return;
        };
        if link.state != LinkState::Closed {
            return;
        }
        if dial {
            link.connecting(now_ms);
            self.actions.push(MeshAction::Dial(peer));
        } else {
            // It will call; if it does not, dial ourselves later.
            link.retry_at_ms = Some(now_ms + timeout);
        }
    }

    /// Dial `peer` now, whatever the state of its connection.
    pub fn redial(&mut self, peer: PeerId, now_ms: u64) {
        let Some(link) = self.link(peer, now_ms) else {
            return;
        };
        link.connecting(now_ms);
        self.actions.push(MeshAction::Dial(peer));
    }

    /// `peer` started a connection to us (its first offer arrived); it
    /// replaces any we had, open or not.
    pub fn incoming(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(link) = self.link(peer, now_ms) {
            link.connecting(now_ms);
        }
    }

    /// The data channel to `peer` opened.
    pub fn opened(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.state = LinkState::Open;
            link.backoff.reset();
            link.since_ms = now_ms;
            link.retry_at_ms = None;
        }
    }

    /// The connection to `peer` failed or dropped; `jitter` in `[0, 1)`
    /// spreads the retries of many peers apart.
    pub fn closed(&mut self, peer: PeerId, now_ms: u64, jitter: f64) {
        let higher = self.me > peer;
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.state == LinkState::Closed {
            return;
        }
        link.state = LinkState::Closed;
        link.since_ms = now_ms;
        // The higher id waits a little longer, so usually one side dials:
        // the lower stretches its wait by [0, 1/2), the higher by [1/2, 1).
        let jitter = jitter.clamp(0.0, 1.0) / 2.0;
        let stretch = if higher { 0.5 + jitter } else { jitter };
        link.retry_at_ms = Some(now_ms + link.backoff.fail(stretch));
    }

    /// `peer` left the room: no more retries.
    pub fn left(&mut self, peer: PeerId) {
        if let Some(link) = self.links.remove(&peer) {
            if link.state != LinkState::Closed {
                self.actions.push(MeshAction::Hangup(peer));
            }
        }
    }

    /// Drops every connection and forgets every peer (going offline or
    /// closing); signaling rediscovers them.
    pub fn clear(&mut self) {
        for (peer, link) in std::mem::take(&mut self.links) {
            if link.state != LinkState::Closed {
                self.actions.push(MeshAction::Hangup(peer));
            }
        }
    }

    /// Timer: connections that took too long fail; retries that are due
    /// dial.
    pub fn tick(&mut self, now_ms: u64, jitter: f64) {
        let stuck: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.state == LinkState::Connecting
                    && now_ms >= l.since_ms + self.config.connect_timeout_ms
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in stuck {
            self.closed(peer, now_ms, jitter);
            self.actions.push(MeshAction::Hangup(peer));
        }
        for (peer, link) in self.links.iter_mut() {
            if link.state == LinkState::Closed && link.retry_at_ms.is_some_and(|t| now_ms >= t) {
                link.connecting(now_ms);
                self.actions.push(MeshAction::Dial(*peer));
            }
        }
    }

    /// When [`tick`](Self::tick) next has something to do: a connection
    /// times out or a retry falls due. `None`: nothing until something
    /// happens (an idle room needs no timer).
    pub fn next_wake(&self) -> Option<u64> {
        self.links
            .values()
            .filter_map(|l| match l.state {
                LinkState::Connecting => Some(l.since_ms + self.config.connect_timeout_ms),
                LinkState::Closed => l.retry_at_ms,
                LinkState::Open => None,
            })
            .min()
    }

    pub fn state(&self, peer: PeerId) -> Option<LinkState> {
        self.links.get(&peer).map(|l| l.state)
    }

    /// Every known peer and its connection state.
    pub fn links(&self) -> impl Iterator<Item = (PeerId, LinkState)> + '_ {
        self.links.iter().map(|(p, l)| (*p, l.state))
    }

    pub fn take_actions(&mut self) -> Vec<MeshAction> {
        std::mem::take(&mut self.actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(me: u64) -> Mesh {
        Mesh::new(PeerId(me), MeshConfig::default())
    }

    #[test]
    fn the_newcomer_dials_and_the_others_wait() {
        let mut newcomer = mesh(2);
        newcomer.discovered(PeerId(1), true, 0);
        assert_eq!(newcomer.take_actions(), vec![MeshAction::Dial(PeerId(1))]);
        assert_eq!(newcomer.state(PeerId(1)), Some(LinkState::Connecting));

        let mut member = mesh(1);
        member.discovered(PeerId(2), false, 0);
        assert!(member.take_actions().is_empty());
        member.incoming(PeerId(2), 10);
        member.opened(PeerId(2), 20);
        assert_eq!(member.state(PeerId(2)), Some(LinkState::Open));
        member.tick(60_000, 0.0);
        assert!(
            member.take_actions().is_empty(),
            "an open link is left alone"
        );
    }

    #[test]
    fn a_peer_that_never_calls_is_called() {
        let mut member = mesh(1);
        member.discovered(PeerId(2), false, 0);
        member.tick(14_999, 0.0);
        assert!(member.take_actions().is_empty());
        member.tick(15_000, 0.0);
        assert_eq!(member.take_actions(), vec![MeshAction::Dial(PeerId(2))]);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let mut m = mesh(1);
        m.discovered(PeerId(9), true, 0);
        m.take_actions();
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            m.closed(PeerId(9), now, 0.0);
            let start = now;
            loop {
                now += 100;
                m.tick(now, 0.0);
                if !m.take_actions().is_empty() {
                    break;
                }
            }
            delays.push(now - start);
        }
        assert_eq!(&delays[..4], &[500, 1000, 2000, 4000]);
        assert_eq!(*delays.last().unwrap(), 30_000);
        m.opened(PeerId(9), now);
        m.closed(PeerId(9), now, 0.0);
        m.tick(now + 500, 0.0);
        assert_eq!(
            m.take_actions(),
            vec![MeshAction::Dial(PeerId(9))],
            "reset on open"
        );
    }

    #[test]
    fn a_stuck_connection_fails_and_is_retried() {
        let mut m = mesh(1);
        m.discovered(PeerId(2), true, 0);
        m.take_actions();
        m.tick(15_000, 0.0);
        assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(2))]);
        assert_eq!(m.state(PeerId(2)), Some(LinkState::Closed));
        m.tick(15_500, 0.0);
        assert_eq!(m.take_actions(), vec![MeshAction::Dial(PeerId(2))]);
    }

    #[test]
    fn leaving_and_clearing_hang_up() {
        let mut m = mesh(1);
        m.discovered(PeerId(2), true, 0);
        m.discovered(PeerId(3), true, 0);
        m.take_actions();
        m.left(PeerId(2));
        assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(2))]);
        m.clear();
        assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(3))]);
        assert_eq!(m.links().count(), 0);
        m.tick(100_000, 0.5);
        assert!(m.take_actions().is_empty());
    }

    #[test]
    fn next_wake_is_the_earliest_timeout_or_retry_and_none_when_all_are_open() {
        let mut m = mesh(1);
        assert_eq!(m.next_wake(), None);
        m.discovered(PeerId(2), true, 100);
        m.discovered(PeerId(3), false, 200);
        assert_eq!(m.next_wake(), Some(15_100), "2 times out first");
        m.opened(PeerId(2), 300);
        assert_eq!(
            m.next_wake(),
            Some(15_200),
            "3 is called if it does not call"
        );
        m.incoming(PeerId(3), 400);
        m.opened(PeerId(3), 500);
        assert_eq!(m.next_wake(), None, "all open: nothing to wake for");
        m.closed(PeerId(3), 600, 0.0);
        assert_eq!(m.next_wake(), Some(1100));
    }

    #[test]
    fn an_incoming_connection_replaces_an_open_one() {
        let mut m = mesh(1);
        m.discovered(PeerId(2), true, 0);
        m.take_actions();
        m.opened(PeerId(2), 10);
        m.incoming(PeerId(2), 20);
        assert_eq!(m.state(PeerId(2)), Some(LinkState::Connecting));
        m.tick(20 + 15_000, 0.0);
        assert_eq!(
            m.take_actions(),
            vec![MeshAction::Hangup(PeerId(2))],
            "and times out like any other"
        );
    }
}
