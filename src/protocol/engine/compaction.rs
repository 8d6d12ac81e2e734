use super::snapshot::Needed;
use super::ReconciliationEngine;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;

impl ReconciliationEngine {
    /// Per origin, the last event folded out of the log. A peer whose clock
    /// is below this for some origin cannot be sent events: it needs a
    /// snapshot.
    pub fn horizon(&self) -> VectorClock {
        self.log.horizon()
    }

    /// Whether a peer with `clock` is behind the compaction horizon.
    pub fn needs_snapshot(&self, clock: &VectorClock) -> bool {
        self.log
            .horizon()
            .iter()
            .any(|(p, folded)| clock.get(p) < folded)
    }

    /// The logged events a peer with `clock` lacks, in an order it can
    /// apply them in (per origin, by sequence; the receiver's holding queue
    /// orders across origins).
    pub fn events_missing_from(&self, clock: &VectorClock) -> Vec<P2PEvent> {
        // Walks our version vector (sorted) and slices each origin's log: no
        // scan of origins the peer is level with beyond one comparison.
        let mut out = Vec::new();
        for (peer, have) in self.applied.iter() {
            let theirs = clock.get(peer);
            if have > theirs {
                for part in self.log.range(peer, theirs, have) {
                    out.extend_from_slice(part);
                }
            }
        }
        out
    }

    /// Starts noting which origins' events get applied, for
    /// [`applied_since_mark`](Self::applied_since_mark). A node takes
    /// what a local write released ([`take_released`](Self::take_released))
    /// before it marks again: a new mark forgets it.
    pub fn mark_applied(&mut self) {
        let mut moved = std::mem::take(&mut self.spare_moved);
        moved.0.clear();
        self.moved = Some(moved);
    }

    /// [`mark_applied`](Self::mark_applied) unless a mark is open (a
    /// local write inside a node's mark, a resolution's, leaves it be).
    pub(super) fn keep_marking(&mut self) {
        if self.moved.is_none() {
            self.mark_applied();
        }
    }

    /// Whether a local write released others' held events since this
    /// was last asked: they are among what
    /// [`applied_since_mark`](Self::applied_since_mark) gives, for the
    /// node to store before that write, which may rest on them, and to
    /// pass on.
    pub fn take_released(&mut self) -> bool {
        std::mem::take(&mut self.released)
    }

    /// The logged events applied since [`mark_applied`](Self::mark_applied)
    /// (what [`events_missing_from`](Self::events_missing_from) the clock at
    /// the mark would give, at a cost in the origins that moved rather than
    /// in every origin: a relay taking one event from each of 30,000
    /// writers would otherwise walk the whole version vector per event).
    /// Ends the marking. Borrowed from the log: a node copies only what a
    /// link lacks.
    pub fn applied_since_mark(&mut self) -> Vec<&P2PEvent> {
        let ranges = self.applied_ranges_since_mark();
        self.logged(&ranges)
    }

    /// What [`applied_since_mark`](Self::applied_since_mark) gives, as
    /// `(origin, after, upto)` ranges by origin. Ends the marking.
    pub fn applied_ranges_since_mark(&mut self) -> Vec<(PeerId, u64, u64)> {
        let Some(mut moved) = self.moved.take() else {
            return Vec::new();
        };
        let ranges = moved.ranges(&self.applied);
        if moved.0.capacity() <= SPARE_MOVED {
            self.spare_moved = moved;
        }
        ranges
    }

    /// The logged events of `(origin, after, upto)` ranges, whole runs
    /// (what is still logged: compaction folds events into the state).
    pub fn logged(&self, ranges: &[(PeerId, u64, u64)]) -> Vec<&P2PEvent> {
        let mut out = Vec::new();
        for &(peer, after, upto) in ranges {
            for part in self.log.range(peer, after, upto) {
                out.extend(part);
            }
        }
        out
    }

