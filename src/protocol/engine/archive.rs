use crate::protocol::clock::PeerId;
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;

/// Sealed runs that left the log (folded, or loaded from a snapshot) but
/// that the state still rests on: the events a verified snapshot of this
/// peer must carry ([`crate::protocol::StateSnapshot`]). Kept whole, since
/// a run is verified whole; pruned at each compaction to the runs holding a
/// live dot, a kind's first operation or an origin's head.
///
/// Kept as the batches they came in ([`Segment`]s), each sorted by id: a
/// loaded snapshot's events stay in the vector they were decoded into,
/// and a fold's in the log's chunks it took whole, with no allocation or
/// move per run (a million lone events of an unsigned room took 1.7 s to
/// file one by one). Compaction prunes each
/// in place and merges small ones by size, up to `SEGMENT_CAP` events
/// (`tier`). Merging every batch into one moved the whole archive at
/// each fold (a million keys written through folds took 2.3-2.4 s
/// natively, 1.4 s with the tiers) and held it twice while it did, a
/// peak the wasm's memory keeps. Lookups of many ids in order go through
/// one `Cursor`, which reads each segment once.
#[derive(Debug, Default)]
pub struct Archive {
    /// Oldest first; a run in a later segment hides the same run in an
    /// earlier one.
    segments: Vec<Segment>,
    len: usize,
    /// Segments left by the last [`retain`](Archive::retain): past this
    /// many more, an insert prunes and merges (large segments, which are
    /// never merged, do not count against it).
    settled: usize,
}

/// Batches inserted since the last prune, at most: past this an insert
/// prunes and merges them ([`Archive::retain`]).
const MAX_SEGMENTS: usize = 8;

/// Segments are merged up to this many events (about 10 MB), no further:
/// a merge makes its segment new while the old ones are still held, and
/// the wasm's memory keeps that peak (merging a million kept events into
/// one vector was about 100 B a key of a Peer's memory at a million
/// keys). A fold's segment stays as it came, whatever its size.
const SEGMENT_CAP: usize = 1 << 16;

/// Whole runs, sorted by id, in one vector or several (a fold hands
/// over an origin's log chunks as they are, [`Archive::insert_pieces`]);
/// a run is never split between two.
#[derive(Debug)]
struct Segment {
    pieces: Vec<Vec<P2PEvent>>,
    /// Each run's first event: its id, and where it is.
    starts: Vec<Start>,
    len: usize,
}

/// Where a run starts: its first id, its piece, and its index there.
#[derive(Debug, Clone, Copy)]
struct Start {
    id: EventId,
    piece: u32,
    at: u32,
}

impl Segment {
    /// `events` (sorted by id) split into their sealed runs; an event no
    /// seal covers is a run of its own (an unsigned room).
    fn split(events: Vec<P2PEvent>) -> Segment {
        Split::new(events.len()).finish(events)
    }

