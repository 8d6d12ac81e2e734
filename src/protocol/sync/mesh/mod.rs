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
//!
//! That is the whole story while the peers known fit in
//! [`max_connections`](MeshConfig::max_connections): a full mesh. Beyond
//! it the mesh is a partial view, HyParView-style (`overlay.rs`): at most
//! `max_connections` links open or opening, a passive view of more peers
//! learned from signaling and from shuffles with linked peers, and repair
//! from the passive view when a link drops.

mod overlay;

pub use overlay::{OverlayMessage, MAX_SHUFFLE, PROTECTED_LINKS};

use crate::protocol::sorted_map::SortedMap;

use serde::Serialize;

use super::link::Backoff;
use crate::protocol::clock::PeerId;

/// Timing of connection attempts, and the size of the views.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// A connection not open after this long has failed.
    pub connect_timeout_ms: u64,
    /// First retry delay; it doubles per failure up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Links open or opening, at most (`maxConnections`): the active view.
    pub max_connections: usize,
    /// Peers known beyond the links, at most: the passive view.
    pub passive_max: usize,
    /// How often, in a room larger than `max_connections`, a linked peer
    /// is sent a shuffle, and the links are tended (see `overlay.rs`).
    pub shuffle_interval_ms: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            connect_timeout_ms: 15_000,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            max_connections: 8,
            passive_max: 64,
            shuffle_interval_ms: 10_000,
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

/// A step back of the wall clock taken as set back (not a jitter of
/// the inputs' order): timers kept are moved back with it.
pub const CLOCK_STEP_MS: u64 = 1_000;

#[derive(Debug, Clone)]
struct Link {
    state: LinkState,
    /// The wait before the next dial; reset when a connection opens.
    backoff: Backoff,
    /// When the state last changed.
    since_ms: u64,
    /// When to dial again, while closed (a full mesh); in a partial view,
    /// the earliest it may be picked again.
    retry_at_ms: Option<u64>,
    /// Signaling says it is in the room (else a shuffle named it).
    signaled: bool,
    /// Connections to it that failed or dropped since one last opened.
    failures: u32,
    /// The smoothed round trip of its last connection, if measured.
    rtt_ms: Option<f64>,
    /// Its connections we closed for what it sent (another protocol
    /// version, penalty points): not reset when one opens, since such a
    /// connection opens, then is refused at once. Forgiven once one
    /// stays open for [`FORGIVEN_AFTER_MS`].
    refusals: Backoff,
    /// Until when its offers are refused too (see [`Mesh::refused`]).
    refused_until_ms: Option<u64>,
}

/// The first wait after a connection is closed for what its peer sent;
/// it doubles per such close up to [`REFUSED_MAX_MS`].
pub const REFUSED_BASE_MS: u64 = 5_000;
/// The longest wait after a connection is closed for what its peer sent.
pub const REFUSED_MAX_MS: u64 = 600_000;
/// A connection open this long clears its peer's refusals.
pub const FORGIVEN_AFTER_MS: u64 = 60_000;

impl Link {
    fn closed(now_ms: u64, config: &MeshConfig) -> Link {
        Link {
            state: LinkState::Closed,
            backoff: Backoff::new(config.backoff_base_ms, config.backoff_max_ms),
            since_ms: now_ms,
            retry_at_ms: None,
            signaled: false,
            failures: 0,
            rtt_ms: None,
            refusals: Backoff::new(REFUSED_BASE_MS, REFUSED_MAX_MS),
            refused_until_ms: None,
        }
    }

    fn connecting(&mut self, now_ms: u64) {
        self.state = LinkState::Connecting;
        self.since_ms = now_ms;
        self.retry_at_ms = None;
    }

    fn active(&self) -> bool {
        self.state != LinkState::Closed
    }

    /// Whether its wait after a close for what it sent stands at `now_ms`
    /// (see [`Mesh::refused`]).
    fn refused_at(&self, now_ms: u64) -> bool {
        self.refused_until_ms.is_some_and(|until| now_ms < until)
    }
}

/// The peers this peer knows of, and its connections.
#[derive(Debug)]
pub struct Mesh {
    me: PeerId,
    config: MeshConfig,
    links: SortedMap<PeerId, Link>,
    actions: Vec<MeshAction>,
    /// Overlay messages to send, with their recipients.
    messages: Vec<(PeerId, OverlayMessage)>,
    /// Drawn from the jitter passed in (the core has no randomness of its
    /// own): picks candidates and shuffle partners.
    entropy: u64,
    /// The latest time an input brought.
    now_ms: u64,
    /// When to shuffle and tend the links next (a partial view only).
    next_shuffle_ms: Option<u64>,
}

