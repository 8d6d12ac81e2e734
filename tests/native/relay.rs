//! Announced relay at the sync node: with `Relay::Pull` a relay announces
//! (`IHave`) and the peer that lacks the events grafts the first
//! announcer; with `Relay::Tree` (PlumTree) a duplicate push prunes its
//! link, lazy links get `IHave`s, a missing announcement is grafted. What
//! a lying peer sends (`IHave`s of events it does not have, graft floods,
//! prune storms) is bounded, refused with a typed error, and counted.

use crate::common;

use std::collections::VecDeque;

use common::{json, signed_node};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{
    Output, Refusal, Relay, SyncConfig, SyncNode, GRAFT_BATCH_MS, IHAVE_TIMEOUT_MS, MAX_ANNOUNCED,
    MAX_AWAITED_PER_PEER, MAX_GRAFTS_PER_INTERVAL, MAX_PRUNES_PER_INTERVAL,
};
use cpc_sync::protocol::{Hash32, PeerId, VectorClock};

const NOW: u64 = 1_700_000_000_000;

fn tree() -> SyncConfig {
    SyncConfig {
        relay: Relay::Tree,
        ..SyncConfig::default()
    }
}

fn pull() -> SyncConfig {
    SyncConfig {
        relay: Relay::Pull,
        ..SyncConfig::default()
    }
}

/// `a` (PlumTree), connected to Mallory (seed 666), her opening digest
/// answered and its outputs taken.
fn victim() -> (SyncNode, PeerId) {
    let mut a = signed_node(1, tree());
    let mallory = signed_node(666, tree()).peer();
    a.connect(mallory, NOW);
    a.take_outputs();
    (a, mallory)
}

fn say(to: &mut SyncNode, from: PeerId, message: &Message, now: u64) {
    for frame in wire::encode(message, 1) {
        to.receive_frame(from, &frame, now);
    }
}

/// What `node` sends, decoded, and what it refused.
fn drain(node: &mut SyncNode) -> (Vec<(PeerId, Message)>, Vec<Refusal>) {
    let mut sent = Vec::new();
    let mut refused = Vec::new();
    for output in node.take_outputs() {
        match output {
            Output::Send { to, frame } => {
                if let Ok(Decoded::Message(m)) = wire::decode(&frame) {
                    sent.push((to, m));
                }
            }
            Output::Rejected { refusal, .. } => refused.push(refusal),
            _ => {}
        }
    }
    (sent, refused)
}

fn write(node: &mut SyncNode, key: &str, now: u64) {
    node.write(|e| e.set(key, json("1"), now).map(Some))
        .expect("a write");
}

/// Delivers every frame the nodes send, in order, until none is left;
/// returns the messages delivered (from, to, message).
fn pump(nodes: &mut [SyncNode], now: u64) -> Vec<(PeerId, PeerId, Message)> {
    let mut log = Vec::new();
    let mut queue = VecDeque::new();
    loop {
        for node in nodes.iter_mut() {
            let from = node.peer();
            for output in node.take_outputs() {
                if let Output::Send { to, frame } = output {
                    queue.push_back((from, to, frame));
                }
            }
        }
        let Some((from, to, frame)) = queue.pop_front() else {
            return log;
        };
        if let Ok(Decoded::Message(m)) = wire::decode(&frame) {
            log.push((from, to, m));
        }
        if let Some(node) = nodes.iter_mut().find(|n| n.peer() == to) {
            node.receive_frame(from, &frame, now);
        }
    }
}

fn carries(message: &Message, key: &str) -> bool {
    matches!(message, Message::Events(events) if events.iter().any(|e| &*e.key == key))
}

#[test]
fn a_duplicate_push_prunes_its_link_and_an_ihave_replaces_it() {
    let mut nodes: Vec<SyncNode> = (1..=3).map(|s| signed_node(s, tree())).collect();
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer()).collect();
    for node in nodes.iter_mut() {
        let me = node.peer();
        for &other in ids.iter().filter(|&&p| p != me) {
            node.connect(other, NOW);
        }
    }
    pump(&mut nodes, NOW);
    write(&mut nodes[0], "first", NOW);
    let first = pump(&mut nodes, NOW);
    let prunes = first
        .iter()
        .filter(|(_, _, m)| *m == Message::Prune)
        .count();
    assert!(prunes >= 1, "the relayed copy was a duplicate: {first:?}");
    write(&mut nodes[0], "second", NOW + 10);
    let second = pump(&mut nodes, NOW + 10);
    let copies = second
        .iter()
        .filter(|(_, _, m)| carries(m, "second"))
        .count();
    assert_eq!(copies, 2, "one copy per peer: {second:?}");
    assert!(second
        .iter()
        .any(|(_, _, m)| matches!(m, Message::IHave(_))));
    for node in &nodes {
        assert!(node.engine().get("second").is_some());
    }
}

