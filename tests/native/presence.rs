//! Presence: ephemeral, signed, bounded, rate-limited, relayed once per
//! update, gone after a timeout; never in the state, the log, storage or
//! the digest. Attacks by a member with a valid key are typed refusals,
//! counted.

use crate::common;

use common::signed_node;
use cpc_sync::protocol::sync::presence::{
    PresenceError, PresenceUpdate, MAX_PRESENCES, MAX_PRESENCE_BATCH, MAX_PRESENCE_BYTES,
    MIN_PRESENCE_INTERVAL_MS, PRESENCE_MAX_AGE_MS, PRESENCE_REFRESH_MS, PRESENCE_SKEW_MS,
    PRESENCE_TIMEOUT_MS, PRESENCE_UNLINKED_MS,
};
use cpc_sync::protocol::sync::wire::{self, Message};
use cpc_sync::protocol::sync::{Output, Persist, Refusal, SyncConfig, SyncNode};
use cpc_sync::protocol::{Identity, PeerId};

const NOW: u64 = 1_700_000_000_000;

fn durable(seed: u64) -> SyncNode {
    signed_node(
        seed,
        SyncConfig {
            durable: true,
            ..SyncConfig::default()
        },
    )
}

/// Carries frames between `nodes` until they are quiet; returns every
/// other output.
fn pump(nodes: &mut [SyncNode], now: u64) -> Vec<Output> {
    let mut rest = Vec::new();
    for _ in 0..50 {
        let mut frames = Vec::new();
        for node in nodes.iter_mut() {
            let from = node.peer();
            for output in node.take_outputs() {
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    other => rest.push(other),
                }
            }
        }
        if frames.is_empty() {
            return rest;
        }
        for (from, to, frame) in frames {
            if let Some(node) = nodes.iter_mut().find(|n| n.peer() == to) {
                node.receive_frame(from, &frame, now);
            }
        }
    }
    panic!("not quiet");
}

fn link(nodes: &mut [SyncNode], a: usize, b: usize) {
    link_at(nodes, a, b, NOW);
}

fn link_at(nodes: &mut [SyncNode], a: usize, b: usize, now: u64) {
    let (pa, pb) = (nodes[a].peer(), nodes[b].peer());
    nodes[a].connect(pb, now);
    nodes[b].connect(pa, now);
}

fn unlink(nodes: &mut [SyncNode], a: usize, b: usize) {
    let (pa, pb) = (nodes[a].peer(), nodes[b].peer());
    nodes[a].disconnect(pb);
    nodes[b].disconnect(pa);
}

fn values(node: &SyncNode) -> Vec<(String, String)> {
    let mut v: Vec<_> = node
        .presence()
        .into_iter()
        .map(|e| (e.id, e.value))
        .collect();
    v.sort();
    v
}

