//! A device's wall clock set back (set right by its user, stepped by
//! NTP) while pages run: every timer was read off the old reading, and
//! the hybrid clock at the top of its range. From a review of time and
//! the conflict matrix (sixty-sixth session).

use crate::common;

use common::json;
use cpc_sync::protocol::{HybridClock, PeerId, Timestamp};

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
    const DAY: u64 = 86_400_000;
    let now = 1_700_000_000_000u64;
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
    let now = 1_700_000_000_000u64;
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

/// The same over a link: two signed pages, their clocks a month ahead,
/// both set right. Nothing but the write's own push crossed the link for
/// the next minute (no ping, no digest), so the write, lost on the way,
/// was never repaired (and the browser armed its next wake at the node's
/// next timer, a month ahead, capped at 2^31 ms: ~25 days of silence).
#[test]
fn after_clocks_are_set_right_a_lost_write_is_still_repaired() {
    use common::net::Net;
    use cpc_sync::protocol::sync::SyncConfig;
    const DAY: u64 = 86_400_000;
    let now = 1_700_000_000_000u64;
    let nodes = vec![
        common::signed_node(1, SyncConfig::default()),
        common::signed_node(2, SyncConfig::default()),
    ];
    let mut net = Net::new(nodes, now + 30 * DAY);
    net.link(0, 1);
    let mut honest = |_: PeerId, _: PeerId, f: Vec<u8>| vec![f];
    net.run(5_000, 100, &mut honest);
    // Set right.
    net.now = now;
    // a's write is lost on the way (one frame dropped); anti-entropy
    // should bring it within the minute.
    net.nodes[0]
        .write(|e| e.set("k", json("\"v\""), now).map(Some))
        .unwrap();
    let mut dropped = false;
    let mut frames = 0;
    let mut lossy = |_: PeerId, _: PeerId, f: Vec<u8>| {
        frames += 1;
        if !dropped {
            dropped = true;
            return vec![];
        }
        vec![f]
    };
    // The page's pending timeout (armed ~1 s ahead, relative, before
    // the clock was set) wakes it every second: as the browser's
    // `arm_timer` does, each node ticks at least once a second.
    for _ in 0..60 {
        net.run(1_000, 100, &mut lossy);
        let at = net.now;
        for n in &mut net.nodes {
            n.tick(at);
        }
    }
    assert!(
        frames > 1 && net.nodes[1].engine().get("k").is_some(),
        "a minute after the clocks were set right: {frames} frames crossed, b has k: {}",
        net.nodes[1].engine().get("k").is_some()
    );
}
