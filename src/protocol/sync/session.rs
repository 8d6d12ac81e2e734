//! What a node knows about one remote peer.

use serde::Serialize;

use super::wire::Reassembler;
use crate::protocol::clock::{PeerId, VectorClock, MAX_CLOCK_ENTRIES};
use crate::protocol::error::prefix_within;
use crate::protocol::event::Hash32;
use crate::protocol::room::Handshake;
use crate::protocol::sorted_map::SortedMap;

/// Counters for one connection, shown to the app per peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub events_in: u64,
    pub events_out: u64,
    /// Frames or events from this peer that were refused.
    pub rejected: u64,
    pub last_error: Option<String>,
    /// Smoothed round-trip time of the sync messages (RFC 6298's SRTT),
    /// of answered pings only.
    pub rtt_ms: Option<f64>,
    /// How long our ping has waited for its pong, once that is a ping
    /// interval or more: the round trip is that long at least
    /// ([`rtt`](Self::rtt)). Not smoothed in: a stall or a dropped network
    /// would have outlived itself in the estimate (a review).
    pub waited_ms: Option<f64>,
}

/// Bytes of a refusal's text a session keeps as its last error, at most:
/// a refusal may quote what the peer sent (a key of room state it may not
/// write, of megabytes, its control characters escaped at five bytes
/// each), and the counters of [`KEPT_STATS`](super::node::KEPT_STATS)
/// peers are kept after they leave: each of a member's throwaway
/// identities kept ~5 times the largest key it sent, for good.
pub const MAX_LAST_ERROR: usize = 256;

impl SessionStats {
    /// Counts a refusal of what the peer sent, and keeps its text (at
    /// most [`MAX_LAST_ERROR`] bytes of it) as the last error.
    pub fn refused(&mut self, text: &str) {
        self.rejected += 1;
        let mut kept = prefix_within(text, MAX_LAST_ERROR).to_string();
        if kept.len() < text.len() {
            kept.push('…');
        }
        self.last_error = Some(kept);
    }

    /// The round trip as known now: the smoothed estimate, or the wait of
    /// a ping still out if that is longer.
    pub fn rtt(&self) -> Option<f64> {
        match (self.rtt_ms, self.waited_ms) {
            (Some(rtt), Some(waited)) => Some(rtt.max(waited)),
            (rtt, waited) => rtt.or(waited),
        }
    }

    /// Folds one round-trip sample into the smoothed estimate.
    pub fn sample_rtt(&mut self, rtt_ms: f64) {
        self.rtt_ms = Some(match self.rtt_ms {
            None => rtt_ms,
            Some(srtt) => srtt + (rtt_ms - srtt) / 8.0,
        });
    }
}

/// How a connected peer stands against this one, from its last digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Same version vector, same Merkle root.
    InSync,
    /// Same version vector, but the roots differ or are not known yet.
    Syncing,
    /// It lacks events we have, and has none we lack.
    Behind,
    /// It has events we lack, and lacks none of ours.
    Ahead,
    /// Each has events the other lacks.
    Concurrent,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::InSync => "in sync",
            Standing::Syncing => "syncing",
            Standing::Behind => "behind",
            Standing::Ahead => "ahead",
            Standing::Concurrent => "concurrent",
        }
    }
}

