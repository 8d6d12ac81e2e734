use std::cmp::Ordering;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

pub use super::entries::{Entries, Entry};
use super::PeerId;
use crate::protocol::blocks::{Blocks, BlocksIter};
use crate::protocol::{key_sort, prefetch};

/// How two vector clocks relate, per the spec's definition of "descends":
/// `a` descends `b` when `a[p] >= b[p]` for every peer `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOrdering {
    /// Each descends the other.
    Equal,
    /// The other descends this one, and they differ.
    Before,
    /// This one descends the other, and they differ.
    After,
    /// Neither descends the other: a conflict.
    Concurrent,
}

/// A map `PeerId -> logical timestamp`. A missing peer counts as 0, and zero
/// entries are never stored, so equal clocks have equal encodings.
///
/// Entries are one vector sorted by peer: most clocks (an event's `deps`
/// and `observed`) have none or one entry, held with no allocation
/// ([`Entries`]; a B-tree took a node of eleven); lookups in a room's
/// version vector are a binary search over contiguous memory. Past
/// [`LARGE`] entries a clock is sorted blocks instead ([`Blocks`], as a
/// B-tree's leaves): a room of thousands of writers adds them in no order,
/// and a new peer in the middle of one sorted vector moves every entry
/// after it (C1.2's 30,000 writers moved ~7 GB).
#[derive(Clone, Default)]
pub struct VectorClock(Repr);

#[derive(Clone)]
enum Repr {
    Sorted(Entries),
    /// Boxed: a clock is then no larger than its entries' vector.
    Blocks(Box<Blocks<PeerId, u64>>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Sorted(Entries::new())
    }
}

/// Entries past which a clock is sorted blocks.
const LARGE: usize = 256;

