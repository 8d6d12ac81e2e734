//! `Epochs`: which WebRTC negotiation is current with each peer. Every
//! connection is named by its epoch on each side; a signal carries its
//! sender's. A larger epoch from the remote side means it started over, a
//! smaller or already-superseded one is a late message of a connection
//! that is gone.

use crate::protocol::sorted_map::SortedMap;

use crate::protocol::clock::PeerId;
use crate::protocol::signal::{Negotiation, SdpKind};

/// What to do with a negotiation step from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It belongs to the current connection: apply it there.
    Apply,
    /// The peer started a new connection: replace ours with a new
    /// answering connection named `epoch`, then apply the step to it.
    Accept { epoch: u64 },
    /// Stale, or a stray candidate of a connection we never saw: drop it.
    Ignore,
}

#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    /// Our current connection's epoch.
    ours: Option<u64>,
    /// The remote connection it is paired with, once heard from.
    theirs: Option<u64>,
    /// The largest remote epoch ever paired: nothing at or below it starts
    /// or joins a connection again.
    floor: Option<u64>,
}

/// The negotiation epochs of this peer's connections.
#[derive(Debug, Default)]
pub struct Epochs {
    last: u64,
    peers: SortedMap<PeerId, Pair>,
}

impl Epochs {
    /// A new epoch, increasing across reloads of the page: milliseconds
    /// (times 1000), then a count within the millisecond.
    fn next(&mut self, now_ms: u64) -> u64 {
        self.last = now_ms.saturating_mul(1000).max(self.last + 1);
        self.last
    }

    /// We start a connection to `peer` (replacing any): its epoch.
    pub fn dial(&mut self, peer: PeerId, now_ms: u64) -> u64 {
        let epoch = self.next(now_ms);
        let pair = self.peers.get_or_insert_with(peer, Pair::default);
        pair.ours = Some(epoch);
        pair.theirs = None;
        epoch
    }

    /// A negotiation step arrived from `peer`.
    pub fn receive(&mut self, peer: PeerId, step: &Negotiation, now_ms: u64) -> Verdict {
        let epoch = step.epoch();
        let (offer, answer) = match step {
            Negotiation::Description { kind, .. } => {
                (*kind == SdpKind::Offer, *kind == SdpKind::Answer)
            }
            Negotiation::Candidate { .. } => (false, false),
        };
        // What the step replies to; an offer opens a connection of its
        // sender's, whatever it heard last (in glare it names ours).
        let replying = step.reply_to().filter(|_| !offer);
        let pair = self.peers.get_or_insert_with(peer, Pair::default);
        if replying.is_some_and(|to| pair.ours != Some(to)) {
            // For a connection of ours since replaced: a late answer to
            // the dial before, which would pair with this one (and leave
            // the right answer, coming next, unpaired).
            return Verdict::Ignore;
        }
        if pair.ours.is_some() && pair.theirs == Some(epoch) {
            return Verdict::Apply;
        }
        if pair.floor.is_some_and(|floor| epoch <= floor) {
            return Verdict::Ignore;
        }
        // Our dial: its answer, or the peer's own offer crossing ours
        // (perfect negotiation settles that on the connection). An answer
        // that names our dial pairs even after a crossing offer did: the
        // peer dropped that connection and answered ours.
        if pair.ours.is_some() && (pair.theirs.is_none() || (answer && replying.is_some())) {
            pair.theirs = Some(epoch);
            pair.floor = Some(epoch);
            return Verdict::Apply;
        }
        // No connection, or the peer started over: only an offer opens one.
        if !offer {
            return Verdict::Ignore;
        }
        let ours = self.next(now_ms);
        let pair = self.peers.get_or_insert_with(peer, Pair::default);
        *pair = Pair {
            ours: Some(ours),
            theirs: Some(epoch),
            floor: Some(epoch),
        };
        Verdict::Accept { epoch: ours }
    }

    /// The remote connection our connection `epoch` to `peer` is paired
    /// with, if it is current and has heard from one: what the steps it
    /// sends reply to.
    pub fn reply_to(&self, peer: PeerId, epoch: u64) -> Option<u64> {
        let pair = self.peers.get(&peer)?;
        pair.ours.filter(|&ours| ours == epoch)?;
        pair.theirs
    }

    /// Whether our connection `epoch` to `peer` is the current one (events
    /// of a replaced connection are dropped).
    pub fn is_current(&self, peer: PeerId, epoch: u64) -> bool {
        self.peers.get(&peer).and_then(|p| p.ours) == Some(epoch)
    }