/// What a peer had of us in one gossip interval: each count is held
/// to its bound (a message past it is refused) and starts again at the
/// next interval ([`SyncNode::tick`](super::SyncNode::tick)).
#[derive(Debug, Default)]
pub struct Spent {
    /// Reconciliation requests answered
    /// ([`MAX_REQUESTS_PER_INTERVAL`](super::MAX_REQUESTS_PER_INTERVAL)).
    pub requests: u32,
    /// Merkle queries answered
    /// ([`MAX_MERKLE_ANSWERS_PER_INTERVAL`](super::MAX_MERKLE_ANSWERS_PER_INTERVAL)).
    pub merkle_answers: u32,
    /// Bytes of Merkle leaves sent
    /// ([`MAX_LEAF_BYTES_PER_INTERVAL`](super::MAX_LEAF_BYTES_PER_INTERVAL)).
    pub leaf_bytes: usize,
    /// Snapshot bytes sent again
    /// ([`MAX_RESENT_BYTES_PER_INTERVAL`](super::MAX_RESENT_BYTES_PER_INTERVAL)).
    pub resent_bytes: u64,
    /// Whether a request for a snapshot we do not keep was answered with
    /// our offer (an offer carries our version vector: in a room of
    /// thousands of writers, hundreds of KB for a request of ~60 bytes).
    pub offered_on_request: bool,
    /// Overlay messages taken
    /// ([`MAX_OVERLAY_PER_INTERVAL`](super::MAX_OVERLAY_PER_INTERVAL)).
    pub overlay_messages: u32,
    /// Grafts and prunes taken
    /// ([`MAX_GRAFTS_PER_INTERVAL`](super::MAX_GRAFTS_PER_INTERVAL),
    /// [`MAX_PRUNES_PER_INTERVAL`](super::MAX_PRUNES_PER_INTERVAL)).
    pub grafts: u32,
    pub prunes: u32,
}

impl Spent {
    /// A new gossip interval: every budget afresh, but leaf bytes, a debt
    /// paid off at the budget an interval. A leaf of 14 MB (one burst's
    /// run) went whole every interval, for a query of 10 bytes (a review).
    pub fn next_interval(&mut self) {
        let leaf_bytes = self
            .leaf_bytes
            .saturating_sub(super::MAX_LEAF_BYTES_PER_INTERVAL);
        *self = Spent {
            leaf_bytes,
            ..Spent::default()
        };
    }
}

/// What we asked a peer for, with how many answers are due (a slow
/// answer may be asked for again): an answer is taken only while one is.
/// At most as many keys as there are things to ask for (a Merkle tree's
/// nodes or leaves).
#[derive(Debug)]
pub struct Asked<K>(SortedMap<K, u8>);

impl<K: Ord> Default for Asked<K> {
    fn default() -> Self {
        Asked(SortedMap::new())
    }
}

impl<K: Ord> Asked<K> {
    /// We asked for `key`: one more answer is due.
    pub fn ask(&mut self, key: K) {
        let due = self.0.get_or_insert_with(key, u8::default);
        *due = due.saturating_add(1);
    }

    /// Whether an answer for `key` was due; it is counted off.
    pub fn answered(&mut self, key: K) -> bool {
        match self.0.get(&key).copied().unwrap_or(0) {
            0 => false,
            1 => self.0.remove(&key).is_some(),
            due => self.0.insert(key, due - 1).is_some(),
        }
    }
}

/// How far into each snapshot we sent a peer, for the ids it asked for
/// last: as many as a sender keeps ids at once (its kept snapshots, each
/// as it is and gzipped), so asking for them in turn forgets none.
#[derive(Debug, Default)]
pub struct SnapshotsSent(Vec<(Hash32, u64)>);

impl SnapshotsSent {
    const IDS: usize = 2 * super::transfer::KEPT_SNAPSHOTS;

    /// How many bytes of `start..end` of snapshot `id` the peer was sent
    /// already.
    pub fn again(&self, id: Hash32, start: u64, end: u64) -> u64 {
        let sent = self.0.iter().find(|(i, _)| *i == id).map_or(0, |(_, s)| *s);
        end.min(sent).saturating_sub(start)
    }

    /// Notes that `..end` of snapshot `id` went to the peer.
    pub fn sent(&mut self, id: Hash32, end: u64) {
        match self.0.iter_mut().find(|(i, _)| *i == id) {
            Some((_, sent)) => *sent = (*sent).max(end),
            None => {
                if self.0.len() == Self::IDS {
                    self.0.remove(0);
                }
                self.0.push((id, end));
            }
        }
    }
}

