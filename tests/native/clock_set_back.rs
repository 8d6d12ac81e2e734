//! A device's wall clock set back (set right by its user, stepped by
//! NTP) while pages run: every timer was read off the old reading, and
//! the hybrid clock at the top of its range. From a review of time and
//! the conflict matrix (sixty-sixth session).

use crate::common;

use common::json;
use cpc_sync::protocol::{HybridClock, PeerId, Timestamp};

const NOW: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

/// The hybrid clock's timestamps never go back: at the top of its
/// 48-bit range the logical counter's borrow of the next millisecond was
/// clamped, and the next tick went back to `(MAX, 0)`. A device whose
/// clock reads past the year 10889 (JS dates reach 275760) gets there by
/// itself. It stays at the top now.
#[test]
fn the_hybrid_clock_never_goes_back_at_the_top_of_its_range() {
    const MAX_MILLIS: u64 = u64::MAX >> 16;
    let mut clock = HybridClock::new(HybridClock::DEFAULT_MAX_SKEW_MS);
    clock.observe(Timestamp::new(MAX_MILLIS, u16::MAX));
    let before = clock.last();
    let next = clock.tick(MAX_MILLIS);
    assert!(next >= before, "tick after {before:?} gave {next:?}");
}

/// DECISIONS.md ("Writes dated ahead are told to their writer"): a page
/// whose clock was ahead is told so once the clock is set right, at its
/// next gossip tick. But the node's timers were read off the same wall
/// clock: a page that ran with its clock a month ahead scheduled its next
/// gossip a month ahead, and `tick` returned before anything while `now <
/// next_gossip_ms`. Once the clock was set right nothing was told, and no
/// digest, ping, reconciliation or compaction ran, for a month.
#[test]
fn a_clock_set_right_keeps_every_timer_running() {
    use cpc_sync::protocol::sync::{Output, SyncConfig};
    let now = NOW;
    let mut page = common::signed_node(1, SyncConfig::default());
    let me = page.peer();
    let other = PeerId(42);
    // The device's clock reads a month ahead: the page connects, writes
    // and ticks as pages do.
    let ahead = now + 30 * DAY;
    page.connect(other, ahead);
    page.write(|e| e.set("title", json("\"draft\""), ahead).map(Some))
        .unwrap();
    page.tick(ahead);
    page.take_outputs();
    // The clock is set right. Ticks every second for a minute.
    let mut told_ahead = 0;
    let mut frames_to_other = 0;
    for s in 1..=60 {
        page.tick(now + s * 1_000);
        for o in page.take_outputs() {
            match o {
                Output::ClockSkew { peer, .. } if peer == me => told_ahead += 1,
                Output::Send { to, .. } if to == other => frames_to_other += 1,
                _ => {}
            }
        }
    }
    assert_eq!(
        (told_ahead, frames_to_other > 0),
        (1, true),
        "in a minute after the clock was set right: told {told_ahead} times that our \
         writes are dated ahead, {frames_to_other} frames (digests, pings) sent"
    );
}

/// Control for the test above (passes): the same page with its clock
/// left as it was sends digests and pings within the minute.
#[test]
fn control_a_clock_left_alone_keeps_its_timers() {
    use cpc_sync::protocol::sync::{Output, SyncConfig};
    let now = NOW;
    let mut page = common::signed_node(1, SyncConfig::default());
    let other = PeerId(42);
    page.connect(other, now);
    page.write(|e| e.set("title", json("\"draft\""), now).map(Some))
        .unwrap();
    page.tick(now);
    page.take_outputs();
    let mut frames_to_other = 0;
    for s in 1..=60 {
        page.tick(now + s * 1_000);
        for o in page.take_outputs() {
            if matches!(o, Output::Send { to, .. } if to == other) {
                frames_to_other += 1;
            }
        }
    }
    assert!(frames_to_other > 0);
}

/// Two signed pages linked, their clocks at `at`.
fn two_pages(at: u64) -> common::net::Net {
    use cpc_sync::protocol::sync::SyncConfig;
    let nodes = vec![
        common::signed_node(1, SyncConfig::default()),
        common::signed_node(2, SyncConfig::default()),
    ];
    let mut net = common::net::Net::new(nodes, at);
    net.link(0, 1);
    net
}

