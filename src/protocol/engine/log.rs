use hashbrown::HashMap;

use foldhash::fast::FixedState;

use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::{EventId, P2PEvent};
use crate::protocol::key_sort;
use crate::protocol::seal::MAX_RUN;

/// Events a chunk of an origin's log fills to before the next begins: a
/// sealed run (at most [`MAX_RUN`]) then always fits in one.
const CHUNK: usize = MAX_RUN;

/// Applied events by origin, dense by sequence number: what anti-entropy
/// sends to a peer that lacks them. Events before an origin's first
/// logged one have been folded into a snapshot.
///
/// Each origin's events are kept in chunks of [`CHUNK`] events, not one
/// vector: a vector grown by doubling copied the whole log at each
/// doubling (natively a tenth of causal apply's time; in a page one task
/// copying ~80 MB for a log of a million events) and held up to half its
/// room unused. A sealed run is never split between chunks, so the run
/// holding an event is one slice ([`run_of`](EventLog::run_of)); a fold
/// hands whole chunks over as they are ([`prune`](EventLog::prune)).
#[derive(Debug)]
pub struct EventLog {
    /// Seeded as the engine's entity map is, so a peer cannot aim ids at
    /// one bucket.
    origins: HashMap<PeerId, OriginLog, FixedState>,
    len: usize,
}

#[derive(Debug)]
struct OriginLog {
    /// Filled chunks, oldest first, each with its first sequence number.
    full: Vec<(u64, Vec<P2PEvent>)>,
    /// The chunk being filled, and its first sequence number (the next
    /// event's when it is empty).
    tail_seq: u64,
    tail: Vec<P2PEvent>,
    /// Whether any event here may carry a seal: in an unsigned room none
    /// does, and looking for one would scan `MAX_RUN` events each time.
    sealed: bool,
}

impl OriginLog {
    fn starting_at(first_seq: u64, room: usize) -> Self {
        OriginLog {
            full: Vec::new(),
            tail_seq: first_seq,
            tail: Vec::with_capacity(room),
            sealed: false,
        }
    }

    fn first_seq(&self) -> u64 {
        self.full.first().map_or(self.tail_seq, |(first, _)| *first)
    }

    /// The sequence number the next event takes.
    fn next_seq(&self) -> u64 {
        self.tail_seq + self.tail.len() as u64
    }

    fn len(&self) -> usize {
        self.full.iter().map(|(_, c)| c.len()).sum::<usize>() + self.tail.len()
    }

    /// Every chunk with its first sequence number, oldest first.
    fn chunks(&self) -> impl Iterator<Item = (u64, &[P2PEvent])> {
        self.full
            .iter()
            .map(|(first, c)| (*first, c.as_slice()))
            .chain(std::iter::once((self.tail_seq, self.tail.as_slice())))
    }

    /// The chunk holding event `seq` and its index there.
    fn locate(&self, seq: u64) -> Option<(&[P2PEvent], usize)> {
        let (first, chunk) = match self.full.get(self.chunk_of(seq)?) {
            Some((first, chunk)) => (*first, chunk),
            None => (self.tail_seq, &self.tail),
        };
        let index = usize::try_from(seq - first).ok()?;
        (index < chunk.len()).then_some((chunk.as_slice(), index))
    }

    fn get(&self, seq: u64) -> Option<&P2PEvent> {
        let (chunk, index) = self.locate(seq)?;
        chunk.get(index)
    }

    /// The whole sealed run holding event `seq`, if all of it is here.
    fn whole_run(&self, seq: u64) -> Option<&[P2PEvent]> {
        let (first, run) = self.sealing(seq)?;
        (run.first()?.id.seq == first).then_some(run)
    }