    /// Pieces of events sorted by id across them, no run split between
    /// two, each split into its sealed runs.
    fn of_pieces(pieces: Vec<Vec<P2PEvent>>) -> Segment {
        let mut segment = Segment::empty();
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            let mut split = Split::new(piece.len());
            split.step(&piece, usize::MAX);
            segment.push_piece(piece, split.starts());
        }
        segment
    }

    /// One whole run.
    fn one_run(run: Vec<P2PEvent>) -> Segment {
        Segment::with_starts(run, vec![0])
    }

    fn with_starts(events: Vec<P2PEvent>, starts: Vec<usize>) -> Segment {
        let mut segment = Segment::empty();
        segment.push_piece(events, starts);
        segment
    }

    fn empty() -> Segment {
        Segment {
            pieces: Vec::new(),
            starts: Vec::new(),
            len: 0,
        }
    }

    /// Appends a piece whose runs start at `starts` (ascending).
    fn push_piece(&mut self, events: Vec<P2PEvent>, starts: Vec<usize>) {
        if events.is_empty() {
            return;
        }
        let piece = self.pieces.len() as u32;
        self.starts.extend(starts.into_iter().map(|i| Start {
            id: events[i].id,
            piece,
            at: i as u32,
        }));
        self.len += events.len();
        self.pieces.push(events);
    }

    /// Run `r`'s piece and its bounds there.
    fn bounds(&self, r: usize) -> (usize, usize, usize) {
        let Start { piece, at, .. } = self.starts[r];
        let piece = piece as usize;
        let end = match self.starts.get(r + 1) {
            Some(next) if next.piece as usize == piece => next.at as usize,
            _ => self.pieces[piece].len(),
        };
        (piece, at as usize, end)
    }

    /// Run `r`.
    fn run_at(&self, r: usize) -> &[P2PEvent] {
        let (piece, start, end) = self.bounds(r);
        &self.pieces[piece][start..end]
    }

    fn runs(&self) -> impl Iterator<Item = &[P2PEvent]> + '_ {
        (0..self.starts.len()).map(|r| self.run_at(r))
    }

    fn run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        let r = self.starts.partition_point(|start| start.id <= id);
        self.holding(r.checked_sub(1)?, id)
    }

    /// Whether a run here other than `first..=last` (of one origin) holds
    /// one of its ids: the run holding `first` is not exactly it, or a run
    /// starts after `first` and no later than `last`.
    fn overlaps_other(&self, first: EventId, last: EventId) -> bool {
        let r = self.starts.partition_point(|start| start.id <= first);
        let holding_first = r.checked_sub(1).and_then(|r| self.holding(r, first));
        let other = holding_first
            .is_some_and(|run| run[0].id != first || run.last().map(|e| e.id) != Some(last));
        other || self.starts.get(r).is_some_and(|start| start.id <= last)
    }

    /// Run `r`, if it holds `id` (the last run starting at or before it).
    fn holding(&self, r: usize, id: EventId) -> Option<&[P2PEvent]> {
        let first = self.starts.get(r)?.id;
        debug_assert!(first <= id, "run {r} starts after {id:?}");
        let run = self.run_at(r);
        let within = id
            .seq
            .checked_sub(first.seq)
            .is_some_and(|d| d < run.len() as u64);
        (first.peer == id.peer && within).then_some(run)
    }
}

/// Events sorted by id split into their sealed runs a slice at a time
/// ([`step`](Split::step)), for a snapshot loaded in slices; an event
/// no seal covers is a run of its own. Backwards: a run's seal is on its
/// last event.
#[derive(Debug)]
pub(super) struct Split {
    /// The runs' first events found so far, last first.
    starts: Vec<usize>,
    /// The run open at the event after the next one looked at.
    covered: Option<(PeerId, u64)>,
    /// Events not looked at yet: `events[..left]`.
    left: usize,
}

impl Split {
    /// For `len` events.
    pub(super) fn new(len: usize) -> Split {
        Split {
            starts: Vec::new(),
            covered: None,
            left: len,
        }
    }

    /// Looks at up to `budget` more of `events`; returns how many.
    pub(super) fn step(&mut self, events: &[P2PEvent], budget: usize) -> usize {
        let to = self.left.saturating_sub(budget);
        for i in (to..self.left).rev() {
            let event = &events[i];
            let inside = self.covered.is_some_and(|(peer, first)| {
                peer == event.id.peer
                    && event.id.seq >= first
                    && Some(events[i + 1].id.seq) == event.id.seq.checked_add(1)
            });
            if !inside {
                if self.covered.is_some() {
                    self.starts.push(i + 1);
                }
                self.covered = event.seal.as_ref().map(|s| (event.id.peer, s.first));
            }
            if self.covered.is_none() {
                self.starts.push(i);
            }
        }
        let looked = self.left - to;
        self.left = to;
        looked
    }

    pub(super) fn is_done(&self) -> bool {
        self.left == 0
    }

    /// The segment of `events` (what is left of them is looked at here).
    fn finish(mut self, events: Vec<P2PEvent>) -> Segment {
        self.step(&events, usize::MAX);
        Segment::with_starts(events, self.starts())
    }

    /// Where the runs start, first first, once every event was looked at.
    fn starts(mut self) -> Vec<usize> {
        debug_assert!(self.is_done());
        if self.covered.is_some() {
            self.starts.push(0);
        }
        self.starts.reverse();
        self.starts
    }
}

impl Archive {
    /// Keeps `events` (sorted by id), split into their sealed runs; an
    /// event no seal covers is kept as a run of its own (an unsigned room).
    pub fn insert(&mut self, events: Vec<P2PEvent>) {
        if !events.is_empty() {
            self.add(Segment::split(events));
        }
    }

