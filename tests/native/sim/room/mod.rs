//! A big room in virtual time: hundreds of peers, each a `SyncNode` and a
//! `Mesh` (the same sans-IO code the browser runs), joined through a
//! signaling server that hands each newcomer a bounded random sample of the
//! room, linked by a partial view, under churn and a partition.

pub mod measure;
pub mod network;
pub mod scenario;

use std::collections::{HashMap, VecDeque};

use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{
    IntakeBudget, Mesh, MeshAction, MeshConfig, Output, Relay, SyncConfig, SyncNode,
};
use cpc_sync::protocol::{EngineConfig, EventId, PeerId, ReconciliationEngine};

use crate::common::{json, Rng};
use measure::Tracked;
use network::{pair, Event, Network};

/// Members a newcomer is told of by signaling, at most.
pub const SAMPLE: usize = 16;
/// `max_connections`.
pub const MAX_LINKS: usize = 8;

pub struct RoomPeer {
    pub id: PeerId,
    pub node: SyncNode,
    pub mesh: Mesh,
    pub joined_ms: u64,
    /// When the node's timer and the mesh's next fall due.
    node_wake: u64,
    mesh_wake: Option<u64>,
}

/// A write and whether anyone but its writer has it (then it must
/// survive: a write its writer took away alone is not lost, only absent).
pub struct Write {
    pub origin: usize,
    pub id: EventId,
    pub key: String,
}

pub struct Room {
    pub rng: Rng,
    pub now: u64,
    /// By index; `None` once left (indices are never reused).
    pub peers: Vec<Option<RoomPeer>>,
    /// Every peer's id by index, kept after it left: the peers it was
    /// linked to are told of the drop under its id.
    ids: Vec<PeerId>,
    pub net: Network,
    pub writes: Vec<Write>,
    /// The write being followed hop by hop (see `measure.rs`).
    pub tracked: Option<Tracked>,
    /// Every frame's bytes, by sender (all kinds).
    pub bytes_sent: u64,
    /// While `Some`, every frame's bytes by the kind of message it holds
    /// (decoding costs: the idle window only).
    pub bytes_by_kind: Option<std::collections::BTreeMap<&'static str, u64>>,
    sync: SyncConfig,
    mesh: MeshConfig,
    /// Review (rv-overlay): frames between these peers (either way) are
    /// dropped unless they are pings or shuffles: a member that keeps a
    /// link alive and relays nothing over it.
    pub withheld: std::collections::HashSet<(usize, usize)>,
    /// Review (rv-overlay): as `cpc-signal` does, the members a newcomer is
    /// named are told of it (`Joined`), and every member of one that
    /// leaves (`Left`).
    pub signal_joins: bool,
}

impl Room {
    /// A room of none yet, its peers relaying as `relay` says.
    pub fn new(seed: u64, relay: Relay) -> Self {
        Room::with_links(seed, relay, MAX_LINKS)
    }