#[test]
fn presence_never_enters_the_state_the_log_storage_or_the_digest() {
    let mut nodes = vec![durable(1), durable(2)];
    link(&mut nodes, 0, 1);
    pump(&mut nodes, NOW);
    let before: Vec<_> = nodes
        .iter_mut()
        .map(|n| {
            let digest = n.digest();
            let e = n.engine();
            (e.state_json(), e.log().len(), e.clock().clone(), digest)
        })
        .collect();
    nodes[1]
        .set_presence(r#"{"name":"bea","color":"green"}"#, NOW + 1)
        .expect("small JSON");
    nodes[0].set_presence(r#""ada""#, NOW + 1).expect("JSON");
    let outputs = pump(&mut nodes, NOW + 1);
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Persist { .. })),
        "nothing persisted: {outputs:?}"
    );
    let b = nodes[1].peer().to_string();
    assert!(values(&nodes[0]).contains(&(b, r#"{"name":"bea","color":"green"}"#.into())));
    assert_eq!(nodes[0].presence().len(), 2, "itself and the other");
    for (node, before) in nodes.iter_mut().zip(before) {
        let digest = node.digest();
        let e = node.engine();
        assert_eq!(
            (e.state_json(), e.log().len(), e.clock().clone(), digest),
            before
        );
    }
    // A snapshot of the state has none of it either.
    nodes[0].fold();
    for o in nodes[0].take_outputs() {
        if let Output::Persist {
            write: Persist::Snapshot(bytes),
            ..
        } = o
        {
            assert!(!String::from_utf8_lossy(&bytes).contains("bea"));
        }
    }
}

#[test]
fn presence_is_relayed_refreshed_and_gone_after_the_timeout() {
    // a - b - c: c hears of a through b.
    let mut nodes = vec![durable(1), durable(2), durable(3)];
    link(&mut nodes, 0, 1);
    link(&mut nodes, 1, 2);
    pump(&mut nodes, NOW);
    nodes[0].set_presence(r#"{"cursor":1}"#, NOW).unwrap();
    pump(&mut nodes, NOW);
    let a = nodes[0].peer().to_string();
    assert!(values(&nodes[2]).contains(&(a.clone(), r#"{"cursor":1}"#.into())));
    assert!(nodes[2].take_presence_changed());
    // An update replaces it.
    let later = NOW + MIN_PRESENCE_INTERVAL_MS;
    nodes[0].set_presence(r#"{"cursor":2}"#, later).unwrap();
    pump(&mut nodes, later);
    assert!(values(&nodes[2]).contains(&(a.clone(), r#"{"cursor":2}"#.into())));
    // Refreshed while a is here (its timer), gone once it is not.
    let mut now = later;
    while now < later + 2 * PRESENCE_TIMEOUT_MS {
        now += 1_000;
        for n in nodes.iter_mut() {
            n.tick(now);
        }
        pump(&mut nodes, now);
    }
    assert!(
        values(&nodes[2]).iter().any(|(id, _)| *id == a),
        "kept fresh"
    );
    let gone = now + PRESENCE_TIMEOUT_MS + 1_000;
    nodes[2].take_presence_changed();
    nodes[2].tick(gone);
    assert!(nodes[2].presence().is_empty(), "a stopped refreshing");
    assert!(nodes[2].take_presence_changed());
    // Clearing it tells the others at once.
    nodes[0].set_presence("null", gone).unwrap();
    nodes[1].tick(gone);
    pump(&mut nodes, gone);
    assert!(!values(&nodes[1]).iter().any(|(id, _)| *id == a));
}

/// Mallory (a member with a valid key) sends `updates` to a victim.
fn attack(updates: Vec<PresenceUpdate>, now: u64) -> (Vec<Refusal>, SyncNode, PeerId) {
    let mut victim = signed_node(1, SyncConfig::default());
    let mallory = Identity::from_seed(666).peer();
    victim.connect(mallory, NOW);
    victim.take_outputs();
    for frame in wire::encode(&Message::Presence(updates), 1) {
        victim.receive_frame(mallory, &frame, now);
    }
    let refused = victim
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Rejected { refusal, .. } => Some(refusal),
            _ => None,
        })
        .collect();
    (refused, victim, mallory)
}

#[test]
fn forged_oversized_flooding_replayed_and_future_presence_is_refused() {
    let mallory = Identity::from_seed(666);
    let alice = Identity::from_seed(7).peer();
    let update =
        |peer, stamp, value: &str| PresenceUpdate::new(peer, stamp, value.into(), Some(&mallory));

    // Forged: Alice's presence under Mallory's key, or altered after signing.
    let mut altered = update(mallory.peer(), NOW, r#""me""#);
    altered.value = r#""someone else""#.into();
    let (refused, victim, m) = attack(vec![update(alice, NOW, r#""alice""#), altered], NOW);
    assert_eq!(
        refused,
        vec![
            Refusal::Presence(PresenceError::Forged(alice)),
            Refusal::Presence(PresenceError::Forged(mallory.peer())),
        ]
    );
    assert!(victim.presence().is_empty());
    assert_eq!(victim.stats(m).map(|s| s.rejected), Some(2));

    // Oversized, and not JSON.
    let big = format!("\"{}\"", "x".repeat(MAX_PRESENCE_BYTES));
    let (refused, victim, _) = attack(vec![update(mallory.peer(), NOW, &big)], NOW);
    assert_eq!(
        refused,
        vec![Refusal::Presence(PresenceError::TooLarge(big.len()))]
    );
    assert!(victim.presence().is_empty());
    let (refused, _, _) = attack(vec![update(mallory.peer(), NOW, "{not json")], NOW);
    assert!(matches!(
        refused.as_slice(),
        [Refusal::Presence(PresenceError::NotJson(_))]
    ));

    // Flooding: updates closer than the interval, by their own stamps.
    let flood: Vec<_> = (0..50)
        .map(|i| update(mallory.peer(), NOW + i, &i.to_string()))
        .collect();
    let (refused, victim, _) = attack(flood, NOW);
    assert_eq!(refused.len(), 49);
    assert!(refused
        .iter()
        .all(|r| *r == Refusal::Presence(PresenceError::TooFrequent(mallory.peer()))));
    assert_eq!(victim.presence()[0].value, "0", "the first one only");

    // Replayed: an older update after a newer one; and one from the future.
    let newer = update(mallory.peer(), NOW + 1_000, r#""new""#);
    let older = update(mallory.peer(), NOW, r#""old""#);
    let ahead = update(alice, NOW + 3_600_000, r#""later""#);
    let (refused, victim, _) = attack(vec![newer.clone(), older, newer, ahead], NOW + 1_000);
    assert_eq!(
        refused,
        vec![
            Refusal::Presence(PresenceError::Stale(mallory.peer())),
            Refusal::Presence(PresenceError::Forged(alice)),
        ]
    );
    assert_eq!(
        victim.presence()[0].value,
        r#""new""#,
        "the duplicate is no news"
    );
    let ahead = update(mallory.peer(), NOW + 3_600_000, r#""later""#);
    let (refused, _, _) = attack(vec![ahead], NOW);
    assert_eq!(
        refused,
        vec![Refusal::Presence(PresenceError::Ahead(mallory.peer()))]
    );

    // Another peer's older update, relayed: what an honest relay passes on
    // when two paths cross, dropped as a duplicate is, not refused.
    let bob = Identity::from_seed(8);
    let of_bob =
        |stamp, value: &str| PresenceUpdate::new(bob.peer(), stamp, value.into(), Some(&bob));
    let relayed = vec![of_bob(NOW + 1_000, r#""new""#), of_bob(NOW, r#""old""#)];
    let (refused, victim, m) = attack(relayed, NOW + 1_000);
    assert_eq!(refused, vec![]);
    assert_eq!(victim.stats(m).map(|s| s.rejected), Some(0));
    assert_eq!(victim.presence()[0].value, r#""new""#);
}

#[test]
fn a_leave_goes_out_at_once_even_right_after_an_update() {
    let mut nodes = vec![durable(1), durable(2)];
    link(&mut nodes, 0, 1);
    nodes[0].set_presence("{\"name\":\"a\"}", NOW).unwrap();
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[1]).len(), 1);
    // An update within the interval waits for it; a leave does not.
    nodes[0].set_presence("{\"name\":\"b\"}", NOW + 10).unwrap();
    pump(&mut nodes, NOW + 10);
    assert_eq!(
        values(&nodes[1])[0].1,
        "{\"name\":\"a\"}",
        "the update waits"
    );
    nodes[0].set_presence("null", NOW + 20).unwrap();
    pump(&mut nodes, NOW + 20);
    assert_eq!(values(&nodes[1]), vec![], "the leave did not wait");
}

#[test]
fn a_peer_that_left_is_gone_at_once_and_a_replay_does_not_bring_it_back() {
    let mut nodes = vec![durable(1), durable(2), durable(3)];
    link(&mut nodes, 0, 1);
    link(&mut nodes, 1, 2);
    pump(&mut nodes, NOW);
    let (p0, p1, p2) = (nodes[0].peer(), nodes[1].peer(), nodes[2].peer());
    nodes[0].set_presence("{\"name\":\"a\"}", NOW).unwrap();
    let mut last = None;
    for output in nodes[0].take_outputs() {
        if let Output::Send { frame, .. } = output {
            nodes[1].receive_frame(p0, &frame, NOW);
            last = Some(frame);
        }
    }
    let last = last.expect("a's presence went out");
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[1]).len(), 1);
    assert_eq!(values(&nodes[2]).len(), 1);
    // The page of node 0 closes without its leave getting out; signaling
    // tells node 1 it left.
    let gone = nodes[0].peer();
    nodes[1].disconnect(gone);
    nodes[1].peer_left(gone);
    assert!(nodes[1].take_presence_changed());
    assert_eq!(values(&nodes[1]), vec![], "gone when it left");
    // Its last update, replayed (or still being relayed), is a duplicate.
    nodes[1].receive_frame(p2, &last, NOW + 1_000);
    pump(&mut nodes, NOW + 1_000);
    assert_eq!(values(&nodes[1]), vec![], "a replay brought it back");
    assert!(!nodes[1].take_presence_changed());
    // Node 2 still holds it until it times out (it heard it relayed).
    assert_eq!(values(&nodes[2]).len(), 1);
    // Back in the room, its next update shows it again.
    let back = NOW + 10_000;
    nodes[0].set_presence("{\"name\":\"a2\"}", back).unwrap();
    nodes[0].disconnect(p1);
    link(&mut nodes, 0, 1);
    pump(&mut nodes, back);
    assert_eq!(
        values(&nodes[1]),
        vec![(gone.to_string(), "{\"name\":\"a2\"}".into())]
    );
}

/// A departed peer's last update, kept by a member and replayed long
/// after, once its tombstone would have timed out: it showed the peer
/// again at every honest peer, each relaying it on, for good (a review).
/// An update stamped more than [`PRESENCE_MAX_AGE_MS`] ago is refused,
/// and a tombstone is kept until its stamp is that old.
#[test]
fn a_departed_peers_presence_replayed_later_does_not_show_it_again() {
    let mut nodes = vec![durable(1), durable(2), durable(3)];
    link(&mut nodes, 0, 1);
    link(&mut nodes, 1, 2);
    pump(&mut nodes, NOW);
    let (p0, p2) = (nodes[0].peer(), nodes[2].peer());
    nodes[0].set_presence("{\"name\":\"alice\"}", NOW).unwrap();
    let mut last = None;
    for output in nodes[0].take_outputs() {
        if let Output::Send { frame, .. } = output {
            nodes[1].receive_frame(p0, &frame, NOW);
            last = Some(frame);
        }
    }
    let last = last.expect("alice's presence went out");
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[2]).len(), 1);
    unlink(&mut nodes, 0, 1);
    nodes[1].peer_left(p0);
    nodes[2].peer_left(p0);
    // Replayed by a member (node 2's link) at times past the tombstone's
    // old timeout, up to hours later.
    for later in [
        PRESENCE_TIMEOUT_MS + 1,
        PRESENCE_MAX_AGE_MS - 1,
        PRESENCE_MAX_AGE_MS + 1,
        3_600_000,
    ] {
        let now = NOW + later;
        nodes[1].tick(now);
        nodes[2].tick(now);
        pump(&mut nodes, now);
        nodes[1].receive_frame(p2, &last, now);
        pump(&mut nodes, now);
        assert_eq!(values(&nodes[1]), vec![], "shown again {later} ms later");
        assert_eq!(values(&nodes[2]), vec![], "relayed on {later} ms later");
    }
    assert_eq!(
        nodes[1].stats(p2).map(|s| s.rejected),
        Some(0),
        "an old update relayed is dropped, not refused"
    );
}

/// The bound below is no harder on an honest peer than the one above: a
/// peer whose clock runs a minute behind ours still shows.
#[test]
fn a_peer_whose_clock_runs_behind_still_shows() {
    let mut nodes = vec![durable(1), durable(2)];
    link(&mut nodes, 0, 1);
    pump(&mut nodes, NOW);
    let behind = NOW - PRESENCE_SKEW_MS;
    nodes[0].set_presence("{\"name\":\"a\"}", behind).unwrap();
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[1]).len(), 1);
    let old = PresenceUpdate::new(
        nodes[0].peer(),
        NOW - PRESENCE_MAX_AGE_MS - 1,
        "{}".into(),
        None,
    );
    let mut table = cpc_sync::protocol::sync::presence::PresenceTable::default();
    assert_eq!(
        table.take(old, nodes[0].peer(), NOW),
        Err(PresenceError::Old(nodes[0].peer()))
    );
}

/// A peer goes offline (every link closes; signaling tells the others it
/// left, and they hide it) and comes back a moment later: it shows again
/// as soon as it links, not at its next refresh. Its last update was no
/// newer than what they had heard, so they took the greeting's copy as a
/// replay (the page showed it gone for up to ten seconds).
#[test]
fn a_peer_back_from_offline_shows_again_as_it_links() {
    let mut nodes = vec![durable(1), durable(2)];
    link(&mut nodes, 0, 1);
    pump(&mut nodes, NOW);
    let p0 = nodes[0].peer();
    nodes[0].set_presence("{\"name\":\"a\"}", NOW).unwrap();
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[1]).len(), 1);
    unlink(&mut nodes, 0, 1);
    nodes[1].peer_left(p0);
    assert_eq!(values(&nodes[1]), vec![], "gone when it left");
    let back = NOW + 1_000;
    link_at(&mut nodes, 0, 1, back);
    pump(&mut nodes, back);
    assert_eq!(
        values(&nodes[1]),
        vec![(p0.to_string(), "{\"name\":\"a\"}".into())],
        "shown again as it linked"
    );
    // A link that closes while others stay open sends nothing new.
    let mut nodes = vec![durable(1), durable(2), durable(3)];
    link(&mut nodes, 0, 1);
    link(&mut nodes, 0, 2);
    nodes[0].set_presence("{\"name\":\"a\"}", NOW).unwrap();
    pump(&mut nodes, NOW);
    let (p1, p2) = (nodes[1].peer(), nodes[2].peer());
    nodes[0].disconnect(p2);
    nodes[0].take_outputs();
    nodes[0].connect(p2, back);
    let presence_to_p1 = nodes[0].take_outputs().iter().any(|o| {
        matches!(o, Output::Send { to, frame } if *to == p1
            && matches!(wire::decode(frame), Ok(wire::Decoded::Message(Message::Presence(_)))))
    });
    assert!(!presence_to_p1, "no fresh presence for a link among others");
}

/// A peer the app takes offline forgets who is here at once (it can hear
/// no one), and shows them again as soon as it links back: their
/// greetings are news, not replays of a tombstone.
#[test]
fn a_peer_taken_offline_forgets_who_is_here_until_it_links_again() {
    let mut nodes = vec![durable(1), durable(2)];
    link(&mut nodes, 0, 1);
    nodes[1].set_presence("{\"name\":\"b\"}", NOW).unwrap();
    pump(&mut nodes, NOW);
    assert_eq!(values(&nodes[0]).len(), 1);
    let p1 = nodes[1].peer();
    nodes[0].take_presence_changed();
    nodes[0].forget_presence();
    assert!(nodes[0].take_presence_changed(), "the app is told");
    assert_eq!(values(&nodes[0]), vec![], "nobody but itself while offline");
    unlink(&mut nodes, 0, 1);
    let back = NOW + 1_000;
    link_at(&mut nodes, 0, 1, back);
    pump(&mut nodes, back);
    assert_eq!(
        values(&nodes[0]),
        vec![(p1.to_string(), "{\"name\":\"b\"}".into())],
        "shown again as it linked"
    );
}

#[test]
fn a_closed_link_keeps_presence_a_refresh_interval_for_it_to_arrive_another_way() {
    // a - b, a - c, b - c: b loses its link to a but hears a through c
    // (in a partial view links close and open all the time).
    let mut nodes = vec![durable(1), durable(2), durable(3)];
    link(&mut nodes, 0, 1);
    link(&mut nodes, 0, 2);
    link(&mut nodes, 1, 2);
    nodes[0].set_presence("{\"name\":\"a\"}", NOW).unwrap();
    pump(&mut nodes, NOW);
    let (a, b) = (nodes[0].peer(), nodes[1].peer());
    nodes[1].disconnect(a);
    nodes[0].disconnect(b);
    assert_eq!(values(&nodes[1]).len(), 1, "a link closing is not a leave");
    // Refreshes reach b through c: a stays.
    let mut now = NOW;
    while now < NOW + 2 * PRESENCE_TIMEOUT_MS {
        now += 1_000;
        for n in nodes.iter_mut() {
            n.tick(now);
        }
        pump(&mut nodes, now);
        assert_eq!(values(&nodes[1]).len(), 1, "a flickered at {now}");
    }
    // A peer whose only link to us closed goes a refresh interval later,
    // not the full timeout after it was last heard.
    let mut pair = vec![durable(4), durable(5)];
    link(&mut pair, 0, 1);
    pair[0].set_presence("{\"name\":\"x\"}", now).unwrap();
    pump(&mut pair, now);
    let x = pair[0].peer();
    pair[1].disconnect(x);
    let closed = now;
    assert_eq!(values(&pair[1]).len(), 1, "a link closing is not a leave");
    while values(&pair[1]).len() == 1 {
        now += 1_000;
        pair[1].tick(now);
        assert!(
            now <= closed + PRESENCE_UNLINKED_MS + 1_000,
            "still shown at {now}"
        );
    }
    assert!(now < closed + PRESENCE_TIMEOUT_MS);
}

/// Identities cost nothing to make: a member relaying the presence of
/// 1,024 of them filled every peer's table, and an honest member's
/// presence was refused (`Full`) for as long as it refreshed them (a
/// review's test). A full table now shares relayed presence among the
/// links it came over: the flooding link's stalest entry makes room for
/// a peer's own presence and for one relayed by another link; the
/// flooding link's own new ones are still refused.
#[test]
fn made_up_identities_relayed_by_one_link_crowd_out_no_one() {
    let mut victim = signed_node(1, SyncConfig::default());
    let (mallory, relay) = (Identity::from_seed(666).peer(), Identity::from_seed(3));
    let honest = Identity::from_seed(2);
    let relayed = Identity::from_seed(4);
    for peer in [mallory, honest.peer(), relay.peer()] {
        victim.connect(peer, NOW);
    }
    let throwaways: Vec<Identity> = (0..MAX_PRESENCES as u64 + 64)
        .map(|s| Identity::from_seed(10_000 + s))
        .collect();
    let send = |victim: &mut SyncNode, via: PeerId, updates: Vec<PresenceUpdate>, now: u64| {
        for frame in wire::encode(&Message::Presence(updates), 1) {
            victim.receive_frame(via, &frame, now);
        }
        (victim.take_outputs().into_iter())
            .filter_map(|o| match o {
                Output::Rejected { refusal, .. } => Some(refusal),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let update =
        |id: &Identity, stamp: u64| PresenceUpdate::new(id.peer(), stamp, "1".into(), Some(id));
    let shown = |victim: &SyncNode, id: &Identity| {
        let id = id.peer().to_string();
        victim.presence().iter().any(|e| e.id == id)
    };
    for round in 0..4u64 {
        let now = NOW + round * PRESENCE_REFRESH_MS;
        let mut full = 0;
        for batch in throwaways.chunks(MAX_PRESENCE_BATCH) {
            let refused = send(
                &mut victim,
                mallory,
                batch.iter().map(|id| update(id, now)).collect(),
                now,
            );
            assert!(refused
                .iter()
                .all(|r| matches!(r, Refusal::Presence(PresenceError::Full))));
            full += refused.len();
        }
        assert!(
            full >= 64,
            "round {round}: the flood's own beyond the table are refused"
        );
        let refused = send(
            &mut victim,
            honest.peer(),
            vec![update(&honest, now + 1)],
            now + 1,
        );
        assert!(refused.is_empty(), "round {round}: {refused:?}");
        let refused = send(
            &mut victim,
            relay.peer(),
            vec![update(&relayed, now + 1)],
            now + 1,
        );
        assert!(refused.is_empty(), "round {round}: {refused:?}");
        victim.tick(now + 2);
        assert!(
            shown(&victim, &honest),
            "round {round}: a peer's own presence shows"
        );
        assert!(
            shown(&victim, &relayed),
            "round {round}: one relayed by another link shows"
        );
        assert!(victim.presence().len() <= MAX_PRESENCES);
    }
}
