//! A signer's sealed runs, kept disjoint.
//!
//! An honest origin's runs never overlap: each seal covers the events
//! since its last. A key holder can still seal `1..=10` and then `5..=12`.
//! Were both kept, no snapshot could carry them: the seal on 12 covers
//! events written there as the other run's, so every snapshot and leaf
//! this peer offered would be refused as broken. So a run that overlaps
//! one kept here (in the log, the archive or the holding queue) with other
//! bounds is refused, whichever way it comes: the first taken stays, as
//! with two events under one id ([`ReceiveError::Equivocation`]). The peer
//! that forwards it may be an honest one that took the other run first,
//! so it costs the sender nothing; the refusal is counted.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{policy, ReconciliationEngine};
use crate::protocol::clock::PeerId;
use crate::protocol::error::ReceiveError;
use crate::protocol::event::{EventId, P2PEvent};

impl ReconciliationEngine {
    /// Takes verified runs before their events are received: refuses those
    /// that overlap a kept run, or an earlier run of `events`, with other
    /// bounds (removed from `events`; their errors returned, counted), and
    /// keeps in the archive the runs that began before the log of their
    /// origin did (after a snapshot): the log cannot hold them whole, and
    /// the state may come to rest on their newer events. Unsigned events
    /// pass as they are.
    pub fn admit_runs(&mut self, events: &mut Vec<P2PEvent>) -> Vec<ReceiveError> {
        let mut errors = Vec::new();
        let mut refused: Vec<Range<usize>> = Vec::new();
        // The runs of `events` taken so far, by origin and first sequence.
        let mut taken: BTreeMap<(PeerId, u64), u64> = BTreeMap::new();
        let mut start = 0;
        for i in 0..events.len() {
            let Some(first) = events[i].seal.as_ref().map(|s| s.first) else {
                continue;
            };
            let run = start..i + 1;
            start = i + 1;
            match self.admit_run(&events[run.clone()], first, &mut taken) {
                Ok(()) => {}
                Err(e) => {
                    self.stats.equivocations += 1;
                    errors.push(e);
                    refused.push(run);
                }
            }
        }
        if !refused.is_empty() {
            let mut refused = refused.into_iter().peekable();
            let mut at = 0;
            events.retain(|_| {
                while refused.next_if(|r| r.end <= at).is_some() {}
                let drop = refused.peek().is_some_and(|r| r.start <= at);
                at += 1;
                !drop
            });
        }
        errors
    }

    /// One run of [`admit_runs`](Self::admit_runs): `run` is the events up
    /// to one sealed `first..` on its last.
    fn admit_run(
        &mut self,
        run: &[P2PEvent],
        first: u64,
        taken: &mut BTreeMap<(PeerId, u64), u64>,
    ) -> Result<(), ReceiveError> {
        let last = run[run.len() - 1].id;
        let origin = last.peer;
        let whole = run
            .iter()
            .enumerate()
            .all(|(i, e)| e.id == EventId::new(origin, first + i as u64));
        if !whole {
            return Err(ReceiveError::Malformed(format!(
                "the run sealed on {last} is not its events {first}.. in order"
            )));
        }
        let have = self.applied.get(origin);
        let logged_from = self.log.first_seq(origin);
        let straddles = first < logged_from && logged_from <= last.seq;
        if last.seq <= have && !straddles {
            // Applied already, every event: nothing of it will be kept.
            return Ok(());
        }
        let overlaps = |(&(peer, f), &l): (&(PeerId, u64), &u64)| {
            peer == origin && l >= first && (f, l) != (first, last.seq)
        };
        let earlier = taken.range(..=(origin, last.seq)).next_back();
        if earlier.is_some_and(overlaps) || self.overlaps_kept(first, last, true) {
            return Err(ReceiveError::OverlappingRun { id: last, first });
        }
        taken.insert((origin, first), last.seq);
        // A run with refused room state is never applied whole here, so
        // it must not back what we send on.
        if straddles && run.iter().all(|e| policy::check_room_state(e).is_ok()) {
            self.archive.insert_run(run.to_vec());
        }
        Ok(())
    }

