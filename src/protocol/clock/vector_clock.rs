use std::cmp::Ordering;
use std::collections::btree_map::{self, BTreeMap};

use serde::{Deserialize, Serialize};

use super::PeerId;

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
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct VectorClock(BTreeMap<PeerId, u64>);

/// The most entries a clock read from a peer or a file may have (the
/// C1.2 room of 30,000 peers fits twice over); beyond it decoding fails
/// without reading the rest.
pub const MAX_CLOCK_ENTRIES: usize = 65_536;

impl<'de> Deserialize<'de> for VectorClock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
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
                let mut clock = BTreeMap::new();
                while let Some((peer, value)) = map.next_entry::<PeerId, u64>()? {
                    if clock.len() >= MAX_CLOCK_ENTRIES {
                        return Err(serde::de::Error::custom(format!(
                            "a version vector has more than {MAX_CLOCK_ENTRIES} entries"
                        )));
                    }
                    if value > 0 {
                        clock.insert(peer, value);
                    }
                }
                Ok(VectorClock(clock))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

impl VectorClock {
    pub const fn new() -> Self {
        VectorClock(BTreeMap::new())
    }

    /// The entry for `peer`, 0 when absent.
    #[inline]
    pub fn get(&self, peer: PeerId) -> u64 {
        self.0.get(&peer).copied().unwrap_or(0)
    }

    /// Sets `peer`'s entry; 0 removes it.
    pub fn set(&mut self, peer: PeerId, value: u64) {
        if value == 0 {
            self.0.remove(&peer);
        } else {
            self.0.insert(peer, value);
        }
    }

    /// Raises `peer`'s entry to at least `value`.
    #[inline]
    pub fn observe(&mut self, peer: PeerId, value: u64) {
        if value == 0 {
            return;
        }
        let entry = self.0.entry(peer).or_insert(0);
        if *entry < value {
            *entry = value;
        }
    }

    /// Increments `peer`'s entry and returns the new value.
    pub fn increment(&mut self, peer: PeerId) -> u64 {
        let entry = self.0.entry(peer).or_insert(0);
        *entry += 1;
        *entry
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        for (&peer, &value) in &other.0 {
            self.observe(peer, value);
        }
    }

    /// `self[p] >= other[p]` for every peer `p`.
    pub fn descends(&self, other: &VectorClock) -> bool {
        other.0.iter().all(|(&p, &v)| self.get(p) >= v)
    }

    /// Compares in one merged walk over both (sorted) clocks.
    pub fn compare(&self, other: &VectorClock) -> ClockOrdering {
        let (mut self_ahead, mut other_ahead) = (false, false);
        let mut a = self.0.iter().peekable();
        let mut b = other.0.iter().peekable();
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
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (PeerId, u64)> + '_ {
        self.0.iter().map(|(&p, &v)| (p, v))
    }

    /// Sum of all entries: the number of events a clock covers.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Pointwise minimum over `clocks`: what every one of them has seen.
    pub fn meet<'a>(mut clocks: impl Iterator<Item = &'a VectorClock>) -> VectorClock {
        let Some(first) = clocks.next() else {
            return VectorClock::new();
        };
        let mut out = first.clone();
        for clock in clocks {
            out.0.retain(|&p, v| {
                *v = (*v).min(clock.get(p));
                *v > 0
            });
        }
        out
    }
}

impl FromIterator<(PeerId, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (PeerId, u64)>>(iter: I) -> Self {
        let mut clock = VectorClock::new();
        for (p, v) in iter {
            clock.observe(p, v);
        }
        clock
    }
}

impl<'a> IntoIterator for &'a VectorClock {
    type Item = (&'a PeerId, &'a u64);
    type IntoIter = btree_map::Iter<'a, PeerId, u64>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(entries: &[(u64, u64)]) -> VectorClock {
        entries.iter().map(|&(p, v)| (PeerId(p), v)).collect()
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
