//! The partial view of a room larger than `max_connections`, after
//! HyParView (Leitão, Pereira, Rodrigues 2007): a small active view (the
//! links) and a larger passive view (peers known, not linked), refreshed by
//! shuffles with linked peers.
//!
//! - A peer dials up to its *target*, a quarter under `max_connections`,
//!   and accepts calls up to `max_connections`: the room keeps free
//!   places for newcomers and for repair. Only a peer above its target
//!   that is called while full drops a link for the caller (HyParView's
//!   forced join, where the room outgrew a full mesh); the peer that lost
//!   it is still at or above the target unless it was at it, so chains of
//!   evictions stay short. The [`PROTECTED_LINKS`] links open longest are
//!   never dropped so: callers cannot take over all of a peer's links.
//! - A link that drops is replaced from the passive view (random), each
//!   peer once in its backoff.
//! - Every shuffle interval a random linked peer is sent a sample of what
//!   this peer knows, and answers with a sample of its own; both keep what
//!   they learn in their passive views (bounded, evicting at random, the
//!   peers that failed first).
//! - Links are tended at the same pace: above the target the slowest link
//!   (the highest round trip; a random one if none is measured) is hung
//!   up, so the other links drift near; at or under it one random passive
//!   peer is dialed (a random link: it keeps the overlay an expander, and
//!   joins the halves of a healed partition).

use serde::{Deserialize, Serialize};

use super::{Link, LinkState, Mesh, MeshAction};
use crate::protocol::clock::PeerId;

/// Open links a forced join or tending never hangs up: those open
/// longest, at most half the target (a peer of two links must still make
/// room for a newcomer). A member's throwaway identities calling a full peer one by one
/// hung up its links one by one, the slowest first, until all were hers;
/// she cannot make an old link young.
pub const PROTECTED_LINKS: usize = 2;

/// Peers named in one shuffle or reply, at most; more is refused.
pub const MAX_SHUFFLE: usize = 16;

/// What two meshes say to each other over a link (carried by the sync
/// wire, see [`Message::Overlay`](crate::protocol::sync::wire::Message)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverlayMessage {
    /// A sample of the peers the sender knows (at most [`MAX_SHUFFLE`]);
    /// answered with a [`ShuffleReply`](Self::ShuffleReply).
    Shuffle(Vec<PeerId>),
    ShuffleReply(Vec<PeerId>),
}

impl OverlayMessage {
    pub fn peers(&self) -> &[PeerId] {
        match self {
            OverlayMessage::Shuffle(p) | OverlayMessage::ShuffleReply(p) => p,
        }
    }
}

impl Mesh {
    /// Links a partial view dials up to (it accepts up to
    /// `max_connections`): a quarter under it, and one under at least, so
    /// a full peer is above its target and makes room for a caller, and
    /// tending's one more link stays within the bound. Equal to it (below
    /// 4 links), tending dialed past `max_connections` and a full peer
    /// made room for no one.
    pub(super) fn target(&self) -> usize {
        let max = self.config.max_connections;
        (max - max / 4).min(max.saturating_sub(1)).max(1)
    }

    /// Mixes the caller's jitter into the mesh's entropy.
    pub(super) fn stir(&mut self, jitter: f64) {
        self.entropy ^= jitter.to_bits();
        self.random();
    }