/// Runs `net` for `seconds`, every node ticking once a second: as the
/// browser's `arm_timer` does, the page's pending timeout (armed ~1 s
/// ahead, relative, before the clock was set) wakes it.
fn every_second(net: &mut common::net::Net, seconds: u32, tamper: &mut common::net::Tamper<'_>) {
    for _ in 0..seconds {
        net.run(1_000, 100, tamper);
        let at = net.now;
        for n in &mut net.nodes {
            n.tick(at);
        }
    }
}

/// Page 0 writes `k`, its first frame after is lost, and the pages run a
/// minute: the frames that crossed, and whether page 1 then has `k`
/// (anti-entropy should bring it).
fn a_write_lost_on_the_way(net: &mut common::net::Net) -> (u32, bool) {
    let at = net.now;
    net.nodes[0]
        .write(|e| e.set("k", json("\"v\""), at).map(Some))
        .unwrap();
    let a = net.nodes[0].peer();
    let (mut dropped, mut frames) = (false, 0);
    let mut lossy = |from: PeerId, _: PeerId, f: Vec<u8>| {
        frames += 1;
        if !dropped && from == a {
            dropped = true;
            return vec![];
        }
        vec![f]
    };
    every_second(net, 60, &mut lossy);
    (frames, net.nodes[1].engine().get("k").is_some())
}

/// The same over a link: two signed pages, their clocks a month ahead,
/// both set right. Nothing but the write's own push crossed the link for
/// the next minute (no ping, no digest), so the write, lost on the way,
/// was never repaired (and the browser armed its next wake at the node's
/// next timer, a month ahead, capped at 2^31 ms: ~25 days of silence).
#[test]
fn after_clocks_are_set_right_a_lost_write_is_still_repaired() {
    let mut net = two_pages(NOW + 30 * DAY);
    net.run(5_000, 100, &mut common::net::honest);
    net.now = NOW;
    let (frames, has) = a_write_lost_on_the_way(&mut net);
    assert!(
        frames > 1 && has,
        "a minute after the clocks were set right: {frames} frames crossed, b has k: {has}"
    );
}

/// Two pages whose link held a backlog once, at `at`, and drained it.
fn a_drained_backlog(at: u64) -> common::net::Net {
    let mut net = two_pages(at);
    let b = net.nodes[1].peer();
    let honest = &mut common::net::honest;
    net.run(2_000, 100, honest);
    // The data channel to b filled its buffer once, and drained it.
    net.nodes[0].set_backlogged(b, true);
    net.run(500, 100, honest);
    net.nodes[0].set_backlogged(b, false);
    net.run(2_500, 100, honest);
    net
}

/// The link held a backlog once while the clock read a month ahead, and
/// drained it. `Told` keeps when it drained (`drained_ms`), by the old
/// reading, and takes anything sent within a patience of it as on its
/// way. The set-back forgot what was told but not `drained_ms`: every
/// push after it counted as on its way for a month, and a lost one was
/// never sent again (the peer's digests asking for it were answered with
/// nothing; a review of the fix).
#[test]
fn after_a_set_back_a_lost_write_is_repaired_though_the_link_once_drained_a_backlog() {
    let mut net = a_drained_backlog(NOW + 30 * DAY);
    // Set right; the pages tick on for two seconds, then a writes.
    net.now = NOW;
    every_second(&mut net, 2, &mut common::net::honest);
    let (_, has) = a_write_lost_on_the_way(&mut net);
    assert!(
        has,
        "a minute after the clock was set right, b still lacks the lost write"
    );
}

/// Control for the test above: the same backlog with the clock left
/// alone; the lost write is repaired within the minute.
#[test]
fn control_a_drained_backlog_with_the_clock_left_alone() {
    let mut net = a_drained_backlog(NOW);
    let (_, has) = a_write_lost_on_the_way(&mut net);
    assert!(has);
}