#[test]
fn an_ihave_whose_events_do_not_come_grafts_its_sender_who_sends_them() {
    // Bob has three writes; Alice hears of them by an IHave only.
    let mut alice = signed_node(1, tree());
    let mut bob = signed_node(2, tree());
    let (a, b) = (alice.peer(), bob.peer());
    for k in 0..3 {
        write(&mut bob, &format!("k{k}"), NOW);
    }
    bob.take_outputs();
    alice.connect(b, NOW);
    alice.take_outputs();
    say(&mut alice, b, &Message::IHave(vec![(b, 3)]), NOW);
    let (sent, refused) = drain(&mut alice);
    assert!(refused.is_empty() && sent.is_empty());
    assert!(alice.next_timer() <= NOW + IHAVE_TIMEOUT_MS);
    alice.tick(NOW + IHAVE_TIMEOUT_MS - 1);
    let (sent, _) = drain(&mut alice);
    assert!(!sent.iter().any(|(_, m)| matches!(m, Message::Graft(_))));
    alice.tick(NOW + IHAVE_TIMEOUT_MS);
    let (sent, _) = drain(&mut alice);
    let graft = Message::Graft(vec![(b, 0)]);
    assert!(sent.contains(&(b, graft.clone())), "{sent:?}");
    // Bob answers a graft with what the grafter lacks.
    bob.connect(a, NOW);
    bob.take_outputs();
    say(&mut bob, a, &graft, NOW + IHAVE_TIMEOUT_MS);
    let (sent, refused) = drain(&mut bob);
    assert!(refused.is_empty());
    let events = event_seqs(&sent);
    assert_eq!(events, vec![1, 2, 3]);
}

#[test]
fn an_ihave_its_senders_digest_contradicts_is_refused_and_not_grafted() {
    let (mut a, mallory) = victim();
    let ghost = PeerId(4242);
    say(&mut a, mallory, &Message::IHave(vec![(ghost, 5)]), NOW);
    let clock: VectorClock = [(ghost, 2)].into_iter().collect();
    say(
        &mut a,
        mallory,
        &Message::Digest {
            clock,
            root: Hash32::ZERO,
        },
        NOW + 1,
    );
    let (_, refused) = drain(&mut a);
    assert_eq!(
        refused,
        vec![Refusal::UnfoundedIHave {
            origin: ghost,
            seq: 5
        }]
    );
    a.tick(NOW + 10 * IHAVE_TIMEOUT_MS);
    let (sent, _) = drain(&mut a);
    assert!(!sent.iter().any(|(_, m)| matches!(m, Message::Graft(_))));
    assert_eq!(a.stats(mallory).map(|s| s.rejected), Some(1));
    // Announcing our own events beyond what we wrote is a lie at once.
    let me = a.peer();
    say(&mut a, mallory, &Message::IHave(vec![(me, 1)]), NOW + 2);
    let (_, refused) = drain(&mut a);
    assert_eq!(
        refused,
        vec![Refusal::UnfoundedIHave { origin: me, seq: 1 }]
    );
}