    /// splitmix64 over the entropy.
    fn random(&mut self) -> u64 {
        self.entropy = self.entropy.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.entropy;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.random() % n.max(1) as u64) as usize
    }

    /// A random peer among those whose link passes `keep`.
    fn pick(&mut self, keep: impl Fn(&Link) -> bool) -> Option<PeerId> {
        let found: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| keep(l))
            .map(|(p, _)| *p)
            .collect();
        let at = self.below(found.len());
        found.get(at).copied()
    }

    fn dial(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.connecting(now_ms);
            self.actions.push(MeshAction::Dial(peer));
        }
    }

    /// Repairs the active view: dials random passive peers (out of their
    /// backoff) until the target is reached or none is left.
    pub(super) fn fill(&mut self, now_ms: u64) {
        while self.active() < self.target() {
            let due = |l: &Link| {
                l.state == LinkState::Closed && l.retry_at_ms.is_none_or(|t| now_ms >= t)
            };
            // Peers signaling named first: a shuffle may name anyone
            // (ids nobody owns, a member's throwaway identities), and
            // repair dialing what one linked member named is how she
            // takes every link (a review).
            let signaled = self.pick(|l| due(l) && l.signaled);
            match signaled.or_else(|| self.pick(due)) {
                Some(peer) => self.dial(peer, now_ms),
                None => return,
            }
        }
    }

    /// Sends a random linked peer a sample of the others known.
    pub(super) fn shuffle(&mut self) {
        let Some(to) = self.pick(|l| l.state == LinkState::Open) else {
            return;
        };
        let sample = self.sample(&[to]);
        self.messages.push((to, OverlayMessage::Shuffle(sample)));
    }

    /// Up to [`MAX_SHUFFLE`] random known peers, none of `except`: half
    /// linked ones (alive, as far as we know), the rest passive.
    fn sample(&mut self, except: &[PeerId]) -> Vec<PeerId> {
        let mut linked = Vec::new();
        let mut passive = Vec::new();
        for (peer, link) in self.links.iter() {
            if except.contains(peer) {
                continue;
            }
            match link.state {
                LinkState::Open => linked.push(*peer),
                LinkState::Closed if link.failures == 0 => passive.push(*peer),
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(MAX_SHUFFLE);
        for list in [&mut linked, &mut passive] {
            let room = if out.is_empty() {
                MAX_SHUFFLE / 2
            } else {
                MAX_SHUFFLE - out.len()
            };
            for _ in 0..room.min(list.len()) {
                let at = self.below(list.len());
                out.push(list.swap_remove(at));
            }
        }
        out
    }

    /// An overlay message from a linked peer (its size checked by the
    /// sync node): what it names joins the passive view; a shuffle is
    /// answered.
    pub fn receive(&mut self, from: PeerId, message: OverlayMessage, now_ms: u64) {
        self.advance(now_ms);
        if let OverlayMessage::Shuffle(_) = &message {
            let mut except = message.peers().to_vec();
            except.push(from);
            let sample = self.sample(&except);
            self.messages
                .push((from, OverlayMessage::ShuffleReply(sample)));
        }
        for peer in message.peers().iter().take(MAX_SHUFFLE) {
            self.link(*peer, now_ms);
        }
        self.trim_passive();
        if !self.full_mesh() {
            self.fill(now_ms);
            if self.next_shuffle_ms.is_none() {
                self.next_shuffle_ms = Some(now_ms + self.config.shuffle_interval_ms);
            }
        }
    }

    /// Keeps the passive view within `passive_max`: of two random passive
    /// peers, the one that failed more often goes.
    pub(super) fn trim_passive(&mut self) {
        let passive = |l: &Link| l.state == LinkState::Closed;
        while self.links.values().filter(|l| passive(l)).count() > self.config.passive_max {
            // Only a shuffle named it: such peers go first, all of them
            // before one signaling named (a member's shuffles of ids
            // nobody owns pushed every member signaling named out: a
            // review).
            let unsignaled = |l: &Link| passive(l) && !l.signaled;
            let named = self.links.values().any(unsignaled);
            let (a, b) = if named {
                (self.pick(unsignaled), self.pick(unsignaled))
            } else {
                (self.pick(passive), self.pick(passive))
            };
            let (Some(a), Some(b)) = (a, b) else {
                return;
            };
            let failures = |p: PeerId| self.links.get(&p).map_or(0, |l| l.failures);
            let out = if failures(b) > failures(a) { b } else { a };
            self.links.remove(&out);
        }
    }

    /// Above the target, hangs up the slowest open link but `keep`'s and
    /// the [`PROTECTED_LINKS`] open longest; whether one went.
    pub(super) fn make_room(&mut self, keep: PeerId, now_ms: u64) -> bool {
        let mut open: Vec<(PeerId, Option<f64>, u64)> = self
            .links
            .iter()
            .filter(|(p, l)| l.state == LinkState::Open && **p != keep)
            .map(|(p, l)| (*p, l.rtt_ms, l.since_ms))
            .collect();
        if open.len() <= self.target() {
            return false;
        }
        // The oldest found one by one (no sort: its code is 3.5 KB of
        // the wasm).
        for _ in 0..PROTECTED_LINKS.min(self.target() / 2) {
            let oldest = (0..open.len()).min_by_key(|&i| (open[i].2, open[i].0));
            if let Some(i) = oldest {
                open.swap_remove(i);
            }
        }
        // Unmeasured links count as near: the slowest measured goes, or a
        // random one when none is measured (an edge that does not report
        // round trips must still make room for newcomers).
        let slowest = open
            .iter()
            .filter_map(|(p, rtt, _)| rtt.map(|r| (*p, r)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
            .or_else(|| open.get(self.below(open.len())).map(|(p, _, _)| *p));
        let Some(peer) = slowest else {
            return false;
        };
        self.closed(peer, now_ms, 0.0);
        self.actions.push(MeshAction::Hangup(peer));
        true
    }

    /// One random link more, and, above the target, the slowest link less
    /// (see the module documentation).
    pub(super) fn tend(&mut self, now_ms: u64) {
        self.make_room(self.me, now_ms);
        // At one link of one (`max_connections` 1), the target is the bound.
        if self.active() <= self.target() && self.active() < self.config.max_connections {
            let due = |l: &Link| {
                l.state == LinkState::Closed && l.retry_at_ms.is_none_or(|t| now_ms >= t)
            };
            if let Some(peer) = self.pick(due) {
                self.dial(peer, now_ms);
            }
        }
    }
}