    /// Whether the run `first..=last` (of `last`'s origin) overlaps a run
    /// kept here with other bounds: in the log, the archive, and (`held`)
    /// the holding queue.
    pub(super) fn overlaps_kept(&self, first: u64, last: EventId, held: bool) -> bool {
        let origin = last.peer;
        // An event of the range sealed where the run is not, or not sealed
        // where it is: it belongs to another run.
        let other = |e: &P2PEvent| {
            let sealed_from = e.seal.as_ref().map(|s| s.first);
            sealed_from != (e.id == last).then_some(first)
        };
        let at = |seq: u64| EventId::new(origin, seq);
        let logged = first.max(self.log.first_seq(origin))..=last.seq.min(self.applied.get(origin));
        if logged
            .into_iter()
            .any(|seq| self.log.get(at(seq)).is_some_and(other))
        {
            return true;
        }
        if !self.archive.is_empty() && self.archive.overlaps_other(at(first), last) {
            return true;
        }
        held && self.holding.holds_origin(origin)
            && (first..=last.seq).any(|seq| self.holding.get(at(seq)).is_some_and(other))
    }

    /// The last event of the first run of `events` (whole sealed runs,
    /// sorted by id: a snapshot's or a leaf's) that overlaps a run kept
    /// here with other bounds (`held`: those in the holding queue too).
    pub(super) fn overlapping_run(&self, events: &[P2PEvent], held: bool) -> Option<EventId> {
        events.iter().find_map(|e| {
            let first = e.seal.as_ref()?.first;
            self.overlaps_kept(first, e.id, held).then_some(e.id)
        })
    }

