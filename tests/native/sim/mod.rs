//! The deterministic simulator: N sync nodes over a simulated network with
//! virtual time and a seeded RNG, under faults; then healing, and checks.

pub mod adversary;
pub mod model;
pub mod network;
pub mod room;
pub mod storage;

use std::collections::BTreeSet;

use cpc_sync::protocol::sync::{IntakeBudget, Output, Persist, SyncConfig, SyncNode};
use cpc_sync::protocol::{
    Candidate, ConflictPolicy, EngineConfig, Identity, JsonValue, P2PEvent, PeerId,
    ReconciliationEngine,
};

use crate::common::{assert_causal, json, Rng};
use adversary::Adversary;
use cpc_sync::protocol::room::{KdfCost, RoomSecret};
use model::{Acked, Acknowledged, Op};
use network::Network;
use storage::{Disk, Witness};

pub struct SimPeer {
    pub id: PeerId,
    /// Signs its events (a signed world) or not.
    pub identity: Option<Identity>,
    /// `None` while crashed.
    pub node: Option<SyncNode>,
    pub disk: Disk,
    pub restart_at: u64,
    /// Writes made here and not yet durable, by sequence number.
    pub unacked: Vec<(u64, Acked)>,
    /// Batches of seals out with this peer's verifier (`offload_seals`):
    /// when each answers, the batch and its seals.
    pub verifying: Vec<(u64, u64, Vec<u8>)>,
}

/// Faults and their odds per step (per link for frame faults).
#[derive(Debug, Clone)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    pub disconnect: f64,
    pub partition: f64,
    pub crash: f64,
}

pub struct World {
    pub rng: Rng,
    /// Verifiers elsewhere, as a page's Workers (half the signed worlds with
    /// a verification window): whether, and when each answers, drawn from a
    /// stream of their own, so a world without them is the one it was.
    verifier: Option<Rng>,
    pub now: u64,
    pub peers: Vec<SimPeer>,
    /// Which pairs are meant to be connected (not all: relays are tested).
    pub topology: BTreeSet<(usize, usize)>,
    pub net: Network,
    pub faults: Faults,
    sync: SyncConfig,
    /// Every event is sealed and verified (half the seeds).
    pub signed: bool,
    /// A hostile peer among the others (see `adversary.rs`).
    pub adversary: Option<Adversary>,
    engine_config: EngineConfig,
    partition_until: u64,
    acked: Acknowledged,
    witness: Witness,
    /// Peers kept off every link (a long-offline peer), by index.
    pub offline: BTreeSet<usize>,
}

fn handler(_key: &str, candidates: &[Candidate]) -> Option<JsonValue> {
    candidates.iter().map(|c| c.value.clone()).max()
}

/// Local defaults differ between peers (half show `m/` conflicts, half
/// not) until the room sets its own policies (see `local_op`).
fn configure(node: &mut SyncNode) {
    node.set_reconcile_handler(Box::new(handler));
    let m = match node.peer().0 % 2 {
        0 => ConflictPolicy::Lww,
        _ => ConflictPolicy::MultiValue,
    };
    let engine = node.engine_mut();
    engine.set_policy("m/", m);
    engine.set_policy("rc/", ConflictPolicy::Reconcile);
    engine.record_apply_order();
}

impl World {
    pub fn new(seed: u64) -> Self {
        World::build(seed, false, EngineConfig::default())
    }

    fn build(seed: u64, always_signed: bool, engine_config: EngineConfig) -> Self {
        World::build_with(seed, always_signed, engine_config, |_| {})
    }

    /// A world whose sync config `tune` adjusts before the nodes are made.
    pub fn tuned(seed: u64, tune: impl FnOnce(&mut SyncConfig)) -> Self {
        World::build_with(seed, false, EngineConfig::default(), tune)
    }

