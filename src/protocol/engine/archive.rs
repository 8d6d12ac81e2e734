use std::collections::BTreeMap;

use crate::protocol::clock::PeerId;
use crate::protocol::event::{EventId, P2PEvent};

/// Sealed runs that left the log (folded, or loaded from a snapshot) but
/// that the state still rests on: the events a verified snapshot of this
/// peer must carry ([`crate::protocol::StateSnapshot`]). Kept whole, since
/// a run is verified whole; pruned at each compaction to the runs holding a
/// live dot, a kind's first operation or an origin's head.
#[derive(Debug, Default)]
pub struct Archive {
    /// By the id of each run's first event.
    runs: BTreeMap<EventId, Vec<P2PEvent>>,
    len: usize,
}

impl Archive {
    /// Keeps `events` (sorted by id), split into their sealed runs; an
    /// event no seal covers is kept as a run of its own (an unsigned room).
    pub fn insert(&mut self, events: Vec<P2PEvent>) {
        // Backwards: a run's seal is on its last event.
        let mut run: Vec<P2PEvent> = Vec::new();
        let mut covered: Option<(PeerId, u64)> = None;
        for event in events.into_iter().rev() {
            let inside = covered.is_some_and(|(peer, first)| {
                peer == event.id.peer
                    && event.id.seq >= first
                    && run
                        .last()
                        .is_some_and(|l| Some(l.id.seq) == event.id.seq.checked_add(1))
            });
            if !inside {
                self.insert_reversed(&mut run);
                covered = event.seal.as_ref().map(|s| (event.id.peer, s.first));
            }
            run.push(event);
            if covered.is_none() {
                self.insert_reversed(&mut run);
            }
        }
        self.insert_reversed(&mut run);
    }

    fn insert_reversed(&mut self, run: &mut Vec<P2PEvent>) {
        if !run.is_empty() {
            run.reverse();
            self.insert_run(std::mem::take(run));
        }
    }

    /// Keeps one whole run (consecutive events of one origin).
    pub fn insert_run(&mut self, run: Vec<P2PEvent>) {
        let Some(first) = run.first().map(|e| e.id) else {
            return;
        };
        self.len += run.len();
        if let Some(old) = self.runs.insert(first, run) {
            self.len -= old.len();
        }
    }

    /// The kept run holding `id`.
    pub fn run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        let (_, run) = self.runs.range(..=id).next_back()?;
        let first = run.first()?.id;
        let holds = first.peer == id.peer && id.seq - first.seq < run.len() as u64;
        holds.then_some(run.as_slice())
    }

    /// Keeps only the runs `keep` wants, asking in order of their ids.
    pub fn retain(&mut self, mut keep: impl FnMut(&[P2PEvent]) -> bool) {
        let mut len = 0;
        self.runs.retain(|_, run| {
            let kept = keep(run);
            if kept {
                len += run.len();
            }
            kept
        });
        self.len = len;
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::sample;
    use crate::protocol::identity::Identity;
    use crate::protocol::seal;

    #[test]
    fn events_are_kept_as_their_sealed_runs() {
        let a = Identity::from_seed(1);
        let b = PeerId(7);
        let mut first: Vec<P2PEvent> = (1..=3).map(|s| sample(a.peer(), s, "1")).collect();
        seal::seal(&a, &mut first);
        let mut second: Vec<P2PEvent> = (4..=5).map(|s| sample(a.peer(), s, "1")).collect();
        seal::seal(&a, &mut second);
        let mut events = first.clone();
        events.extend(second.clone());
        // Unsealed events (an unsigned room): each its own run.
        events.extend((1..=2).map(|s| sample(b, s, "2")));
        events.sort_unstable_by_key(|e| e.id);
        let mut archive = Archive::default();
        archive.insert(events);
        assert_eq!(archive.len(), 7);
        assert_eq!(archive.run_of(EventId::new(a.peer(), 2)), Some(&first[..]));
        assert_eq!(archive.run_of(EventId::new(a.peer(), 5)), Some(&second[..]));
        assert_eq!(archive.run_of(EventId::new(b, 2)).map(<[_]>::len), Some(1));
        assert_eq!(archive.run_of(EventId::new(a.peer(), 6)), None);
        archive.retain(|run| run[0].id.peer == b);
        assert_eq!(archive.len(), 2);
        assert_eq!(archive.run_of(EventId::new(a.peer(), 2)), None);
    }
}