    /// Drops from `held` (the holding queue, drained) the runs that overlap
    /// a kept run with other bounds, counted: a snapshot brought the other.
    pub(super) fn drop_overlapping_held(&mut self, held: &mut Vec<P2PEvent>) {
        if self.archive.is_empty() && self.log.is_empty() {
            return;
        }
        let dropped: BTreeMap<(PeerId, u64), u64> = held
            .iter()
            .filter_map(|e| {
                let first = e.seal.as_ref()?.first;
                let overlaps = self.overlaps_kept(first, e.id, false);
                overlaps.then_some(((e.id.peer, first), e.id.seq))
            })
            .collect();
        if dropped.is_empty() {
            return;
        }
        self.stats.equivocations += dropped.len() as u64;
        held.retain(|e| {
            let run = dropped.range(..=(e.id.peer, e.id.seq)).next_back();
            !run.is_some_and(|(&(peer, _), &last)| peer == e.id.peer && e.id.seq <= last)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::digest;
    use crate::protocol::engine::{EngineConfig, Trust};
    use crate::protocol::seal;
    use crate::protocol::snapshot::{SnapshotError, StateSnapshot};
    use crate::protocol::testing::workload;

    const NOW: u64 = 1 << 40;
    const SIGNED: Trust = Trust {
        signed: true,
        now_ms: Some(NOW),
    };

    /// One origin's events 1..=12, sealed as the runs `bounds` (inclusive).
    fn sealed(bounds: &[(u64, u64)]) -> Vec<Vec<P2PEvent>> {
        let (signer, events) = workload::runs_to_seal(12, 1);
        bounds
            .iter()
            .map(|&(first, last)| {
                let mut run = events[0][first as usize - 1..last as usize].to_vec();
                seal::seal(&signer, &mut run);
                run
            })
            .collect()
    }

    fn engine(peer: u64) -> ReconciliationEngine {
        ReconciliationEngine::new(PeerId(peer), EngineConfig::default())
    }

    /// Takes `events`, verified, as a node does; returns the refusals.
    fn take(engine: &mut ReconciliationEngine, mut events: Vec<P2PEvent>) -> Vec<ReceiveError> {
        let errors = engine.admit_runs(&mut events);
        for event in events {
            engine.receive(event, NOW).expect("taken");
        }
        errors
    }

    /// What `engine` offers, its snapshot and every leaf of it, verifies
    /// and shows what it shows.
    fn offers_what_it_shows(engine: &mut ReconciliationEngine) {
        let bytes = engine.encode_snapshot();
        let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
        let mut fresh = self::engine(9);
        fresh.load_snapshot(snapshot, SIGNED).expect("verifies");
        assert_eq!(fresh.state(), engine.state());
        for leaf in 0..digest::LEAVES as u16 {
            let answer = engine.leaf_state(leaf);
            seal::verify_runs(&answer.events).expect("the leaf's runs verify");
        }
    }

    fn overlapping(errors: &[ReceiveError]) -> Vec<(u64, u64)> {
        errors
            .iter()
            .map(|e| match e {
                ReceiveError::OverlappingRun { id, first } => (*first, id.seq),
                other => panic!("{other}"),
            })
            .collect()
    }

    /// A signer's second run over some of the events of a first (sealed
    /// apart by the signer itself) is refused, whether it starts inside,
    /// at the same event or ends inside; a run after it, or one whose
    /// events are all applied, is not. What the peer offers verifies.
    /// (A helper's review: the run 5..=12 taken after 1..=10 made every
    /// snapshot and leaf of an honest peer fail as a broken run.)
    #[test]
    fn a_run_over_events_of_a_kept_run_is_refused() {
        let cases = [
            ((5, 12), true),
            ((1, 12), true),
            ((10, 11), true),
            ((11, 12), false),
            ((3, 8), false),
        ];
        for ((first, last), refused) in cases {
            let runs = sealed(&[(1, 10), (first, last)]);
            let mut peer = engine(2);
            assert!(take(&mut peer, runs[0].clone()).is_empty());
            let errors = take(&mut peer, runs[1].clone());
            let expected = if refused { vec![(first, last)] } else { vec![] };
            assert_eq!(overlapping(&errors), expected, "{first}..={last}");
            assert_eq!(peer.stats().equivocations, refused as u64);
            let applied = if refused { 10 } else { last.max(10) };
            assert_eq!(peer.clock().iter().next().map(|(_, n)| n), Some(applied));
            offers_what_it_shows(&mut peer);
        }
    }

    /// Both runs in one batch: the first is taken, the second refused.
    #[test]
    fn overlapping_runs_of_one_batch_take_the_first() {
        let runs = sealed(&[(1, 10), (5, 12)]);
        let mut peer = engine(2);
        let errors = take(&mut peer, runs.concat());
        assert_eq!(overlapping(&errors), vec![(5, 12)]);
        assert_eq!(peer.log().len(), 10);
        offers_what_it_shows(&mut peer);
    }

    /// A run held for its origin's earlier events counts as taken: one
    /// overlapping it is refused, and the held one applies once they come.
    #[test]
    fn a_run_over_a_held_one_is_refused() {
        let runs = sealed(&[(5, 12), (1, 10), (1, 4)]);
        let mut peer = engine(2);
        assert!(take(&mut peer, runs[0].clone()).is_empty());
        assert_eq!(peer.holding().len(), 8);
        assert_eq!(
            overlapping(&take(&mut peer, runs[1].clone())),
            vec![(1, 10)]
        );
        assert!(take(&mut peer, runs[2].clone()).is_empty());
        assert_eq!(peer.log().len(), 12);
        offers_what_it_shows(&mut peer);
    }

    /// A snapshot or a leaf whose run overlaps one kept here with other
    /// bounds is refused (not as a lie: its sender may have taken that
    /// run first), and changes nothing.
    #[test]
    fn state_over_a_kept_run_with_other_bounds_is_refused() {
        let runs = sealed(&[(1, 10), (1, 4), (5, 10), (5, 12)]);
        let mut peer = engine(2);
        take(&mut peer, runs[0].clone());
        let before = peer.state();

        let mut other = engine(3);
        take(&mut other, [runs[1].clone(), runs[3].clone()].concat());
        let snapshot = StateSnapshot::decode(&other.encode_snapshot()).expect("decodes");
        let refused = peer.load_snapshot(snapshot, SIGNED);
        assert!(
            matches!(&refused, Err(e @ SnapshotError::OverlappingRun(id)) if id.seq == 4 && !e.is_lie()),
            "{refused:?}"
        );
        assert_eq!(peer.state(), before);

        // Same clocks, another split of the same events: a leaf of it.
        let mut other = engine(3);
        take(&mut other, [runs[1].clone(), runs[2].clone()].concat());
        let leaf = digest::leaf_of(&runs[2][0].key);
        let answer = other.leaf_state(leaf);
        let refused = peer.join_leaf(leaf, answer, SIGNED);
        assert!(
            matches!(&refused, Err(SnapshotError::OverlappingRun(_))),
            "{refused:?}"
        );
        assert_eq!(peer.state(), before);
        offers_what_it_shows(&mut peer);
    }

    /// A held run that overlaps one a loaded snapshot brought is dropped:
    /// released, it would show events whose run is kept nowhere.
    #[test]
    fn a_held_run_over_a_loaded_one_is_dropped() {
        let runs = sealed(&[(9, 12), (1, 4), (5, 10)]);
        let mut peer = engine(2);
        take(&mut peer, runs[0].clone());
        assert_eq!(peer.holding().len(), 4);
        let mut other = engine(3);
        take(&mut other, [runs[1].clone(), runs[2].clone()].concat());
        let snapshot = StateSnapshot::decode(&other.encode_snapshot()).expect("decodes");
        peer.load_snapshot(snapshot, SIGNED).expect("verifies");
        assert!(peer.holding().is_empty());
        assert_eq!(peer.clock().iter().next().map(|(_, n)| n), Some(10));
        assert_eq!(peer.stats().equivocations, 1);
        offers_what_it_shows(&mut peer);
    }
}