    fn build_with(
        seed: u64,
        always_signed: bool,
        engine_config: EngineConfig,
        tune: impl FnOnce(&mut SyncConfig),
    ) -> Self {
        let mut rng = Rng::new(seed);
        let n = 3 + rng.below(6);
        let signed = rng.chance(0.5) || always_signed;
        // Half the signed worlds are rooms with a secret (handshakes on
        // every reconnect); not the one with a hostile insider.
        let room = (signed && !always_signed && rng.chance(0.5))
            .then(|| RoomSecret::with_cost("sim", "a long random secret", KdfCost::TEST));
        let mut verifier = Rng::new(seed ^ 0x7665_7269_6679);
        let offload = signed && verifier.chance(0.5);
        let sync = SyncConfig {
            offload_seals: offload,
            gossip_interval_ms: 200,
            compact_after: [20, 60, 10_000][rng.below(3)],
            snapshot_chunk: [256, 4096][rng.below(2)],
            verify_window_ms: [None, Some(2), Some(50)][rng.below(3)],
            room,
            durable: true,
            ..SyncConfig::default()
        };
        let mut sync = sync;
        tune(&mut sync);
        let peers = (0..n)
            .map(|_| {
                let identity = signed.then(|| Identity::from_seed(rng.next_u64()));
                let id = identity
                    .as_ref()
                    .map_or_else(|| PeerId(rng.next_u64() >> 1), Identity::peer);
                let config = SyncConfig {
                    identity: identity.clone(),
                    // Each page's own, as in a browser.
                    intake: IntakeBudget::default(),
                    ..sync.clone()
                };
                let mut node =
                    SyncNode::new(ReconciliationEngine::new(id, engine_config.clone()), config);
                configure(&mut node);
                SimPeer {
                    id,
                    identity,
                    node: Some(node),
                    disk: Disk::default(),
                    restart_at: 0,
                    unacked: Vec::new(),
                    verifying: Vec::new(),
                }
            })
            .collect();
        // A ring (so the graph stays connected), plus random chords.
        let mut topology = BTreeSet::new();
        for i in 0..n {
            topology.insert((i.min((i + 1) % n), i.max((i + 1) % n)));
            for j in i + 1..n {
                if rng.chance(0.5) {
                    topology.insert((i, j));
                }
            }
        }
        topology.retain(|(a, b)| a != b);
        let faults = Faults {
            drop: 0.02,
            duplicate: 0.02,
            corrupt: 0.01,
            disconnect: 0.004,
            partition: 0.002,
            crash: 0.002,
        };
        let mut world = World {
            rng,
            verifier: offload.then_some(verifier),
            now: 1_700_000_000_000,
            peers,
            topology,
            net: Network::default(),
            faults,
            sync,
            signed,
            adversary: None,
            engine_config,
            partition_until: 0,
            acked: Acknowledged::default(),
            witness: Witness::default(),
            offline: BTreeSet::new(),
        };
        world.connect_all();
        world
    }

    /// A signed world with one more peer, hostile, linked to every other;
    /// honest peers hold at most 300 events of any one origin.
    pub fn with_adversary(seed: u64) -> Self {
        let engine_config = EngineConfig {
            holding_per_origin: 300,
            ..EngineConfig::default()
        };
        let mut world = World::build(seed, true, engine_config);
        let identity = Identity::from_seed(world.rng.next_u64());
        let id = identity.peer();
        let node = SyncNode::new(
            ReconciliationEngine::new(id, EngineConfig::default()),
            SyncConfig {
                identity: Some(identity.clone()),
                intake: IntakeBudget::default(),
                ..world.sync.clone()
            },
        );
        let index = world.peers.len();
        world.peers.push(SimPeer {
            id,
            identity: Some(identity),
            node: Some(node),
            disk: Disk::default(),
            restart_at: 0,
            unacked: Vec::new(),
            verifying: Vec::new(),
        });
        for j in 0..index {
            world.topology.insert((j, index));
        }
        // Its hostile events are sealed with a second key of its own, one
        // nothing else writes under (a fixed seed: the world's rng draws
        // stay as they were).
        world.adversary = Some(Adversary::new(index, Identity::from_seed(1 << 41)));
        world.connect_all();
        world
    }

    fn hostile(&self, i: usize) -> bool {
        self.adversary.as_ref().is_some_and(|a| a.index == i)
    }

    fn alive(&self, i: usize) -> bool {
        self.peers[i].node.is_some()
    }

    /// Opens every link of the topology whose ends are alive and not cut off.
    fn connect_all(&mut self) {
        let pairs: Vec<(usize, usize)> = self.topology.iter().copied().collect();
        for (a, b) in pairs {
            let (pa, pb) = (self.peers[a].id, self.peers[b].id);
            if self.alive(a)
                && self.alive(b)
                && !self.net.is_up(pa, pb)
                && !self.partitioned(a, b)
                && !self.offline.contains(&a)
                && !self.offline.contains(&b)
            {
                self.net.open(pa, pb);
                let now = self.now;
                self.with_node(a, |n| n.connect(pb, now));
                self.with_node(b, |n| n.connect(pa, now));
            }
        }
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.now < self.partition_until && (a % 2) != (b % 2)
    }