    /// Where the sealed run holding event `seq` starts, and the run as
    /// far as this chunk holds it (the whole run: runs are not split).
    fn sealing(&self, seq: u64) -> Option<(u64, &[P2PEvent])> {
        if !self.sealed {
            return None;
        }
        let (chunk, index) = self.locate(seq)?;
        let mut after = chunk[index..].iter().take(MAX_RUN);
        let end = index + after.position(|e| e.seal.is_some())?;
        let first = chunk[end].seal.as_ref()?.first;
        let before = usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX);
        Some((first, &chunk[index.saturating_sub(before)..=end]))
    }

    fn push(&mut self, event: P2PEvent) {
        debug_assert_eq!(self.next_seq(), event.id.seq);
        if self.tail.len() >= CHUNK {
            let filled = std::mem::replace(&mut self.tail, Vec::with_capacity(CHUNK));
            let first = std::mem::replace(&mut self.tail_seq, event.id.seq);
            self.full.push((first, filled));
        }
        let (seq, run_first) = (event.id.seq, event.seal.as_ref().map(|s| s.first));
        self.tail.push(event);
        // A run that began in the chunk before ends in this one: its
        // first events move over, so the run is one slice. (A seal over
        // more than a run, which no verified one is, moves nothing: one
        // naming the first event would move the whole log.)
        let within = |first: u64| first < self.tail_seq && seq - first < MAX_RUN as u64;
        if let Some(first) = run_first.filter(|&first| within(first)) {
            self.join(first, seq);
        }
    }

    /// Which chunk holds event `seq` (`full.len()` for the tail), if any.
    fn chunk_of(&self, seq: u64) -> Option<usize> {
        if seq >= self.tail_seq {
            return Some(self.full.len());
        }
        // Chunks hold `CHUNK` events but where a run moved over or a fold
        // cut one: the guess is most often right, and costs no search.
        let from_first = seq.checked_sub(self.full.first()?.0)?;
        let guess = usize::try_from(from_first / CHUNK as u64)
            .unwrap_or(usize::MAX)
            .min(self.full.len() - 1);
        let starts = |c: usize| self.full.get(c).map_or(self.tail_seq, |(first, _)| *first);
        if starts(guess) <= seq && seq < starts(guess + 1) {
            return Some(guess);
        }
        self.full
            .partition_point(|(first, _)| *first <= seq)
            .checked_sub(1)
    }

    /// Chunk `c` (`full.len()`: the tail) and its first sequence number.
    fn chunk_mut(&mut self, c: usize) -> (&mut u64, &mut Vec<P2PEvent>) {
        match self.full.get_mut(c) {
            Some((first, chunk)) => (first, chunk),
            None => (&mut self.tail_seq, &mut self.tail),
        }
    }

    /// Makes the run `first..=last` one slice, and returns it (as far as
    /// the log holds it): its events in the chunks before the one
    /// holding `last` move to the front of that one.
    fn join(&mut self, first: u64, last: u64) -> &mut [P2PEvent] {
        let Some(mut c) = self.chunk_of(last) else {
            return &mut [];
        };
        while c > 0 && first < *self.chunk_mut(c).0 {
            let (start, before) = &mut self.full[c - 1];
            let from = usize::try_from(first.saturating_sub(*start)).unwrap_or(usize::MAX);
            let moved = before.split_off(from.min(before.len()));
            if before.capacity() > 2 * before.len() {
                before.shrink_to_fit();
            }
            let emptied = before.is_empty();
            let (start, chunk) = self.chunk_mut(c);
            *start -= moved.len() as u64;
            let count = moved.len();
            chunk.extend(moved);
            chunk.rotate_right(count);
            if emptied {
                self.full.remove(c - 1);
                c -= 1;
            }
        }
        let (start, chunk) = self.chunk_mut(c);
        let (from, to) = bounds(*start, chunk.len(), first.saturating_sub(1), last);
        &mut chunk[from..to]
    }

    /// Drops the first `drop` events into `out`: whole chunks as they
    /// are, the part of one cut.
    fn drain_front(&mut self, drop: usize, out: &mut Pieces) {
        let mut left = drop;
        let whole = self
            .full
            .iter()
            .take_while(|(_, c)| {
                let whole = c.len() <= left;
                left -= if whole { c.len() } else { 0 };
                whole
            })
            .count();
        for (_, chunk) in self.full.drain(..whole) {
            out.whole(chunk);
        }
        if left == self.tail.len() && self.full.is_empty() {
            self.tail_seq += left as u64;
            out.whole(std::mem::take(&mut self.tail));
            return;
        }
        let (first, chunk) = self.chunk_mut(0);
        let left = left.min(chunk.len());
        if left == 0 {
            return;
        }
        out.part(chunk, left);
        *first += left as u64;
        // A drained vector keeps its capacity: a log folded to a few
        // events would hold the room of all it ever held.
        if chunk.capacity() > 2 * chunk.len() {
            chunk.shrink_to_fit();
        }
        if chunk.is_empty() && !self.full.is_empty() {
            self.full.remove(0);
        }
    }

    fn clear(&mut self, next_seq: u64) {
        self.full = Vec::new();
        self.tail.clear();
        self.tail_seq = next_seq;
    }
}

