//! The mesh in virtual time.

use super::*;

fn mesh(me: u64) -> Mesh {
    Mesh::new(PeerId(me), MeshConfig::default())
}

#[test]
fn the_newcomer_dials_and_the_others_wait() {
    let mut newcomer = mesh(2);
    newcomer.discovered(PeerId(1), true, 0);
    assert_eq!(newcomer.take_actions(), vec![MeshAction::Dial(PeerId(1))]);
    assert_eq!(newcomer.state(PeerId(1)), Some(LinkState::Connecting));

    let mut member = mesh(1);
    member.discovered(PeerId(2), false, 0);
    assert!(member.take_actions().is_empty());
    member.incoming(PeerId(2), 10);
    member.opened(PeerId(2), 20);
    assert_eq!(member.state(PeerId(2)), Some(LinkState::Open));
    member.tick(60_000, 0.0);
    assert!(
        member.take_actions().is_empty(),
        "an open link is left alone"
    );
}

#[test]
fn a_peer_that_never_calls_is_called() {
    let mut member = mesh(1);
    member.discovered(PeerId(2), false, 0);
    member.tick(14_999, 0.0);
    assert!(member.take_actions().is_empty());
    member.tick(15_000, 0.0);
    assert_eq!(member.take_actions(), vec![MeshAction::Dial(PeerId(2))]);
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let mut m = mesh(1);
    m.discovered(PeerId(9), true, 0);
    m.take_actions();
    let mut now = 0;
    let mut delays = Vec::new();
    for _ in 0..10 {
        m.closed(PeerId(9), now, 0.0);
        let start = now;
        loop {
            now += 100;
            m.tick(now, 0.0);
            if !m.take_actions().is_empty() {
                break;
            }
        }
        delays.push(now - start);
    }
    assert_eq!(&delays[..4], &[500, 1000, 2000, 4000]);
    assert_eq!(*delays.last().unwrap(), 30_000);
    m.opened(PeerId(9), now);
    m.closed(PeerId(9), now, 0.0);
    m.tick(now + 500, 0.0);
    assert_eq!(
        m.take_actions(),
        vec![MeshAction::Dial(PeerId(9))],
        "reset on open"
    );
}

/// A peer of another protocol version: each connection opens, then is
/// refused and closed at once, and the opening used to reset the backoff,
/// so both sides dialed again about 1.5 times a second for good (a
/// review of upgrades). Closed for what it sent, a peer is neither dialed
/// nor answered for a wait that doubles with each such close, and a
/// connection that stays open a minute forgives it.
#[test]
fn a_peer_refused_at_every_opening_is_dialed_and_answered_ever_more_rarely() {
    let peer = PeerId(9);
    let mut m = mesh(1);
    m.discovered(peer, true, 0);
    m.take_actions();
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..9 {
        m.opened(peer, now);
        now += 300;
        m.refused(peer, now, 0.0);
        assert!(
            !m.incoming(peer, now + 1),
            "its offers are refused meanwhile"
        );
        let start = now;
        loop {
            now += 100;
            m.tick(now, 0.0);
            if dials(&m.take_actions()).contains(&peer) {
                break;
            }
        }
        waits.push(now - start);
    }
    assert_eq!(&waits[..4], &[REFUSED_BASE_MS, 10_000, 20_000, 40_000]);
    assert_eq!(*waits.last().unwrap(), REFUSED_MAX_MS);
    // Past the wait its offer is taken; a connection that lasts forgives.
    assert!(m.incoming(peer, now + 1));
    m.opened(peer, now + 2);
    m.closed(peer, now + 2 + FORGIVEN_AFTER_MS, 0.0);
    m.opened(peer, now + 3 + FORGIVEN_AFTER_MS);
    m.refused(peer, now + 4 + FORGIVEN_AFTER_MS, 0.0);
    assert!(m.incoming(peer, now + 5 + FORGIVEN_AFTER_MS + REFUSED_BASE_MS));
    // Within its wait it is not dialed when found again, nor redialed;
    // joined anew (a reload), it is forgiven.
    let later = now + 10 * FORGIVEN_AFTER_MS;
    m.opened(peer, later);
    m.refused(peer, later + 1, 0.0);
    m.take_actions();
    m.discovered(peer, true, later + 2);
    m.redial(peer, later + 2);
    assert!(dials(&m.take_actions()).is_empty());
    m.rejoined(peer);
    assert!(m.incoming(peer, later + 3));
}

