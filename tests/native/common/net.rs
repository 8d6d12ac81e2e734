//! A few real [`SyncNode`]s on links in virtual time, every output handled
//! as a page's edge handles it (storage acknowledged at once, seals
//! verified, snapshots gzipped and inflated by flate2, a close closing
//! both ends), and a hook on every frame in flight: what the fuzzers put
//! a lying peer's hands on.

use cpc_sync::protocol::seal::verify_packed;
use cpc_sync::protocol::sync::gzip::{gunzip_at_most, gzip};
use cpc_sync::protocol::sync::{Output, Refusal, SyncNode};
use cpc_sync::protocol::PeerId;
use std::collections::BTreeSet;

/// Does what `node` asks of its edge (seals verified, snapshots gzipped
/// and inflated) and hands it the results; every other output back.
pub fn edge_work(node: &mut SyncNode, output: Output, now: u64) -> Option<Output> {
    match output {
        Output::Verify { batch, seals } => node.verified(batch, &verify_packed(&seals), now),
        Output::GzipSnapshot { bytes } => node.snapshot_gzipped(&bytes, gzip(&bytes)),
        Output::GunzipSnapshot { id, bytes, limit } => {
            node.snapshot_gunzipped(id, gunzip_at_most(&bytes, limit), now)
        }
        other => return Some(other),
    }
    None
}

/// What a node did, as seen by its edge.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every refusal it reported, with whom it refused.
    pub rejected: Vec<(PeerId, Refusal)>,
    /// Every connection it closed, why, and how many refusals it had
    /// reported then.
    pub closed: Vec<(PeerId, String, usize)>,
}

impl Seen {
    /// The refusals of `peer`.
    pub fn of(&self, peer: PeerId) -> impl Iterator<Item = &Refusal> {
        self.rejected
            .iter()
            .filter(move |(p, _)| *p == peer)
            .map(|(_, r)| r)
    }
}

/// What a frame in flight becomes: the frames delivered instead (none: it
/// is dropped).
pub type Tamper<'a> = dyn FnMut(PeerId, PeerId, Vec<u8>) -> Vec<Vec<u8>> + 'a;

pub struct Net {
    pub now: u64,
    pub nodes: Vec<SyncNode>,
    pub seen: Vec<Seen>,
    links: BTreeSet<(usize, usize)>,
}

impl Net {
    pub fn new(nodes: Vec<SyncNode>, now: u64) -> Net {
        let seen = nodes.iter().map(|_| Seen::default()).collect();
        Net {
            now,
            nodes,
            seen,
            links: BTreeSet::new(),
        }
    }

    fn at(&self, peer: PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer() == peer)
    }

    /// Links `a` and `b`: each connects to the other.
    pub fn link(&mut self, a: usize, b: usize) {
        let (pa, pb) = (self.nodes[a].peer(), self.nodes[b].peer());
        self.nodes[a].connect(pb, self.now);
        self.nodes[b].connect(pa, self.now);
        self.links.insert((a.min(b), a.max(b)));
    }

    /// Ends the link between `a` and `b` on both sides.
    pub fn unlink(&mut self, a: usize, b: usize) {
        if self.links.remove(&(a.min(b), a.max(b))) {
            let (pa, pb) = (self.nodes[a].peer(), self.nodes[b].peer());
            self.nodes[a].disconnect(pb);
            self.nodes[b].disconnect(pa);
        }
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Handles every node's outputs and carries the frames, `tamper`ed,
    /// until none is left (at most `rounds` rounds); whether any moved.
    pub fn deliver(&mut self, tamper: &mut Tamper<'_>) -> bool {
        let mut moved = false;
        for _ in 0..200 {
            let mut frames = Vec::new();
            for i in 0..self.nodes.len() {
                frames.extend(self.outputs(i));
            }
            if frames.is_empty() {
                return moved;
            }
            moved = true;
            for (from, to, frame) in frames {
                let (Some(f), Some(t)) = (self.at(from), self.at(to)) else {
                    continue;
                };
                if !self.linked(f, t) {
                    continue;
                }
                for frame in tamper(from, to, frame) {
                    // A close on the way ends the link.
                    if self.linked(f, t) {
                        self.nodes[t].receive_frame(from, &frame, self.now);
                    }
                }
            }
        }
        moved
    }

    /// Node `i`'s outputs handled; the frames it sends.
    fn outputs(&mut self, i: usize) -> Vec<(PeerId, PeerId, Vec<u8>)> {
        let now = self.now;
        let from = self.nodes[i].peer();
        let mut frames = Vec::new();
        let mut closes = Vec::new();
        // Answers to the edge's work may make more outputs.
        for _ in 0..20 {
            let outputs = self.nodes[i].take_outputs();
            if outputs.is_empty() {
                break;
            }
            let node = &mut self.nodes[i];
            for output in outputs {
                let Some(output) = edge_work(node, output, now) else {
                    continue;
                };
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    Output::Persist { token, .. } => node.persisted(token),
                    Output::Rejected { peer, refusal } => {
                        self.seen[i].rejected.push((peer, refusal))
                    }
                    Output::Close { peer, reason } => {
                        let refused = self.seen[i].rejected.len();
                        self.seen[i].closed.push((peer, reason, refused));
                        closes.push(peer);
                    }
                    _ => {}
                }
            }
        }
        for peer in closes {
            if let Some(j) = self.at(peer) {
                self.unlink(i, j);
            }
        }
        frames
    }

    /// Runs virtual time for `ms`, `step_ms` at a time: frames carried,
    /// then each node's timer if due.
    pub fn run(&mut self, ms: u64, step_ms: u64, tamper: &mut Tamper<'_>) {
        let end = self.now + ms;
        while self.now < end {
            self.step(step_ms, tamper);
        }
    }

    fn step(&mut self, step_ms: u64, tamper: &mut Tamper<'_>) {
        self.deliver(tamper);
        self.now += step_ms;
        for n in &mut self.nodes {
            if n.next_timer() <= self.now {
                n.tick(self.now);
            }
        }
        self.deliver(tamper);
    }

    /// Runs until `done` holds after a step (at most `ms` of virtual
    /// time); whether it did.
    pub fn run_until(
        &mut self,
        ms: u64,
        step_ms: u64,
        tamper: &mut Tamper<'_>,
        mut done: impl FnMut(&mut Net) -> bool,
    ) -> bool {
        let end = self.now + ms;
        while self.now < end {
            self.step(step_ms, tamper);
            if done(self) {
                return true;
            }
        }
        false
    }
}

/// Delivers every frame as it is.
pub fn honest(_: PeerId, _: PeerId, frame: Vec<u8>) -> Vec<Vec<u8>> {
    vec![frame]
}