/// What a fold (or a snapshot's skip) takes out of the log: pieces of
/// whole runs in id order, for
/// [`Archive::insert_pieces`](super::archive::Archive::insert_pieces). A
/// chunk folded whole is handed over as a piece; parts cut from
/// chunks, and small chunks, are gathered into pieces between them.
#[derive(Default)]
pub(super) struct Pieces {
    done: Vec<Vec<P2PEvent>>,
    gathering: Vec<P2PEvent>,
}

impl Pieces {
    fn whole(&mut self, mut chunk: Vec<P2PEvent>) {
        if chunk.len() < CHUNK / 2 {
            return self.part(&mut chunk, usize::MAX);
        }
        self.close();
        self.done.push(chunk);
    }

    /// The first `count` events of `chunk`, cut from it.
    fn part(&mut self, chunk: &mut Vec<P2PEvent>, count: usize) {
        self.gathering.extend(chunk.drain(..count.min(chunk.len())));
    }

    fn close(&mut self) {
        if !self.gathering.is_empty() {
            let mut piece = std::mem::take(&mut self.gathering);
            piece.shrink_to_fit();
            self.done.push(piece);
        }
    }

    pub(super) fn finish(mut self) -> Vec<Vec<P2PEvent>> {
        self.close();
        self.done
    }
}