#[test]
fn a_stuck_connection_fails_and_is_retried() {
    let mut m = mesh(1);
    m.discovered(PeerId(2), true, 0);
    m.take_actions();
    m.tick(15_000, 0.0);
    assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(2))]);
    assert_eq!(m.state(PeerId(2)), Some(LinkState::Closed));
    m.tick(15_500, 0.0);
    assert_eq!(m.take_actions(), vec![MeshAction::Dial(PeerId(2))]);
}

#[test]
fn leaving_and_clearing_hang_up() {
    let mut m = mesh(1);
    m.discovered(PeerId(2), true, 0);
    m.discovered(PeerId(3), true, 0);
    m.take_actions();
    m.left(PeerId(2));
    assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(2))]);
    m.clear();
    assert_eq!(m.take_actions(), vec![MeshAction::Hangup(PeerId(3))]);
    assert_eq!(m.links().count(), 0);
    m.tick(100_000, 0.5);
    assert!(m.take_actions().is_empty());
}

#[test]
fn next_wake_is_the_earliest_timeout_or_retry_and_none_when_all_are_open() {
    let mut m = mesh(1);
    assert_eq!(m.next_wake(), None);
    m.discovered(PeerId(2), true, 100);
    m.discovered(PeerId(3), false, 200);
    assert_eq!(m.next_wake(), Some(15_100), "2 times out first");
    m.opened(PeerId(2), 300);
    assert_eq!(
        m.next_wake(),
        Some(15_200),
        "3 is called if it does not call"
    );
    m.incoming(PeerId(3), 400);
    m.opened(PeerId(3), 500);
    assert_eq!(m.next_wake(), None, "all open: nothing to wake for");
    m.closed(PeerId(3), 600, 0.0);
    assert_eq!(m.next_wake(), Some(1100));
}

#[test]
fn an_incoming_connection_replaces_an_open_one() {
    let mut m = mesh(1);
    m.discovered(PeerId(2), true, 0);
    m.take_actions();
    m.opened(PeerId(2), 10);
    m.incoming(PeerId(2), 20);
    assert_eq!(m.state(PeerId(2)), Some(LinkState::Connecting));
    m.tick(20 + 15_000, 0.0);
    assert_eq!(
        m.take_actions(),
        vec![MeshAction::Hangup(PeerId(2))],
        "and times out like any other"
    );
}

fn dials(actions: &[MeshAction]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            MeshAction::Dial(p) => Some(*p),
            MeshAction::Hangup(_) => None,
        })
        .collect()
}

/// A peer of a room of `others + 1` that joined last: it dialed what the
/// mesh chose, and those links opened.
fn joined(others: u64) -> (Mesh, Vec<PeerId>) {
    let mut m = mesh(1);
    let room: Vec<PeerId> = (2..2 + others).map(PeerId).collect();
    m.discovered_all(&room, true, 0);
    let dialed = dials(&m.take_actions());
    for p in &dialed {
        m.opened(*p, 10);
    }
    (m, dialed)
}

#[test]
fn a_room_of_max_connections_is_a_full_mesh() {
    let (m, dialed) = joined(8);
    assert_eq!(dialed.len(), 8, "everyone, as in a small room");
    assert!(m.full_mesh());
    assert_eq!(m.active(), 8);
}

#[test]
fn a_big_room_dials_the_target_and_keeps_the_rest_passive() {
    let (m, dialed) = joined(40);
    assert_eq!(dialed.len(), 6, "a quarter under max_connections");
    assert!(!m.full_mesh());
    assert_eq!(m.links().count(), 40, "the others are known");
}

#[test]
fn calls_beyond_max_connections_are_refused() {
    let (mut m, _) = joined(40);
    assert!(m.incoming(PeerId(100), 20));
    assert!(m.incoming(PeerId(101), 20));
    assert_eq!(m.active(), 8);
    assert!(!m.incoming(PeerId(102), 20), "full");
    assert_eq!(m.state(PeerId(102)), Some(LinkState::Closed), "passive");
    assert!(m.incoming(PeerId(100), 30), "a linked peer may start over");
}

#[test]
fn a_dropped_link_is_replaced_from_the_passive_view() {
    let (mut m, dialed) = joined(40);
    m.closed(dialed[0], 100, 0.5);
    let again = dials(&m.take_actions());
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], dialed[0], "not the one in backoff");
    assert_eq!(m.active(), 6);
    // A peer that left is replaced too.
    m.left(dialed[1]);
    let actions = m.take_actions();
    assert!(actions.contains(&MeshAction::Hangup(dialed[1])));
    assert_eq!(dials(&actions).len(), 1);
}

