//! A digest or a graft that asks for many events is answered a slice a
//! task (`SyncConfig::answer_slice` events, `answer_slice_bytes` bytes),
//! sealed runs whole, peers in turn, and nothing sent twice.

use crate::common::slow_link::SlowLink;
use crate::common::{json, signed_node};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, Relay, SyncConfig, SyncNode, ANSWER_SLICE_BYTES};
use cpc_sync::protocol::testing::workload;
use cpc_sync::protocol::{EngineConfig, PeerId, ReconciliationEngine};

const NOW: u64 = 1_000;
const EVENTS: usize = 1_000;
const SLICE: usize = 100;
/// Writes per sealed run in the signed host: slices cannot end on the
/// budget, only at a run's end.
const RUN: usize = 37;

fn config() -> SyncConfig {
    SyncConfig {
        answer_slice: SLICE,
        ..SyncConfig::default()
    }
}

/// A node of `config`, signed (by the identity of seed `id`) or not.
fn node(id: u64, signed: bool, config: SyncConfig) -> SyncNode {
    if signed {
        signed_node(id, config)
    } else {
        let engine = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
        SyncNode::new(engine, config)
    }
}

/// Connects `host` and `new`, and hands `host` the digest of `new`: its
/// answer waits in its outputs.
fn ask(host: &mut SyncNode, new: &mut SyncNode) {
    host.connect(new.peer(), NOW);
    new.connect(host.peer(), NOW);
    let hello = frames(host.take_outputs());
    deliver(host.peer(), hello, &mut [&mut *new]);
    let digest = frames(new.take_outputs());
    deliver(new.peer(), digest, &mut [&mut *host]);
}

/// A host holding `EVENTS` writes of its own, in runs of `RUN`.
fn host(signed: bool) -> SyncNode {
    let mut host = node(1, signed, config());
    for i in 0..EVENTS {
        host.write(|e| e.set(&format!("k{i}"), json(&i.to_string()), NOW).map(Some))
            .unwrap();
        if (i + 1) % RUN == 0 {
            host.take_outputs();
        }
    }
    host.take_outputs();
    // Its gossip timer set: due again only an interval on.
    host.tick(NOW);
    host
}

fn newcomer(signed: bool, seed: u64) -> SyncNode {
    node(seed, signed, config())
}

/// The frames of `outputs`, by recipient, with how many events each
/// carries.
fn frames(outputs: Vec<Output>) -> Vec<(PeerId, Vec<u8>, usize)> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, frame } => {
                let events = match wire::decode(&frame) {
                    Ok(Decoded::Message(Message::Events(events))) => events.len(),
                    _ => 0,
                };
                Some((to, frame, events))
            }
            _ => None,
        })
        .collect()
}

/// Delivers `frames` to whichever of `nodes` they are for.
fn deliver(from: PeerId, frames: Vec<(PeerId, Vec<u8>, usize)>, nodes: &mut [&mut SyncNode]) {
    for (to, frame, _) in frames {
        if let Some(n) = nodes.iter_mut().find(|n| n.peer() == to) {
            n.receive_frame(from, &frame, NOW);
        }
    }
}

fn events_in(frames: &[(PeerId, Vec<u8>, usize)]) -> usize {
    frames.iter().map(|(_, _, n)| n).sum()
}

/// A host and a newcomer, connected (what the host said on connecting
/// taken, not delivered).
fn connected(signed: bool) -> (SyncNode, SyncNode) {
    let mut host = host(signed);
    let mut new = newcomer(signed, 2);
    host.connect(new.peer(), NOW);
    new.connect(host.peer(), NOW);
    (host, new)
}

/// The host's tasks answering one newcomer, the first being the task of
/// its digest: how many events each sent.
fn answer_one(signed: bool) -> (SyncNode, SyncNode, Vec<usize>) {
    let (mut host, mut new) = connected(signed);
    let hello = frames(host.take_outputs());
    deliver(host.peer(), hello, &mut [&mut new]);
    let digest = frames(new.take_outputs());
    deliver(new.peer(), digest, &mut [&mut host]);
    let mut tasks = Vec::new();
    loop {
        let out = frames(host.take_outputs());
        tasks.push(events_in(&out));
        deliver(host.peer(), out, &mut [&mut new]);
        new.take_outputs();
        if host.next_timer() > NOW {
            break;
        }
        assert!(tasks.len() < 100, "the answer does not end");
        host.tick(NOW);
    }
    (host, new, tasks)
}