    /// [`insert`](Self::insert) of `events` whose runs `split` found (or
    /// finds the rest of here).
    pub(super) fn insert_split(&mut self, split: Split, events: Vec<P2PEvent>) {
        if !events.is_empty() {
            self.add(split.finish(events));
        }
    }

    /// Keeps one whole run (consecutive events of one origin).
    pub fn insert_run(&mut self, run: Vec<P2PEvent>) {
        if !run.is_empty() {
            self.add(Segment::one_run(run));
        }
    }

    /// [`insert`](Self::insert) of events in pieces, sorted by id across
    /// them, no sealed run split between two: kept as they are, the
    /// pieces not copied into one (a fold's, an origin's log chunks).
    pub fn insert_pieces(&mut self, pieces: Vec<Vec<P2PEvent>>) {
        let segment = Segment::of_pieces(pieces);
        if segment.len > 0 {
            self.add(segment);
        }
    }

    fn add(&mut self, segment: Segment) {
        // Runs held already (a leaf repair brings some back) are not kept
        // twice; a fresh archive, a cold start's, has none to look for.
        let segment = if self.segments.is_empty() {
            segment
        } else {
            // The new runs come in id order: one cursor walks the rest.
            let mut held = self.cursor();
            let fresh: Vec<bool> = segment
                .runs()
                .map(|run| {
                    !held
                        .run_of(run[0].id)
                        .is_some_and(|mine| mine[0].id == run[0].id && mine.len() == run.len())
                })
                .collect();
            if fresh.iter().all(|f| *f) {
                segment
            } else {
                Self::merged(vec![segment], &fresh)
            }
        };
        if segment.len == 0 {
            return;
        }
        self.len += segment.len;
        self.segments.push(segment);
        if self.segments.len() > self.settled + MAX_SEGMENTS {
            self.retain(|_| true);
        }
    }