/// A clock's entries in peer order.
pub enum Iter<'a> {
    Sorted(std::slice::Iter<'a, (PeerId, u64)>),
    Blocks(BlocksIter<'a, PeerId, u64>),
}

impl Iterator for Iter<'_> {
    type Item = (PeerId, u64);

    #[inline]
    fn next(&mut self) -> Option<(PeerId, u64)> {
        match self {
            Iter::Sorted(i) => i.next().copied(),
            Iter::Blocks(i) => i.next().map(|(&p, &v)| (p, v)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Sorted(i) => i.size_hint(),
            Iter::Blocks(i) => i.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<(PeerId, u64)> {
        match self {
            Iter::Sorted(i) => i.next_back().copied(),
            Iter::Blocks(i) => i.next_back().map(|(&p, &v)| (p, v)),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Equal entries are equal clocks, whichever form holds them.
impl PartialEq for VectorClock {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for VectorClock {}

impl std::hash::Hash for VectorClock {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

/// Serialized as a map, in peer order (the same bytes as the sorted map
/// it once was: seals sign events' clocks in this form).
impl Serialize for VectorClock {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (peer, value) in self.iter() {
            map.serialize_entry(&peer, &value)?;
        }
        map.end()
    }
}

/// The first of sorted entries at or above `peer` (`entries.len()` when
/// none is): the search under every lookup of a clock, the hottest calls
/// of causal apply.
///
/// Natively the standard library's search, whose probes are conditional
/// moves (its select is marked unpredictable). Ours, written with a
/// select, compiled to a jump there, mispredicted on a third of the
/// probes of a room's clock of 64 peers: 19.8 million mispredicted
/// branches under a million events' causal apply before, 9.1 million
/// with this (callgrind's branch simulation, 2026-12-04). In the
/// size-optimized wasm the standard search's closure was a call a step,
/// so the search is written out there.
#[inline(always)]
fn lower_bound(entries: &[(PeerId, u64)], peer: PeerId) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        entries.partition_point(|e| e.0 < peer)
    }
    #[cfg(target_arch = "wasm32")]
    {
        lower_bound_written_out(entries, peer)
    }
}

/// [`lower_bound`] in the wasm (and in the tests, held to the standard
/// search): the range left halves each step, the half kept a select.
#[cfg(any(target_arch = "wasm32", test))]
#[inline(always)]
fn lower_bound_written_out(entries: &[(PeerId, u64)], peer: PeerId) -> usize {
    let (mut base, mut size) = (0, entries.len());
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if entries.get(mid).is_some_and(|e| e.0 < peer) {
            mid
        } else {
            base
        };
        size -= half;
    }
    base + usize::from(entries.get(base).is_some_and(|e| e.0 < peer))
}

/// `peer`'s entry in sorted entries, found by [`lower_bound`] (the
/// slice taken once).
#[inline(always)]
fn sorted_get(entries: &[(PeerId, u64)], peer: PeerId) -> u64 {
    match entries.get(lower_bound(entries, peer)) {
        Some(&(p, value)) if p == peer => value,
        _ => 0,
    }
}

/// Where `peer` is in sorted entries, or where it would go, as a binary
/// search answers.
#[inline(always)]
fn sorted_position(entries: &[(PeerId, u64)], peer: PeerId) -> Result<usize, usize> {
    let at = lower_bound(entries, peer);
    match entries.get(at) {
        Some(&(p, _)) if p == peer => Ok(at),
        _ => Err(at),
    }
}

/// Where in a clock the last lookup found its peer: a guess at where the
/// next one's is, checked before it is used (a stale guess costs the
/// search it would have saved, never a wrong answer).
///
/// Events arrive and apply in runs of one origin (the wire carries them
/// so, and a writer's events wake one another in the holding queue), so
/// the engine's lookups of an event's origin in its version vectors most
/// often find the last one's: a load and a compare where a search over a
/// room's clock took six probes. Meant for one clock: one that never
/// saw it only makes the guess a miss.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint(usize);

impl Hint {
    /// Where `peer` is in sorted entries, or where it would go, trying
    /// the hint first and left at the answer when found.
    #[inline(always)]
    fn find(&mut self, entries: &[(PeerId, u64)], peer: PeerId) -> Result<usize, usize> {
        if entries.get(self.0).is_some_and(|e| e.0 == peer) {
            return Ok(self.0);
        }
        let found = sorted_position(entries, peer);
        if let Ok(i) = found {
            self.0 = i;
        }
        found
    }
}

/// The most entries a clock read from a peer or a file may have (the
/// C1.2 room of 30,000 peers fits twice over); beyond it decoding fails
/// without reading the rest.
pub const MAX_CLOCK_ENTRIES: usize = 65_536;

impl<'de> Deserialize<'de> for VectorClock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = VectorClock;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "a map of at most {MAX_CLOCK_ENTRIES} peer ids to counters"
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<VectorClock, A::Error> {
                let mut entries = Vec::new();
                while let Some((peer, value)) = map.next_entry::<PeerId, u64>()? {
                    if entries.len() >= MAX_CLOCK_ENTRIES {
                        return Err(serde::de::Error::custom(format!(
                            "a version vector has more than {MAX_CLOCK_ENTRIES} entries"
                        )));
                    }
                    entries.push((peer, value));
                }
                Ok(VectorClock::from_entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl VectorClock {
    pub const fn new() -> Self {
        VectorClock(Repr::Sorted(Entries::new()))
    }

    /// The clock of a map's entries as they came: the last of a repeated
    /// peer wins, as a map's would, and zeros are dropped.
    pub fn from_entries(mut entries: Vec<(PeerId, u64)>) -> Self {
        // Sorted once, not inserted one by one (a hostile map in reverse
        // order would move the vector 65,536 times).
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            key_sort::sort_by_key(&mut entries, |&(p, _)| u128::from(p.0));
            entries.reverse();
            entries.dedup_by_key(|&mut (p, _)| p);
            entries.reverse();
        }
        entries.retain(|&(_, v)| v > 0);
        VectorClock::from_sorted(Entries::from_vec(entries))
    }

    /// A clock of entries already in its one form: sorted by peer, each
    /// once, none zero; `None` otherwise.
    pub fn from_canonical(entries: Entries) -> Option<Self> {
        let canonical =
            entries.windows(2).all(|w| w[0].0 < w[1].0) && entries.iter().all(|e| e.1 > 0);
        canonical.then(|| VectorClock::from_sorted(entries))
    }

    /// The clock of one entry, `seq` not zero (its canonical form).
    pub(crate) fn from_canonical_entry(peer: PeerId, seq: u64) -> Self {
        debug_assert!(seq > 0);
        VectorClock(Repr::Sorted(Entries::one((peer, seq))))
    }

    /// Canonical entries in the form their number calls for.
    fn from_sorted(entries: Entries) -> Self {
        if entries.len() > LARGE {
            VectorClock(Repr::Blocks(Box::new(Blocks::from_sorted(&entries))))
        } else {
            VectorClock(Repr::Sorted(entries))
        }
    }

    /// Moves a sorted vector that grew past [`LARGE`] into blocks.
    fn grew(&mut self) {
        if let Repr::Sorted(entries) = &self.0 {
            if entries.len() > LARGE {
                self.0 = Repr::Blocks(Box::new(Blocks::from_sorted(entries)));
            }
        }
    }

    /// The entry for `peer`, 0 when absent.
    #[inline]
    pub fn get(&self, peer: PeerId) -> u64 {
        match &self.0 {
            Repr::Sorted(e) => sorted_get(e, peer),
            Repr::Blocks(b) => b.get(&peer).copied().unwrap_or(0),
        }
    }

    /// Sets `peer`'s entry; 0 removes it.
    pub fn set(&mut self, peer: PeerId, value: u64) {
        match &mut self.0 {
            Repr::Sorted(e) => match (sorted_position(e, peer), value) {
                (Ok(i), 0) => {
                    e.remove(i);
                }
                (Ok(i), _) => e[i].1 = value,
                (Err(_), 0) => {}
                (Err(i), _) => e.insert(i, (peer, value)),
            },
            Repr::Blocks(b) if value == 0 => {
                b.remove(&peer);
            }
            Repr::Blocks(b) => {
                b.insert(peer, value);
            }
        }
        self.grew();
    }

    /// Raises `peer`'s entry to at least `value`.
    #[inline]
    pub fn observe(&mut self, peer: PeerId, value: u64) {
        self.observe_hinted(peer, value, &mut Hint::default());
    }

    /// The entry for `peer`, as [`get`](Self::get), trying first where
    /// `hint` says the last lookup found its peer; `hint` is left where
    /// `peer` is.
    #[inline]
    pub fn get_hinted(&self, peer: PeerId, hint: &mut Hint) -> u64 {
        match &self.0 {
            Repr::Sorted(e) => match hint.find(e, peer) {
                Ok(i) => e[i].1,
                Err(_) => 0,
            },
            Repr::Blocks(b) => b.get(&peer).copied().unwrap_or(0),
        }
    }

    /// Raises `peer`'s entry to at least `value`, as
    /// [`observe`](Self::observe), trying first where `hint` says the last
    /// lookup found its peer; `hint` is left where `peer` is.
    #[inline]
    pub fn observe_hinted(&mut self, peer: PeerId, value: u64, hint: &mut Hint) {
        if value == 0 {
            return;
        }
        match &mut self.0 {
            Repr::Sorted(e) => match hint.find(e, peer) {
                Ok(i) => {
                    if let Some(entry) = e.get_mut(i) {
                        entry.1 = entry.1.max(value);
                    }
                }
                Err(i) => {
                    e.insert(i, (peer, value));
                    hint.0 = i;
                    self.grew();
                }
            },
            Repr::Blocks(b) => {
                let entry = b.get_or_insert_with(peer, || value);
                *entry = (*entry).max(value);
            }
        }
    }

    /// Increments `peer`'s entry and returns the new value.
    pub fn increment(&mut self, peer: PeerId) -> u64 {
        let value = self.get(peer) + 1;
        self.set(peer, value);
        value
    }

    /// Pointwise maximum with `other`, in one merged walk when `other` is
    /// more than a few entries (and this clock a vector).
    pub fn merge(&mut self, other: &VectorClock) {
        let mine = match &self.0 {
            Repr::Sorted(e) if other.len() > 4 => e,
            _ => {
                for (peer, value) in other.iter() {
                    self.observe(peer, value);
                }
                return;
            }
        };
        let mut out = Vec::with_capacity(mine.len().max(other.len()));
        let (mut a, mut b) = (mine.iter().copied().peekable(), other.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    Ordering::Less => a.next(),
                    Ordering::Greater => b.next(),
                    Ordering::Equal => {
                        let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                        Some(if x.1 >= y.1 { x } else { y })
                    }
                },
            };
            out.extend(next);
        }
        *self = VectorClock::from_sorted(Entries::from_vec(out));
    }

    /// `self[p] >= other[p]` for every peer `p`.
    pub fn descends(&self, other: &VectorClock) -> bool {
        self.first_not_covered(other).is_none()
    }

    /// The first entry of `other` (by peer) that this clock does not
    /// cover. Against a vector, one galloping walk over both sorted
    /// clocks: each step searches only past the last entry found, so
    /// `other`'s entries cost about the log of the gap between them (a
    /// handful for an event's deps against a room's clock), not a search
    /// of the whole clock each.
    pub fn first_not_covered(&self, other: &VectorClock) -> Option<(PeerId, u64)> {
        self.first_beyond(other, PeerId(0), 0)
    }

    /// The first entry of `other` from peer `from` on (by peer) that is
    /// more than `slack` past this clock's entry: with no slack, the
    /// first this clock does not cover. The walk of
    /// [`first_not_covered`](Self::first_not_covered).
    pub fn first_beyond(
        &self,
        other: &VectorClock,
        from: PeerId,
        slack: u64,
    ) -> Option<(PeerId, u64)> {
        let beyond = |have: u64, value: u64| value > have.saturating_add(slack);
        let (Repr::Sorted(mine), Repr::Sorted(theirs)) = (&self.0, &other.0) else {
            return other
                .iter()
                .find(|&(peer, value)| peer >= from && beyond(self.get(peer), value));
        };
        let (mine, mut theirs): (&[Entry], &[Entry]) = (mine, theirs);
        if let &[(peer, value)] = theirs {
            // One entry (most deps and observed clocks): one lookup.
            return (peer >= from && beyond(sorted_get(mine, peer), value))
                .then_some((peer, value));
        }
        if from > PeerId(0) {
            theirs = &theirs[theirs.partition_point(|e| e.0 < from)..];
        }
        // Written by index: in the size-optimized wasm the iterators and
        // the search's closure were a call a step, and a cold start checks
        // 100k events' clocks. `mine[..from]` is below every peer to come.
        let mut from = 0;
        let mut i = 0;
        while i < theirs.len() {
            let (peer, value) = theirs[i];
            i += 1;
            // Most often the entry right after the last one found: deps
            // that name most of a room's writers walk both clocks in step.
            if from == 0 {
                // The walk's first: nothing narrows the search yet.
                from = lower_bound(mine, peer);
            } else if from >= mine.len() || mine[from].0 != peer {
                // Gallop to a bound at or past `peer`, then search below it.
                let (mut low, mut high, mut step) = (from, from, 1);
                while high < mine.len() && mine[high].0 < peer {
                    low = high + 1;
                    high = from + step;
                    step *= 2;
                }
                high = high.min(mine.len());
                while low < high {
                    let mid = low + (high - low) / 2;
                    if mine[mid].0 < peer {
                        low = mid + 1;
                    } else {
                        high = mid;
                    }
                }
                from = low;
            }
            let have = match mine.get(from) {
                Some(&(p, v)) if p == peer => {
                    from += 1;
                    v
                }
                _ => 0,
            };
            if beyond(have, value) {
                return Some((peer, value));
            }
        }
        None
    }

    /// Compares in one merged walk over both (sorted) clocks.
    pub fn compare(&self, other: &VectorClock) -> ClockOrdering {
        let (mut self_ahead, mut other_ahead) = (false, false);
        let mut a = self.iter().peekable();
        let mut b = other.iter().peekable();
        loop {
            let step = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
            };
            match step {
                Ordering::Less => {
                    self_ahead = true;
                    a.next();
                }
                Ordering::Greater => {
                    other_ahead = true;
                    b.next();
                }
                Ordering::Equal => {
                    let (_, va) = a.next().expect("peeked");
                    let (_, vb) = b.next().expect("peeked");
                    self_ahead |= va > vb;
                    other_ahead |= vb > va;
                }
            }
            if self_ahead && other_ahead {
                return ClockOrdering::Concurrent;
            }
        }
        match (self_ahead, other_ahead) {
            (false, false) => ClockOrdering::Equal,
            (true, false) => ClockOrdering::After,
            (false, true) => ClockOrdering::Before,
            (true, true) => ClockOrdering::Concurrent,
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Sorted(e) => e.len(),
            Repr::Blocks(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks for the entries of a clock held on the heap, up to a room of
    /// 64 writers' (see [`prefetch`](crate::protocol::prefetch)): an
    /// encoder does for the events it will come to.
    pub fn prefetch(&self) {
        if let Repr::Sorted(Entries::Many(entries)) = &self.0 {
            let bytes = std::mem::size_of_val(&entries[..entries.len().min(64)]);
            let start: *const u8 = entries.as_ptr().cast();
            // Each cache line the entries span: their start need not be a
            // line's.
            for offset in (0..bytes).step_by(64).chain(bytes.checked_sub(1)) {
                prefetch::prefetch(start.wrapping_add(offset));
            }
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match &self.0 {
            Repr::Sorted(e) => Iter::Sorted(e.iter()),
            Repr::Blocks(b) => Iter::Blocks(b.iter()),
        }
    }

    /// The greatest entry: no entry is past it (0 for an empty clock).
    pub fn max_value(&self) -> u64 {
        self.iter().map(|(_, v)| v).max().unwrap_or(0)
    }

    /// Sum of all entries: the number of events a clock covers. It
    /// saturates: a snapshot may name any number (its entries are each
    /// backed by one event, not by all those before it).
    pub fn total(&self) -> u64 {
        self.iter().fold(0, |total, (_, v)| total.saturating_add(v))
    }

    /// How many events this clock covers that `other` does not: the sum
    /// of `self[p] - other[p]` where that is positive (saturating).
    pub fn count_beyond(&self, other: &VectorClock) -> u64 {
        self.iter().fold(0, |n, (peer, value)| {
            n.saturating_add(value.saturating_sub(other.get(peer)))
        })
    }

    /// Pointwise minimum over `clocks`: what every one of them has seen.
    pub fn meet<'a>(mut clocks: impl Iterator<Item = &'a VectorClock>) -> VectorClock {
        let Some(first) = clocks.next() else {
            return VectorClock::new();
        };
        let mut out = first.clone();
        for clock in clocks {
            match &mut out.0 {
                Repr::Sorted(e) => e.vec().retain_mut(|(p, v)| {
                    *v = (*v).min(clock.get(*p));
                    *v > 0
                }),
                Repr::Blocks(b) => b.retain(|p, v| {
                    *v = (*v).min(clock.get(*p));
                    *v > 0
                }),
            }
        }
        out
    }
}

/// Entries in any order; a repeated peer keeps its largest value.
impl FromIterator<(PeerId, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (PeerId, u64)>>(iter: I) -> Self {
        let mut iter = iter.into_iter().filter(|&(_, v)| v > 0);
        // None or one entry (most clocks): no vector, not even for a moment.
        let Some(first) = iter.next() else {
            return VectorClock::new();
        };
        let Some(second) = iter.next() else {
            return VectorClock::from_canonical_entry(first.0, first.1);
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(2 + iter.size_hint().0);
        entries.extend([first, second]);
        entries.extend(iter);
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Of equal peers, the largest value sorts first: keep it.
            key_sort::sort_by_key(&mut entries, |&(p, v)| {
                (u128::from(p.0) << 64) | u128::from(u64::MAX - v)
            });
            entries.dedup_by_key(|&mut (p, _)| p);
        }
        VectorClock::from_sorted(Entries::from_vec(entries))
    }
}

impl std::fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(entries: &[(u64, u64)]) -> VectorClock {
        entries.iter().map(|&(p, v)| (PeerId(p), v)).collect()
    }

    /// The branchless lookup finds what the standard search finds: every
    /// peer of sorted entries of 0 to 70, and every gap between them.
    #[test]
    fn sorted_get_finds_what_the_standard_search_finds() {
        for n in 0..70u64 {
            let entries: Vec<(PeerId, u64)> =
                (0..n).map(|i| (PeerId(2 * i + 1), i + 100)).collect();
            for peer in 0..2 * n + 2 {
                let expected = entries
                    .binary_search_by_key(&PeerId(peer), |e| e.0)
                    .map_or(0, |i| entries[i].1);
                assert_eq!(
                    sorted_get(&entries, PeerId(peer)),
                    expected,
                    "{n} entries, peer {peer}"
                );
                assert_eq!(
                    sorted_position(&entries, PeerId(peer)),
                    entries.binary_search_by_key(&PeerId(peer), |e| e.0),
                    "{n} entries, peer {peer}"
                );
                assert_eq!(
                    lower_bound_written_out(&entries, PeerId(peer)),
                    entries.partition_point(|e| e.0 < PeerId(peer)),
                    "the wasm's search, {n} entries, peer {peer}"
                );
            }
        }
    }

    /// The walk's gallop and search, against a lookup of each entry: a
    /// clock asking about every `stride`-th of ours (covered), with one
    /// entry raised past ours or one peer we lack slipped in, anywhere.
    #[test]
    fn first_not_covered_finds_what_lookups_find() {
        for len in 0..70u64 {
            let mine = vc(&(0..len).map(|i| (i * 3 + 1, i + 1)).collect::<Vec<_>>());
            for stride in [1, 2, 3, 5, 17] {
                let asked: Vec<(u64, u64)> = (0..len)
                    .step_by(stride)
                    .map(|i| (i * 3 + 1, i + 1))
                    .collect();
                for at in 0..=asked.len() {
                    let mut raised = asked.clone();
                    if let Some(entry) = raised.get_mut(at) {
                        entry.1 += 1;
                    }
                    // A peer we lack (ids 3i), just before entry `at`.
                    let mut foreign = asked.clone();
                    let before = asked.get(at).map_or(len * 3 + 2, |e| e.0 - 1);
                    foreign.push((before, 1));
                    for theirs in [vc(&asked), vc(&raised), vc(&foreign)] {
                        let expected = theirs.iter().find(|&(p, v)| mine.get(p) < v);
                        assert_eq!(
                            mine.first_not_covered(&theirs),
                            expected,
                            "{len} entries, every {stride}th asked, at {at}: {theirs:?}"
                        );
                    }
                }
            }
        }
    }

    /// The walk resumed from a peer and with slack, as the holding queue
    /// and the far-ahead check use it: in step with ours, past a peer of
    /// ours that `theirs` lacks, or with one of theirs we lack.
    #[test]
    fn first_beyond_finds_what_lookups_find() {
        let mine = vc(&(0..40u64).map(|i| (i * 3 + 1, 10 + i)).collect::<Vec<_>>());
        for skipped in [None, Some(0), Some(7), Some(39)] {
            for extra in [None, Some(3u64), Some(60), Some(200)] {
                for raised in [None, Some(0usize), Some(20), Some(38)] {
                    let mut theirs: Vec<(u64, u64)> = (0..40u64)
                        .filter(|&i| Some(i) != skipped)
                        .map(|i| (i * 3 + 1, 10 + i))
                        .collect();
                    if let Some(at) = raised {
                        theirs[at].1 += 3;
                    }
                    if let Some(peer) = extra {
                        theirs.push((peer, 1));
                    }
                    let theirs = vc(&theirs);
                    for from in [0, 1, 2, 22, 61, 118, 300] {
                        for slack in [0, 2, 5] {
                            let expected = theirs.iter().find(|&(p, v)| {
                                p >= PeerId(from) && v > mine.get(p).saturating_add(slack)
                            });
                            assert_eq!(
                                mine.first_beyond(&theirs, PeerId(from), slack),
                                expected,
                                "from {from}, slack {slack}: {theirs:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A hint is only a guess: lookups through one, shared between two
    /// clocks (stale for each as often as not), in runs of one peer and
    /// at random, past [`LARGE`] into blocks, answer as plain ones do.
    #[test]
    fn hinted_lookups_answer_as_plain_ones() {
        let mut rng = crate::protocol::testing::Rng::from_env("hinted_lookups");
        let (mut plain, mut hinted) = (
            [VectorClock::new(), VectorClock::new()],
            [VectorClock::new(), VectorClock::new()],
        );
        let mut hint = Hint::default();
        let mut peer = PeerId(0);
        for step in 0..20_000 {
            if rng.below(8) == 0 {
                // A new run: a known peer or, while the room grows, a new one.
                let range = if step < 12_000 { 400 } else { 40 };
                peer = PeerId(rng.below(range) as u64 * 7 + 3);
            }
            let which = rng.below(2);
            let value = rng.below(50) as u64;
            if rng.below(2) == 0 {
                plain[which].observe(peer, value);
                hinted[which].observe_hinted(peer, value, &mut hint);
            }
            let probe = if rng.below(4) == 0 {
                PeerId(rng.below(3_000) as u64)
            } else {
                peer
            };
            assert_eq!(
                hinted[which].get_hinted(probe, &mut hint),
                plain[which].get(probe),
                "step {step}, {probe:?}"
            );
        }
        assert!(plain[0].len() > LARGE, "the clock grew into blocks");
        assert_eq!(plain, hinted);
    }

    #[test]
    fn compare_covers_every_case_of_the_spec() {
        assert_eq!(vc(&[]).compare(&vc(&[])), ClockOrdering::Equal);
        assert_eq!(vc(&[(1, 2)]).compare(&vc(&[(1, 2)])), ClockOrdering::Equal);
        // A missing entry is 0: {1:0} is the empty clock.
        assert_eq!(vc(&[(1, 0)]).compare(&vc(&[])), ClockOrdering::Equal);
        assert_eq!(vc(&[(1, 1)]).compare(&vc(&[(1, 2)])), ClockOrdering::Before);
        assert_eq!(vc(&[(1, 2)]).compare(&vc(&[(1, 1)])), ClockOrdering::After);
        assert_eq!(vc(&[]).compare(&vc(&[(2, 1)])), ClockOrdering::Before);
        assert_eq!(
            vc(&[(1, 1), (2, 1)]).compare(&vc(&[(2, 1)])),
            ClockOrdering::After
        );
        assert_eq!(
            vc(&[(1, 1)]).compare(&vc(&[(2, 1)])),
            ClockOrdering::Concurrent
        );
        assert_eq!(
            vc(&[(1, 2), (2, 1)]).compare(&vc(&[(1, 1), (2, 2)])),
            ClockOrdering::Concurrent
        );
        assert_eq!(
            vc(&[(1, 2), (3, 1)]).compare(&vc(&[(2, 1), (3, 1)])),
            ClockOrdering::Concurrent
        );
    }

    #[test]
    fn descends_matches_compare() {
        let a = vc(&[(1, 3), (2, 1)]);
        let b = vc(&[(1, 2)]);
        assert!(a.descends(&b));
        assert!(!b.descends(&a));
        assert!(a.descends(&a));
        let c = vc(&[(3, 1)]);
        assert!(!a.descends(&c) && !c.descends(&a));
    }

    #[test]
    fn merge_increment_and_meet() {
        let mut a = vc(&[(1, 3)]);
        a.merge(&vc(&[(1, 1), (2, 4)]));
        assert_eq!(a, vc(&[(1, 3), (2, 4)]));
        assert_eq!(a.increment(PeerId(3)), 1);
        assert_eq!(a.total(), 8);
        let m = VectorClock::meet([vc(&[(1, 3), (2, 4)]), vc(&[(1, 1), (3, 5)])].iter());
        assert_eq!(m, vc(&[(1, 1)]));
    }

    #[test]
    fn a_map_repeating_a_peer_keeps_the_last_and_zeros_are_dropped() {
        let [one, two, three] = [1, 2, 3].map(|p| PeerId(p).to_string());
        let json = format!(r#"{{"{three}": 1, "{one}": 4, "{three}": 2, "{two}": 0}}"#);
        let clock: VectorClock = serde_json::from_str(&json).unwrap();
        assert_eq!(clock, vc(&[(1, 4), (3, 2)]));
    }

    #[test]
    fn encoding_is_compact() {
        let bytes = postcard::to_allocvec(&vc(&[(1, 3), (2, 200)])).unwrap();
        // length + 2 x (8-byte id + varint)
        assert_eq!(bytes.len(), 1 + 8 + 1 + 8 + 2);
        assert_eq!(
            postcard::from_bytes::<VectorClock>(&bytes).unwrap(),
            vc(&[(1, 3), (2, 200)])
        );
    }
}