/// The bounds in a chunk of `len` events starting at `first` of the
/// sequence numbers `after+1..=upto`.
fn bounds(first: u64, len: usize, after: u64, upto: u64) -> (usize, usize) {
    let index = |seq: u64| usize::try_from(seq.saturating_sub(first - 1)).unwrap_or(usize::MAX);
    let to = index(upto).min(len);
    (index(after).min(to), to)
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
            .or_insert_with(|| OriginLog::starting_at(event.id.seq, 1));
        log.sealed |= event.seal.is_some();
        if event
            .seal
            .as_ref()
            .is_some_and(|s| s.first < log.first_seq())
        {
            self.len -= log.len();
            log.clear(event.id.seq.saturating_add(1));
            return;
        }
        log.push(event);
        self.len += 1;
    }

    /// Where the sealed run holding `id` starts (`id.seq` itself for an
    /// unsealed event with no seal after it, as in an unsigned room).
    pub fn run_start(&self, id: EventId) -> u64 {
        let first = || Some(self.origins.get(&id.peer)?.sealing(id.seq)?.0);
        first().map_or(id.seq, |first| first.min(id.seq))
    }

    /// The whole sealed run holding `id`, if all of it is in the log.
    pub fn run_of(&self, id: EventId) -> Option<&[P2PEvent]> {
        self.origins.get(&id.peer)?.whole_run(id.seq)
    }

    /// Lookups of ids that come grouped by origin (a snapshot's, sorted),
    /// each origin's log found once for its ids rather than once an id.
    pub fn cursor(&self) -> LogCursor<'_> {
        LogCursor {
            log: self,
            origin: None,
        }
    }

    /// This origin's events `first..=last` (as far as the log holds
    /// them), made one slice to seal in place as a run.
    pub fn run_mut(&mut self, peer: PeerId, first: u64, last: u64) -> &mut [P2PEvent] {
        let Some(log) = self.origins.get_mut(&peer) else {
            return &mut [];
        };
        log.sealed = true;
        log.join(first, last)
    }

    pub fn get(&self, id: EventId) -> Option<&P2PEvent> {
        self.origins.get(&id.peer)?.get(id.seq)
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
            log.chunks().flat_map(move |(first, chunk)| {
                let (from, to) = bounds(first, chunk.len(), known.get(peer), u64::MAX);
                &chunk[from..to]
            })
        })
    }

    /// The logged events of `peer` after `after`, up to `upto` (those still
    /// in the log), from the start of the sealed run holding `after + 1`: a
    /// slice a chunk, oldest first.
    pub fn range(&self, peer: PeerId, after: u64, upto: u64) -> Vec<&[P2PEvent]> {
        let after = self
            .run_start(EventId::new(peer, after.saturating_add(1)))
            .saturating_sub(1);
        let mut parts = Vec::new();
        for (first, chunk) in self
            .origins
            .get(&peer)
            .into_iter()
            .flat_map(OriginLog::chunks)
        {
            let (from, to) = bounds(first, chunk.len(), after, upto);
            if from < to {
                parts.push(&chunk[from..to]);
            }
        }
        parts
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
            .map(|(&p, log)| (p, log.first_seq() - 1))
            .collect()
    }

    /// Where the log of `peer` starts: events before it were folded.
    pub fn first_seq(&self, peer: PeerId) -> u64 {
        self.origins.get(&peer).map_or(1, |log| log.first_seq())
    }

    /// Drops events covered by `stable` (everyone has them), whole sealed
    /// runs only, and returns them in pieces, in id order: the log's
    /// chunks folded whole are handed over, not copied into one vector
    /// (which held the fold twice at its peak).
    pub fn prune(&mut self, stable: &VectorClock) -> Vec<Vec<P2PEvent>> {
        // How many of each origin's events go, by origin.
        let mut drops: Vec<(PeerId, usize)> = self
            .origins
            .iter()
            .filter_map(|(&peer, log)| {
                let start = self.run_start(EventId::new(peer, stable.get(peer).saturating_add(1)));
                let upto = start.saturating_sub(1);
                let first = log.first_seq();
                if upto < first {
                    return None;
                }
                let drop = usize::try_from(upto + 1 - first)
                    .unwrap_or(usize::MAX)
                    .min(log.len());
                (drop > 0).then_some((peer, drop))
            })
            .collect();
        key_sort::sort_by_key(&mut drops, |(p, _)| u128::from(p.0));
        let mut folded = Pieces::default();
        for (peer, drop) in drops {
            if let Some(log) = self.origins.get_mut(&peer) {
                log.drain_front(drop, &mut folded);
                self.len -= drop;
            }
        }
        folded.finish()
    }

    /// Events of `peer` up to `seq` arrived folded in a snapshot: the log of
    /// that origin restarts after them. The events it held go to `out`,
    /// in order: the state may still rest on them (a snapshot need not
    /// carry what it does not change).
    pub(super) fn skip_to(&mut self, peer: PeerId, seq: u64, out: &mut Pieces) {
        let log = self
            .origins
            .entry(peer)
            .or_insert_with(|| OriginLog::starting_at(seq.saturating_add(1), 0));
        if log.next_seq() <= seq {
            let all = log.len();
            self.len -= all;
            log.drain_front(all, out);
            log.clear(seq.saturating_add(1));
        }
    }

    pub fn clear(&mut self) {
        self.origins.clear();
        self.len = 0;
    }

    /// Puts back `events` of `peer` (consecutive, ending at `upto`) in
    /// front of an origin whose log restarted after `upto` and holds
    /// nothing since: the tail a fold kept, stored after the snapshot that
    /// also covers it. Whether they were put back (a sealed run that began
    /// before them is not: it could not be sent whole).
    pub(super) fn restore_tail(&mut self, peer: PeerId, upto: u64, events: Vec<P2PEvent>) -> bool {
        let Some(first) = events.first().map(|e| e.id.seq) else {
            return false;
        };
        let contiguous = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.id.peer == peer && e.id.seq == first + i as u64);
        let whole = events
            .iter()
            .all(|e| e.seal.as_ref().is_none_or(|s| s.first >= first));
        let ends = first + events.len() as u64 - 1 == upto;
        let empty_after = self
            .origins
            .get(&peer)
            .is_none_or(|log| log.len() == 0 && log.first_seq() == upto + 1);
        if !(contiguous && whole && ends && empty_after) {
            return false;
        }
        // A chunk's room at most: `push` hands a filled chunk on as it
        // is, room and all (a review: a 25,000-event tail held room for
        // twice that).
        let mut log = OriginLog::starting_at(first, events.len().min(CHUNK));
        for event in events {
            log.sealed |= event.seal.is_some();
            log.push(event);
            self.len += 1;
        }
        self.origins.insert(peer, log);
        true
    }
}

