//! Held runs that wait on one another, end to end through the wire: a key
//! holder (a valid identity in the room) seals runs that name an honest
//! writer's *next* event (a guess: its clock is public), so the honest
//! writer's next run, which saw them, closes a circle of runs that each
//! wait on the other elsewhere. The engine tries held runs together
//! (`release_together`, src/protocol/engine/runs.rs): such a circle
//! applies, everywhere, and the writer's later runs with it. Key holders'
//! runs that wait on themselves event by event (a dead cycle) stay held,
//! are counted in `circular`, and cost the honest peers nothing else; a
//! stream of small runs naming an event of a held circle costs a bounded
//! number of `joined_checks`.
//!
//! `CPC_SEED=n` replays one seed; `CPC_CIRCLE_SEEDS=n` sets how many run.

use crate::common;

use common::{json, register_write, Rng};
use cpc_sync::protocol::seal;
use cpc_sync::protocol::sync::wire::{self, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::{EventId, Identity, P2PEvent, PeerId};

const NOW: u64 = 1_700_000_000_000;

/// Honest signed nodes in a full mesh, and one connection at each from a
/// key holder, whose frames the test crafts (what is sent to it is
/// dropped). A node may be cut off from the other honest ones (a
/// partition), to hold what they would bring it.
struct Room {
    honest: Vec<SyncNode>,
    /// The connection key holders send through (its id is the key
    /// holder's; it may relay others' sealed runs, as any peer may).
    mallory: PeerId,
    cut: Option<usize>,
    now: u64,
    message_id: u32,
}

impl Room {
    fn new(n: usize, mallory: PeerId) -> Room {
        let mut honest: Vec<SyncNode> = (1..=n as u64)
            .map(|seed| common::signed_node(seed, SyncConfig::default()))
            .collect();
        let ids: Vec<PeerId> = honest.iter().map(SyncNode::peer).collect();
        for node in &mut honest {
            for &other in &ids {
                if other != node.peer() {
                    node.connect(other, NOW);
                }
            }
            node.connect(mallory, NOW);
        }
        let mut room = Room {
            honest,
            mallory,
            cut: None,
            now: NOW,
            message_id: 1,
        };
        room.pump();
        room
    }

    fn id(&self, i: usize) -> PeerId {
        self.honest[i].peer()
    }

    fn index(&self, peer: PeerId) -> Option<usize> {
        self.honest.iter().position(|n| n.peer() == peer)
    }

    /// Carries frames between honest nodes until they are quiet; what they
    /// send the key holder is dropped. No honest node may close another.
    fn pump(&mut self) {
        for _ in 0..500 {
            let mut frames = Vec::new();
            for node in &mut self.honest {
                let from = node.peer();
                for output in node.take_outputs() {
                    match output {
                        Output::Send { to, frame } => frames.push((from, to, frame)),
                        Output::Close { peer, .. } => {
                            panic!("{from} closed {peer}: every run sent here is valid")
                        }
                        _ => {}
                    }
                }
            }
            if frames.is_empty() {
                return;
            }
            for (from, to, frame) in frames {
                if let Some(j) = self.index(to) {
                    self.honest[j].receive_frame(from, &frame, self.now);
                }
            }
        }
        panic!("the honest nodes do not go quiet");
    }

    /// Gossip rounds (a tick at each interval, then frames carried) until
    /// every honest node connected to the others agrees, at most `max`;
    /// how many it took (0: agreed already).
    fn settle(&mut self, max: u64) -> Option<u64> {
        self.pump();
        for round in 0..=max {
            if self.converged() {
                return Some(round);
            }
            self.now += 1_000;
            for node in &mut self.honest {
                node.tick(self.now);
            }
            self.pump();
        }
        None
    }

    /// The connected honest nodes show the same state, clock and digest.
    fn converged(&mut self) -> bool {
        let cut = self.cut;
        let mut seen: Option<(String, cpc_sync::protocol::VectorClock, _)> = None;
        for (i, node) in self.honest.iter_mut().enumerate() {
            if Some(i) == cut {
                continue;
            }
            let view = (
                node.engine().state_json(),
                node.engine().clock().clone(),
                node.digest(),
            );
            match &seen {
                None => seen = Some(view),
                Some(first) if *first != view => return false,
                Some(_) => {}
            }
        }
        true
    }

    fn describe(&self) -> String {
        self.honest
            .iter()
            .map(|n| {
                let e = n.engine();
                format!(
                    "{}: {} applied, {} held, clock {:?}, {:?}\n",
                    n.peer(),
                    e.log().len(),
                    e.holding().len(),
                    e.clock(),
                    e.stats()
                )
            })
            .collect()
    }

    /// The key holder's connection sends `events` to honest node `to`.
    fn send(&mut self, to: usize, events: Vec<P2PEvent>) {
        self.message_id += 1;
        for frame in wire::encode(&Message::Events(events), self.message_id) {
            self.honest[to].receive_frame(self.mallory, &frame, self.now);
        }
    }

    fn write(&mut self, i: usize, key: &str, value: &str) {
        let now = self.now;
        self.honest[i]
            .write(|e| e.set(key, json(value), now).map(Some))
            .expect("an honest write");
    }

    /// Cuts node `i` off from the other honest ones (both ends close).
    fn cut_off(&mut self, i: usize) {
        let me = self.id(i);
        for j in 0..self.honest.len() {
            if j != i {
                let other = self.id(j);
                self.honest[i].disconnect(other);
                self.honest[j].disconnect(me);
            }
        }
        self.cut = Some(i);
    }

    fn heal(&mut self) {
        let Some(i) = self.cut.take() else { return };
        let me = self.id(i);
        for j in 0..self.honest.len() {
            if j != i {
                let other = self.id(j);
                self.honest[i].connect(other, self.now);
                self.honest[j].connect(me, self.now);
            }
        }
    }
}

/// `who`'s events `first..first + len` (register writes of keys
/// `{prefix}/{seq}`), event `first + i` depending on each `(i, peer, seq)`
/// of `deps`, sealed as one run.
fn run(
    who: &Identity,
    first: u64,
    len: u64,
    prefix: &str,
    deps: &[(u64, PeerId, u64)],
) -> Vec<P2PEvent> {
    let mut run: Vec<P2PEvent> = (first..first + len)
        .map(|seq| {
            register_write(
                EventId::new(who.peer(), seq),
                &format!("{prefix}/{seq}"),
                "1",
                NOW,
            )
        })
        .collect();
    for &(i, peer, seq) in deps {
        run[i as usize].deps.set(peer, seq);
    }
    seal::seal(who, &mut run);
    run
}

/// The key holder's guess of an honest writer's next event, through the
/// wire, round after round: key holder K seals A (1 to 6 events), one of
/// which names honest B's next event; 0 to 3 throwaway identities of hers
/// each seal a lone run that names it too, and A names their events. She
/// sends them to B and to some of the others, in a random order. B takes
/// them (held), writes 2 to 4 times in one burst: its first write releases
/// them, its second saw A's last, and its node seals the burst as one run.
/// Elsewhere A (and the lone runs) wait on B's run and B's run waits on
/// A: a circle, which must apply. Every honest node must then agree, hold
/// nothing, and take B's later writes.
#[test]
fn a_guess_of_an_honest_writers_next_event_closes_a_circle_that_applies() {
    common::for_seeds("circles", "CPC_CIRCLE_SEEDS", 6, |seed| {
        let mut rng = Rng::new(seed);
        let k = Identity::from_seed(666);
        let n = 3 + rng.below(3);
        let mut room = Room::new(n, k.peer());
        let mut k_next = 1;
        let mut throwaways = 0;
        let mut gossip_rounds = Vec::new();
        let mut held_elsewhere = 0;
        for round in 0..8u64 {
            let b = rng.below(n);
            let b_peer = room.id(b);
            // B's clock is public: its next event.
            let next = room.honest[b].engine().clock().get(b_peer) + 1;
            let len = 1 + rng.below(6) as u64;
            let guess = rng.below(len as usize) as u64;
            let lone: Vec<Identity> = (0..rng.below(4))
                .map(|_| {
                    throwaways += 1;
                    Identity::from_seed(10_000 + seed % 1_000 * 100 + throwaways)
                })
                .collect();
            let mut deps = vec![(guess, b_peer, next)];
            for t in &lone {
                deps.push((rng.below(len as usize) as u64, t.peer(), 1));
            }
            let a_run = run(&k, k_next, len, &format!("k/{round}"), &deps);
            let a_last = k_next + len - 1;
            k_next += len;
            let lone_runs: Vec<Vec<P2PEvent>> = lone
                .iter()
                .map(|t| run(t, 1, 1, &format!("t/{round}"), &[(0, b_peer, next)]))
                .collect();
            let held = len as usize + lone.len();

            // K sends to B and to some others, each in its own order.
            let mut to: Vec<usize> = (0..n).filter(|&i| i == b || rng.below(2) == 0).collect();
            held_elsewhere += to.len() - 1;
            rng_shuffle(&mut rng, &mut to);
            for &i in &to {
                let mut runs = lone_runs.clone();
                runs.insert(rng.below(runs.len() + 1), a_run.clone());
                for r in runs {
                    room.send(i, r);
                }
                assert_eq!(
                    room.honest[i].engine().holding().len(),
                    held,
                    "seed {seed} round {round}: node {i} holds the guess\n{}",
                    room.describe()
                );
            }
            // Sometimes another honest node writes in the same while.
            if rng.below(2) == 0 {
                let other = rng.below(n);
                if other != b {
                    room.write(other, &format!("o/{round}"), "3");
                }
            }

            // B's burst, one flush: its first write releases K's runs,
            // its second saw A's last.
            let writes = 2 + rng.below(3) as u64;
            for w in 0..writes {
                room.write(b, &format!("b/{round}/{w}"), "2");
                if w == 0 {
                    let e = room.honest[b].engine();
                    assert_eq!(e.clock().get(k.peer()), a_last, "seed {seed}: released");
                    assert!(e.holding().is_empty(), "seed {seed}");
                }
            }
            room.pump();
            {
                let log = room.honest[b].engine().log();
                let second = log.get(EventId::new(b_peer, next + 1)).expect("B2");
                assert_eq!(
                    second.deps.get(k.peer()),
                    a_last,
                    "seed {seed}: B2 saw A's last"
                );
                let last = log
                    .get(EventId::new(b_peer, next + writes - 1))
                    .expect("B's last");
                let sealed = last.seal.as_ref().expect("B's run is sealed");
                assert_eq!(sealed.first, next, "seed {seed}: B's burst is one run");
                assert!(log.get(EventId::new(b_peer, next)).unwrap().seal.is_none());
            }
            // B pushes K's runs its burst released with the burst: every
            // node agrees with no gossip round (before, a node not sent
            // K's runs took them at the next digest round: 711 of 2,400
            // circles over 300 seeds).
            match room.settle(20) {
                Some(0) => gossip_rounds.push((to.len(), 0)),
                Some(rounds) => panic!(
                    "seed {seed} round {round}: agreed only after {rounds} gossip rounds\n{}",
                    room.describe()
                ),
                None => panic!(
                    "seed {seed} round {round}: honest nodes did not converge\n{}",
                    room.describe()
                ),
            }
            for (i, node) in room.honest.iter().enumerate() {
                let e = node.engine();
                assert!(
                    e.holding().is_empty(),
                    "seed {seed} round {round}: node {i} still holds {}\n{}",
                    e.holding().len(),
                    room.describe()
                );
                assert_eq!(e.clock().get(k.peer()), a_last, "seed {seed}");
                assert!(e.clock().get(b_peer) > next + writes - 2, "seed {seed}");
                assert_eq!(e.stats().circular, 0, "seed {seed}: no run is circular");
            }
        }
        // B's (every node's) later writes go everywhere.
        for i in 0..n {
            room.write(i, &format!("later/{i}"), "4");
        }
        assert_eq!(room.settle(20), Some(0), "seed {seed}: later writes pushed");
        let state = room.honest[0].engine().state_json();
        for i in 0..n {
            assert!(state.contains(&format!("later/{i}")), "seed {seed}");
        }
        let checks: Vec<u64> = room
            .honest
            .iter()
            .map(|n| n.engine().stats().joined_checks)
            .collect();
        println!(
            "seed {seed}: {n} honest nodes, 8 circles ({throwaways} throwaway runs, \
             {held_elsewhere} copies sent past B), (nodes sent K's runs, gossip rounds to agree) {gossip_rounds:?}, \
             joined_checks {checks:?}, {} events applied each",
            room.honest[0].engine().log().len()
        );
    });
}

fn rng_shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// Two key holders, P and Q, seal runs that wait on each other event by
/// event (P's event i names Q's j, Q's j names P's i): no order applies
/// them. Sent to some honest nodes, they stay held there and are counted
/// in `circular`; the honest nodes keep writing and agree on everything
/// else. Then a held circle that can apply (K's long run A, naming honest
/// B's next event and a lone event X1 of a third key, and B's run that saw
/// A's last) at a node cut off from the others, which lack nothing. A
/// stream of lone runs of throwaway identities naming an event of each
/// circle reaches that node: each costs a bounded number of
/// `joined_checks`. The cut heals: all that can apply does, everywhere.
#[test]
fn a_dead_cycle_stays_held_and_lone_runs_on_held_circles_cost_little() {
    let seed = common::seed("dead cycle");
    let mut rng = Rng::new(seed);
    let (k, p, q, x) = (
        Identity::from_seed(666),
        Identity::from_seed(667),
        Identity::from_seed(668),
        Identity::from_seed(669),
    );
    let n = 4;
    let mut room = Room::new(n, k.peer());
    for i in 0..n {
        room.write(i, &format!("before/{i}"), "1");
    }
    assert_eq!(room.settle(5), Some(0));

    // The dead cycle: P_i names Q_j and Q_j names P_i.
    // Runs of 2 or more (for lone events, see the fault test below).
    let (p_len, q_len) = (2 + rng.below(7) as u64, 2 + rng.below(7) as u64);
    let (i, j) = (
        1 + rng.below(p_len as usize) as u64,
        1 + rng.below(q_len as usize) as u64,
    );
    let p_run = run(&p, 1, p_len, "p", &[(i - 1, q.peer(), j)]);
    let q_run = run(&q, 1, q_len, "q", &[(j - 1, p.peer(), i)]);
    // B, the honest writer of the live circle below, and the node cut
    // off from the others while it holds it; both hold the dead cycle.
    let victim = rng.below(n);
    let cut = (victim + 1 + rng.below(n - 1)) % n;
    let mut to: Vec<usize> = (0..n)
        .filter(|&v| v == victim || v == cut || rng.below(2) == 0)
        .collect();
    rng_shuffle(&mut rng, &mut to);
    for &v in &to {
        let mut runs = [p_run.clone(), q_run.clone()];
        if rng.below(2) == 0 {
            runs.reverse();
        }
        for (w, r) in runs.into_iter().enumerate() {
            room.send(v, r);
            if w == 0 {
                // An honest write between the halves.
                room.write(v, &format!("between/{v}"), "2");
            }
        }
    }
    let rounds = room.settle(20);
    println!(
        "dead cycle P1..={p_len} (P{i} names Q{j}), Q1..={q_len} (Q{j} names P{i}), \
         sent to {to:?}: agreed after {rounds:?} gossip rounds"
    );
    assert!(rounds.is_some(), "seed {seed}\n{}", room.describe());
    let cycle = (p_len + q_len) as usize;
    for v in 0..n {
        let e = room.honest[v].engine();
        assert_eq!(e.clock().get(p.peer()) + e.clock().get(q.peer()), 0);
        let expected = if to.contains(&v) { cycle } else { 0 };
        assert_eq!(e.holding().len(), expected, "seed {seed}: node {v}");
        assert!(e
            .holding()
            .iter()
            .all(|h| h.id.peer == p.peer() || h.id.peer == q.peer()));
        let circular = if to.contains(&v) { 2 } else { 0 };
        assert_eq!(e.stats().circular, circular, "seed {seed}: node {v}");
        for w in 0..n {
            assert!(e.state_json().contains(&format!("before/{w}")));
        }
    }
    for &v in &to {
        assert!(room.honest[0]
            .engine()
            .state_json()
            .contains(&format!("between/{v}")));
    }

    // A circle that can apply, held at a node cut off from the others.
    let b = victim;
    let b_peer = room.id(b);
    room.cut_off(cut);
    let next = room.honest[b].engine().clock().get(b_peer) + 1;
    let a_len = 64 + rng.below(448) as u64;
    let a_first = 1;
    let a_run = run(
        &k,
        a_first,
        a_len,
        "a",
        &[(0, x.peer(), 1), (a_len - 1, b_peer, next)],
    );
    let x_run = run(&x, 1, 1, "x", &[]);
    room.send(b, x_run);
    room.send(b, a_run.clone());
    room.write(b, "b/1", "2");
    room.write(b, "b/2", "2");
    room.pump();
    let b_run: Vec<P2PEvent> = {
        let log = room.honest[b].engine().log();
        let run: Vec<P2PEvent> = (next..next + 2)
            .map(|s| log.get(EventId::new(b_peer, s)).expect("B's").clone())
            .collect();
        assert_eq!(run[1].deps.get(k.peer()), a_len, "B2 saw A's last");
        assert_eq!(run[1].seal.as_ref().map(|s| s.first), Some(next));
        run
    };
    // The cut-off node gets A and B's run (K relays it), not X1.
    room.send(cut, b_run);
    room.send(cut, a_run);
    let held = room.honest[cut].engine().holding().len();
    assert_eq!(held, cycle + a_len as usize + 2);

    // The stream: lone runs of throwaway identities naming an event of
    // the live circle or of the dead cycle.
    let stream = 200u64;
    let (checks_before, circular_before) = {
        let s = room.honest[cut].engine().stats();
        (s.joined_checks, s.circular)
    };
    let mut on_dead = 0;
    let mut per_run = Vec::new();
    let mut lone_peers = Vec::new();
    for t in 0..stream {
        let lone = Identity::from_seed(50_000 + t);
        lone_peers.push(lone.peer());
        let named = match rng.below(3) {
            0 => {
                on_dead += 1;
                (p.peer(), 1 + rng.below(p_len as usize) as u64)
            }
            1 => (b_peer, next + rng.below(2) as u64),
            _ => (k.peer(), 1 + rng.below(a_len as usize) as u64),
        };
        let before = room.honest[cut].engine().stats().joined_checks;
        room.send(cut, run(&lone, 1, 1, "lone", &[(0, named.0, named.1)]));
        per_run.push(room.honest[cut].engine().stats().joined_checks - before);
    }
    let e = room.honest[cut].engine();
    let checks = e.stats().joined_checks - checks_before;
    let circular = e.stats().circular - circular_before;
    let worst = per_run.iter().max().copied().unwrap_or(0);
    println!(
        "{stream} lone runs on held circles (A of {a_len} events, {on_dead} on the dead cycle): \
         {checks} events checked in all, at most {worst} for one; circular +{circular}; \
         {} held",
        e.holding().len()
    );
    assert_eq!(e.holding().len(), held + stream as usize, "all held");
    assert_eq!(e.log().get(EventId::new(k.peer(), 1)), None);
    assert!(circular >= on_dead, "runs on the dead cycle are circular");
    assert!(
        checks <= 2 * stream,
        "seed {seed}: {checks} events checked for {stream} lone runs"
    );

    // The cut heals: X1 comes, the circle and the stream on it apply.
    room.heal();
    for v in 0..n {
        room.write(v, &format!("after/{v}"), "5");
    }
    let rounds = room.settle(30);
    assert!(
        rounds.is_some(),
        "seed {seed}: not converged after the heal\n{}",
        room.describe()
    );
    let dead = |id: &EventId| id.peer == p.peer() || id.peer == q.peer();
    for v in 0..n {
        let e = room.honest[v].engine();
        assert_eq!(e.clock().get(k.peer()), a_len, "seed {seed}: node {v}");
        assert_eq!(e.clock().get(x.peer()), 1, "seed {seed}: node {v}");
        assert!(e.clock().get(b_peer) > next, "seed {seed}: B2 applied");
        assert!(
            e.holding()
                .iter()
                .all(|h| dead(&h.id) || h.deps.iter().any(|(peer, _)| peer == p.peer())),
            "seed {seed}: node {v} holds only the dead cycle and what names it"
        );
        let state = e.state_json();
        for w in 0..n {
            assert!(state.contains(&format!("after/{w}")), "seed {seed}");
        }
    }
    let applied_lone = lone_peers
        .iter()
        .filter(|&&peer| room.honest[cut].engine().clock().get(peer) == 1)
        .count();
    let e = room.honest[cut].engine();
    println!(
        "healed after {rounds:?} gossip rounds: {applied_lone} lone runs applied at the cut-off \
         node, {} held there (circular {}, joined_checks {})",
        e.holding().len(),
        e.stats().circular,
        e.stats().joined_checks,
    );
    assert_eq!(applied_lone as u64, stream - on_dead, "seed {seed}");
}

/// A dead cycle of lone events, P1 naming Q1 and Q1 naming P1, each
/// sealed as a run of one, stays held (no order applies it) and is counted
/// in `circular`, whether or not a run of two or more events is held
/// beside it. Found by this module: the try that finds such a cycle began
/// only where a longer run was held, so the count depended on unrelated
/// held runs.
#[test]
fn a_dead_cycle_of_lone_events_is_counted_circular() {
    let (p, q, k, x) = (
        Identity::from_seed(667),
        Identity::from_seed(668),
        Identity::from_seed(666),
        Identity::from_seed(669),
    );
    let mut counted = Vec::new();
    for beside in [true, false] {
        let mut room = Room::new(3, k.peer());
        if beside {
            // A run of two, waiting on X1, which never comes.
            room.send(0, run(&k, 1, 2, "k", &[(0, x.peer(), 1)]));
        }
        room.send(0, run(&p, 1, 1, "p", &[(0, q.peer(), 1)]));
        room.send(0, run(&q, 1, 1, "q", &[(0, p.peer(), 1)]));
        room.write(1, "honest", "1");
        assert_eq!(room.settle(5), Some(0));
        let e = room.honest[0].engine();
        assert_eq!(e.holding().len(), 2 + 2 * usize::from(beside));
        assert_eq!(e.clock().get(p.peer()) + e.clock().get(q.peer()), 0);
        counted.push(e.stats().circular);
    }
    println!("circular with a longer run held beside, and without: {counted:?}");
    assert_eq!(
        counted,
        [2, 2],
        "the dead cycle P1 <-> Q1 is counted either way"
    );
}