fn answered_a_slice_a_task(signed: bool) {
    let (mut host, mut new, tasks) = answer_one(signed);
    let most = if signed { SLICE + RUN - 1 } else { SLICE };
    assert!(
        tasks.iter().all(|&n| n <= most),
        "at most {most} events a task: {tasks:?}"
    );
    assert!(tasks.len() >= EVENTS / most, "{tasks:?}");
    assert_eq!(tasks.iter().sum::<usize>(), EVENTS, "each event once");
    assert_eq!(new.engine().clock(), host.engine().clock());
    assert_eq!(new.digest(), host.digest());
    let stats = new.stats(host.peer()).unwrap();
    assert_eq!(stats.rejected, 0, "{:?}", stats.last_error);
}

#[test]
fn a_digest_asking_for_many_events_is_answered_a_slice_a_task() {
    answered_a_slice_a_task(false);
}

#[test]
fn a_signed_answer_is_sliced_at_the_ends_of_runs() {
    answered_a_slice_a_task(true);
}

#[test]
fn a_digest_crossing_the_answer_is_not_sent_what_is_on_its_way() {
    let (mut host, mut new) = connected(false);
    new.take_outputs();
    // The newcomer's digest, twice: the second sent before the first
    // slice reached it.
    let digest = Message::Digest {
        clock: new.engine().clock().clone(),
        root: new.digest(),
    };
    let frame = wire::encode(&digest, 0).remove(0);
    host.receive_frame(new.peer(), &frame, NOW);
    let first = events_in(&frames(host.take_outputs()));
    assert_eq!(first, SLICE);
    host.receive_frame(new.peer(), &frame, NOW);
    let mut sent = first + events_in(&frames(host.take_outputs()));
    while host.next_timer() <= NOW {
        host.tick(NOW);
        sent += events_in(&frames(host.take_outputs()));
    }
    assert_eq!(sent, EVENTS, "each event once");
    assert_eq!(host.stats(new.peer()).unwrap().events_out, EVENTS as u64);
}

#[test]
fn peers_owed_events_are_served_in_turn() {
    let mut host = host(false);
    let (mut a, mut b) = (newcomer(false, 2), newcomer(false, 3));
    for n in [&mut a, &mut b] {
        host.connect(n.peer(), NOW);
        n.connect(host.peer(), NOW);
    }
    host.take_outputs();
    // Each digest's task sends its sender a slice; then a task sends a
    // slice, to one peer and the other in turn.
    let mut order = Vec::new();
    let mut sent = [0; 2];
    for n in [&mut a, &mut b] {
        let digest = frames(n.take_outputs());
        deliver(n.peer(), digest, &mut [&mut host]);
        let out = frames(host.take_outputs());
        assert_eq!(events_in(&out), SLICE);
        sent[usize::from(n.peer() == PeerId(3))] += SLICE;
        order.push(n.peer());
    }
    host.tick(NOW);
    loop {
        let out = frames(host.take_outputs());
        let to: Vec<PeerId> = out
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(to, _, _)| *to)
            .collect();
        for (to, _, n) in &out {
            sent[usize::from(*to == b.peer())] += n;
        }
        if let Some(&first) = to.first() {
            assert!(to.iter().all(|&p| p == first), "one peer a task: {to:?}");
            order.push(first);
        }
        if host.next_timer() > NOW {
            break;
        }
        assert!(order.len() < 100, "the answers do not end");
        host.tick(NOW);
    }
    assert_eq!(sent, [EVENTS, EVENTS]);
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "peers in turn: {order:?}"
    );
}

#[test]
fn a_peer_that_leaves_is_owed_nothing() {
    let (mut host, mut new) = connected(false);
    host.take_outputs();
    let digest = frames(new.take_outputs());
    deliver(new.peer(), digest, &mut [&mut host]);
    assert_eq!(events_in(&frames(host.take_outputs())), SLICE);
    assert!(host.next_timer() <= NOW, "the rest is due at once");
    host.disconnect(new.peer());
    assert!(host.next_timer() > NOW, "nothing is owed");
    host.tick(NOW);
    assert_eq!(events_in(&frames(host.take_outputs())), 0);
}

#[test]
fn a_graft_for_everything_is_answered_a_slice_a_task() {
    // An attacker with no key to the room's log still cannot make a
    // node copy and frame its whole log in one task: a graft naming an
    // origin from its first event is owed, not answered at once.
    let (mut host, new) = connected(false);
    host.take_outputs();
    let graft = Message::Graft(vec![(host.peer(), 0)]);
    let frame = wire::encode(&graft, 0).remove(0);
    host.receive_frame(new.peer(), &frame, NOW);
    let mut tasks = vec![events_in(&frames(host.take_outputs()))];
    while host.next_timer() <= NOW {
        host.tick(NOW);
        tasks.push(events_in(&frames(host.take_outputs())));
    }
    assert!(tasks.iter().all(|&n| n <= SLICE), "{tasks:?}");
    assert_eq!(tasks.iter().sum::<usize>(), EVENTS, "{tasks:?}");
}