#[test]
fn shuffles_sample_what_is_known_and_are_answered() {
    let (mut m, dialed) = joined(40);
    let at = m.next_wake().expect("a shuffle is due");
    assert_eq!(at, 10 + MeshConfig::default().shuffle_interval_ms);
    m.tick(at, 0.3);
    let sent = m.take_messages();
    let [(to, OverlayMessage::Shuffle(peers))] = sent.as_slice() else {
        panic!("one shuffle: {sent:?}");
    };
    assert!(dialed.contains(to));
    assert!(!peers.is_empty() && peers.len() <= MAX_SHUFFLE);
    assert!(!peers.contains(to) && !peers.contains(&PeerId(1)));

    let mut other = mesh(500);
    other.discovered(PeerId(1), true, 0);
    other.opened(PeerId(1), 5);
    other.receive(PeerId(1), OverlayMessage::Shuffle(peers.clone()), 20);
    let reply = other.take_messages();
    assert!(matches!(
        reply.as_slice(),
        [(PeerId(1), OverlayMessage::ShuffleReply(_))]
    ));
    for p in peers {
        assert!(other.state(*p).is_some(), "{p} learned");
    }
}

#[test]
fn the_passive_view_is_bounded() {
    let mut m = mesh(1);
    m.discovered(PeerId(2), true, 0);
    m.opened(PeerId(2), 1);
    for round in 0..20u64 {
        let peers = (0..MAX_SHUFFLE as u64)
            .map(|i| PeerId(1000 + round * 100 + i))
            .collect();
        m.receive(PeerId(2), OverlayMessage::ShuffleReply(peers), 2);
    }
    let passive = m.links().filter(|(_, s)| *s == LinkState::Closed).count();
    assert_eq!(passive, MeshConfig::default().passive_max);
    assert!(m.active() <= MeshConfig::default().max_connections);
}

#[test]
fn tending_drops_the_slowest_link_above_the_target() {
    let (mut m, dialed) = joined(40);
    m.incoming(PeerId(100), 20);
    m.opened(PeerId(100), 30);
    for (i, p) in dialed.iter().enumerate() {
        m.rtt(*p, 10.0 + i as f64);
    }
    m.rtt(PeerId(100), 300.0);
    m.take_actions();
    m.tick(10 + MeshConfig::default().shuffle_interval_ms, 0.1);
    let actions = m.take_actions();
    assert!(
        actions.contains(&MeshAction::Hangup(PeerId(100))),
        "{actions:?}"
    );
    assert_eq!(dials(&actions).len(), 1, "and one random link");
    assert_eq!(m.active(), 7);
}

#[test]
fn a_full_mesh_that_outgrows_itself_makes_room_for_a_caller() {
    // Linked to all of a room of 9 (a full mesh, every peer at 8 links),
    // it is called by a tenth: no round trip measured, a random link goes.
    let (mut m, dialed) = joined(8);
    assert_eq!(dialed.len(), 8);
    assert!(m.incoming(PeerId(100), 30), "room is made");
    assert!(!m.full_mesh());
    let hangups: Vec<MeshAction> = m
        .take_actions()
        .into_iter()
        .filter(|a| matches!(a, MeshAction::Hangup(_)))
        .collect();
    assert_eq!(hangups.len(), 1);
    assert_eq!(m.active(), 8);
    // At the target no one is dropped for a caller.
    let (mut small, _) = joined(40);
    small.incoming(PeerId(500), 1);
    small.incoming(PeerId(501), 1);
    assert!(!small.incoming(PeerId(502), 2));
}

/// The device's clock set back a month (set right by its user, stepped
/// by NTP) while a connection was stuck: its timeout and the retry after
/// it kept their delays, where they waited for real time to reach the
/// old reading (a review).
#[test]
fn a_clock_set_back_keeps_the_timeouts_and_retries() {
    const MONTH: u64 = 30 * 86_400_000;
    let mut newcomer = mesh(2);
    newcomer.discovered(PeerId(1), true, MONTH);
    assert_eq!(newcomer.take_actions(), vec![MeshAction::Dial(PeerId(1))]);
    // Set back: still stuck 1 s later by the new reading, failed and
    // redialed within a minute of it.
    newcomer.tick(1_000, 0.0);
    assert!(newcomer.take_actions().is_empty(), "not yet timed out");
    let dialed = (2..=60).any(|s| {
        newcomer.tick(s * 1_000, 0.0);
        dials(&newcomer.take_actions()) == [PeerId(1)]
    });
    assert!(dialed, "redialed within a minute of the clock set back");
    assert!(newcomer.next_wake().is_some_and(|t| t < MONTH));
}