    pub fn cut(&mut self, a: usize, b: usize) {
        let (pa, pb) = (self.peers[a].id, self.peers[b].id);
        if self.net.is_up(pa, pb) {
            self.net.close(pa, pb);
            if let Some(n) = &mut self.peers[a].node {
                n.disconnect(pb);
            }
            if let Some(n) = &mut self.peers[b].node {
                n.disconnect(pa);
            }
        }
    }

    /// Runs `f` on peer `i`'s node, then carries out its outputs in order.
    pub fn with_node(&mut self, i: usize, f: impl FnOnce(&mut SyncNode)) {
        let Some(node) = &mut self.peers[i].node else {
            return;
        };
        f(node);
        let outputs = node.take_outputs();
        let me = self.peers[i].id;
        for output in outputs {
            match output {
                Output::Send { to, frame } => {
                    let latency = 1 + self.rng.below(40) as u64;
                    self.net.send(me, to, frame, self.now + latency);
                }
                Output::Persist { token, write } => {
                    if let Persist::Events { record, .. } = &write {
                        // Others' events: someone has seen them already.
                        // Ours count once committed (see `commit_due`).
                        let hostile = self.hostile_id();
                        let events =
                            P2PEvent::decode_batch(record).expect("a node's record decodes");
                        for e in events.iter().filter(|e| e.id.peer != me) {
                            if Some(e.id.peer) != hostile && Some(me) != hostile {
                                self.witness.see(e, me);
                            }
                        }
                    }
                    let now = self.now;
                    self.peers[i].disk.ask(token, write, now, &mut self.rng);
                }
                Output::Rejected { peer, .. } => {
                    if let Some(adversary) = self.adversary.as_mut() {
                        adversary.refused += u64::from(self.peers[adversary.index].id == peer);
                    }
                }
                Output::Close { peer, .. } => {
                    if let Some(j) = self.peers.iter().position(|p| p.id == peer) {
                        self.cut(i, j);
                    }
                }
                Output::Verify { batch, seals } => {
                    // Answers come 1-60 ms later, in any order.
                    let wait = self.verifier.as_mut().map_or(1, |r| 1 + r.below(60) as u64);
                    self.peers[i]
                        .verifying
                        .push((self.now + wait, batch, seals));
                }
                _ => {}
            }
        }
        self.acknowledge_durable(i);
    }

    /// The writes of peer `i` that storage has committed (and the node
    /// heard of) are acknowledged: the final state must keep them.
    fn acknowledge_durable(&mut self, i: usize) {
        let Some(node) = &self.peers[i].node else {
            return;
        };
        let durable = node.durable_upto();
        let (done, waiting) = std::mem::take(&mut self.peers[i].unacked)
            .into_iter()
            .partition(|(seq, _)| *seq <= durable);
        self.peers[i].unacked = waiting;
        for (_, acked) in done {
            self.acked.acknowledge(acked);
        }
    }

    /// Commits what each peer's disk has due, and delivers the
    /// acknowledgements due.
    fn run_disks(&mut self) {
        let now = self.now;
        for i in 0..self.peers.len() {
            if !self.alive(i) {
                continue;
            }
            let me = self.peers[i].id;
            let committed = self.peers[i].disk.commit_due(now, &mut self.rng);
            if Some(me) != self.hostile_id() {
                for e in committed.iter().filter(|e| e.id.peer == me) {
                    self.witness.see(e, me);
                }
            }
            let acks = self.peers[i].disk.acks_due(now);
            if !acks.is_empty() {
                self.with_node(i, |n| acks.into_iter().for_each(|t| n.persisted(t)));
            }
        }
    }

