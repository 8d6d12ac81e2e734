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
                    && run.last().is_some_and(|l| l.id.seq == event.id.seq + 1)
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

    /// Keeps only the runs `keep` wants.
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

    /// Takes every run out (to be sorted through again).
    pub fn take_runs(&mut self) -> Vec<Vec<P2PEvent>> {
        self.len = 0;
        std::mem::take(&mut self.runs).into_values().collect()
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
    }
}