/// Merkle leaves, each with our hash of it and a peer's, and when they
/// were noted: the newest [`LeafPairs::KEPT`].
#[derive(Debug, Default)]
pub struct LeafPairs(Vec<(u16, Hash32, Hash32, u64)>);

impl LeafPairs {
    pub const KEPT: usize = 64;

    /// How long a split leaf goes unasked while both hashes stay: what
    /// made the copy refused may lie outside the leaf (an event kept for
    /// another), and go.
    pub const SPLIT_MS: u64 = 5 * 60 * 1000;

    pub fn note(&mut self, leaf: u16, ours: Hash32, theirs: Hash32, now_ms: u64) {
        self.0.retain(|&(l, ..)| l != leaf);
        if self.0.len() >= Self::KEPT {
            self.0.remove(0);
        }
        self.0.push((leaf, ours, theirs, now_ms));
    }

    pub fn get(&self, leaf: u16) -> Option<(Hash32, Hash32)> {
        (self.0.iter())
            .find(|&&(l, ..)| l == leaf)
            .map(|&(_, ours, theirs, _)| (ours, theirs))
    }

    /// Whether `leaf` was noted with these hashes within [`Self::SPLIT_MS`].
    pub fn holds(&self, leaf: u16, ours: Hash32, theirs: Hash32, now_ms: u64) -> bool {
        self.0.iter().any(|&(l, o, t, at)| {
            (l, o, t) == (leaf, ours, theirs) && now_ms.abs_diff(at) < Self::SPLIT_MS
        })
    }
}

/// The reconciliation requests sent to one peer that it has not answered,
/// as the time until which each one's answer is taken. A peer that keeps
/// quiet does not bank them: an unanswered request lapses after
/// [`Self::ANSWERED_WITHIN_MS`], and at most [`Self::MAX`] are awaited at
/// once, so what it can send unasked later is a few recent answers, not
/// one for every request of the session.
#[derive(Debug, Default)]
pub struct AwaitedResponses(std::collections::VecDeque<u64>);

impl AwaitedResponses {
    /// How long an answer is awaited: a resolver answers within a gossip
    /// round trip, but a large answer crosses a slow link for a while
    /// (16 MiB at 2 Mbit/s: about a minute).
    pub const ANSWERED_WITHIN_MS: u64 = 120_000;
    /// Requests awaited at once; a new one past it replaces the oldest.
    pub const MAX: usize = 32;

    /// Notes a request sent at `now_ms`.
    pub fn asked(&mut self, now_ms: u64) {
        if self.0.len() == Self::MAX {
            self.0.pop_front();
        }
        self.0
            .push_back(now_ms.saturating_add(Self::ANSWERED_WITHIN_MS));
    }

    /// Takes an answer arriving at `now_ms` against the oldest request
    /// still awaited: whether there was one.
    pub fn answered(&mut self, now_ms: u64) -> bool {
        while self.0.front().is_some_and(|&until| until < now_ms) {
            self.0.pop_front();
        }
        self.0.pop_front().is_some()
    }
}

