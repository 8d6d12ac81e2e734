//! Several engines, random operations of every kind, random delivery with
//! duplicates and delays, and the reconciliation exchange; in the end every
//! engine agrees and no acknowledged write is lost.
//!
//! `CPC_SEED=n` replays one seed; `CPC_SEEDS=n` runs n seeds (default 40).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{assert_causal, assert_converged, engine, json, Rng};
use cpc_sync::protocol::{
    Candidate, ConflictPolicy, JsonValue, P2PEvent, ReconcileStep, ReconciliationEngine,
    ReconciliationRequest, ReconciliationResponse, RECONCILIATION_RETRY_MS,
};

enum Payload {
    Event(P2PEvent),
    Request(ReconciliationRequest),
    Response(ReconciliationResponse),
}

struct Message {
    to: usize,
    payload: Payload,
}

/// What the app was told succeeded, to check against the final state.
#[derive(Default)]
struct Acknowledged {
    counter_sums: BTreeMap<String, i64>,
    added: BTreeMap<String, BTreeSet<String>>,
    removed: BTreeMap<String, BTreeSet<String>>,
}

struct World {
    rng: Rng,
    peers: Vec<ReconciliationEngine>,
    skew: Vec<u64>,
    inflight: Vec<Message>,
    now: u64,
    acked: Acknowledged,
}

fn handler(_key: &str, candidates: &[Candidate]) -> Option<JsonValue> {
    // Deterministic: the largest candidate text wins.
    candidates.iter().map(|c| c.value.clone()).max()
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = 5 + rng.below(3);
        let peers: Vec<ReconciliationEngine> = (0..n)
            .map(|_| {
                let mut e = engine(rng.next_u64() >> 1);
                e.set_policy("m/", ConflictPolicy::MultiValue);
                e.set_policy("rc/", ConflictPolicy::Reconcile);
                e
            })
            .collect();
        let skew = (0..n).map(|_| rng.below(500) as u64).collect();
        World {
            rng,
            peers,
            skew,
            inflight: Vec::new(),
            now: 1_700_000_000_000,
            acked: Acknowledged::default(),
        }
    }

    fn clock(&self, peer: usize) -> u64 {
        self.now + self.skew[peer]
    }

    fn send(&mut self, to: usize, payload: Payload) {
        self.inflight.push(Message { to, payload });
    }

    fn broadcast(&mut self, from: usize, event: &P2PEvent) {
        for to in 0..self.peers.len() {
            if to == from {
                continue;
            }
            let copies = if self.rng.chance(0.1) { 2 } else { 1 };
            for _ in 0..copies {
                self.send(to, Payload::Event(event.clone()));
            }
        }
    }

    fn local_op(&mut self, p: usize) {
        let now = self.clock(p);
        let rng = &mut self.rng;
        let n = rng.below(3);
        let value = json(&rng.below(1000).to_string());
        let member = format!("\"m{}\"", rng.below(6));
        let peer = &mut self.peers[p];
        let event = match rng.below(12) {
            0 | 1 => peer.set(&format!("r/{n}"), value, now).map(Some),
            2 => peer.set(&format!("m/{n}"), value, now).map(Some),
            3 => peer.set(&format!("rc/{n}"), value, now).map(Some),
            4 => {
                let by = rng.below(10) as i64 - 3;
                let key = format!("c/{n}");
                let r = peer.increment(&key, by, now);
                if r.is_ok() {
                    *self.acked.counter_sums.entry(key).or_default() += by;
                }
                r.map(Some)
            }
            5 => peer.increment(&format!("dc/{n}"), 1, now).map(Some),
            6 => {
                let key = format!("s/{n}");
                let r = peer.add(&key, json(&member), now);
                if r.is_ok() {
                    self.acked.added.entry(key).or_default().insert(member);
                }
                r.map(Some)
            }
            7 => {
                let key = format!("s/{n}");
                self.acked
                    .removed
                    .entry(key.clone())
                    .or_default()
                    .insert(member.clone());
                peer.remove(&key, json(&member), now)
            }
            8 => peer.add(&format!("ds/{n}"), json(&member), now).map(Some),
            9 => {
                let key = ["r/", "m/", "dc/", "ds/", "rc/"][rng.below(5)];
                peer.delete(&format!("{key}{n}"), now)
            }
            10 => peer.increment("x/mixed", 1, now).map(Some),
            _ => peer.set("x/mixed", value, now).map(Some),
        };
        // A kind mismatch on the mixed key is the expected typed error.
        if let Ok(Some(event)) = event {
            self.broadcast(p, &event);
        }
    }

    fn reconcile(&mut self, p: usize) -> usize {
        let now = self.clock(p);
        let steps = self.peers[p].reconcile(&mut handler, &|_| true, now);
        let count = steps.len();
        for step in steps {
            match step {
                ReconcileStep::Request(request) => {
                    let to = self.index_of(request.target_peer_id);
                    self.send(to, Payload::Request(request));
                }
                ReconcileStep::Resolved(event) => self.broadcast(p, &event),
            }
        }
        count
    }

    fn index_of(&self, peer: cpc_sync::protocol::PeerId) -> usize {
        self.peers
            .iter()
            .position(|e| e.peer() == peer)
            .expect("known peer")
    }

    fn deliver_one(&mut self) {
        let i = self.rng.below(self.inflight.len());
        let message = self.inflight.swap_remove(i);
        let to = message.to;
        let now = self.clock(to);
        match message.payload {
            Payload::Event(event) => {
                self.peers[to]
                    .receive(event, now)
                    .expect("honest events are taken");
            }
            Payload::Request(request) => {
                let response = self.peers[to]
                    .handle_reconciliation_request(&request, &mut handler, now)
                    .expect("honest requests are answered");
                if let Some(response) = response {
                    for event in response.resolution_events.clone() {
                        self.broadcast(to, &event);
                    }
                    let back = self.index_of(response.source_peer_id);
                    let requester = self.index_of(request.source_peer_id);
                    assert_eq!(back, to);
                    self.send(requester, Payload::Response(response));
                }
            }
            Payload::Response(response) => {
                self.peers[to]
                    .handle_reconciliation_response(&response, now)
                    .expect("response applies");
            }
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.now += self.rng.below(20) as u64;
            let roll = self.rng.below(100);
            let p = self.rng.below(self.peers.len());
            if roll < 45 {
                self.local_op(p);
            } else if roll < 50 {
                self.reconcile(p);
            } else if !self.inflight.is_empty() {
                self.deliver_one();
            }
        }
    }

    /// Delivers everything, runs the exchange until it goes quiet, and
    /// returns how many rounds that took.
    fn heal(&mut self) -> usize {
        for round in 0.. {
            while !self.inflight.is_empty() {
                self.deliver_one();
            }
            self.now += RECONCILIATION_RETRY_MS + 1;
            let steps: usize = (0..self.peers.len()).map(|p| self.reconcile(p)).sum();
            if steps == 0 && self.inflight.is_empty() {
                return round;
            }
            assert!(round < 20, "reconciliation did not terminate");
        }
        unreachable!()
    }

    fn check(&mut self) {
        assert_converged(&mut self.peers);
        let state = self.peers[0].state();
        for peer in &self.peers {
            assert_causal(peer);
            assert!(peer.pending_reconciliations(self.now).is_empty());
            assert!(
                peer.conflicts().iter().all(|c| !c.key.starts_with("rc/")),
                "{:?}",
                peer.conflicts()
            );
        }
        for (key, sum) in &self.acked.counter_sums {
            assert_eq!(state[key], serde_json::json!(sum), "counter {key}");
        }
        for (key, added) in &self.acked.added {
            let removed = self.acked.removed.get(key).cloned().unwrap_or_default();
            for member in added.difference(&removed) {
                let member: serde_json::Value = serde_json::from_str(member).unwrap();
                let members = state[key].as_array().cloned().unwrap_or_default();
                assert!(members.contains(&member), "{key} lost {member}");
            }
        }
    }
}