    /// Compaction: drops logged events that every known peer has (`stable`,
    /// the pointwise minimum of their version vectors and ours). The state
    /// keeps their effect; a peer behind the new horizon gets a snapshot.
    pub fn compact(&mut self, stable: &VectorClock) -> usize {
        self.fold_log(stable).map_or(0, |(count, _)| count)
    }

    /// [`compact`](Self::compact), then the snapshot of the state, encoded
    /// (what storage keeps in place of the folded log): `None` when
    /// nothing folded. The same as `compact` and then
    /// [`encode_snapshot`](Self::encode_snapshot), less one walk and sort
    /// of every entity's dots, which both need and the fold leaves as they
    /// were.
    pub fn compact_encoded(&mut self, stable: &VectorClock) -> Option<Vec<u8>> {
        let (_, needed) = self.fold_log(stable)?;
        Some(self.encode_needed(&needed))
    }

    /// Puts back into the log the events a fold left there and storage
    /// kept after the snapshot covering them (`events`, from our own
    /// storage, within our clock): a restore from that snapshot restarted
    /// every origin's log after its clock, so a peer lacking them (our
    /// writes made offline, which a fold keeps for the peers to come)
    /// was sent the whole state as a snapshot rather than them. Those
    /// that do not end at our clock, in whole runs, stay out.
    pub fn restore_log_tail(&mut self, mut events: Vec<P2PEvent>) {
        events.retain(|e| e.id.seq <= self.applied.get(e.id.peer));
        // By origin, then sequence (the crate's sort: the standard
        // library's stable sort is 3 KB of wasm).
        key_sort::sort_by_key(&mut events, |e| key_sort::id_key(e.id));
        events.dedup_by_key(|e| e.id);
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let peer = first.id.peer;
            let mut run = vec![first];
            while let Some(next) = events.next_if(|e| e.id.peer == peer) {
                run.push(next);
            }
            let upto = self.applied.get(peer);
            self.log.restore_tail(peer, upto, run);
        }
    }

    /// Folds what `stable` covers out of the log into the archive: how
    /// many events, and what the state rests on.
    fn fold_log(&mut self, stable: &VectorClock) -> Option<(usize, Needed)> {
        let stable = VectorClock::meet([stable, &self.applied].into_iter());
        let folded = self.log.prune(&stable);
        let count = folded.iter().map(Vec::len).sum();
        (count > 0).then(|| (count, self.keep_evidence(folded)))
    }
}

/// A list of `moved` kept for the next mark holds at most this many
/// entries' room (a mark over a large batch lets its list go).
const SPARE_MOVED: usize = 4096;

/// Since a mark: per applied event whose origin is not the previous
/// one's, the origin and where it stood before the event. An origin's
/// events apply in order, so its first entry is where it stood at the
/// mark; a list, not a map, so that a mark of one event (a signed node
/// marks once a frame) costs a push.
#[derive(Debug, Default)]
pub(super) struct Moved(Vec<(PeerId, u64)>);

impl Moved {
    /// `id` is applied.
    #[inline]
    pub fn note(&mut self, id: EventId) {
        if self.0.last().map(|&(peer, _)| peer) != Some(id.peer) {
            self.0.push((id.peer, id.seq - 1));
        }
    }

    /// Each origin that moved, by origin (as the version vector would
    /// walk them): `(origin, where it stood, what is applied now)`.
    /// Leaves the list empty.
    fn ranges(&mut self, applied: &VectorClock) -> Vec<(PeerId, u64, u64)> {
        // Stable: of an origin's entries, its first (its lowest) stays first.
        key_sort::sort_by_key(&mut self.0, |(peer, _)| u128::from(peer.0));
        let mut ranges: Vec<(PeerId, u64, u64)> = Vec::new();
        for (peer, from) in self.0.drain(..) {
            match ranges.last_mut() {
                Some(last) if last.0 == peer => last.1 = last.1.min(from),
                _ => ranges.push((peer, from, 0)),
            }
        }
        for range in &mut ranges {
            range.2 = applied.get(range.0);
        }
        ranges.retain(|&(_, from, have)| have > from);
        ranges
    }
}