/// [`EventLog::cursor`].
pub struct LogCursor<'a> {
    log: &'a EventLog,
    /// The origin looked up last, and its log.
    origin: Option<(PeerId, Option<&'a OriginLog>)>,
}

impl<'a> LogCursor<'a> {
    fn origin(&mut self, peer: PeerId) -> Option<&'a OriginLog> {
        match self.origin {
            Some((last, log)) if last == peer => log,
            _ => {
                let log = self.log.origins.get(&peer);
                self.origin = Some((peer, log));
                log
            }
        }
    }

    /// [`EventLog::run_of`].
    pub fn run_of(&mut self, id: EventId) -> Option<&'a [P2PEvent]> {
        self.origin(id.peer)?.whole_run(id.seq)
    }

    /// [`EventLog::get`].
    pub fn get(&mut self, id: EventId) -> Option<&'a P2PEvent> {
        self.origin(id.peer)?.get(id.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::seal;
    use crate::protocol::testing::{workload, Rng};
    use crate::protocol::Identity;

    fn logged(events: &[P2PEvent]) -> EventLog {
        let mut log = EventLog::with_seed(7);
        for event in events {
            log.append(event.clone());
        }
        log
    }

    /// A restored fold tail takes the room its events need, as the same
    /// events appended do (a review). `restore_tail` made its first chunk
    /// with room for the whole tail (`starting_at(first, events.len())`),
    /// and `push` hands that vector to `full` once it holds `CHUNK`
    /// events: a tail of 25,000 events (a fold's `keep_unacked`) kept room
    /// for ~24,000 more events than it holds, for as long as that chunk is
    /// logged (and in the archive once it is folded whole).
    #[test]
    fn a_restored_tail_holds_no_more_room_than_its_events_appended() {
        let events: Vec<P2PEvent> = workload::rounds(25_000, 1, 100, 8, 5);
        let peer = events[0].id.peer;
        let upto = events.last().unwrap().id.seq;
        let capacity = |log: &EventLog| -> usize {
            let o = &log.origins[&peer];
            o.full.iter().map(|(_, c)| c.capacity()).sum::<usize>() + o.tail.capacity()
        };
        let appended = logged(&events);
        let mut restored = EventLog::with_seed(7);
        assert!(restored.restore_tail(peer, upto, events.clone()));
        assert_eq!(restored.len(), appended.len());
        println!(
            "room for events: appended {}, restored {} ({} B an event)",
            capacity(&appended),
            capacity(&restored),
            std::mem::size_of::<P2PEvent>()
        );
        assert!(
            capacity(&restored) <= capacity(&appended) + CHUNK,
            "a restored tail of {} events keeps room for {} (appended: {})",
            events.len(),
            capacity(&restored),
            capacity(&appended)
        );
    }

    /// A writer of one event costs the log one event's room, not the
    /// four a vector's first push makes.
    #[test]
    fn an_origin_of_one_event_takes_one_event_s_room() {
        let log = logged(&workload::one_write_each(100, false));
        assert_eq!(log.len(), 100);
        assert!(log.origins.values().all(|o| o.tail.capacity() == 1));
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
        let capacity = |log: &EventLog| -> usize {
            let chunks = |o: &OriginLog| -> usize {
                o.full.iter().map(|(_, c)| c.capacity()).sum::<usize>() + o.tail.capacity()
            };
            log.origins.values().map(chunks).sum()
        };

        // All but the last ten of each origin.
        let mut log = logged(&events);
        let part: VectorClock = heads.iter().map(|&(p, n)| (p, n - 10)).collect();
        let folded = log.prune(&part).concat();
        assert_eq!(folded.len(), 4_000 - 20);
        assert!(folded.windows(2).all(|w| w[0].id < w[1].id), "in id order");
        assert_eq!(log.len(), 20);
        assert!(capacity(&log) <= 40, "kept room for {}", capacity(&log));

        // One origin alone, whole: its chunks are handed over, not copied
        // (the first fills its vector exactly, so nothing is shrunk).
        let one: Vec<P2PEvent> = workload::rounds(3 * CHUNK + 700, 1, 100, 8, 5);
        let mut log = logged(&one);
        let peer = one[0].id.peer;
        let origin = &log.origins[&peer];
        let mut buffers: Vec<*const P2PEvent> =
            origin.full.iter().map(|(_, c)| c.as_ptr()).collect();
        buffers.push(origin.tail.as_ptr());
        let folded = log.prune(&[(peer, one.len() as u64)].into_iter().collect());
        let pieces: Vec<*const P2PEvent> = folded.iter().map(|p| p.as_ptr()).collect();
        assert_eq!(pieces, buffers, "moved, not copied");
        assert_eq!(folded[0].len(), CHUNK);
        assert_eq!(folded.concat(), one);
        assert_eq!(log.len(), 0);

        // One origin whole beside another: its chunks are given back.
        let mut log = logged(&events);
        let (peer, n) = heads[0];
        let folded = log.prune(&[(peer, n)].into_iter().collect()).concat();
        assert_eq!(folded.len() as u64, n);
        assert!(folded.iter().all(|e| e.id.peer == peer));
        assert!(log.range(peer, 0, u64::MAX).is_empty());
        assert_eq!(log.len(), 4_000 - n as usize);
    }

    /// One signed origin's events over many chunks, in sealed runs of
    /// random lengths (up to `MAX_RUN`, many across a chunk's end) with
    /// lone unsealed events between some, and the engine's own writes
    /// sealed in place in bursts: every event is found, every sealed run
    /// comes whole as one slice, ranges start at their run and come in
    /// order, and folds at random points give back whole runs in order.
    #[test]
    fn runs_across_chunks_stay_whole() {
        let mut rng = Rng::from_env("runs_across_chunks_stay_whole");
        let (identity, lone) = workload::runs_to_seal(1, 6 * CHUNK);
        let peer = identity.peer();
        let mut events: Vec<P2PEvent> = lone.into_iter().flatten().collect();
        // Each event's run, by its first and last sequence numbers.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut at = 0;
        while at < events.len() {
            let len = match rng.below(4) {
                0 => 1 + rng.below(MAX_RUN),
                _ => 1 + rng.below(64),
            }
            .min(events.len() - at);
            let (first, last) = (events[at].id.seq, events[at + len - 1].id.seq);
            if len == 1 && rng.chance(0.3) {
                // Unsealed: a run of its own, found by no seal.
                runs.push((first, first));
            } else {
                seal::seal(&identity, &mut events[at..at + len]);
                runs.extend(std::iter::repeat_n((first, last), len));
            }
            at += len;
        }
        let sealed = |seq: u64| -> Option<(u64, u64)> {
            let (first, last) = runs[seq as usize - 1];
            events[last as usize - 1]
                .seal
                .as_ref()
                .map(|_| (first, last))
        };
        let mut log = logged(&events);
        let mut first_logged = 1;
        let ids_of = |run: &[P2PEvent]| -> Vec<u64> { run.iter().map(|e| e.id.seq).collect() };
        for _ in 0..4 {
            let last = events.len() as u64;
            for seq in first_logged..=last {
                let id = EventId::new(peer, seq);
                assert_eq!(log.get(id).map(|e| e.id), Some(id));
                match sealed(seq) {
                    Some((first, end)) => {
                        assert_eq!(log.run_start(id), first, "{id}");
                        let run = log.run_of(id).expect("a sealed run");
                        assert_eq!(ids_of(run), (first..=end).collect::<Vec<_>>(), "{id}");
                    }
                    None => {
                        assert_eq!(log.run_start(id), seq);
                        assert!(log.run_of(id).is_none());
                    }
                }
            }
            for _ in 0..20 {
                let after = first_logged - 1 + rng.below((last - first_logged + 1) as usize) as u64;
                let upto = after + rng.below(3 * CHUNK) as u64;
                let from = log
                    .run_start(EventId::new(peer, after + 1))
                    .max(first_logged);
                let want: Vec<u64> = (from..=upto.min(last)).collect();
                let parts = log.range(peer, after, upto);
                assert_eq!(ids_of(&parts.concat()), want, "range {after}..={upto}");
                assert!(parts.iter().all(|p| !p.is_empty()));
            }
            // A fold up to a random point: whole runs, in order.
            let stable = first_logged + rng.below(2 * CHUNK) as u64;
            let upto = log.run_start(EventId::new(peer, stable + 1)) - 1;
            let folded = log.prune(&[(peer, stable)].into_iter().collect());
            assert_eq!(
                ids_of(&folded.concat()),
                (first_logged..=upto.min(last)).collect::<Vec<_>>()
            );
            first_logged = upto.min(last) + 1;
            assert_eq!(log.first_seq(peer), first_logged);
            assert_eq!(log.len() as u64, last + 1 - first_logged);
            assert_eq!(log.iter().count(), log.len());
        }
    }

    /// The engine's own writes in a signed room, sealed in bursts that
    /// cross a chunk's end: still a run a burst, whole in one chunk, and
    /// every run verifies.
    #[test]
    fn a_burst_across_a_chunk_is_sealed_as_one_run() {
        use crate::protocol::{EngineConfig, JsonValue, ReconciliationEngine};
        let identity = Identity::from_seed(7);
        let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        let mut sealed = 0;
        let mut seals = 0;
        for burst in 0..(3 * CHUNK / 100) {
            for i in 0..100 {
                let value = JsonValue::parse(&format!("{}", burst * 100 + i)).expect("JSON");
                engine.set(&format!("k{i}"), value, 1_000).expect("a write");
            }
            let events: Vec<P2PEvent> = engine
                .seal_own(Some(&identity), sealed)
                .into_iter()
                .cloned()
                .collect();
            assert_eq!(events.len(), 100);
            seal::verify_runs(&events).expect("every run verifies");
            seals += events.iter().filter(|e| e.seal.is_some()).count();
            sealed += 100;
            assert_eq!(engine.sealed_own(true), sealed);
        }
        assert_eq!(seals, 3 * CHUNK / 100);
        let log = engine.log();
        for seq in 1..=sealed {
            let run = log
                .run_of(EventId::new(identity.peer(), seq))
                .expect("whole");
            assert_eq!(run.len(), 100);
        }
    }

    /// A seal over more events than a run holds (an engine fed events no
    /// node verified) moves nothing: every such event would otherwise
    /// move the log from its first event on.
    #[test]
    fn a_seal_over_more_than_a_run_moves_nothing() {
        let (identity, lone) = workload::runs_to_seal(1, 4 * CHUNK);
        let mut events: Vec<P2PEvent> = lone.into_iter().flatten().collect();
        let last = events.len();
        seal::seal(&identity, &mut events[last - MAX_RUN..]);
        let mut seal = events[last - 1].seal.take().expect("sealed");
        seal.first = 1;
        events[last - 1].seal = Some(seal);
        let log = logged(&events);
        let origin = &log.origins[&identity.peer()];
        assert_eq!(origin.full.len(), 3);
        assert!(origin.full.iter().all(|(_, c)| c.len() == CHUNK));
        let id = EventId::new(identity.peer(), last as u64);
        assert_eq!(log.run_of(id), None);
        assert_eq!(log.get(id).map(|e| e.id), Some(id));
    }
}