#[test]
fn an_answer_waits_while_the_link_is_backlogged() {
    let (mut host, mut new) = connected(false);
    host.take_outputs();
    host.set_backlogged(new.peer(), true);
    let digest = frames(new.take_outputs());
    deliver(new.peer(), digest, &mut [&mut host]);
    assert_eq!(events_in(&frames(host.take_outputs())), 0);
    assert!(host.next_timer() > NOW, "not due while backlogged");
    host.tick(NOW);
    assert_eq!(events_in(&frames(host.take_outputs())), 0);
    // Drained: a slice a task again, and the whole answer once.
    host.set_backlogged(new.peer(), false);
    assert!(host.next_timer() <= NOW, "due at once");
    let mut tasks = Vec::new();
    while host.next_timer() <= NOW {
        host.tick(NOW);
        tasks.push(events_in(&frames(host.take_outputs())));
        if tasks.len() == 3 {
            // Backlogged halfway: the rest waits again.
            host.set_backlogged(new.peer(), true);
            assert!(host.next_timer() > NOW);
            host.set_backlogged(new.peer(), false);
        }
    }
    assert!(tasks.iter().all(|&n| n <= SLICE), "{tasks:?}");
    assert_eq!(tasks.iter().sum::<usize>(), EVENTS, "{tasks:?}");
}

/// Events of large values are answered a megabyte a task, not
/// `answer_slice` of them: 8,192 events of 20 KB would be 160 MB framed
/// in one task and queued for one link (a room peer's page would be cut
/// off for not reading them fast enough).
#[test]
fn large_values_are_answered_a_megabyte_a_task() {
    const LARGE: usize = 300;
    let value = format!("\"{}\"", "v".repeat(20_000));
    for signed in [false, true] {
        let mut host = node(1, signed, SyncConfig::default());
        for i in 0..LARGE {
            host.write(|e| e.set(&format!("k{i}"), json(&value), NOW).map(Some))
                .unwrap();
            if (i + 1) % RUN == 0 {
                host.take_outputs();
            }
        }
        host.take_outputs();
        host.tick(NOW);
        let mut new = node(2, signed, SyncConfig::default());
        ask(&mut host, &mut new);
        // Bytes framed a task, and events.
        let mut tasks: Vec<(usize, usize)> = Vec::new();
        loop {
            let out = frames(host.take_outputs());
            let bytes = out.iter().map(|(_, f, _)| f.len()).sum();
            let had = new.engine().clock().get(host.peer());
            deliver(host.peer(), out, &mut [&mut new]);
            let got = new.engine().clock().get(host.peer()) - had;
            tasks.push((bytes, got as usize));
            new.take_outputs();
            if host.next_timer() > NOW {
                break;
            }
            assert!(tasks.len() < 100, "the answer does not end");
            host.tick(NOW);
        }
        // A signed run goes whole past the budget: `RUN` events of 20 KB.
        let most = ANSWER_SLICE_BYTES + if signed { RUN * 21_000 } else { 21_000 };
        assert!(
            tasks.iter().all(|&(bytes, _)| bytes <= most),
            "at most {most} bytes a task (signed: {signed}): {tasks:?}"
        );
        assert!(tasks.len() >= 5, "{tasks:?}");
        assert_eq!(tasks.iter().map(|t| t.1).sum::<usize>(), LARGE, "{tasks:?}");
        assert_eq!(new.digest(), host.digest(), "signed: {signed}");
    }
}