#[test]
fn announcements_are_bounded_per_message_and_per_peer() {
    let (mut a, mallory) = victim();
    let entries = |from: u64, n: u64| (from..from + n).map(|i| (PeerId(i), 1)).collect();
    say(
        &mut a,
        mallory,
        &Message::IHave(entries(1_000, MAX_ANNOUNCED as u64 + 1)),
        NOW,
    );
    let (_, refused) = drain(&mut a);
    assert_eq!(
        refused,
        vec![Refusal::AnnouncementTooLarge(MAX_ANNOUNCED + 1)]
    );
    let mut next = 10_000;
    for _ in 0..MAX_AWAITED_PER_PEER / MAX_ANNOUNCED {
        say(
            &mut a,
            mallory,
            &Message::IHave(entries(next, MAX_ANNOUNCED as u64)),
            NOW,
        );
        next += MAX_ANNOUNCED as u64;
    }
    assert!(drain(&mut a).1.is_empty(), "within the bound");
    say(&mut a, mallory, &Message::IHave(entries(next, 1)), NOW);
    let (_, refused) = drain(&mut a);
    assert_eq!(
        refused,
        vec![Refusal::TooManyAnnounced(MAX_AWAITED_PER_PEER)]
    );
    // Grafted in turn: one message per announcer, each within the bound.
    a.tick(NOW + IHAVE_TIMEOUT_MS);
    let (sent, _) = drain(&mut a);
    let grafts: Vec<usize> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Graft(e) => Some(e.len()),
            _ => None,
        })
        .collect();
    assert_eq!(grafts.iter().sum::<usize>(), MAX_AWAITED_PER_PEER);
    assert!(grafts.iter().all(|&n| n <= MAX_ANNOUNCED));
}

#[test]
fn a_graft_flood_is_refused_past_the_rate_and_asking_twice_brings_nothing_twice() {
    let (mut a, mallory) = victim();
    // A lazy link: the write is announced to her, not sent.
    say(&mut a, mallory, &Message::Prune, NOW);
    write(&mut a, "k", NOW);
    a.take_outputs();
    let me = a.peer();
    let mut answered = 0;
    let mut refused = Vec::new();
    for _ in 0..MAX_GRAFTS_PER_INTERVAL + 10 {
        say(&mut a, mallory, &Message::Graft(vec![(me, 0)]), NOW);
        let (sent, r) = drain(&mut a);
        answered += sent
            .iter()
            .filter(|(_, m)| matches!(m, Message::Events(_)))
            .count();
        refused.extend(r);
    }
    assert_eq!(answered, 1, "what was sent is not sent again");
    assert_eq!(refused.len(), 10);
    assert!(refused
        .iter()
        .all(|r| *r == Refusal::GraftFlood(MAX_GRAFTS_PER_INTERVAL)));
    assert_eq!(a.stats(mallory).map(|s| s.rejected), Some(10));
    // The allowance comes back at the next gossip interval.
    a.tick(NOW + 1_000);
    // The graft made the link eager: lazy again, for the next write.
    say(&mut a, mallory, &Message::Prune, NOW + 1_000);
    write(&mut a, "k2", NOW + 1_000);
    a.take_outputs();
    say(&mut a, mallory, &Message::Graft(vec![(me, 1)]), NOW + 1_000);
    let (sent, refused) = drain(&mut a);
    assert!(refused.is_empty());
    let seqs = event_seqs(&sent);
    assert_eq!(seqs, vec![2]);
}

/// Three peers in a line, `a - b - c`, relaying by pull: `a`'s write
/// reaches `b` whole; `b` announces it to `c`, which grafts `b` at once
/// and takes one copy. A second announcement within `GRAFT_BATCH_MS` of
/// that graft waits for the end of the window.
#[test]
fn pulled_relay_takes_one_copy_from_the_announcer() {
    let mut nodes: Vec<SyncNode> = (1..=3).map(|s| signed_node(s, pull())).collect();
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer()).collect();
    for (i, j) in [(0, 1), (1, 2)] {
        nodes[i].connect(ids[j], NOW);
        nodes[j].connect(ids[i], NOW);
    }
    for node in nodes.iter_mut() {
        node.tick(NOW);
    }
    pump(&mut nodes, NOW);
    write(&mut nodes[0], "k", NOW);
    let first = pump(&mut nodes, NOW);
    assert!(first.contains(&(ids[1], ids[2], Message::IHave(vec![(ids[0], 1)]))));
    assert!(first.contains(&(ids[2], ids[1], Message::Graft(vec![(ids[0], 0)]))));
    let copies = first
        .iter()
        .filter(|(_, to, m)| *to == ids[2] && carries(m, "k"))
        .count();
    assert_eq!(copies, 1);
    assert!(nodes[2].engine().get("k").is_some());
    // Within the window: announced, grafted at its end.
    write(&mut nodes[0], "k2", NOW + 1);
    let second = pump(&mut nodes, NOW + 1);
    assert!(!second
        .iter()
        .any(|(_, _, m)| matches!(m, Message::Graft(_))));
    assert!(nodes[2].engine().get("k2").is_none());
    let due = nodes[2].next_timer();
    assert_eq!(due, NOW + GRAFT_BATCH_MS - NOW % GRAFT_BATCH_MS);
    for node in nodes.iter_mut() {
        node.tick(due);
    }
    let third = pump(&mut nodes, due);
    assert!(third.contains(&(ids[2], ids[1], Message::Graft(vec![(ids[0], 1)]))));
    assert!(nodes[2].engine().get("k2").is_some());
}