    pub fn local_op(&mut self, i: usize) {
        let now = self.now;
        let n = self.rng.below(3);
        let roll = if self.rng.chance(0.02) {
            10
        } else if self.rng.chance(0.03) {
            11
        } else {
            self.rng.below(10)
        };
        let policy_prefix = ["m/", "rc/"][self.rng.below(2)];
        let policy = [
            ConflictPolicy::Lww,
            ConflictPolicy::MultiValue,
            ConflictPolicy::Reconcile,
        ][self.rng.below(3)];
        let value = json(&self.rng.below(1000).to_string());
        let member = format!("\"m{}\"", self.rng.below(5));
        let by = self.rng.below(7) as i64 - 2;
        let delete_prefix = ["r/", "m/", "ds/", "rc/", "dc/"][self.rng.below(5)];
        let op = match roll {
            0..=3 => Op::Write(value.clone()),
            4 => Op::Increment(by),
            5 => Op::Increment(1),
            6 | 8 => Op::Add(json(&member)),
            7 => Op::Remove(json(&member)),
            9 => Op::Delete,
            _ => Op::Write(json(&format!("\"{}\"", "x".repeat(70_000)))),
        };
        let mut made = None;
        self.with_node(i, |node| {
            let past = node.engine().clock().clone();
            let result = node.write(|e| match roll {
                0 | 1 => e.set(&format!("r/{n}"), value, now).map(Some),
                2 => e.set(&format!("m/{n}"), value, now).map(Some),
                3 => e.set(&format!("rc/{n}"), value, now).map(Some),
                4 => e.increment(&format!("c/{n}"), by, now).map(Some),
                5 => e.increment(&format!("dc/{n}"), 1, now).map(Some),
                6 => e.add(&format!("s/{n}"), json(&member), now).map(Some),
                7 => e.remove(&format!("s/{n}"), json(&member), now),
                8 => e.add(&format!("ds/{n}"), json(&member), now).map(Some),
                9 => e.delete(&format!("{delete_prefix}{n}"), now),
                11 => e.set_room_policy(policy_prefix, policy, now).map(Some),
                _ => e
                    .set(
                        &format!("big/{n}"),
                        json(&format!("\"{}\"", "x".repeat(70_000))),
                        now,
                    )
                    .map(Some),
            });
            made = result.ok().flatten().map(|event| (event, past));
        });
        // Room policies are not in the app's state; the model leaves them
        // to tests/native/policy.rs (the digests still must agree).
        if roll == 11 {
            return;
        }
        // The write is acknowledged once durable (see `acknowledge_durable`).
        if let Some((event, past)) = made {
            let acked = Acked {
                key: event.key.to_string(),
                op,
                dot: event.id,
                hlc: event.hlc,
                past,
            };
            self.peers[i].unacked.push((event.id.seq, acked));
            self.acknowledge_durable(i);
        }
    }

    /// Delivers every frame due, links in random order (so frames from
    /// different senders interleave differently every time).
    fn deliver_due(&mut self, faulty: bool) {
        loop {
            let mut due = self.net.due(self.now);
            if due.is_empty() {
                return;
            }
            self.rng.shuffle(&mut due);
            for (from, to) in due {
                self.deliver(from, to, faulty);
            }
        }
    }

    fn deliver(&mut self, from: PeerId, to: PeerId, faulty: bool) {
        {
            let Some(mut frame) = self.net.pop(from, to) else {
                return;
            };
            let Some(i) = self.peers.iter().position(|p| p.id == to) else {
                return;
            };
            if faulty {
                if self.rng.chance(self.faults.drop) {
                    return;
                }
                if self.rng.chance(self.faults.corrupt) && !frame.is_empty() {
                    let at = self.rng.below(frame.len());
                    if self.rng.chance(0.5) {
                        frame[at] ^= 1 << self.rng.below(8);
                    } else {
                        frame.truncate(at);
                    }
                }
                if self.rng.chance(self.faults.duplicate) {
                    let copy = frame.clone();
                    let now = self.now;
                    self.with_node(i, |n| n.receive_frame(from, &copy, now));
                }
            }
            if let Ok(trace) = std::env::var("CPC_SIM_TRACE") {
                let (f, t) = (from.to_string(), to.to_string());
                if trace
                    .split(',')
                    .all(|p| f.starts_with(p) || t.starts_with(p))
                {
                    let what = match cpc_sync::protocol::sync::wire::decode(&frame) {
                        Ok(cpc_sync::protocol::sync::wire::Decoded::Message(m)) => {
                            let text = format!("{m:?}");
                            text.chars().take(160).collect::<String>()
                        }
                        other => format!("{other:?}").chars().take(100).collect(),
                    };
                    println!("{} {}->{}: {what}", self.now, &f[..4], &t[..4]);
                }
            }
            if let Some(adversary) = self.adversary.as_mut().filter(|a| a.index == i) {
                adversary.capture(&frame);
            }
            let now = self.now;
            self.with_node(i, |n| n.receive_frame(from, &frame, now));
        }
    }