impl Mesh {
    pub fn new(me: PeerId, config: MeshConfig) -> Self {
        Mesh {
            me,
            config,
            links: SortedMap::new(),
            actions: Vec::new(),
            messages: Vec::new(),
            entropy: me.0,
            now_ms: 0,
            next_shuffle_ms: None,
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

    /// Every peer known fits in `max_connections`: a full mesh, as in a
    /// small room (nothing of the partial view applies).
    pub fn full_mesh(&self) -> bool {
        self.links.len() <= self.config.max_connections
    }
    /// Links open or opening.
    pub fn active(&self) -> usize {
        self.links.values().filter(|l| l.active()).count()
    }

    /// Signaling says `peer` is in the room. `dial`: it was there before us
    /// (we joined), so we call it; otherwise it calls us. In a partial
    /// view it may only join the passive view.
    pub fn discovered(&mut self, peer: PeerId, dial: bool, now_ms: u64) {
        self.discovered_all(&[peer], dial, now_ms);
    }

    /// [`discovered`](Self::discovered) for a list at once (the room as
    /// signaling sends it): whether the room is a full mesh is decided with
    /// all of them known.
    pub fn discovered_all(&mut self, peers: &[PeerId], dial: bool, now_ms: u64) {
        self.advance(now_ms);
        for peer in peers {
            if let Some(link) = self.link(*peer, now_ms) {
                link.signaled = true;
            }
        }
        for peer in peers {
            self.discovered_one(*peer, dial, now_ms);
        }
    }

    fn discovered_one(&mut self, peer: PeerId, dial: bool, now_ms: u64) {
        let timeout = self.config.connect_timeout_ms;
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.state != LinkState::Closed {
            return;
        }
        if !self.full_mesh() {
            if dial {
                self.fill(now_ms);
            }
            self.trim_passive();
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.refused_at(now_ms) {
            // Closed for what it sent: its wait stands (see `refused`).
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

    /// Dial `peer` now, whatever the state of its connection, unless it
    /// was closed for what it sent and its wait stands.
    pub fn redial(&mut self, peer: PeerId, now_ms: u64) {
        self.advance(now_ms);
        let Some(link) = self.link(peer, now_ms) else {
            return;
        };
        if link.refused_at(now_ms) {
            return;
        }
        link.connecting(now_ms);
        self.actions.push(MeshAction::Dial(peer));
    }

    /// `peer` started a connection to us (its first offer arrived); it
    /// replaces any we had, open or not. With `max_connections` links
    /// open or opening already, a partial view above its target makes room
    /// (its slowest link goes: the room outgrew a full mesh, whose peers
    /// would otherwise keep every newcomer out); otherwise it is refused
    /// (`false`, the peer kept in the passive view).
    pub fn incoming(&mut self, peer: PeerId, now_ms: u64) -> bool {
        self.advance(now_ms);
        let full = self.active() >= self.config.max_connections;
        let Some(link) = self.link(peer, now_ms) else {
            return false;
        };
        if link.refused_at(now_ms) {
            return false;
        }
        if full && !link.active() && (self.full_mesh() || !self.make_room(peer, now_ms)) {
            self.trim_passive();
            return false;
        }
        if let Some(link) = self.links.get_mut(&peer) {
            link.connecting(now_ms);
        }
        true
    }

    /// The data channel to `peer` opened.
    pub fn opened(&mut self, peer: PeerId, now_ms: u64) {
        self.advance(now_ms);
        if let Some(link) = self.links.get_mut(&peer) {
            link.state = LinkState::Open;
            link.backoff.reset();
            link.since_ms = now_ms;
            link.retry_at_ms = None;
            link.failures = 0;
        }
        if self.next_shuffle_ms.is_none() {
            self.next_shuffle_ms = Some(now_ms + self.config.shuffle_interval_ms);
        }
    }

    /// The smoothed round trip to `peer` (the sync layer measures it):
    /// links are kept near where they can be (see `overlay.rs`).
    pub fn rtt(&mut self, peer: PeerId, rtt_ms: f64) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.rtt_ms = Some(rtt_ms);
        }
    }

    /// The connection to `peer` failed or dropped; `jitter` in `[0, 1)`
    /// spreads the retries of many peers apart. In a partial view, another
    /// passive peer takes its place.
    pub fn closed(&mut self, peer: PeerId, now_ms: u64, jitter: f64) {
        self.advance(now_ms);
        self.stir(jitter);
        let higher = self.me > peer;
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.state == LinkState::Closed {
            return;
        }
        if link.state == LinkState::Open && now_ms >= link.since_ms + FORGIVEN_AFTER_MS {
            link.refusals.reset();
            link.refused_until_ms = None;
        }
        link.state = LinkState::Closed;
        link.since_ms = now_ms;
        link.failures = link.failures.saturating_add(1);
        // The higher id waits a little longer, so usually one side dials:
        // the lower stretches its wait by [0, 1/2), the higher by [1/2, 1).
        let jitter = jitter.clamp(0.0, 1.0) / 2.0;
        let stretch = if higher { 0.5 + jitter } else { jitter };
        link.retry_at_ms = Some(now_ms + link.backoff.fail(stretch));
        if !self.full_mesh() {
            self.fill(now_ms);
        }
    }

    /// We closed the connection to `peer` for what it sent (another
    /// protocol version, too many penalty points): as [`closed`](Self::closed),
    /// and it is neither dialed nor answered for a wait that doubles with
    /// each such close (from [`REFUSED_BASE_MS`] to [`REFUSED_MAX_MS`],
    /// each up to half again, at random, so peers do not retry in step). A
    /// peer of another version opened a connection, was refused and
    /// dialed again about 1.5 times a second, each side's backoff reset
    /// by each opening (a review of upgrades).
    pub fn refused(&mut self, peer: PeerId, now_ms: u64, jitter: f64) {
        self.closed(peer, now_ms, jitter);
        if let Some(link) = self.links.get_mut(&peer) {
            let until = now_ms + link.refusals.fail(jitter.clamp(0.0, 1.0) / 2.0);
            link.retry_at_ms = Some(link.retry_at_ms.map_or(until, |at| at.max(until)));
            link.refused_until_ms = Some(until);
        }
    }

    /// `peer` joined the room anew (a reload, most likely, perhaps of a
    /// page of another release than the one refused): what it sent before
    /// is forgiven.
    pub fn rejoined(&mut self, peer: PeerId) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.refusals.reset();
            link.refused_until_ms = None;
        }
    }

    /// `peer` left the room: no more retries.
    pub fn left(&mut self, peer: PeerId) {
        if let Some(link) = self.links.remove(&peer) {
            if link.state != LinkState::Closed {
                self.actions.push(MeshAction::Hangup(peer));
            }
        }
        if !self.full_mesh() {
            self.fill(self.now_ms);
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
        self.next_shuffle_ms = None;
    }

    /// Timer: connections that took too long fail; retries that are due
    /// dial (a partial view: links are repaired, shuffles sent).
    pub fn tick(&mut self, now_ms: u64, jitter: f64) {
        self.advance(now_ms);
        self.stir(jitter);
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
        if !self.full_mesh() {
            self.fill(now_ms);
            if self.next_shuffle_ms.is_some_and(|t| now_ms >= t) {
                self.next_shuffle_ms = Some(now_ms + self.config.shuffle_interval_ms);
                self.shuffle();
                self.tend(now_ms);
            }
            return;
        }
        for (peer, link) in self.links.iter_mut() {
            if link.state == LinkState::Closed && link.retry_at_ms.is_some_and(|t| now_ms >= t) {
                link.connecting(now_ms);
                self.actions.push(MeshAction::Dial(*peer));
            }
        }
    }

    /// Takes an input's time as the latest. Where the wall clock went
    /// back (set right, NTP stepping it) by more than a second, every
    /// time kept is moved back with it, so the links' timeouts and
    /// retries and the next shuffle keep their delays (they waited for
    /// real time to reach the old reading: a review).
    fn advance(&mut self, now_ms: u64) {
        let back = self.now_ms.saturating_sub(now_ms);
        if back <= CLOCK_STEP_MS {
            self.now_ms = self.now_ms.max(now_ms);
            return;
        }
        let shift = |t: &mut u64| *t = t.saturating_sub(back);
        self.now_ms = now_ms;
        self.next_shuffle_ms.as_mut().map(shift);
        for link in self.links.values_mut() {
            shift(&mut link.since_ms);
            link.retry_at_ms.as_mut().map(shift);
            link.refused_until_ms.as_mut().map(shift);
        }
    }

    /// When [`tick`](Self::tick) next has something to do: a connection
    /// times out or a retry falls due (a partial view: also a shuffle).
    /// `None`: nothing until something happens (an idle room needs no
    /// timer).
    pub fn next_wake(&self) -> Option<u64> {
        let full_mesh = self.full_mesh();
        let short = !full_mesh && self.active() < self.target();
        let links = self
            .links
            .values()
            .filter_map(|l| match l.state {
                LinkState::Connecting => Some(l.since_ms + self.config.connect_timeout_ms),
                LinkState::Closed if full_mesh || short => l.retry_at_ms,
                _ => None,
            })
            .min();
        let shuffle = self.next_shuffle_ms.filter(|_| !full_mesh);
        match (links, shuffle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// Overlay messages to send (through the sync node, over the links):
    /// shuffles and their replies.
    pub fn take_messages(&mut self) -> Vec<(PeerId, OverlayMessage)> {
        std::mem::take(&mut self.messages)
    }
}

#[cfg(test)]
mod tests;
