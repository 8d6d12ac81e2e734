//! The big room's network: connections that a dial opens after an offer
//! and an answer cross, frames that arrive after the pair's latency (fixed
//! per pair, so a connection stays ordered), and a partition into halves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Something that happens at a time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// `dialer`'s offer of connection `conn` reaches `callee`.
    Offer {
        dialer: usize,
        callee: usize,
        conn: u64,
    },
    /// The answer is back: `conn` opens at both ends.
    Open { a: usize, b: usize, conn: u64 },
    /// The callee refused (`max_connections` links already).
    Refused {
        dialer: usize,
        callee: usize,
        conn: u64,
    },
    Frame {
        from: usize,
        to: usize,
        conn: u64,
        frame: Vec<u8>,
    },
}

/// A connection between two peers (by index, the lower first).
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub id: u64,
    pub open: bool,
}

#[derive(Default)]
pub struct Network {
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    pub conns: BTreeMap<(usize, usize), Conn>,
    next_conn: u64,
    /// Where each peer is: latency grows with distance.
    pub places: Vec<(f64, f64)>,
    /// Halves (by index parity) cannot reach each other.
    pub partitioned: bool,
}

pub fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Network {
    /// One-way latency between two peers: 5 ms, plus up to ~110 ms with
    /// distance.
    pub fn latency(&self, a: usize, b: usize) -> u64 {
        let (pa, pb) = (self.places[a], self.places[b]);
        let d = ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt();
        5 + (d * 80.0) as u64
    }

    pub fn reachable(&self, a: usize, b: usize) -> bool {
        !self.partitioned || a % 2 == b % 2
    }

    pub fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((time, self.seq, event)));
    }

    /// The next event due by `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Event> {
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now => self.queue.pop().map(|Reverse((_, _, e))| e),
            _ => None,
        }
    }

    /// A new connection attempt between `a` and `b`, replacing any.
    pub fn start(&mut self, a: usize, b: usize) -> u64 {
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.insert(pair(a, b), Conn { id, open: false });
        id
    }

    pub fn current(&self, a: usize, b: usize, conn: u64) -> bool {
        self.conns.get(&pair(a, b)).is_some_and(|c| c.id == conn)
    }

    /// Open connections of each peer.
    pub fn degrees(&self, n: usize) -> Vec<usize> {
        let mut out = vec![0; n];
        for ((a, b), c) in &self.conns {
            if c.open {
                out[*a] += 1;
                out[*b] += 1;
            }
        }
        out
    }

    /// Open connections, as adjacency lists.
    pub fn adjacency(&self, n: usize) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); n];
        for ((a, b), c) in &self.conns {
            if c.open {
                out[*a].push(*b);
                out[*b].push(*a);
            }
        }
        out
    }
}