    /// The verdicts whose time came, each peer's in the order their
    /// answers were drawn; under faults, now and then a peer's verifier
    /// fails and it verifies what is out in place.
    fn answer_verifications(&mut self, faulty: bool) {
        let Some(verifier) = self.verifier.as_mut() else {
            return;
        };
        let now = self.now;
        let failing: Vec<bool> = (0..self.peers.len())
            .map(|_| faulty && verifier.chance(0.002))
            .collect();
        for (i, fails) in failing.into_iter().enumerate() {
            if fails {
                self.peers[i].verifying.clear();
                self.with_node(i, |n| n.verify_here(now));
                continue;
            }
            let (due, later) = std::mem::take(&mut self.peers[i].verifying)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.peers[i].verifying = later;
            for (_, batch, seals) in due {
                let verdicts = cpc_sync::protocol::seal::verify_packed(&seals);
                self.with_node(i, |n| n.verified(batch, &verdicts, now));
            }
        }
    }

    pub fn crash(&mut self, i: usize) {
        let pairs: Vec<usize> = (0..self.peers.len()).filter(|&j| j != i).collect();
        for j in pairs {
            self.cut(i, j);
        }
        // Nothing in memory survives; what storage committed does.
        self.peers[i].node = None;
        self.peers[i].verifying.clear();
        self.peers[i].disk.crash();
        self.peers[i].restart_at = self.now + 100 + self.rng.below(1500) as u64;
    }

    pub fn restart(&mut self, i: usize) {
        let p = &self.peers[i];
        let storage = p.disk.stored.clone();
        let mut node = SyncNode::restore(
            p.id,
            self.engine_config.clone(),
            SyncConfig {
                identity: p.identity.clone(),
                intake: IntakeBudget::default(),
                ..self.sync.clone()
            },
            storage.snapshot.as_deref(),
            storage.events,
        )
        .expect("own storage restores");
        configure(&mut node);
        self.peers[i].node = Some(node);
        // Writes committed before the crash survive (their acknowledgement
        // was lost with it); the rest are gone, and their sequence numbers
        // will name other writes.
        self.acknowledge_durable(i);
        self.peers[i].unacked.clear();
    }

    fn inject_faults(&mut self) {
        let n = self.peers.len();
        if self.rng.chance(self.faults.disconnect) {
            let (a, b) = (self.rng.below(n), self.rng.below(n));
            if a != b {
                self.cut(a, b);
            }
        }
        if self.rng.chance(self.faults.partition) && self.now >= self.partition_until {
            self.partition_until = self.now + 300 + self.rng.below(2000) as u64;
            for a in 0..n {
                for b in a + 1..n {
                    if self.partitioned(a, b) {
                        self.cut(a, b);
                    }
                }
            }
        }
        if self.rng.chance(self.faults.crash) {
            let i = self.rng.below(n);
            if self.alive(i) && !self.hostile(i) {
                self.crash(i);
            }
        }
    }

    /// One 10 ms step.
    pub fn step(&mut self, faulty: bool, writes: bool) {
        self.now += 10;
        for i in 0..self.peers.len() {
            if !self.alive(i)
                && self.now >= self.peers[i].restart_at
                && (!faulty || self.rng.chance(0.2))
            {
                self.restart(i);
            }
        }
        if faulty {
            self.inject_faults();
        }
        if self.rng.chance(0.05) || !faulty {
            self.connect_all();
        }
        self.deliver_due(faulty);
        self.answer_verifications(faulty);
        self.run_disks();
        let now = self.now;
        for i in 0..self.peers.len() {
            self.with_node(i, |n| n.tick(now));
        }
        if writes && self.rng.chance(0.3) {
            let i = self.rng.below(self.peers.len());
            if !self.hostile(i) {
                self.local_op(i);
            }
        }
        if faulty && self.rng.chance(0.2) {
            self.attack();
        }
    }