/// One remote peer's sync session.
#[derive(Debug, Default)]
pub struct Session {
    /// What the peer has, as far as we know: its last digest, plus what it
    /// sent us and what we sent it since. Events it covers are not relayed
    /// to it again.
    pub their_clock: VectorClock,
    /// Of our origins, what its digests said it had, joined: an honest
    /// peer's clock only grows, so one that said so once is not sent it
    /// again whatever it says later (a member alternating digests that
    /// claim all and nothing had the resend's back-off reset each time).
    pub acked: VectorClock,
    /// Whether a digest from the peer has arrived on this connection.
    pub synced: bool,
    /// The Merkle root of its last digest.
    pub their_root: Option<Hash32>,
    pub reassembler: Reassembler,
    pub stats: SessionStats,
    /// When to measure the round trip again.
    pub next_ping_ms: u64,
    /// The stamp of our ping not answered yet: only its echo is a round
    /// trip. A member's pongs of her own stamps made her link the nearest
    /// (0 ms) whatever her distance, to be kept over honest ones (a
    /// review).
    pub ping_out: Option<u64>,
    /// Whether the app was told that the peer's clock is off from ours by
    /// more than the skew allowed ([`Output::ClockSkew`](super::Output::ClockSkew)):
    /// once a session.
    pub skew_told: bool,
    /// Points for forged or malformed input; see `PENALTY_LIMIT`.
    pub penalty: u32,
    /// In a room with a secret, the handshake until it succeeds: nothing
    /// but `Hello` and `Proof` crosses the connection before.
    pub handshake: Option<Handshake>,
    /// What it had of us this gossip interval, each within its bound.
    pub spent: Spent,
    /// Reconciliation requests we sent it that it has not answered: a
    /// response is taken only against one (a response of old, valid
    /// events is shown to the app as JSON, ~20 bytes a clock entry for a
    /// few on the wire, before its seals are checked).
    pub awaited_responses: AwaitedResponses,
    /// How far into each snapshot it asked for we sent it: a window below
    /// that is sent again, within
    /// [`MAX_RESENT_BYTES_PER_INTERVAL`](super::MAX_RESENT_BYTES_PER_INTERVAL).
    pub snapshot_sent: SnapshotsSent,
    /// The link is lazy (see [`Message::Prune`](super::wire::Message::Prune)):
    /// fresh events are announced to it (`IHave`), not pushed, until a
    /// graft; without PlumTree (relay to every link), it only means the
    /// peer asked not to be relayed others' events.
    pub lazy: bool,
    /// We pruned it (the link went lazy on our word).
    pub pruned: bool,
    /// What we pushed or announced to it lately: a digest of its that
    /// crossed them is not answered with them (see `relay.rs`).
    pub told: Told,
    /// When we last grafted it (with `Relay::Pull`, a graft goes at once
    /// unless one went within `GRAFT_BATCH_MS`).
    pub grafted_ms: Option<u64>,
    /// Merkle leaves we asked this peer for: only those answers are taken.
    pub asked_leaves: Asked<u16>,
    /// Leaves we asked it for, with our leaf's hash and its, as they were.
    pub leaf_pairs: LeafPairs,
    /// Leaves whose copies from it held another version of an event we
    /// keep (its signer signed two, and each of us took one), with the two
    /// hashes then: each side refuses the other's copy, so neither asks
    /// again while both leaves stay as they were, for a while (they asked
    /// every interval, for good).
    pub split_leaves: LeafPairs,
    /// Merkle nodes we asked this peer for, by depth and index: only
    /// those answers are taken (an unasked node would make us ask for the
    /// leaves it names).
    pub asked_nodes: Asked<(u8, u32)>,
    /// Events its digests and grafts asked for that are still to go, a
    /// slice a task (see `node/owed.rs`).
    pub owed: super::node::Owed,
    /// The caller's link to it holds a backlog of frames: what it is
    /// owed waits ([`SyncNode::set_backlogged`](super::SyncNode::set_backlogged)).
    pub backlogged: bool,
    /// The last snapshot it offered that our origins joined with its
    /// would pass the bound: not taken, and told once.
    pub offer_past_origins: Option<Hash32>,
}

/// Origins a session notes in what its peer has, at most: as many as a
/// digest may name ([`MAX_CLOCK_ENTRIES`]; an honest peer's clock, and
/// ours, each name at most `max_origins`, half of it). An `IHave` names
/// origins its sender chooses, ~9 bytes each, and each was noted as a
/// 16-byte entry of the session's clock until its next digest, which it
/// need not send: a member's `IHave`s of made-up origins grew it by
/// ~1.8 times what they cost her, for as long as the session lasted.
pub const MAX_THEIR_ORIGINS: usize = MAX_CLOCK_ENTRIES;