/// In a full mesh (a small room) a write goes to every peer at once, and
/// relays cost only announcements: one copy a peer, one hop.
#[test]
fn pulled_relay_in_a_full_mesh_sends_one_copy_a_peer() {
    let mut nodes: Vec<SyncNode> = (1..=4).map(|s| signed_node(s, pull())).collect();
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer()).collect();
    for node in nodes.iter_mut() {
        let me = node.peer();
        for &other in ids.iter().filter(|&&p| p != me) {
            node.connect(other, NOW);
        }
        node.tick(NOW);
    }
    pump(&mut nodes, NOW);
    write(&mut nodes[0], "k", NOW);
    let mut log = pump(&mut nodes, NOW);
    for node in nodes.iter_mut() {
        node.tick(NOW + GRAFT_BATCH_MS);
    }
    log.extend(pump(&mut nodes, NOW + GRAFT_BATCH_MS));
    let copies = log.iter().filter(|(_, _, m)| carries(m, "k")).count();
    assert_eq!(copies, 3);
    assert!(!log.iter().any(|(_, _, m)| matches!(m, Message::Graft(_))));
    for node in &nodes {
        assert!(node.engine().get("k").is_some());
    }
}

#[test]
fn a_prune_storm_is_refused_past_the_rate() {
    let (mut a, mallory) = victim();
    let mut refused = Vec::new();
    for _ in 0..MAX_PRUNES_PER_INTERVAL + 5 {
        say(&mut a, mallory, &Message::Prune, NOW);
        refused.extend(drain(&mut a).1);
    }
    assert_eq!(
        refused,
        vec![Refusal::PruneFlood(MAX_PRUNES_PER_INTERVAL); 5]
    );
    // Pruned, the link is lazy: a write of ours is announced, not pushed.
    write(&mut a, "k", NOW);
    let (sent, _) = drain(&mut a);
    let me = a.peer();
    assert!(sent.contains(&(mallory, Message::IHave(vec![(me, 1)]))));
    assert!(!sent.iter().any(|(_, m)| matches!(m, Message::Events(_))));
}

/// Events held for batch verification (the browser's window) are not
/// grafted again when another peer announces them meanwhile.
#[test]
fn events_held_for_verification_are_not_grafted_again() {
    let config = SyncConfig {
        verify_window_ms: Some(2),
        ..pull()
    };
    let mut alice = signed_node(1, config);
    let mut bob = signed_node(2, pull());
    let carol = signed_node(3, pull()).peer();
    let (a, b) = (alice.peer(), bob.peer());
    alice.connect(b, NOW - 10);
    alice.connect(carol, NOW - 10);
    alice.tick(NOW - 10);
    bob.connect(a, NOW - 10);
    for output in bob.take_outputs() {
        if let Output::Send { frame, .. } = output {
            alice.receive_frame(b, &frame, NOW - 10);
        }
    }
    alice.take_outputs();
    write(&mut bob, "k", NOW);
    for output in bob.take_outputs() {
        if let Output::Send { frame, .. } = output {
            alice.receive_frame(b, &frame, NOW);
        }
    }
    assert!(alice.engine().get("k").is_none(), "held for verification");
    say(&mut alice, carol, &Message::IHave(vec![(b, 1)]), NOW);
    let (sent, _) = drain(&mut alice);
    assert!(!sent.iter().any(|(_, m)| matches!(m, Message::Graft(_))));
    let due = alice.next_timer();
    assert_eq!(due, NOW + 2, "the verification window");
    alice.tick(due);
    let (sent, _) = drain(&mut alice);
    assert!(!sent.iter().any(|(_, m)| matches!(m, Message::Graft(_))));
    assert!(alice.engine().get("k").is_some());
}

/// The sequence numbers of the events among `sent`, in order.
fn event_seqs(sent: &[(PeerId, Message)]) -> Vec<u64> {
    sent.iter()
        .filter_map(|(_, m)| match m {
            Message::Events(events) => Some(events.iter().map(|e| e.id.seq)),
            _ => None,
        })
        .flatten()
        .collect()
}