    /// Faults and writes for `ms` of virtual time.
    pub fn run_faulty(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.step(true, true);
        }
    }

    /// Heals everything and runs until converged; returns the number of
    /// gossip intervals it took, or `None` within `max_rounds`.
    pub fn heal(&mut self, max_rounds: u64) -> Option<u64> {
        self.partition_until = 0;
        for p in self.peers.iter_mut() {
            p.restart_at = 0;
        }
        let interval = self.sync.gossip_interval_ms;
        for round in 0..=max_rounds {
            let end = self.now + interval;
            while self.now < end {
                self.step(false, false);
            }
            if self.converged() {
                return Some(round);
            }
        }
        None
    }

    /// What each peer has, for a failure message.
    pub fn diagnose(&mut self) -> String {
        let mut out = String::new();
        for p in self.peers.iter_mut() {
            let Some(node) = &mut p.node else {
                out += &format!("{}: crashed\n", p.id);
                continue;
            };
            let digest = node.engine_mut().digest();
            let e = node.engine();
            out += &format!(
                "{}: clock {:?} digest {} held {} pending {:?} snapshot {:?} log {} horizon {:?} sessions {:?} stats {:?}\n",
                p.id,
                e.clock(),
                &digest.to_string()[..8],
                e.holding().len(),
                e.pending_reconciliations(u64::MAX),
                node.snapshot_progress(),
                e.log().len(),
                e.horizon(),
                node.sessions().map(|(p, s)| (p, s.rejected, s.last_error.clone())).collect::<Vec<_>>(),
                e.stats(),
            );
        }
        out += &format!(
            "links up: {}, signed: {}, secret: {}\n",
            self.net.links.len() / 2,
            self.signed,
            self.sync.room.is_some()
        );
        out
    }

    fn diagnose_peers(&self) -> String {
        self.peers
            .iter()
            .filter_map(|p| p.node.as_ref().map(|n| (p.id, n)))
            .map(|(id, n)| {
                let errors: Vec<_> = n
                    .sessions()
                    .map(|(q, s)| (q, s.last_error.clone()))
                    .collect();
                format!("{id}: {:?} {errors:?}\n", n.engine().stats())
            })
            .collect()
    }

    /// The hostile peer's id, if there is one.
    fn hostile_id(&self) -> Option<PeerId> {
        self.adversary.as_ref().map(|a| self.peers[a.index].id)
    }

    /// Whether an honest engine holds nothing but the hostile peer's bombs.
    fn holds_only_bombs(&self, engine: &ReconciliationEngine) -> bool {
        let bomber = self.adversary.as_ref().map(|a| a.origin());
        engine.holding().iter().all(|e| Some(e.id.peer) == bomber)
    }

    pub fn converged(&mut self) -> bool {
        let mut digests = BTreeSet::new();
        let hostile = self.hostile_id();
        for i in 0..self.peers.len() {
            if Some(self.peers[i].id) == hostile {
                continue;
            }
            let Some(node) = &self.peers[i].node else {
                return false;
            };
            if !self.holds_only_bombs(node.engine()) || node.snapshot_progress().is_some() {
                return false;
            }
            let Some(node) = &mut self.peers[i].node else {
                return false;
            };
            let pending = node.engine().pending_reconciliations(u64::MAX);
            if !pending.is_empty() {
                return false;
            }
            digests.insert((
                node.engine_mut().digest(),
                format!("{:?}", node.engine().clock()),
            ));
        }
        digests.len() == 1
    }

    /// The end-state checks: same state everywhere, nothing held, every
    /// acknowledged write present, causal delivery respected.
    pub fn check(&mut self) {
        let hostile = self.hostile_id();
        let honest: Vec<&SimPeer> = self
            .peers
            .iter()
            .filter(|p| Some(p.id) != hostile)
            .collect();
        let states: BTreeSet<String> = honest
            .iter()
            .map(|p| p.node.as_ref().expect("alive").engine().state_json())
            .collect();
        assert_eq!(states.len(), 1, "states differ: {states:#?}");
        let state: serde_json::Value =
            serde_json::from_str(states.iter().next().expect("one")).expect("JSON");
        for p in &honest {
            let engine = p.node.as_ref().expect("alive").engine();
            assert_causal(engine);
            assert!(self.holds_only_bombs(engine));
            assert!(engine.holding().len() <= self.engine_config.holding_per_origin);
            // Honest peers send sealed runs whole: none is ever refused.
            if hostile.is_none() && engine.stats().refused_seal != 0 {
                panic!("{} refused seals\n{}", p.id, self.diagnose_peers());
            }
        }
        if hostile.is_some() {
            // The attacks happened and were refused (not merely missed).
            let refused = self.adversary.as_ref().map_or(0, |a| a.refused);
            assert!(refused > 0, "no hostile input was refused");
        }
        let text = states.iter().next().expect("one");
        assert!(
            !text.contains(adversary::EVIL) && !text.contains("bomb/") && !text.contains("\"far\""),
            "hostile writes got in: {text}"
        );
        // Every acknowledged write is there unless a later one superseded
        // it (see `model.rs`).
        let engines: Vec<&ReconciliationEngine> = honest
            .iter()
            .map(|p| p.node.as_ref().expect("alive").engine())
            .collect();
        self.acked.check(&engines, &state);
    }
}