    /// The kept run holding `id`.
    pub fn run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        self.segments.iter().rev().find_map(|s| s.run_of(id))
    }

    /// Whether a kept run other than `first..=last` (of one origin) holds
    /// one of its ids: a run of its signer's that overlaps it with other
    /// bounds.
    pub fn overlaps_other(&self, first: EventId, last: EventId) -> bool {
        self.segments.iter().any(|s| s.overlaps_other(first, last))
    }

    /// Lookups of runs by ids that never decrease, each segment read front
    /// to back once, however many there are.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            archive: self,
            at: vec![0; self.segments.len()],
        }
    }

    /// Keeps only the runs `keep` wants, asking in order of their ids (a
    /// run kept twice, in two segments, is kept once: the younger copy).
    pub fn retain(&mut self, mut keep: impl FnMut(&[P2PEvent]) -> bool) {
        let segments = std::mem::take(&mut self.segments);
        // Every run, by first id (a later segment's copy first), with where
        // it is: listed youngest segment first, so a stable sort by id
        // orders them by id, then age.
        let mut order: Vec<(EventId, usize, usize)> = segments
            .iter()
            .enumerate()
            .rev()
            .flat_map(|(s, segment)| {
                let age = segments.len() - s;
                segment
                    .starts
                    .iter()
                    .enumerate()
                    .map(move |(r, start)| (start.id, age, r))
            })
            .collect();
        if segments.len() > 1 {
            key_sort::sort_by_key(&mut order, |&(first, _, _)| key_sort::id_key(first));
        }
        let mut kept: Vec<Vec<bool>> = segments
            .iter()
            .map(|s| vec![false; s.starts.len()])
            .collect();
        let mut last: Option<EventId> = None;
        for (_, age, r) in order {
            let s = segments.len() - age;
            let run = segments[s].run_at(r);
            // A run overlapping one kept before it (a copy, or a forger's
            // other run) is not kept again.
            let overlaps = last.is_some_and(|l| l.peer == run[0].id.peer && l.seq >= run[0].id.seq);
            if !overlaps && keep(run) {
                kept[s][r] = true;
                last = Some(run[run.len() - 1].id);
            }
        }
        // Each segment keeps its runs in place: the archive is not copied
        // to drop a few runs (a fold's, every 50,000 events).
        for (segment, kept) in segments.into_iter().zip(&kept) {
            let segment = if kept.iter().all(|k| *k) {
                segment
            } else {
                Self::merged(vec![segment], kept)
            };
            if segment.len > 0 {
                self.segments.push(segment);
            }
        }
        self.tier();
        self.len = self.segments.iter().map(|s| s.len).sum();
        self.settled = self.segments.len();
    }

    /// Merges the youngest segment into the one before it while it is at
    /// least half that one's size and the two hold at most [`SEGMENT_CAP`]
    /// events: small batches (leaf repairs, small folds) are gathered, an
    /// event is moved a few times at most, and no large segment is copied.
    fn tier(&mut self) {
        while let [.., elder, young] = &self.segments[..] {
            let (young, elder) = (young.len, elder.len);
            if young * 2 < elder || young + elder > SEGMENT_CAP {
                break;
            }
            let merging = self.segments.split_off(self.segments.len() - 2);
            let all: Vec<Vec<bool>> = merging.iter().map(|s| vec![true; s.starts.len()]).collect();
            let merged = Self::merged_all(merging, &all);
            self.segments.push(merged);
        }
    }

    /// One segment's runs that `keep` marks, moved in place, piece by
    /// piece.
    fn merged(mut segments: Vec<Segment>, keep: &[bool]) -> Segment {
        let segment = segments.pop().unwrap_or_else(Segment::empty);
        // Per piece, where its kept runs start once they have moved up;
        // which events stay, pieces end to end.
        let mut starts: Vec<Vec<usize>> = vec![Vec::new(); segment.pieces.len()];
        let mut kept = vec![0; segment.pieces.len()];
        let mut mask = Vec::with_capacity(segment.len);
        for (r, keep) in keep.iter().enumerate() {
            let (piece, start, end) = segment.bounds(r);
            if *keep {
                starts[piece].push(kept[piece]);
                kept[piece] += end - start;
            }
            mask.extend(std::iter::repeat_n(*keep, end - start));
        }
        let mut mask = mask.into_iter();
        let mut out = Segment::empty();
        for (mut events, starts) in segment.pieces.into_iter().zip(starts) {
            events.retain(|_| mask.next().unwrap_or(false));
            if events.capacity() > 2 * events.len() {
                events.shrink_to_fit();
            }
            out.push_piece(events, starts);
        }
        out
    }

    /// The runs `kept` marks in several segments, moved into one, by id.
    fn merged_all(segments: Vec<Segment>, kept: &[Vec<bool>]) -> Segment {
        let mut runs: Vec<(EventId, usize, usize)> = Vec::new();
        for (s, segment) in segments.iter().enumerate() {
            for (r, start) in segment.starts.iter().enumerate() {
                if kept[s][r] {
                    runs.push((start.id, s, r));
                }
            }
        }
        // Pushed in segment and run order: stable by id is the tuples' order.
        key_sort::sort_by_key(&mut runs, |&(first, _, _)| key_sort::id_key(first));
        // Each run's bounds among its segment's events, pieces end to end.
        let bounds: Vec<Vec<(usize, usize)>> = segments
            .iter()
            .map(|s| {
                let mut offsets = Vec::with_capacity(s.pieces.len());
                let mut total = 0;
                for piece in &s.pieces {
                    offsets.push(total);
                    total += piece.len();
                }
                (0..s.starts.len())
                    .map(|r| {
                        let (piece, start, end) = s.bounds(r);
                        (offsets[piece] + start, offsets[piece] + end)
                    })
                    .collect()
            })
            .collect();
        let total = runs
            .iter()
            .map(|&(_, s, r)| bounds[s][r].1 - bounds[s][r].0)
            .sum();
        let mut events = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(runs.len());
        // Each segment's kept runs come in its own order: one cursor each.
        let mut sources: Vec<_> = segments
            .into_iter()
            .map(|s| (s.pieces.into_iter().flatten(), 0))
            .collect();
        for (_, s, r) in runs {
            let (start, end) = bounds[s][r];
            let (source, at) = &mut sources[s];
            starts.push(events.len());
            events.extend(source.by_ref().skip(start - *at).take(end - start));
            *at = end;
        }
        Segment::with_starts(events, starts)
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// [`Archive::cursor`]: per segment, how many of its runs start at or
/// before the last id asked.
pub struct Cursor<'a> {
    archive: &'a Archive,
    at: Vec<usize>,
}

