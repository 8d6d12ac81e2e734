use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;
use crate::protocol::seal::MAX_RUN;

/// Applied events by origin, dense by sequence number: what anti-entropy
/// sends to a peer that lacks them. Events before an origin's `first_seq`
/// have been folded into a snapshot.
#[derive(Debug)]
pub struct EventLog {
    /// Seeded as the engine's entity map is, so a peer cannot aim ids at
    /// one bucket.
    origins: HashMap<PeerId, OriginLog, FixedState>,
    len: usize,
}

#[derive(Debug)]
struct OriginLog {
    first_seq: u64,
    events: Vec<P2PEvent>,
    /// Whether any event here may carry a seal: in an unsigned room none
    /// does, and looking for one would scan `MAX_RUN` events each time.
    sealed: bool,
}

impl OriginLog {
    /// Where event `seq` is in `events`, if the log reaches back to it.
    fn index(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.first_seq)?).ok()
    }

    /// The `events` bounds of sequence numbers `after+1..=upto`.
    fn bounds(&self, after: u64, upto: u64) -> (usize, usize) {
        let index = |seq: u64| {
            usize::try_from(seq.saturating_sub(self.first_seq - 1)).unwrap_or(usize::MAX)
        };
        (index(after), index(upto).min(self.events.len()))
    }

    /// Where the event sealing the run that holds `events[index]` is.
    fn sealing(&self, index: usize) -> Option<usize> {
        if !self.sealed {
            return None;
        }
        let mut after = self.events.get(index..)?.iter().take(MAX_RUN);
        Some(index + after.position(|e| e.seal.is_some())?)
    }
}

impl EventLog {
    pub fn with_seed(seed: u64) -> Self {
        EventLog {
            origins: HashMap::with_hasher(FixedState::with_seed(seed)),
            len: 0,
        }
    }

    /// Appends the next event of its origin (the engine applies in order).
    ///
    /// A sealed run that began before the log did (the log restarted after
    /// a snapshot) cannot be sent whole, so it is dropped as if folded: a
    /// peer that lacks it gets a snapshot, not a run it would refuse.
    pub fn append(&mut self, event: P2PEvent) {
        // A new origin's log starts with room for its one event: a first
        // push would make room for four (640 B), and a room of many
        // writers (C1.2's 30,000, one event each) is mostly origins of
        // one event.
        let log = self
            .origins
            .entry(event.id.peer)
            .or_insert_with(|| OriginLog {
                first_seq: event.id.seq,
                events: Vec::with_capacity(1),
                sealed: false,
            });
        log.sealed |= event.seal.is_some();
        debug_assert_eq!(log.first_seq + log.events.len() as u64, event.id.seq);
        if event.seal.as_ref().is_some_and(|s| s.first < log.first_seq) {
            self.len -= log.events.len();
            log.events.clear();
            log.first_seq = event.id.seq.saturating_add(1);
            return;
        }
        log.events.push(event);
        self.len += 1;
    }

    /// Where the sealed run holding `id` starts (`id.seq` itself for an
    /// unsealed event with no seal after it, as in an unsigned room).
    pub fn run_start(&self, id: EventId) -> u64 {
        let first = || {
            let log = self.origins.get(&id.peer)?;
            let end = log.sealing(log.index(id.seq)?)?;
            Some(log.events[end].seal.as_ref()?.first)
        };
        first().map_or(id.seq, |first| first.min(id.seq))
    }