impl Session {
    /// Notes that the peer has `origin`'s events up to `seq` (it announced
    /// or sent them); an origin not noted yet is not, past
    /// [`MAX_THEIR_ORIGINS`]. Whether it was noted.
    pub fn learn(&mut self, origin: PeerId, seq: u64) -> bool {
        if self.their_clock.len() >= MAX_THEIR_ORIGINS && self.their_clock.get(origin) == 0 {
            return false;
        }
        self.their_clock.observe(origin, seq);
        true
    }

    /// How long what was told the peer is taken as on its way (see
    /// [`Told`]): a gossip interval and a round trip, doubled for each
    /// time in a row it asked again for what was told it.
    pub fn patience_ms(&self, gossip_interval_ms: u64) -> u64 {
        let rtt = self.stats.rtt().map_or(0, |rtt| rtt.max(0.0) as u64);
        gossip_interval_ms
            .saturating_add(rtt)
            .saturating_mul(1 << self.told.backoff)
    }

    /// Joins a digest's `clock` into [`acked`](Self::acked), of origins in
    /// `ours` and no further than it (a digest may name any origin).
    pub fn ack(&mut self, clock: &VectorClock, ours: &VectorClock) {
        for (origin, seq) in clock.iter() {
            let seq = seq.min(ours.get(origin));
            if seq > self.acked.get(origin) {
                self.acked.set(origin, seq);
            }
        }
    }
}

/// What a node pushed or announced to one peer lately, per origin the
/// last sequence number: on its way (or to be pulled), so a digest of the
/// peer's that crossed it is not answered with it again.
///
/// What was announced is so until the next gossip tick. What was sent is
/// so within a patience of the send (the caller's: a gossip
/// interval and a round trip), or of the moment the link to the peer last
/// drained its backlog of frames, if that came later: what waits in a
/// link's buffer leaves only as the buffer drains, and on a slow link a
/// newcomer's digests cross a long answer several times. While the link
/// holds a backlog, all of it is on its way. Past that, a digest asks
/// again for what did not come (anti-entropy heals what was lost).
#[derive(Debug, Default)]
pub struct Told {
    /// Per origin, the last sequence number told.
    seqs: VectorClock,
    /// Per origin, when it was told (ms): clocks, so a room of many
    /// writers is kept as a version vector is.
    times: VectorClock,
    /// What was announced to it since the last gossip tick: it pulls that
    /// (a graft), and a digest after the tick asks for what it did not.
    announced: VectorClock,
    /// Whether the link holds a backlog of frames now.
    backlogged: bool,
    /// When it last drained one.
    drained_ms: u64,
    /// Per origin, the last sequence number told in the session.
    ever: VectorClock,
    /// Doublings of the patience ([`Session::patience_ms`]): each digest
    /// asking again for what was told doubles it, up to [`MAX_BACKOFF`],
    /// and one showing all that was told before the last such digest
    /// resets it. A member whose digests said she had nothing, twice a
    /// gossip interval, was sent the whole log every interval: ~450 times
    /// the bytes of her digests (a review).
    backoff: u32,
    /// `ever` when a digest last asked again.
    asked_again: VectorClock,
    /// Per origin, what the peer's digests said it had, last heard.
    heard: VectorClock,
    /// Per origin, since when what was told past [`heard`](Self::heard)
    /// has gone without its digests showing any more of it: the push it
    /// lacks first was lost (or crossed its first digest) once that is a
    /// patience old, however recent the last push. One send time per
    /// origin, refreshed by every push, hid a gap for as long as its
    /// writer kept writing (a review: a lost push, or a newcomer's whole
    /// history, never sent while a write came every 500 ms).
    since: VectorClock,
}

/// Doublings of the patience at most: 32 gossip intervals and round trips.
pub const MAX_BACKOFF: u32 = 5;