impl<'a> Cursor<'a> {
    /// The kept run holding `id` (the youngest copy), for an `id` no less
    /// than the last asked.
    pub fn run_of(&mut self, id: EventId) -> Option<&'a [P2PEvent]> {
        let segments = self.archive.segments.iter().zip(&mut self.at).rev();
        for (segment, at) in segments {
            // Galloping past the runs starting at or before `id`: ids far
            // apart cost a search, near ones a step or two.
            let rest = &segment.starts[*at..];
            let mut step = 1;
            while step <= rest.len() && rest[step - 1].id <= id {
                step *= 2;
            }
            let (low, high) = (step / 2, step.min(rest.len()));
            *at += low + rest[low..high].partition_point(|start| start.id <= id);
            // (A cursor asked an earlier id than the last would trip the
            // order check in `holding`.)
            let run = at.checked_sub(1).and_then(|r| segment.holding(r, id));
            if run.is_some() {
                return run;
            }
        }
        None
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

    /// Lone events of an unsigned room, one per origin and sequence.
    fn lone(peer: u64, seqs: std::ops::RangeInclusive<u64>) -> Vec<P2PEvent> {
        seqs.map(|s| sample(PeerId(peer), s, "1")).collect()
    }

    fn ids(archive: &Archive) -> Vec<EventId> {
        let mut out = Vec::new();
        archive.clone_ids(&mut out);
        out
    }

