//! Issue 19's scenario: a room fills, writes are followed to every peer,
//! then churn of 10% a minute, a partition into halves and its heal. At
//! every step no peer holds more than `max_connections` links; outside the
//! partition the settled peers stay linked as one; after the heal everyone
//! converges and no write that left its writer is lost.

use super::measure::Spread;
use super::{Room, MAX_LINKS};
use cpc_sync::protocol::sync::Relay;

/// A peer counts as settled (it must be linked to the rest) this long
/// after it joined, or after a partition began or healed.
const SETTLE_MS: u64 = 10_000;

/// The figures of one run.
#[derive(Debug)]
pub struct Figures {
    pub peers: usize,
    pub spreads: Vec<Spread>,
    /// Virtual ms from the heal to convergence.
    pub heal_ms: u64,
    pub links_mean: f64,
    /// Bytes a peer sends a second in a settled room with no writes
    /// (digests, pings, shuffles), and by kind of message.
    pub idle_bytes: f64,
    pub idle_kinds: Vec<(&'static str, f64)>,
}

fn percentile(mut values: Vec<u64>, p: f64) -> u64 {
    values.sort_unstable();
    let at = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(at).copied().unwrap_or(0)
}

impl Figures {
    /// Share of (write, peer) pairs reached.
    pub fn delivery(&self) -> f64 {
        let reached: usize = self.spreads.iter().map(|s| s.reached.len()).sum();
        let wanted: usize = self.spreads.iter().map(|s| s.peers - 1).sum();
        reached as f64 / wanted.max(1) as f64
    }

    /// p50 and p99 of the hops to each peer, and of the most hops a write
    /// took to reach all.
    pub fn hops(&self) -> (u64, u64, u64) {
        let each: Vec<u64> = self
            .spreads
            .iter()
            .flat_map(|s| s.reached.iter().map(|r| r.0 as u64))
            .collect();
        let all: Vec<u64> = self
            .spreads
            .iter()
            .map(|s| s.reached.iter().map(|r| r.0 as u64).max().unwrap_or(0))
            .collect();
        (
            percentile(each.clone(), 0.5),
            percentile(each, 0.99),
            percentile(all, 0.99),
        )
    }

    /// p50 and p99 of the ms to each peer, and p50 and p99 of the ms to
    /// reach all.
    pub fn times(&self) -> (u64, u64, u64, u64) {
        let each: Vec<u64> = self
            .spreads
            .iter()
            .flat_map(|s| s.reached.iter().map(|r| r.1))
            .collect();
        let all: Vec<u64> = self
            .spreads
            .iter()
            .map(|s| s.reached.iter().map(|r| r.1).max().unwrap_or(0))
            .collect();
        (
            percentile(each.clone(), 0.5),
            percentile(each, 0.99),
            percentile(all.clone(), 0.5),
            percentile(all, 0.99),
        )
    }

    /// Copies of a write received per peer (1 is the minimum); the bytes
    /// per peer of those copies and of the frames announcing or asking for
    /// it; and those bytes against one copy's per peer (the redundancy in
    /// bytes).
    pub fn redundancy(&self) -> (f64, f64, f64) {
        let copies: u64 = self.spreads.iter().map(|s| s.copies).sum();
        let bytes: u64 = self.spreads.iter().map(|s| s.bytes).sum();
        let lazy: u64 = self.spreads.iter().map(|s| s.lazy_bytes).sum();
        let peers: usize = self.spreads.iter().map(|s| s.peers - 1).sum();
        let peers = peers.max(1) as f64;
        let one_copy = bytes as f64 / copies.max(1) as f64;
        let per_peer = (bytes + lazy) as f64 / peers;
        (copies as f64 / peers, per_peer, per_peer / one_copy)
    }

    /// What a peer sends a second at idle, per link, by kind of message.
    pub fn idle_per_link(&self) -> String {
        let links = self.links_mean.max(1.0);
        let kinds: Vec<String> = self
            .idle_kinds
            .iter()
            .map(|(k, b)| format!("{k} {:.1}", b / links))
            .collect();
        format!(
            "{} peers, idle B/s per link: {:.1} ({})",
            self.peers,
            self.idle_bytes / links,
            kinds.join(", ")
        )
    }