/// The set-back was noticed only in `tick`, and until then `next_timer` stays at the old reading (the next
/// gossip, and `last_input_ms`, which other inputs only raise). The
/// room's server peer (src/bin/cpc-signal/keep/room.rs, `run`) sleeps
/// `next_timer() - now_ms()`, recomputed at every command: a room whose
/// pages send anything more often than its gossip interval (pings,
/// digests, every second) never ticks again once the server's clock is
/// stepped back: no digest, ping, presence expiry, compaction or owed
/// slice of its own for a month (a review of the fix). This drives a node
/// as that loop does.
#[test]
fn a_node_driven_as_the_room_peer_is_ticks_after_its_clock_is_set_back() {
    use cpc_sync::protocol::sync::{Output, SyncConfig};
    let now = NOW;
    let mut room = common::signed_node(1, SyncConfig::default());
    let mut page = common::signed_node(2, SyncConfig::default());
    let (r, p) = (room.peer(), page.peer());
    let ahead = now + 30 * DAY;
    room.connect(p, ahead);
    page.connect(r, ahead);
    room.tick(ahead);
    room.take_outputs();
    page.take_outputs();
    // The server's clock is stepped back; the page's is right. The page
    // ticks every second and its frames are commands to the room's loop.
    let mut at = now;
    let mut room_ticks = 0;
    let end = now + 60_000;
    while at < end {
        // The room's loop: sleep `next_timer - now`, or take a command.
        let wake = room.next_timer().saturating_sub(at);
        let command_in = 500;
        if wake <= command_in {
            at += wake;
            room.tick(at);
            room_ticks += 1;
        } else {
            at += command_in;
            page.tick(at);
            for o in page.take_outputs() {
                if let Output::Send { to, frame, .. } = o {
                    if to == r {
                        room.receive_frame(p, &frame, at);
                    }
                }
            }
        }
        room.take_outputs();
    }
    assert!(
        room_ticks > 0,
        "a minute after the server's clock was set back the room never ticked \
         (next_timer {} ms ahead)",
        room.next_timer().saturating_sub(at)
    );
}

/// How long, in ms, a write of `c`'s takes to reach `a` over `b` (Pull
/// relay: `b` announces it, `a` grafts it) after `a` and `b` ran a while
/// at `before` (`a` grafting from `b` a write of `d`'s) and then at
/// `after` (the clock set back when they differ). `c` links to `b` at
/// `after`: its writes are dated by `after`.
fn relayed_write_ms(before: u64, after: u64) -> u64 {
    use common::net::Net;
    use cpc_sync::protocol::sync::SyncConfig;
    let nodes = vec![
        common::signed_node(1, SyncConfig::default()),
        common::signed_node(2, SyncConfig::default()),
        common::signed_node(3, SyncConfig::default()),
        common::signed_node(4, SyncConfig::default()),
    ];
    let mut net = Net::new(nodes, before);
    net.link(0, 1);
    net.link(1, 3);
    let mut honest = |_: PeerId, _: PeerId, f: Vec<u8>| vec![f];
    let tick = |net: &mut Net| {
        let at = net.now;
        for n in &mut net.nodes {
            n.tick(at);
        }
    };
    // d writes; a pulls it from b (a graft, by the reading `before`).
    net.run(2_000, 100, &mut honest);
    let at = net.now;
    net.nodes[3]
        .write(|e| e.set("k0", json("1"), at).map(Some))
        .unwrap();
    for _ in 0..3 {
        net.run(1_000, 10, &mut honest);
        tick(&mut net);
    }
    assert!(net.nodes[0].engine().get("k0").is_some());
    net.unlink(1, 3);
    net.now = after;
    net.link(1, 2);
    for _ in 0..3 {
        net.run(1_000, 100, &mut honest);
        tick(&mut net);
    }
    // Just after a gossip tick, c writes.
    let start = net.now;
    net.nodes[2]
        .write(|e| e.set("k1", json("2"), start).map(Some))
        .unwrap();
    while net.nodes[0].engine().get("k1").is_none() && net.now < start + 60_000 {
        net.run(10, 10, &mut honest);
        if (net.now - start) % 1_000 == 0 {
            tick(&mut net);
        }
    }
    assert!(net.nodes[1].engine().get("k1").is_some(), "b has c's write");
    net.now - start
}

/// With the default relay (Pull), a
/// write relayed by `b` is pulled by `a` (a graft) at once; but `a`
/// waits [`GRAFT_BATCH_MS`] after its last graft from `b`, and that is
/// kept as `Session::grafted_ms`, by the old reading: after a set-back
/// every announcement waits for real time to reach it (a month), and
/// `a` gets relayed writes only when a digest asks for them (a gossip
/// interval: 1,000 ms against 10), not within the pull's few ms (a
/// review of the fix).
#[test]
fn after_a_set_back_relayed_writes_are_pulled_at_once() {
    let now = NOW;
    let control = relayed_write_ms(now, now + 3_000);
    let set_back = relayed_write_ms(now + 30 * DAY, now);
    println!(
        "relayed write: {control} ms with the clock left alone, {set_back} ms after a set-back"
    );
    assert!(
        set_back <= control + 50,
        "relayed write: {control} ms with the clock left alone, {set_back} ms after a set-back"
    );
}