    /// The same, each peer holding `max_links` links at most.
    pub fn with_links(seed: u64, relay: Relay, max_links: usize) -> Self {
        Room {
            rng: Rng::new(seed),
            now: 1_700_000_000_000,
            peers: Vec::new(),
            ids: Vec::new(),
            net: Network::default(),
            writes: Vec::new(),
            tracked: None,
            bytes_sent: 0,
            bytes_by_kind: None,
            withheld: Default::default(),
            signal_joins: false,
            sync: SyncConfig {
                relay,
                ..SyncConfig::default()
            },
            mesh: MeshConfig {
                connect_timeout_ms: 5_000,
                max_connections: max_links,
                ..MeshConfig::default()
            },
        }
    }

    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.peers.len()).filter(|&i| self.peers[i].is_some())
    }

    pub fn random_peer(&mut self) -> usize {
        let alive: Vec<usize> = self.alive().collect();
        alive[self.rng.below(alive.len())]
    }

    pub fn len(&self) -> usize {
        self.alive().count()
    }

    /// A newcomer: signaling names a random sample of the members, and it
    /// dials (the mesh picks whom).
    pub fn join(&mut self) -> usize {
        let members: Vec<usize> = self.alive().collect();
        let i = self.peers.len();
        let id = PeerId(self.rng.next_u64() >> 1);
        let mut mesh = Mesh::new(id, self.mesh.clone());
        let mut sample = members;
        self.rng.shuffle(&mut sample);
        sample.truncate(SAMPLE);
        let ids: Vec<PeerId> = sample.iter().map(|&j| self.id(j)).collect();
        mesh.discovered_all(&ids, true, self.now);
        let engine = ReconciliationEngine::new(id, EngineConfig::default());
        self.net.places.push((
            self.rng.below(1000) as f64 / 1000.0,
            self.rng.below(1000) as f64 / 1000.0,
        ));
        self.ids.push(id);
        self.peers.push(Some(RoomPeer {
            id,
            node: SyncNode::new(
                engine,
                SyncConfig {
                    intake: IntakeBudget::default(),
                    ..self.sync.clone()
                },
            ),
            mesh,
            joined_ms: self.now,
            node_wake: self.now,
            mesh_wake: None,
        }));
        self.settle(i);
        if self.signal_joins {
            let now = self.now;
            for j in sample {
                if let Some(p) = self.peers[j].as_mut() {
                    p.mesh.discovered(id, false, now);
                }
                self.settle(j);
            }
        }
        i
    }

    /// Peer `i` leaves: its connections drop (nobody is told otherwise).
    pub fn leave(&mut self, i: usize) {
        self.peers[i] = None;
        let linked: Vec<usize> = self
            .net
            .conns
            .keys()
            .filter_map(|&(a, b)| (a == i).then_some(b).or((b == i).then_some(a)))
            .collect();
        for j in linked {
            self.drop_conn(i, j);
        }
        if self.signal_joins {
            let id = self.id(i);
            for j in 0..self.peers.len() {
                if let Some(p) = self.peers[j].as_mut() {
                    p.mesh.left(id);
                }
                self.settle(j);
            }
        }
    }

    /// Peer `i`'s id, also after it left (its links were once told
    /// `PeerId(0)` instead: each kept a link to it open that was not, and
    /// the room thinned out under churn, until a peer lost its side of a
    /// partition; see `ghost_links`).
    pub fn id(&self, i: usize) -> PeerId {
        self.ids[i]
    }

    /// Links some live peer's mesh holds open that the network does not
    /// (as `(peer, the other)` by index; the other `None` if it left).
    pub fn ghost_links(&self) -> Vec<(usize, Option<usize>)> {
        let index: HashMap<PeerId, usize> = self.alive().map(|i| (self.id(i), i)).collect();
        let mut out = Vec::new();
        for i in self.alive() {
            let Some(p) = self.peers[i].as_ref() else {
                continue;
            };
            for (peer, state) in p.mesh.links() {
                if state != cpc_sync::protocol::sync::LinkState::Open {
                    continue;
                }
                let j = index.get(&peer).copied();
                let open =
                    j.is_some_and(|j| self.net.conns.get(&pair(i, j)).is_some_and(|c| c.open));
                if !open {
                    out.push((i, j));
                }
            }
        }
        out
    }

    fn index(&self, id: PeerId) -> Option<usize> {
        // Linear, but only on dials and hangups.
        self.peers
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.id == id))
    }

    /// Drops the connection between `i` and `j`; each live end still
    /// holding it is told.
    fn drop_conn(&mut self, i: usize, j: usize) {
        if self.net.conns.remove(&pair(i, j)).is_none() {
            return;
        }
        let jitter = self.rng.below(1000) as f64 / 1000.0;
        for (me, other) in [(i, j), (j, i)] {
            let other_id = self.id(other);
            let now = self.now;
            if let Some(p) = self.peers[me].as_mut() {
                p.node.disconnect(other_id);
                p.mesh.closed(other_id, now, jitter);
                self.settle(me);
            }
        }
    }

    /// Carries out what peer `i`'s node and mesh asked for, until neither
    /// asks anything more.
    fn settle(&mut self, i: usize) {
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 1000, "peer {i} never settles");
            let now = self.now;
            let Some(p) = self.peers[i].as_mut() else {
                return;
            };
            for (from, message) in p.node.take_overlay() {
                p.mesh.receive(from, message, now);
            }
            for (to, message) in p.mesh.take_messages() {
                p.node.send_overlay(to, message);
            }
            let outputs = p.node.take_outputs();
            let actions = p.mesh.take_actions();
            if outputs.is_empty() && actions.is_empty() {
                p.node_wake = p.node.next_timer();
                p.mesh_wake = p.mesh.next_wake();
                return;
            }
            for output in outputs {
                match output {
                    Output::Send { to, frame } => self.send(i, to, frame),
                    Output::Close { peer, .. } => {
                        // As the browser does: the mesh hangs up.
                        if let Some(p) = self.peers[i].as_mut() {
                            p.mesh.closed(peer, now, 0.5);
                        }
                        self.hang_up(i, peer);
                    }
                    _ => {}
                }
            }
            for action in actions {
                match action {
                    MeshAction::Dial(peer) => self.dial(i, peer),
                    MeshAction::Hangup(peer) => self.hang_up(i, peer),
                }
            }
        }
    }

    /// Carries out what peer `i` asked for (for an attacker driven by
    /// hand).
    pub fn settle_peer(&mut self, i: usize) {
        self.settle(i);
    }

    fn send(&mut self, from: usize, to: PeerId, frame: Vec<u8>) {
        let Some(to) = self.index(to) else {
            return;
        };
        if self.withheld.contains(&(from, to)) && !matches!(kind(&frame), "ping" | "shuffle") {
            return;
        }
        let Some(conn) = self.net.conns.get(&pair(from, to)).filter(|c| c.open) else {
            return;
        };
        self.bytes_sent += frame.len() as u64;
        if let Some(kinds) = &mut self.bytes_by_kind {
            *kinds.entry(kind(&frame)).or_default() += frame.len() as u64;
        }
        let at = self.now + self.net.latency(from, to);
        let conn = conn.id;
        self.net.at(
            at,
            Event::Frame {
                from,
                to,
                conn,
                frame,
            },
        );
    }

    fn dial(&mut self, dialer: usize, peer: PeerId) {
        let Some(callee) = self.index(peer) else {
            // Gone: the dial times out in the mesh.
            return;
        };
        match self.net.conns.get(&pair(dialer, callee)) {
            // Both dialed: perfect negotiation makes it one connection.
            Some(c) if !c.open => return,
            Some(_) => self.drop_conn(dialer, callee),
            None => {}
        }
        let conn = self.net.start(dialer, callee);
        let at = self.now + self.net.latency(dialer, callee);
        self.net.at(
            at,
            Event::Offer {
                dialer,
                callee,
                conn,
            },
        );
    }

    /// Peer `i` hangs up on `peer` (its own mesh knows already).
    fn hang_up(&mut self, i: usize, peer: PeerId) {
        if let Some(j) = self.index(peer) {
            self.drop_conn(i, j);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Offer {
                dialer,
                callee,
                conn,
            } => {
                if !self.net.current(dialer, callee, conn) || !self.net.reachable(dialer, callee) {
                    return; // the dialer times out
                }
                let (dialer_id, now) = (self.id(dialer), self.now);
                let Some(p) = self.peers[callee].as_mut() else {
                    return;
                };
                let at = self.now + self.net.latency(dialer, callee);
                if p.mesh.incoming(dialer_id, now) {
                    self.net.at(
                        at,
                        Event::Open {
                            a: dialer,
                            b: callee,
                            conn,
                        },
                    );
                } else {
                    self.net.at(
                        at,
                        Event::Refused {
                            dialer,
                            callee,
                            conn,
                        },
                    );
                }
                self.settle(callee);
            }
            Event::Refused {
                dialer,
                callee,
                conn,
            } => {
                if self.net.current(dialer, callee, conn) {
                    self.net.conns.remove(&pair(dialer, callee));
                    let (callee_id, now) = (self.id(callee), self.now);
                    let jitter = self.rng.below(1000) as f64 / 1000.0;
                    if let Some(p) = self.peers[dialer].as_mut() {
                        p.mesh.closed(callee_id, now, jitter);
                        self.settle(dialer);
                    }
                }
            }
            Event::Open { a, b, conn } => {
                if !self.net.current(a, b, conn) || !self.net.reachable(a, b) {
                    return;
                }
                if self.peers[a].is_none() || self.peers[b].is_none() {
                    return;
                }
                if let Some(c) = self.net.conns.get_mut(&pair(a, b)) {
                    c.open = true;
                }
                let now = self.now;
                for (me, other) in [(a, b), (b, a)] {
                    let other_id = self.id(other);
                    if let Some(p) = self.peers[me].as_mut() {
                        p.mesh.opened(other_id, now);
                        p.node.connect(other_id, now);
                    }
                }
                self.settle(a);
                self.settle(b);
            }
            Event::Frame {
                from,
                to,
                conn,
                frame,
            } => {
                if !self.net.current(from, to, conn) {
                    return;
                }
                let (from_id, now) = (self.id(from), self.now);
                self.observe(from, to, &frame);
                if let Some(p) = self.peers[to].as_mut() {
                    p.node.receive_frame(from_id, &frame, now);
                    self.settle(to);
                }
                self.arrived(from, to);
            }
        }
    }

    /// Cuts every connection across the halves, and keeps them apart.
    pub fn partition(&mut self) {
        self.net.partitioned = true;
        let across: Vec<(usize, usize)> = self
            .net
            .conns
            .keys()
            .filter(|(a, b)| a % 2 != b % 2)
            .copied()
            .collect();
        for (a, b) in across {
            self.drop_conn(a, b);
        }
    }

    pub fn heal(&mut self) {
        self.net.partitioned = false;
    }

    /// A write at peer `i` of a key of its own.
    pub fn write(&mut self, i: usize) -> Option<EventId> {
        let now = self.now;
        let p = self.peers[i].as_mut()?;
        let key = format!("w/{}/{}", p.id, p.node.engine().clock().get(p.id) + 1);
        let event = p
            .node
            .write(|e| e.set(&key, json("1"), now).map(Some))
            .ok()
            .flatten()?;
        self.writes.push(Write {
            origin: i,
            id: event.id,
            key,
        });
        self.settle(i);
        Some(event.id)
    }

    /// Advances `ms` of virtual time, 10 ms a step, calling `each_step`
    /// after every step.
    pub fn run(&mut self, ms: u64, mut each_step: impl FnMut(&mut Room)) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            while let Some(event) = self.net.pop_due(self.now) {
                self.handle(event);
            }
            for i in 0..self.peers.len() {
                self.wake(i);
            }
            each_step(self);
        }
    }

    /// Runs peer `i`'s timers that fell due; its mesh learns the round
    /// trips its node measured.
    fn wake(&mut self, i: usize) {
        let now = self.now;
        let jitter = self.rng.below(1000) as f64 / 1000.0;
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        let mut woke = false;
        if p.node_wake <= now {
            p.node.tick(now);
            woke = true;
        }
        if p.mesh_wake.is_some_and(|t| t <= now) {
            let rtts: Vec<(PeerId, f64)> = p
                .node
                .sessions()
                .filter_map(|(q, s)| s.rtt().map(|r| (q, r)))
                .collect();
            for (q, rtt) in rtts {
                p.mesh.rtt(q, rtt);
            }
            p.mesh.tick(now, jitter);
            woke = true;
        }
        if woke {
            self.settle(i);
        }
    }

    /// Open links of each peer, by index (as the network has them).
    pub fn degrees(&self) -> Vec<usize> {
        self.net.degrees(self.peers.len())
    }

    /// The most links any live peer holds: open or opening as its mesh
    /// counts them, open as the network does.
    pub fn max_links(&self) -> usize {
        let degrees = self.net.degrees(self.peers.len());
        self.alive()
            .map(|i| {
                let mesh = self.peers[i].as_ref().map_or(0, |p| p.mesh.active());
                mesh.max(degrees[i])
            })
            .max()
            .unwrap_or(0)
    }

    /// Live peers that joined at least `settled_ms` ago and are cut off
    /// from the others of their side (both sides while partitioned).
    pub fn cut_off(&self, settled_ms: u64) -> Vec<usize> {
        let n = self.peers.len();
        let adjacency = self.net.adjacency(n);
        let settled: Vec<usize> = self
            .alive()
            .filter(|&i| {
                self.peers[i]
                    .as_ref()
                    .is_some_and(|p| p.joined_ms + settled_ms <= self.now)
            })
            .collect();
        let sides: Vec<Vec<usize>> = if self.net.partitioned {
            vec![
                settled.iter().copied().filter(|i| i % 2 == 0).collect(),
                settled.iter().copied().filter(|i| i % 2 == 1).collect(),
            ]
        } else {
            vec![settled]
        };
        let mut out = Vec::new();
        for side in sides {
            let Some(&start) = side.first() else {
                continue;
            };
            let mut seen = vec![false; n];
            let mut queue = VecDeque::from([start]);
            seen[start] = true;
            while let Some(i) = queue.pop_front() {
                for &j in &adjacency[i] {
                    if !seen[j] && self.peers[j].is_some() {
                        seen[j] = true;
                        queue.push_back(j);
                    }
                }
            }
            out.extend(side.into_iter().filter(|&i| !seen[i]));
        }
        out
    }

    /// Peer `i`'s mesh, every peer it knows named by index and side, for
    /// a failure's message.
    pub fn describe(&self, i: usize) -> String {
        let Some(p) = self.peers[i].as_ref() else {
            return format!("peer {i}: left");
        };
        let mut out = format!(
            "peer {i} (side {}, joined {} ms ago), mesh {:?}:\n",
            i % 2,
            self.now - p.joined_ms,
            p.mesh.next_wake().map(|t| t as i64 - self.now as i64)
        );
        for (peer, state) in p.mesh.links() {
            let j = self.index(peer);
            let conn = j.and_then(|j| self.net.conns.get(&pair(i, j)));
            out += &format!(
                "  {:?} side {:?} {state:?} conn {conn:?} degree {:?}\n",
                j,
                j.map(|j| j % 2),
                j.map(|j| self.net.adjacency(self.peers.len())[j].len())
            );
        }
        out += &format!("{:#?}", p.mesh);
        out
    }

    /// Every live peer has the same state, clock and digest.
    pub fn converged(&mut self) -> bool {
        let mut first: Option<(String, cpc_sync::protocol::Hash32)> = None;
        for p in self.peers.iter_mut().flatten() {
            let this = (
                format!("{:?}", p.node.engine().clock()),
                p.node.engine_mut().digest(),
            );
            match &first {
                None => first = Some(this),
                Some(f) if *f != this => return false,
                _ => {}
            }
        }
        true
    }

    /// Every write that reached a peer other than its writer, or whose
    /// writer is still here, is in every live peer's state.
    pub fn check_writes(&self) {
        let clocks: HashMap<usize, &cpc_sync::protocol::VectorClock> = self
            .alive()
            .filter_map(|i| self.peers[i].as_ref().map(|p| (i, p.node.engine().clock())))
            .collect();
        let reader = self.peers.iter().flatten().next().expect("a peer");
        let mut kept = 0;
        for w in &self.writes {
            let spread = self.peers[w.origin].is_some()
                || clocks.values().any(|c| c.get(w.id.peer) >= w.id.seq);
            if !spread {
                continue;
            }
            kept += 1;
            assert!(
                reader.node.engine().get(&w.key).is_some(),
                "write {} ({:?}) lost",
                w.key,
                w.id
            );
        }
        assert!(kept > 0, "no write to check");
    }

    /// Whether `frame` announces or asks for the event of `id` (an
    /// `IHave` or a graft naming its origin at or past it: one write is
    /// followed at a time).
    pub fn names(frame: &[u8], id: EventId) -> bool {
        match wire::decode(frame) {
            Ok(Decoded::Message(Message::IHave(entries))) => entries
                .iter()
                .any(|&(p, seq)| p == id.peer && seq >= id.seq),
            Ok(Decoded::Message(Message::Graft(entries))) => {
                entries.iter().any(|&(p, seq)| p == id.peer && seq < id.seq)
            }
            _ => false,
        }
    }

    /// Whether `frame` carries the event of `id`.
    pub fn carries(frame: &[u8], id: EventId) -> bool {
        matches!(wire::decode(frame), Ok(Decoded::Message(Message::Events(events)))
            if events.iter().any(|e| e.id == id))
    }
}

/// The kind of message a frame holds, for the idle figures.
fn kind(frame: &[u8]) -> &'static str {
    match wire::decode(frame) {
        Ok(Decoded::Message(m)) => match m {
            Message::Digest { .. } => "digest",
            Message::Ping { .. } | Message::Pong { .. } => "ping",
            Message::Overlay(_) => "shuffle",
            Message::Events(_) => "events",
            Message::IHave(_) | Message::Graft(_) | Message::Prune => "relay",
            Message::Presence(_) => "presence",
            _ => "other",
        },
        _ => "other",
    }
}