    /// The whole sealed run holding `id`, if all of it is in the log.
    pub fn run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        let log = self.origins.get(&id.peer)?;
        let index = log.index(id.seq)?;
        let end = log.sealing(index)?;
        let start = log.index(log.events[end].seal.as_ref()?.first)?;
        (start <= index).then(|| &log.events[start..=end])
    }

    /// This origin's events `after+1..=upto`, to seal in place.
    pub fn range_mut(&mut self, peer: PeerId, after: u64, upto: u64) -> &mut [P2PEvent] {
        let Some(log) = self.origins.get_mut(&peer) else {
            return &mut [];
        };
        log.sealed = true;
        let (from, to) = log.bounds(after, upto);
        log.events.get_mut(from..to).unwrap_or_default()
    }

    pub fn get(&self, id: EventId) -> Option<&P2PEvent> {
        let log = self.origins.get(&id.peer)?;
        log.events.get(log.index(id.seq)?)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Logged events that `known` does not cover, by origin then sequence.
    pub fn missing_from<'a>(
        &'a self,
        known: &'a VectorClock,
    ) -> impl Iterator<Item = &'a P2PEvent> {
        let mut origins: Vec<(&PeerId, &OriginLog)> = self.origins.iter().collect();
        key_sort::sort_by_key(&mut origins, |(p, _)| u128::from(p.0));
        origins.into_iter().flat_map(move |(&peer, log)| {
            let skip = known.get(peer).saturating_sub(log.first_seq - 1);
            log.events
                .iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        })
    }

    /// The logged events of `peer` after `after`, up to `upto` (those still
    /// in the log), from the start of the sealed run holding `after + 1`.
    pub fn range(&self, peer: PeerId, after: u64, upto: u64) -> &[P2PEvent] {
        let after = self
            .run_start(EventId::new(peer, after.saturating_add(1)))
            .saturating_sub(1);
        let Some(log) = self.origins.get(&peer) else {
            return &[];
        };
        let (from, to) = log.bounds(after, upto);
        log.events.get(from..to).unwrap_or_default()
    }

    /// Every logged event, by origin then sequence.
    pub fn iter(&self) -> impl Iterator<Item = &P2PEvent> {
        static NOTHING: VectorClock = VectorClock::new();
        self.missing_from(&NOTHING)
    }

    /// Per origin, the last sequence number folded out of the log (into a
    /// snapshot): a peer that has less than this needs a snapshot.
    pub fn horizon(&self) -> VectorClock {
        self.origins
            .iter()
            .map(|(&p, log)| (p, log.first_seq - 1))
            .collect()
    }

    /// Where the log of `peer` starts: events before it were folded.
    pub fn first_seq(&self, peer: PeerId) -> u64 {
        self.origins.get(&peer).map_or(1, |log| log.first_seq)
    }

    /// Drops events covered by `stable` (everyone has them), whole sealed
    /// runs only, and returns them.
    pub fn prune(&mut self, stable: &VectorClock) -> Vec<P2PEvent> {
        let starts: Vec<(PeerId, u64)> = self
            .origins
            .keys()
            .map(|&p| {
                (
                    p,
                    self.run_start(EventId::new(p, stable.get(p).saturating_add(1))),
                )
            })
            .collect();
        // How many of each origin's events go, counted first: `folded` is
        // sized once, and a log folded whole is moved, not copied.
        let drops: Vec<(PeerId, usize)> = starts
            .into_iter()
            .filter_map(|(peer, start)| {
                let log = self.origins.get(&peer)?;
                let upto = start.saturating_sub(1);
                if upto < log.first_seq {
                    return None;
                }
                let drop = usize::try_from(upto + 1 - log.first_seq)
                    .unwrap_or(usize::MAX)
                    .min(log.events.len());
                (drop > 0).then_some((peer, drop))
            })
            .collect();
        let total: usize = drops.iter().map(|&(_, drop)| drop).sum();
        let mut folded = Vec::new();
        for (peer, drop) in drops {
            let Some(log) = self.origins.get_mut(&peer) else {
                continue;
            };
            if folded.is_empty() && drop == total && drop == log.events.len() {
                folded = std::mem::take(&mut log.events);
            } else {
                folded.reserve_exact(total - folded.len());
                folded.extend(log.events.drain(..drop));
                // A drained vector keeps its capacity: a log folded to a
                // few events would hold the room of all it ever held.
                if log.events.capacity() > 2 * log.events.len() {
                    log.events.shrink_to_fit();
                }
            }
            log.first_seq += drop as u64;
            self.len -= drop;
        }
        folded.shrink_to_fit();
        key_sort::sort_by_key(&mut folded, |e| key_sort::id_key(e.id));
        folded
    }

    /// Events of `peer` up to `seq` arrived folded in a snapshot: the log of
    /// that origin restarts after them.
    pub fn skip_to(&mut self, peer: PeerId, seq: u64) {
        let log = self.origins.entry(peer).or_insert(OriginLog {
            first_seq: seq.saturating_add(1),
            events: Vec::new(),
            sealed: false,
        });
        if log.first_seq + (log.events.len() as u64) <= seq {
            self.len -= log.events.len();
            log.events.clear();
            log.first_seq = seq.saturating_add(1);
        }
    }

    pub fn clear(&mut self) {
        self.origins.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::workload;

    fn logged(events: &[P2PEvent]) -> EventLog {
        let mut log = EventLog::with_seed(7);
        for event in events {
            log.append(event.clone());
        }
        log
    }

    /// A writer of one event costs the log one event's room, not the
    /// four a vector's first push makes.
    #[test]
    fn an_origin_of_one_event_takes_one_event_s_room() {
        let log = logged(&workload::one_write_each(100, false));
        assert_eq!(log.len(), 100);
        assert!(log.origins.values().all(|o| o.events.capacity() == 1));
    }

    /// Folding gives back the room of what it folds: a log folded whole
    /// hands over its vector, one folded in part is shrunk, and either
    /// way the folded events come out in id order.
    #[test]
    fn a_fold_gives_back_the_room_of_what_it_folds() {
        let events = workload::rounds(4_000, 2, 500, 8, 3);
        // Each origin and its last sequence number.
        let mut heads: Vec<(PeerId, u64)> = Vec::new();
        for event in &events {
            match heads.iter_mut().find(|(p, _)| *p == event.id.peer) {
                Some((_, n)) => *n = (*n).max(event.id.seq),
                None => heads.push((event.id.peer, event.id.seq)),
            }
        }
        assert_eq!(heads.len(), 2);
        let capacity =
            |log: &EventLog| -> usize { log.origins.values().map(|o| o.events.capacity()).sum() };

        // All but the last ten of each origin.
        let mut log = logged(&events);
        let part: VectorClock = heads.iter().map(|&(p, n)| (p, n - 10)).collect();
        let folded = log.prune(&part);
        assert_eq!(folded.len(), 4_000 - 20);
        assert!(folded.windows(2).all(|w| w[0].id < w[1].id), "in id order");
        assert_eq!(log.len(), 20);
        assert!(capacity(&log) <= 40, "kept room for {}", capacity(&log));

        // One origin alone, whole: its vector is handed over, not copied
        // (1,024 events fill their vector exactly, so nothing is shrunk).
        let one: Vec<P2PEvent> = workload::rounds(1_024, 1, 100, 8, 5);
        let mut log = logged(&one);
        let peer = one[0].id.peer;
        let buffer = log.origins[&peer].events.as_ptr();
        let folded = log.prune(&[(peer, 1_024)].into_iter().collect());
        assert_eq!(folded.as_ptr(), buffer, "moved, not copied");
        assert_eq!((folded.len(), log.len()), (1_024, 0));

        // One origin whole beside another: its vector is given back.
        let mut log = logged(&events);
        let (peer, n) = heads[0];
        let folded = log.prune(&[(peer, n)].into_iter().collect());
        assert_eq!(folded.len() as u64, n);
        assert!(folded.iter().all(|e| e.id.peer == peer));
        assert_eq!(log.range(peer, 0, u64::MAX).len(), 0);
        assert_eq!(log.len(), 4_000 - n as usize);
    }
}