    /// The connection to `peer` is gone; late messages of it stay stale.
    pub fn hang_up(&mut self, peer: PeerId) {
        if let Some(pair) = self.peers.get_mut(&peer) {
            pair.ours = None;
            pair.theirs = None;
        }
    }

    /// `peer` left the room: a page that reloads comes back under the same
    /// id with a fresh clock, so its epochs start over.
    pub fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }

    pub fn clear(&mut self) {
        self.peers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(epoch: u64) -> Negotiation {
        Negotiation::Description {
            epoch,
            reply_to: None,
            kind: SdpKind::Offer,
            sdp: String::new(),
        }
    }

    fn answer(epoch: u64) -> Negotiation {
        Negotiation::Description {
            epoch,
            reply_to: None,
            kind: SdpKind::Answer,
            sdp: String::new(),
        }
    }

    fn candidate(epoch: u64) -> Negotiation {
        Negotiation::Candidate {
            epoch,
            reply_to: None,
            candidate: String::new(),
            sdp_mid: None,
            sdp_m_line_index: None,
        }
    }

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    #[test]
    fn epochs_increase_within_a_millisecond_and_across_reloads() {
        let mut e = Epochs::default();
        let first = e.dial(B, 5);
        let second = e.dial(B, 5);
        assert_eq!((first, second), (5000, 5001));
        let mut reloaded = Epochs::default();
        assert!(reloaded.dial(B, 6) > second);
    }

    #[test]
    fn an_answer_pairs_with_our_dial() {
        let mut a = Epochs::default();
        let ours = a.dial(B, 1);
        assert_eq!(a.receive(B, &answer(700), 2), Verdict::Apply);
        assert_eq!(a.receive(B, &candidate(700), 2), Verdict::Apply);
        assert!(a.is_current(B, ours));
    }

    #[test]
    fn both_sides_offering_at_once_pair_with_each_other() {
        let (mut a, mut b) = (Epochs::default(), Epochs::default());
        let ea = a.dial(B, 10);
        let eb = b.dial(A, 10);
        // The offers cross: each keeps its own connection and hands it the
        // other's offer (the polite side rolls back on the connection).
        assert_eq!(a.receive(B, &offer(eb), 11), Verdict::Apply);
        assert_eq!(b.receive(A, &offer(ea), 11), Verdict::Apply);
        assert_eq!(b.receive(A, &candidate(ea), 12), Verdict::Apply);
        assert_eq!(a.receive(B, &answer(eb), 12), Verdict::Apply);
        assert!(a.is_current(B, ea) && b.is_current(A, eb));
    }

    #[test]
    fn a_stale_offer_from_an_old_epoch_is_ignored() {
        let mut a = Epochs::default();
        assert!(matches!(
            a.receive(B, &offer(50), 1),
            Verdict::Accept { .. }
        ));
        assert!(matches!(
            a.receive(B, &offer(90), 2),
            Verdict::Accept { .. }
        ));
        assert_eq!(a.receive(B, &offer(50), 3), Verdict::Ignore);
        assert_eq!(a.receive(B, &candidate(50), 3), Verdict::Ignore);
        // After we drop the connection and dial again, late messages of the
        // old one do not pair with the new dial.
        a.hang_up(B);
        assert_eq!(a.receive(B, &candidate(90), 4), Verdict::Ignore);
        a.dial(B, 5);
        assert_eq!(a.receive(B, &candidate(90), 6), Verdict::Ignore);
        assert_eq!(a.receive(B, &answer(95), 6), Verdict::Apply);
    }

    /// `step` as sent by `from`'s connection `epoch`: naming the
    /// connection of ours it is paired with, as the transport stamps it.
    fn replying(from: &Epochs, to: PeerId, epoch: u64, mut step: Negotiation) -> Negotiation {
        step.set_reply_to(from.reply_to(to, epoch));
        step
    }

    /// A dial that timed out before its answer came, and a new dial: the
    /// late answer to the first names it, and is ignored; the answer to
    /// the second pairs. Before steps named the connection they reply to,
    /// the late answer paired with the new dial, the right one was then
    /// ignored as an answer to no dial, and the link waited for the
    /// connection's timeout to dial again.
    #[test]
    fn a_late_answer_to_a_replaced_dial_is_ignored() {
        let (mut a, mut b) = (Epochs::default(), Epochs::default());
        let first = a.dial(B, 1);
        let Verdict::Accept { epoch: b1 } = b.receive(A, &offer(first), 2) else {
            panic!("B answers the first dial")
        };
        assert_eq!(b.reply_to(A, b1), Some(first));
        let late_answer = replying(&b, A, b1, answer(b1));
        let late_candidate = replying(&b, A, b1, candidate(b1));

        // The answer is slow; A gives up and dials again.
        let second = a.dial(B, 10_000);
        assert_eq!(a.reply_to(B, second), None, "nothing heard yet");
        assert_eq!(a.receive(B, &late_answer, 10_001), Verdict::Ignore);
        assert_eq!(a.receive(B, &late_candidate, 10_001), Verdict::Ignore);

        let Verdict::Accept { epoch: b2 } = b.receive(A, &offer(second), 10_002) else {
            panic!("B answers the second dial")
        };
        assert!(!b.is_current(A, b1) && b.reply_to(A, b1).is_none());
        let answer = replying(&b, A, b2, answer(b2));
        assert_eq!(a.receive(B, &answer, 10_003), Verdict::Apply);
        assert_eq!(a.reply_to(B, second), Some(b2));
        let candidate = replying(&b, A, b2, candidate(b2));
        assert_eq!(a.receive(B, &candidate, 10_003), Verdict::Apply);
        assert_eq!(a.receive(B, &late_candidate, 10_004), Verdict::Ignore);
        assert!(a.is_current(B, second));
    }

    /// Offers crossed, and the peer dropped its own connection before
    /// ours reached it: it answers ours, naming it, and the answer pairs
    /// although the crossing offer had paired first. Unnamed, it was
    /// ignored as an answer to nothing until our dial timed out.
    #[test]
    fn an_answer_naming_our_dial_pairs_after_a_crossing_offer() {
        let (mut a, mut b) = (Epochs::default(), Epochs::default());
        let a1 = a.dial(B, 1);
        let b1 = b.dial(A, 1);
        assert_eq!(a.receive(B, &offer(b1), 2), Verdict::Apply, "glare");
        // A's offer leaves once it heard B's, naming it: offers are not
        // filtered by what they name.
        let our_offer = replying(&a, B, a1, offer(a1));
        assert_eq!(our_offer.reply_to(), Some(b1));
        b.hang_up(A);
        let Verdict::Accept { epoch: b2 } = b.receive(A, &our_offer, 3) else {
            panic!("B takes A's offer on a new connection")
        };
        let answer = replying(&b, A, b2, answer(b2));
        assert_eq!(a.receive(B, &answer, 4), Verdict::Apply);
        assert_eq!(a.reply_to(B, a1), Some(b2));
        // The dropped connection's late steps, named or not, go nowhere.
        assert_eq!(a.receive(B, &candidate(b1), 5), Verdict::Ignore);
        // An answer naming no dial still pairs with nothing.
        assert_eq!(a.receive(B, &self::answer(b2 + 1), 6), Verdict::Ignore);
    }

    /// A page before `replyTo` names no connection: its steps pair as
    /// they always did.
    #[test]
    fn steps_that_name_no_connection_pair_as_before() {
        let mut a = Epochs::default();
        let ours = a.dial(B, 1);
        assert_eq!(a.receive(B, &answer(700), 2), Verdict::Apply);
        assert_eq!(a.receive(B, &candidate(700), 2), Verdict::Apply);
        assert_eq!(a.reply_to(B, ours), Some(700));
        assert_eq!(a.reply_to(B, ours + 1), None, "not our connection");
    }

    #[test]
    fn a_newer_epoch_replaces_the_connection() {
        let mut a = Epochs::default();
        let first = match a.receive(B, &offer(50), 1) {
            Verdict::Accept { epoch } => epoch,
            v => panic!("{v:?}"),
        };
        assert_eq!(a.receive(B, &candidate(50), 1), Verdict::Apply);
        let second = match a.receive(B, &offer(60), 2) {
            Verdict::Accept { epoch } => epoch,
            v => panic!("{v:?}"),
        };
        assert!(second > first);
        assert!(!a.is_current(B, first), "the old connection's events drop");
        assert!(a.is_current(B, second));
        assert_eq!(a.receive(B, &candidate(60), 3), Verdict::Apply);
    }

    #[test]
    fn only_an_offer_opens_a_connection() {
        let mut a = Epochs::default();
        assert_eq!(a.receive(B, &candidate(5), 1), Verdict::Ignore);
        assert_eq!(a.receive(B, &answer(5), 1), Verdict::Ignore);
        assert!(matches!(a.receive(B, &offer(5), 1), Verdict::Accept { .. }));
    }

    #[test]
    fn a_peer_that_left_starts_over() {
        let mut a = Epochs::default();
        a.receive(B, &offer(5000), 1);
        a.forget(B);
        // Reloaded with a clock that went back.
        assert!(matches!(
            a.receive(B, &offer(10), 2),
            Verdict::Accept { .. }
        ));
    }
}