    impl Segment {
        fn events(&self) -> impl Iterator<Item = &P2PEvent> + '_ {
            self.pieces.iter().flatten()
        }
    }

    impl Archive {
        fn clone_ids(&self, out: &mut Vec<EventId>) {
            let mut all = Vec::new();
            self.segments
                .iter()
                .for_each(|s| all.extend(s.events().map(|e| e.id)));
            all.sort_unstable();
            all.dedup();
            out.extend(all);
        }
    }

    #[test]
    fn a_run_brought_twice_is_kept_once() {
        let mut archive = Archive::default();
        archive.insert(lone(1, 1..=4));
        archive.insert(lone(1, 3..=6));
        assert_eq!(archive.len(), 6, "events 3 and 4 came twice");
        assert_eq!(archive.segments.len(), 2);
        archive.retain(|_| true);
        assert_eq!(archive.len(), 6);
        assert_eq!(archive.segments.len(), 1);
        let expected: Vec<EventId> = (1..=6).map(|s| EventId::new(PeerId(1), s)).collect();
        assert_eq!(ids(&archive), expected);
    }

    #[test]
    fn many_batches_merge_in_order_and_retain_asks_in_order() {
        let mut archive = Archive::default();
        // Interleaved origins and sequences, in more batches than are kept apart.
        for batch in 0..(MAX_SEGMENTS as u64 * 2 + 1) {
            let mut events = lone(batch % 3, batch * 10 + 1..=batch * 10 + 3);
            events.extend(lone(9, batch * 2 + 1..=batch * 2 + 2));
            events.sort_unstable_by_key(|e| e.id);
            archive.insert(events);
            assert!(archive.segments.len() <= archive.settled + MAX_SEGMENTS);
        }
        let total = (MAX_SEGMENTS * 2 + 1) * 5;
        assert_eq!(archive.len(), total);
        for batch in 0..(MAX_SEGMENTS as u64 * 2 + 1) {
            let id = EventId::new(PeerId(batch % 3), batch * 10 + 2);
            assert_eq!(archive.run_of(id).map(|r| r[0].id), Some(id));
        }
        let mut asked = Vec::new();
        archive.retain(|run| {
            asked.push(run[0].id);
            run[0].id.peer != PeerId(9) && run[0].id.seq % 2 == 1
        });
        assert!(
            asked.windows(2).all(|w| w[0] < w[1]),
            "asked in order of ids"
        );
        assert_eq!(asked.len(), total);
        let kept = ids(&archive);
        assert_eq!(archive.len(), kept.len());
        assert!(kept
            .iter()
            .all(|id| id.peer != PeerId(9) && id.seq % 2 == 1));
        assert!(kept.iter().all(|id| archive.run_of(*id).is_some()));
        assert_eq!(archive.run_of(EventId::new(PeerId(9), 1)), None);
    }

    /// A fold's few runs do not move the archive: old segments are kept
    /// in place, and the young merge among themselves, sizes halving.
    #[test]
    fn a_small_batch_leaves_the_old_segments_in_place() {
        let mut archive = Archive::default();
        archive.insert(lone(1, 1..=1_000));
        archive.retain(|_| true);
        let old = archive.segments[0].pieces[0].as_ptr();
        for batch in 0..20u64 {
            let from = 1_001 + batch * 10;
            archive.insert(lone(2, from..=from + 9));
            // Every other run of the new batch is dropped, as a fold drops
            // runs whose dots were superseded.
            archive.retain(|run| run[0].id.peer == PeerId(1) || run[0].id.seq % 2 == 0);
            assert_eq!(archive.segments[0].pieces[0].as_ptr(), old, "batch {batch}");
            let sizes: Vec<usize> = archive.segments.iter().map(|s| s.len).collect();
            assert!(
                sizes.windows(2).all(|w| w[1] * 2 < w[0]),
                "sizes halve: {sizes:?}"
            );
        }
        assert_eq!(archive.len(), 1_000 + 20 * 5);
        assert_eq!(ids(&archive).len(), archive.len());
        assert!(archive.run_of(EventId::new(PeerId(2), 1_002)).is_some());
        assert!(archive.run_of(EventId::new(PeerId(2), 1_001)).is_none());
        assert!(archive.run_of(EventId::new(PeerId(1), 500)).is_some());
    }

    /// A cursor answers as `run_of` does, for ids in order, over segments
    /// of every size; no merge makes a segment past `SEGMENT_CAP`.
    #[test]
    fn a_cursor_finds_what_run_of_finds() {
        let mut rng = crate::protocol::testing::Rng::from_env("a_cursor_finds_what_run_of_finds");
        let mut archive = Archive::default();
        let mut next = [1u64; 4];
        let mut largest = 0;
        for _ in 0..40 {
            // A fold's batch: some events of each origin, every other
            // batch large.
            let size = if rng.below(2) == 0 {
                1 + rng.below(50)
            } else {
                20_000
            };
            let mut events = Vec::new();
            for (peer, next) in next.iter_mut().enumerate() {
                let n = 1 + rng.below(size) as u64;
                events.extend(lone(peer as u64, *next..=*next + n - 1));
                *next += n;
            }
            events.sort_unstable_by_key(|e| e.id);
            largest = largest.max(events.len());
            archive.insert(events);
            // Every third batch, drop a scattering of runs, as folds do.
            if rng.below(3) == 0 {
                let cut = rng.next_u64() % 7 + 2;
                archive.retain(|run| run[0].id.seq % cut != 0);
            }
            // Merged up to the cap; a batch larger stays as it came.
            let cap = SEGMENT_CAP.max(largest);
            assert!(archive.segments.iter().all(|s| s.len <= cap));
        }
        let mut ids: Vec<EventId> = (0..5_000)
            .map(|_| {
                let peer = rng.below(5) as u64;
                EventId::new(
                    PeerId(peer),
                    1 + rng.next_u64() % (next[0].max(next[3]) + 10),
                )
            })
            .collect();
        ids.sort_unstable();
        let mut cursor = archive.cursor();
        for id in ids {
            assert_eq!(cursor.run_of(id), archive.run_of(id), "{id:?}");
        }
    }

    /// Sealed runs of several events, in segments of their own, with a
    /// younger segment holding a run that overlaps an older one (a forger's
    /// other run): the cursor answers as `run_of` does, youngest first, for
    /// every id in order.
    #[test]
    fn a_cursor_walks_sealed_and_overlapping_runs_as_run_of_does() {
        let a = Identity::from_seed(1);
        let sealed = |from: u64, to: u64, value: &str| {
            let mut run: Vec<P2PEvent> = (from..=to).map(|s| sample(a.peer(), s, value)).collect();
            seal::seal(&a, &mut run);
            run
        };
        let mut archive = Archive::default();
        let mut older = sealed(1, 4, "1");
        older.extend(sealed(5, 9, "1"));
        archive.insert(older);
        archive.insert(sealed(10, 12, "1"));
        // Overlaps 5..=9 from 7: kept apart (no retain runs between).
        archive.insert(sealed(7, 11, "2"));
        assert_eq!(archive.segments.len(), 3);
        let mut cursor = archive.cursor();
        for seq in 0..=14 {
            let id = EventId::new(a.peer(), seq);
            assert_eq!(cursor.run_of(id), archive.run_of(id), "seq {seq}");
        }
        let id = EventId::new(a.peer(), 8);
        assert_eq!(
            archive.run_of(id).map(|r| r[0].id.seq),
            Some(7),
            "the younger copy"
        );
    }

    /// Segments too large to merge (one a fold, each over half the cap)
    /// do not make every later insert prune: only `MAX_SEGMENTS` inserts
    /// past the last prune do.
    #[test]
    fn large_segments_do_not_make_every_insert_prune() {
        let mut archive = Archive::default();
        let big = SEGMENT_CAP as u64 / 2 + 1;
        for batch in 0..12 {
            archive.insert(lone(1, batch * big + 1..=(batch + 1) * big));
            archive.retain(|_| true);
        }
        assert_eq!(archive.segments.len(), 12, "none merged");
        // Small inserts (leaf repairs), no prune between: kept apart
        // until there are more than `MAX_SEGMENTS` of them.
        for i in 0..MAX_SEGMENTS {
            archive.insert(lone(2, i as u64 + 1..=i as u64 + 1));
            assert_eq!(archive.segments.len(), 13 + i);
        }
        archive.insert(lone(2, 100..=100));
        assert!(
            archive.segments.len() < 12 + MAX_SEGMENTS,
            "pruned and merged"
        );
    }

    /// A fold's pieces are kept as they came, not copied into one vector:
    /// lookups find runs in every piece, a cursor as `run_of` does, and a
    /// prune drops runs inside each piece, in place.
    #[test]
    fn a_fold_s_pieces_stay_as_they_came() {
        let a = Identity::from_seed(1);
        // Sealed runs of 3 of origin a, in two pieces, then lone events
        // of two more origins in a third.
        let mut runs: Vec<P2PEvent> = (1..=12).map(|s| sample(a.peer(), s, "1")).collect();
        for run in runs.chunks_mut(3) {
            seal::seal(&a, run);
        }
        let (head, tail) = runs.split_at(6);
        let mut lones = lone(0xFFFF_FFFF_FFFF_FFF0, 1..=4);
        lones.extend(lone(0xFFFF_FFFF_FFFF_FFF1, 1..=2));
        assert!(a.peer() < PeerId(0xFFFF_FFFF_FFFF_FFF0), "in id order");
        let pieces = vec![head.to_vec(), tail.to_vec(), lones.clone()];
        let buffers: Vec<*const P2PEvent> = pieces.iter().map(|p| p.as_ptr()).collect();
        let mut archive = Archive::default();
        archive.insert_pieces(pieces);
        assert_eq!(archive.len(), 18);
        let kept: Vec<*const P2PEvent> = archive.segments[0]
            .pieces
            .iter()
            .map(|p| p.as_ptr())
            .collect();
        assert_eq!(kept, buffers, "not copied");
        assert_eq!(archive.run_of(EventId::new(a.peer(), 8)), Some(&runs[6..9]));
        assert_eq!(archive.run_of(EventId::new(a.peer(), 6)), Some(&runs[3..6]));
        let mut cursor = archive.cursor();
        for id in runs.iter().chain(&lones).map(|e| e.id) {
            assert_eq!(cursor.run_of(id), archive.run_of(id), "{id}");
        }
        // Every other run goes: each piece keeps the rest in place.
        archive.retain(|run| run[0].id.seq % 2 == 1);
        assert_eq!(archive.len(), 6 + 3);
        assert_eq!(archive.segments[0].pieces[0].as_ptr(), buffers[0]);
        assert_eq!(archive.run_of(EventId::new(a.peer(), 5)), None);
        assert_eq!(archive.run_of(EventId::new(a.peer(), 8)), Some(&runs[6..9]));
        assert_eq!(archive.run_of(EventId::new(a.peer(), 11)), None);
        assert_eq!(ids(&archive).len(), archive.len());
        archive.retain(|run| run[0].id.peer != a.peer());
        assert_eq!(archive.segments[0].pieces.len(), 1, "emptied pieces go");
        assert_eq!(archive.len(), 3);
    }
}