impl Told {
    /// Events `first..=seq` of `origin` were sent at `now_ms`.
    pub fn observe(&mut self, origin: PeerId, first: u64, seq: u64, now_ms: u64) {
        let has = self.heard.get(origin);
        if self.seqs.get(origin) <= has || first <= has + 1 {
            // Nothing was on its way past what it has, or this sends
            // what it lacks first (again): its wait starts now. Without
            // the second, a member whose digests say she has nothing
            // was sent the whole log at each of them once the first
            // send was a patience old (a review of this fix).
            self.since.set(origin, now_ms);
        }
        self.seqs.observe(origin, seq);
        self.times.observe(origin, now_ms);
        self.ever.observe(origin, seq);
    }

    /// A digest of the peer's, `acked` all it said it had: whether it asks
    /// again for what was told it and is no longer on its way (lost, or
    /// never taken).
    pub fn heard(&mut self, acked: &VectorClock, now_ms: u64, patience_ms: u64) {
        for (origin, _) in self.ever.iter() {
            let has = acked.get(origin);
            if has > self.heard.get(origin) {
                self.heard.set(origin, has);
                self.since.set(origin, now_ms);
            }
        }
        let again = self.ever.iter().any(|(origin, seq)| {
            let has = acked.get(origin);
            has < seq && self.on_its_way(origin, now_ms, patience_ms) <= has
        });
        if again {
            self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
            self.asked_again = self.ever.clone();
        } else if self.backoff > 0 && acked.descends(&self.asked_again) {
            self.backoff = 0;
        }
    }

    /// Announced, not sent: pulled if it is lacking.
    pub fn announce(&mut self, origin: PeerId, seq: u64) {
        self.announced.observe(origin, seq);
    }

    /// The link holds a backlog of frames from `now_ms` (or has drained it).
    pub fn backlogged(&mut self, backlogged: bool, now_ms: u64) {
        if std::mem::replace(&mut self.backlogged, backlogged) && !backlogged {
            self.drained_ms = now_ms;
        }
    }

    /// The last sequence number of `origin` still on its way at `now_ms`
    /// (0 for none).
    pub fn on_its_way(&self, origin: PeerId, now_ms: u64, patience_ms: u64) -> u64 {
        let sent = if self.waiting(self.times.get(origin), now_ms, patience_ms)
            && self.waiting(self.since.get(origin), now_ms, patience_ms)
        {
            self.seqs.get(origin)
        } else {
            0
        };
        sent.max(self.announced.get(origin))
    }

    /// A gossip tick: forgets what has arrived (or was lost) by `now_ms`,
    /// and what was announced.
    pub fn expire(&mut self, now_ms: u64, patience_ms: u64) {
        self.announced = VectorClock::new();
        if self.seqs.is_empty()
            || self
                .times
                .iter()
                .all(|(_, at_ms)| self.waiting(at_ms, now_ms, patience_ms))
        {
            return;
        }
        let (seqs, times) = (&self.seqs, &self.times);
        let kept = || {
            times
                .iter()
                .filter(|&(_, at_ms)| self.waiting(at_ms, now_ms, patience_ms))
        };
        let seqs: VectorClock = kept()
            .map(|(origin, _)| (origin, seqs.get(origin)))
            .collect();
        let times: VectorClock = kept().collect();
        (self.seqs, self.times) = (seqs, times);
    }

    /// The wall clock went back to `now_ms`: what was told is taken as
    /// lost, and every time kept by the old reading is brought to now
    /// (`drained_ms` ahead kept all told since on its way until real
    /// time reached it).
    pub fn clock_set_back(&mut self, now_ms: u64) {
        self.seqs = VectorClock::new();
        self.times = VectorClock::new();
        self.announced = VectorClock::new();
        self.drained_ms = self.drained_ms.min(now_ms);
        let since: VectorClock = self.since.iter().map(|(o, t)| (o, t.min(now_ms))).collect();
        self.since = since;
    }