    pub fn table_row(&self) -> String {
        let (h50, h99, hall) = self.hops();
        let (t50, t99, tall50, tall99) = self.times();
        let (copies, bytes, in_bytes) = self.redundancy();
        format!(
            "| {} | {:.2}% | {h50} / {h99} / {hall} | {t50} / {t99} | {tall50} / {tall99} | {copies:.2}x | {bytes:.0} B ({in_bytes:.2}x) | {:.1} | {:.0} B/s | {:.0} s |",
            self.peers,
            self.delivery() * 100.0,
            self.links_mean,
            self.idle_bytes,
            self.heal_ms as f64 / 1000.0
        )
    }
}

/// Checked at every step: the link bound, and (every tenth step, outside
/// the first seconds of a partition or heal) that the settled peers of
/// each side are one connected overlay.
struct Watch {
    steps: u64,
    quiet_from: u64,
}

impl Watch {
    fn check(&mut self, room: &mut Room) {
        let most = room.max_links();
        assert!(
            most <= MAX_LINKS,
            "a peer holds {most} links at {}",
            room.now
        );
        self.steps += 1;
        if self.steps % 10 == 0 && room.now >= self.quiet_from {
            let cut = room.cut_off(SETTLE_MS);
            for &i in &cut {
                eprintln!("{}", room.describe(i));
            }
            let ghosts = room.ghost_links();
            assert!(
                ghosts.is_empty(),
                "links held open that are not, at {}: {ghosts:?}",
                room.now
            );
            assert!(
                cut.is_empty(),
                "settled peers {cut:?} cut off at {} (partitioned: {})",
                room.now,
                room.net.partitioned
            );
        }
    }
}

/// Runs the scenario with `peers` peers relaying as `relay` says,
/// following `followed` writes.
pub fn run(peers: usize, seed: u64, followed: usize, relay: Relay) -> Figures {
    let mut room = Room::new(seed, relay);
    let mut watch = Watch {
        steps: 0,
        quiet_from: 0,
    };
    // Twenty newcomers a second.
    for _ in 0..peers {
        room.join();
        room.run(50, |r| watch.check(r));
    }
    room.run(SETTLE_MS * 2, |r| watch.check(r));
    let sent = room.bytes_sent;
    room.bytes_by_kind = Some(Default::default());
    room.run(SETTLE_MS, |r| watch.check(r));
    let settled_peers = room.len() as f64;
    let per_peer_second = |bytes: u64| bytes as f64 / settled_peers / (SETTLE_MS as f64 / 1000.0);
    let idle_bytes = per_peer_second(room.bytes_sent - sent);
    let idle_kinds = room
        .bytes_by_kind
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, b)| (k, per_peer_second(b)))
        .collect();
    // Writes before the followed ones: relays learn whom to push to.
    for _ in 0..10 {
        let writer = room.random_peer();
        room.write(writer);
        room.run(500, |r| watch.check(r));
    }
    let mut spreads = Vec::new();
    for _ in 0..followed {
        let i = room.random_peer();
        spreads.push(room.follow(i, 30_000));
        room.run(500, |r| watch.check(r));
    }
    let links: usize = room
        .alive()
        .map(|i| room.peers[i].as_ref().map_or(0, |p| p.mesh.active()))
        .sum();
    let links_mean = links as f64 / room.len() as f64;

    // Churn: 10% of the room leaves and as many join, per minute; a write
    // a second.
    let every = (600_000 / peers as u64).max(100);
    let mut elapsed = 0;
    while elapsed < 60_000 {
        let leaving = room.random_peer();
        room.leave(leaving);
        room.join();
        let writer = room.random_peer();
        room.write(writer);
        room.run(every, |r| watch.check(r));
        elapsed += every;
    }

    // A partition into halves for 30 s, writes on both sides.
    room.partition();
    watch.quiet_from = room.now + SETTLE_MS;
    for _ in 0..30 {
        let writer = room.random_peer();
        room.write(writer);
        room.run(1_000, |r| watch.check(r));
    }

    // The heal: until every peer agrees.
    room.heal();
    watch.quiet_from = room.now + 3 * SETTLE_MS;
    let healed_at = room.now;
    let mut converged_at = None;
    while room.now < healed_at + 180_000 {
        room.run(1_000, |r| watch.check(r));
        if converged_at.is_none() && room.converged() {
            converged_at = Some(room.now);
        }
        if converged_at.is_some() && room.now > watch.quiet_from {
            break;
        }
    }
    let converged_at = converged_at.expect("converged within 180 s of the heal");
    assert!(room.converged(), "converged, then apart again");
    room.check_writes();
    Figures {
        peers,
        spreads,
        heal_ms: converged_at - healed_at,
        links_mean,
        idle_bytes,
        idle_kinds,
    }
}