fn run_seed(seed: u64) {
    let mut world = World::new(seed);
    world.run(400);
    let rounds = world.heal();
    world.check();
    assert!(rounds <= 4, "seed {seed}: {rounds} reconciliation rounds");
}

#[test]
fn random_peers_converge_without_losing_acknowledged_writes() {
    common::for_seeds("multi_peer", "CPC_SEEDS", 40, run_seed);
}

/// The holding queue against events that wait on many others: the rounds
/// workload's first event of each round depends on every other writer's
/// last one, and is woken by each as it comes (the engine resumes its
/// check where it stopped). Delivered in any order, everything applies,
/// in causal order, to the state of in-order delivery.
#[test]
fn events_waiting_on_many_writers_apply_in_any_order() {
    use cpc_sync::protocol::testing::workload;
    common::for_seeds("many_dependencies", "CPC_SEEDS", 4, |seed| {
        let events = workload::rounds(6_000, 24, 300, 6, seed);
        let mut in_order = engine(1);
        for event in events.clone() {
            in_order.receive(event, 1 << 40).expect("in order");
        }
        let mut order = events;
        Rng::new(seed).shuffle(&mut order);
        let mut shuffled = engine(2);
        for event in order {
            shuffled.receive(event, 1 << 40).expect("taken or held");
        }
        assert_eq!(shuffled.stats().applied, 6_000, "seed {seed}");
        assert!(shuffled.holding().is_empty(), "seed {seed}");
        assert_causal(&shuffled);
        assert_converged(&mut [in_order, shuffled]);
    });
}