/// A digest sent before the answer reached its sender, once the answer
/// has all gone out, is not sent the answer again, whichever way the
/// node relays (the room peer floods): what went to a peer since the last
/// gossip tick is on its way, and a digest after the next tick asks again
/// for what did not come.
#[test]
fn a_digest_crossing_a_finished_answer_is_not_sent_it_again() {
    for relay in [Relay::Pull, Relay::Flood] {
        let config = SyncConfig { relay, ..config() };
        let mut host = node(1, false, config.clone());
        for i in 0..EVENTS {
            host.write(|e| e.set(&format!("k{i}"), json(&i.to_string()), NOW).map(Some))
                .unwrap();
        }
        host.take_outputs();
        host.tick(NOW);
        let mut new = node(2, false, config);
        ask(&mut host, &mut new);
        // The whole answer goes out; only its first slice has arrived when
        // the newcomer's next digest leaves.
        let mut answer = frames(host.take_outputs());
        while host.next_timer() <= NOW {
            host.tick(NOW);
            answer.extend(frames(host.take_outputs()));
        }
        assert_eq!(events_in(&answer), EVENTS);
        let rest = answer.split_off(answer.iter().position(|f| f.2 > 0).unwrap() + 1);
        deliver(host.peer(), answer, &mut [&mut new]);
        let have = new.engine().clock().get(host.peer());
        assert!(0 < have && have < EVENTS as u64);
        let digest = Message::Digest {
            clock: new.engine().clock().clone(),
            root: new.digest(),
        };
        let frame = wire::encode(&digest, 0).remove(0);
        host.receive_frame(new.peer(), &frame, NOW);
        let mut again = events_in(&frames(host.take_outputs()));
        while host.next_timer() <= NOW {
            host.tick(NOW);
            again += events_in(&frames(host.take_outputs()));
        }
        assert_eq!(again, 0, "{relay:?}: sent again");
        deliver(host.peer(), rest, &mut [&mut new]);
        assert_eq!(new.digest(), host.digest(), "{relay:?}");
    }
}

/// A newcomer joins over a slow link a host of 8 writers' 2,000 values
/// of 500 bytes each (8 MB): the answer takes several gossip intervals,
/// paced by the link's backlog, and the newcomer's digests cross what is
/// on its way. Each event reaches it once: what was told it is on its way
/// while the link holds a backlog and an interval after (`Told`). Before,
/// what was told it before the last gossip tick was sent again: 18,309
/// events for 16,000 at 1 MB/s.
#[test]
fn a_newcomer_on_a_slow_link_is_sent_each_event_once() {
    const WRITERS: u64 = 8;
    const WRITES: usize = 2_000;
    let value = format!("\"{}\"", "v".repeat(500));
    for (signed, bytes_per_ms, latency_ms) in
        [(false, 1_000, 40), (false, 250, 150), (true, 1_000, 40)]
    {
        let mut host = node(1, signed, SyncConfig::default());
        for w in 0..WRITERS {
            let mut writer = node(10 + w, signed, SyncConfig::default());
            for i in 0..WRITES {
                writer
                    .write(|e| e.set(&format!("w{w}k{i}"), json(&value), NOW).map(Some))
                    .unwrap();
                if (i + 1) % RUN == 0 {
                    writer.take_outputs();
                }
            }
            writer.take_outputs();
            let events: Vec<_> = writer.engine().log().iter().cloned().collect();
            if signed {
                workload::apply_verified(host.engine_mut(), events, NOW);
            } else {
                for e in events {
                    host.engine_mut().receive(e, NOW).unwrap();
                }
            }
        }
        let total = WRITERS as usize * WRITES;
        assert_eq!(host.engine().log().len(), total);
        let mut new = node(2, signed, SyncConfig::default());
        host.connect(new.peer(), NOW);
        new.connect(host.peer(), NOW);
        let mut down = SlowLink::new(bytes_per_ms, latency_ms);
        let mut up = SlowLink::new(bytes_per_ms, latency_ms);
        let mut received = 0;
        let mut now = NOW;
        while !(new.engine().clock() == host.engine().clock() && down.is_idle()) {
            assert!(now < NOW + 600_000, "the newcomer does not catch up");
            for (node, link) in [(&mut host, &mut down), (&mut new, &mut up)] {
                if node.next_timer() <= now {
                    node.tick(now);
                }
                for output in node.take_outputs() {
                    if let Output::Send { frame, .. } = output {
                        link.push(frame);
                    }
                }
            }
            if let Some(backlogged) = down.step(now) {
                host.set_backlogged(new.peer(), backlogged);
            }
            up.step(now);
            for frame in down.arrived(now) {
                if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(&frame) {
                    received += events.len();
                }
                new.receive_frame(host.peer(), &frame, now);
            }
            for frame in up.arrived(now) {
                host.receive_frame(new.peer(), &frame, now);
            }
            now += 1;
        }
        eprintln!(
            "signed {signed}, {bytes_per_ms} B/ms, {latency_ms} ms: caught up in {} ms, \
             {received} events received for {total}",
            now - NOW
        );
        assert_eq!(
            received, total,
            "each event once (signed {signed}, {bytes_per_ms} B/ms)"
        );
        assert_eq!(new.digest(), host.digest());
    }
}