    fn waiting(&self, at_ms: u64, now_ms: u64, patience_ms: u64) -> bool {
        self.backlogged || now_ms < at_ms.max(self.drained_ms).saturating_add(patience_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awaited_responses_lapse_and_are_bounded() {
        let mut awaited = AwaitedResponses::default();
        assert!(!awaited.answered(0), "nothing asked");
        awaited.asked(0);
        assert!(awaited.answered(AwaitedResponses::ANSWERED_WITHIN_MS));
        assert!(!awaited.answered(0), "each request answered once");
        awaited.asked(0);
        assert!(!awaited.answered(AwaitedResponses::ANSWERED_WITHIN_MS + 1));
        for _ in 0..AwaitedResponses::MAX + 10 {
            awaited.asked(1_000);
        }
        let taken = (0..).take_while(|_| awaited.answered(1_000)).count();
        assert_eq!(taken, AwaitedResponses::MAX);
    }

    const PATIENCE: u64 = 1_000;

    /// What was told is on its way for the patience after it was sent,
    /// or after the link drained the backlog it waited behind; then it
    /// is asked for again (it may have been lost).
    #[test]
    fn what_was_told_is_on_its_way_for_a_patience_after_the_link_drains() {
        let (a, b) = (PeerId(1), PeerId(2));
        let mut told = Told::default();
        told.observe(a, 1, 10, 5_000);
        told.observe(a, 1, 7, 5_100);
        assert_eq!(told.on_its_way(a, 5_500, PATIENCE), 10);
        assert_eq!(told.on_its_way(b, 5_500, PATIENCE), 0);
        assert_eq!(told.on_its_way(a, 6_100, PATIENCE), 0, "past patience");

        // Behind a backlog: on its way however long the backlog lasts,
        // and for a patience after it drains.
        told.backlogged(true, 5_200);
        assert_eq!(told.on_its_way(a, 60_000, PATIENCE), 10);
        told.backlogged(false, 60_000);
        assert_eq!(told.on_its_way(a, 60_900, PATIENCE), 10);
        told.expire(60_900, PATIENCE);
        assert_eq!(told.on_its_way(a, 60_900, PATIENCE), 10, "kept");
        told.observe(b, 1, 3, 60_950);
        told.expire(61_000, PATIENCE);
        assert_eq!(told.on_its_way(a, 61_000, PATIENCE), 0);
        assert_eq!(told.on_its_way(b, 61_000, PATIENCE), 3);
        assert_eq!((told.seqs.len(), told.times.len()), (1, 1), "expired");
    }

    /// What was announced is pulled: not sent on a digest until the
    /// next gossip tick, however short the patience.
    #[test]
    fn what_was_announced_is_left_to_be_pulled_until_the_next_tick() {
        let a = PeerId(1);
        let mut told = Told::default();
        told.announce(a, 4);
        assert_eq!(told.on_its_way(a, 90_000, 0), 4);
        told.expire(90_000, 0);
        assert_eq!(told.on_its_way(a, 90_000, 0), 0);
    }

    #[test]
    fn what_was_sent_of_each_snapshot_is_kept_while_they_are_asked_for_in_turn() {
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        let mut sent = SnapshotsSent::default();
        assert_eq!(sent.again(a, 0, 100), 0);
        sent.sent(a, 100);
        sent.sent(b, 50);
        assert_eq!(sent.again(a, 0, 100), 100);
        assert_eq!(sent.again(a, 60, 160), 40);
        assert_eq!(sent.again(b, 0, 100), 50);
        assert_eq!(sent.again(a, 100, 200), 0, "moving on is nothing again");
        // Every id a sender keeps at once is remembered.
        for i in 3..=SnapshotsSent::IDS as u8 {
            sent.sent(Hash32([i; 32]), 10);
        }
        assert_eq!(sent.again(a, 0, 100), 100);
        sent.sent(Hash32([99; 32]), 10);
        assert_eq!(sent.again(a, 0, 100), 0, "the oldest goes past them");
    }
}
