//! Fuzzing a whole snapshot transfer into a live, signed newcomer: the
//! host's offer and chunks mutated in flight (in either form, as they are
//! or gzipped), or a host that lies consistently (a snapshot it changed,
//! offered and sent whole, gzipped again if the transfer is). The newcomer
//! refuses (every refusal counted in its session with the liar) or takes
//! a state the writers signed, a part of the host's at most (a sender may
//! leave values out: README, "Not verified"); it never panics, and it then
//! syncs with an honest peer to the honest peer's state, which loses
//! nothing to the lie.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common::net::{Net, Tamper};
use crate::common::{self, json, signed_node};
use crate::fuzz::{edit, Edit};
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::sync::gzip::gzip;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{LocalWrite, Refusal, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::mutate::checked;
use cpc_sync::protocol::{Operation, PeerId, StateSnapshot, VectorClock};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const NOW: u64 = 1_700_000_000_000;
const HOST: usize = 0;
const NEW: usize = 1;
const HONEST: usize = 2;
const WRITER: usize = 3;

fn config() -> proptest::test_runner::Config {
    common::fuzz_config("fuzz_snapshot", 256)
}

/// How the newcomer is set up.
#[derive(Debug, Clone, Copy)]
struct Newcomer {
    gzip: bool,
    offload: bool,
    durable: bool,
    /// Decoded and loaded a few events at a timer's task, or at once.
    sliced: bool,
}

fn newcomer_strategy() -> impl Strategy<Value = Newcomer> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(gzip, offload, durable, sliced)| Newcomer {
            gzip,
            offload,
            durable,
            sliced,
        },
    )
}

/// A room: the host (whose log is folded, so a newcomer gets a snapshot),
/// another writer, an honest peer that has it all and wrote once more
/// after, and the newcomer, not linked to anyone. The values every writer
/// signed, by key.
fn room(new: Newcomer, honest_folds: bool) -> (Net, HashMap<String, HashSet<String>>) {
    let host = signed_node(
        1,
        SyncConfig {
            gzip_snapshots: true,
            // Chunks of a few hundred bytes: a transfer is several.
            snapshot_chunk: 300,
            ..SyncConfig::default()
        },
    );
    let newcomer = signed_node(
        2,
        SyncConfig {
            gzip_snapshots: new.gzip,
            offload_seals: new.offload,
            verify_window_ms: new.offload.then_some(2),
            durable: new.durable,
            snapshot_slice: new.sliced.then_some(3),
            ..SyncConfig::default()
        },
    );
    let honest = signed_node(3, SyncConfig::default());
    let writer = signed_node(4, SyncConfig::default());
    let mut net = Net::new(vec![host, newcomer, honest, writer], NOW);
    let mut signed: HashMap<String, HashSet<String>> = HashMap::new();
    let mut write = |net: &mut Net, at: usize, key: String, value: String| {
        signed.entry(key.clone()).or_default().insert(value.clone());
        let write = LocalWrite::Set {
            key,
            value: json(&value),
        };
        net.nodes[at].apply(write, net.now).expect("a write");
    };
    for (a, b) in [(HOST, HONEST), (HOST, WRITER), (HONEST, WRITER)] {
        net.link(a, b);
    }
    // Keys written over and over, a burst (one signed run) a few writes.
    for i in 0..14u64 {
        write(&mut net, HOST, format!("h{}", i % 4), format!("\"h-{i}\""));
        if i % 3 == 0 {
            write(&mut net, WRITER, format!("w{}", i % 2), format!("{i}"));
        }
        if i % 4 == 3 {
            net.run(10, 5, &mut common::net::honest);
        }
    }
    let all = |net: &mut Net| {
        let root = net.nodes[HOST].digest();
        net.nodes[HONEST].digest() == root && net.nodes[WRITER].digest() == root
    };
    assert!(net.run_until(20_000, 100, &mut common::net::honest, all));
    net.nodes[HOST].fold();
    if honest_folds {
        net.nodes[HONEST].fold();
    }
    for (a, b) in [(HOST, HONEST), (HOST, WRITER), (HONEST, WRITER)] {
        net.unlink(a, b);
    }
    write(&mut net, HONEST, "late".into(), "\"after the fold\"".into());
    net.run(10, 5, &mut common::net::honest);
    (net, signed)
}

/// A node's state as key -> value (JSON text).
fn state(node: &SyncNode) -> BTreeMap<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(&node.engine().state_json()).expect("state JSON");
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

/// Whether every value `node` shows is one its key's writer signed, and
/// its clock claims no event beyond what each writer wrote.
fn shows_only_signed(
    node: &SyncNode,
    signed: &HashMap<String, HashSet<String>>,
    writers: &VectorClock,
) -> Result<(), String> {
    for (key, value) in state(node) {
        if !signed.get(&key).is_some_and(|v| v.contains(&value)) {
            return Err(format!(
                "{}: {key} = {value}, which no writer signed",
                node.peer()
            ));
        }
    }
    for (origin, seq) in node.engine().clock().iter() {
        if seq > writers.get(origin) {
            return Err(format!("{}: clock claims {origin}:{seq}", node.peer()));
        }
    }
    Ok(())
}

/// `part`'s entries are `whole`'s.
fn is_part_of(part: &BTreeMap<String, String>, whole: &BTreeMap<String, String>) -> bool {
    part.iter().all(|(k, v)| whole.get(k) == Some(v))
}

/// One change to a decoded snapshot, as a lying host might make it.
fn change(snapshot: &mut StateSnapshot, (kind, at, byte): (u8, prop::sample::Index, u8)) {
    let n = snapshot.events.len();
    if n == 0 {
        return;
    }
    let i = at.index(n);
    match kind % 9 {
        0 if !snapshot.live.is_empty() => {
            let i = at.index(snapshot.live.len());
            snapshot.live[i] = !snapshot.live[i];
        }
        1 => {
            snapshot.events.remove(i);
            if i < snapshot.live.len() {
                snapshot.live.remove(i);
            }
        }
        2 => {
            if let Operation::Register(RegisterOp::Write { value, .. }) = &mut snapshot.events[i].op
            {
                *value = json("\"forged\"");
            }
        }
        3 => snapshot.events[i].key = format!("h{}", byte % 5).as_str().into(),
        4 => {
            let (origin, seq) = snapshot
                .version_vector
                .iter()
                .nth(usize::from(byte) % snapshot.version_vector.len().max(1))
                .unwrap_or((PeerId(1), 0));
            let seq = match byte % 3 {
                0 => seq + 1,
                1 => seq.saturating_sub(1),
                _ => 0,
            };
            snapshot.version_vector.set(origin, seq);
        }
        5 => {
            let hlc = &mut snapshot.events[i].hlc;
            *hlc = cpc_sync::protocol::Timestamp::new(hlc.millis() ^ (u64::from(byte) << 20), 0);
        }
        6 => {
            let seal = snapshot.events[i].seal.take();
            let j = (i + 1 + usize::from(byte)) % n;
            if j != i {
                snapshot.events[j].seal = seal;
            }
        }
        7 => snapshot.live.truncate(i),
        _ => snapshot.live.push(byte % 2 == 0),
    }
}

/// How the host's transfer is tampered with.
#[derive(Debug, Clone)]
enum Lie {
    /// Edits of the `n`th offer or chunk frame the host sends the
    /// newcomer (its check made right again when `checked`).
    InFlight {
        n: usize,
        edits: Vec<Edit>,
        checked: bool,
    },
    /// A field of the `n`th offer or chunk message changed.
    Field { n: usize, field: u8, by: u64 },
    /// The snapshot changed (`changes`), or its bytes edited (`edits`),
    /// and sent consistently: the offer's totals, the chunks, a gzipped
    /// form of its own. Every transfer when `always`, else the first.
    Consistent {
        changes: Vec<(u8, prop::sample::Index, u8)>,
        edits: Vec<Edit>,
        always: bool,
    },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<usize>(),
            any::<prop::sample::Index>(),
        ),
        1..4,
    )
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        (0usize..8, edits(), prop::bool::weighted(0.8))
            .prop_map(|(n, edits, checked)| Lie::InFlight { n, edits, checked }),
        (0usize..8, any::<u8>(), any::<u64>()).prop_map(|(n, field, by)| Lie::Field {
            n,
            field,
            by
        }),
        (
            prop::collection::vec(
                (any::<u8>(), any::<prop::sample::Index>(), any::<u8>()),
                1..4
            ),
            any::<bool>(),
        )
            .prop_map(|(changes, always)| Lie::Consistent {
                changes,
                edits: vec![],
                always
            }),
        (edits(), any::<bool>()).prop_map(|(edits, always)| Lie::Consistent {
            changes: vec![],
            edits,
            always
        }),
    ]
}

fn is_transfer(frame: &[u8]) -> Option<Message> {
    match wire::decode(frame) {
        Ok(Decoded::Message(
            m @ (Message::SnapshotOffer { .. } | Message::SnapshotChunk { .. }),
        )) => Some(m),
        _ => None,
    }
}

fn field(message: Message, field: u8, by: u64) -> Message {
    match message {
        Message::SnapshotOffer {
            id,
            total,
            mut clock,
            gzip,
        } => {
            let mut gzip = gzip;
            let mut total = total;
            match field % 6 {
                0 => total = total.wrapping_add(by % 64).wrapping_sub(32),
                1 => total = by,
                2 => clock.set(PeerId(by % 8), by % 100),
                3 => gzip = None,
                4 => {
                    if let Some(g) = &mut gzip {
                        g.total = g.total.wrapping_add(by % 64).wrapping_sub(32);
                    }
                }
                _ => {
                    if let Some(g) = &mut gzip {
                        g.id.0[(by % 32) as usize] ^= 1;
                    }
                }
            }
            Message::SnapshotOffer {
                id,
                total,
                clock,
                gzip,
            }
        }
        Message::SnapshotChunk {
            mut id,
            mut offset,
            mut total,
            mut bytes,
        } => {
            match field % 5 {
                0 => offset = offset.wrapping_add(by % 16).wrapping_sub(8),
                1 => total = total.wrapping_add(by % 16).wrapping_sub(8),
                2 => id.0[(by % 32) as usize] ^= 1,
                3 => bytes.truncate((by as usize) % (bytes.len() + 1)),
                _ => {
                    if !bytes.is_empty() {
                        let i = (by as usize) % bytes.len();
                        bytes[i] ^= (by >> 8) as u8 | 1;
                    }
                }
            }
            Message::SnapshotChunk {
                id,
                offset,
                total,
                bytes,
            }
        }
        other => other,
    }
}

/// A tamperer lying as `lie` says about the host's transfer to the
/// newcomer: `host` and `new` are their peer ids, `raw` the host's
/// snapshot (what a consistent liar changes).
fn liar(
    lie: Lie,
    host: PeerId,
    new: PeerId,
    raw: Vec<u8>,
) -> impl FnMut(PeerId, PeerId, Vec<u8>) -> Vec<Vec<u8>> {
    let mut n = 0;
    let mut lies = 0;
    // What a consistent liar sends instead: (raw, gzipped) and what its
    // offers named.
    let forged = match &lie {
        Lie::Consistent { changes, edits, .. } => {
            let mut bytes = raw.clone();
            if !changes.is_empty() {
                if let Ok(mut s) = StateSnapshot::decode(&raw) {
                    for c in changes {
                        change(&mut s, *c);
                    }
                    s.events.sort_by_key(|e| e.id);
                    bytes = s.encode();
                }
            }
            for e in edits {
                edit(&mut bytes, *e, &raw);
            }
            let gzipped = gzip(&bytes).expect("gzip");
            Some((bytes, gzipped))
        }
        _ => None,
    };
    let mut offered_gzip: HashSet<[u8; 32]> = HashSet::new();
    move |from, to, frame| {
        if from != host || to != new {
            return vec![frame];
        }
        let Some(message) = is_transfer(&frame) else {
            return vec![frame];
        };
        let k = n;
        n += 1;
        match &lie {
            Lie::InFlight {
                n,
                edits,
                checked: c,
            } if *n == k => {
                let mut bad = frame.clone();
                for e in edits {
                    edit(&mut bad, *e, &frame);
                }
                vec![if *c { checked(bad) } else { bad }]
            }
            Lie::Field { n, field: f, by } if *n == k => {
                wire::encode(&field(message, *f, *by), 0xf00d)
            }
            Lie::Consistent { always, .. } => {
                let (bytes, gzipped) = forged.as_ref().expect("forged");
                if lies > 0 && !always {
                    return vec![frame];
                }
                match message {
                    Message::SnapshotOffer {
                        id, clock, gzip, ..
                    } => {
                        if let Some(g) = gzip {
                            offered_gzip.insert(g.id.0);
                        }
                        let offer = Message::SnapshotOffer {
                            id,
                            total: bytes.len() as u64,
                            clock,
                            gzip: gzip.map(|g| wire::Gzipped {
                                id: g.id,
                                total: gzipped.len() as u64,
                            }),
                        };
                        wire::encode(&offer, 0xbeef)
                    }
                    // The whole transfer at its first chunk; the host's
                    // others dropped.
                    Message::SnapshotChunk { id, offset, .. } => {
                        if offset != 0 {
                            return vec![];
                        }
                        lies += 1;
                        let payload = if offered_gzip.contains(&id.0) {
                            gzipped
                        } else {
                            bytes
                        };
                        let mut frames = Vec::new();
                        let mut at = 0;
                        while at < payload.len() || at == 0 {
                            let end = (at + 300).min(payload.len());
                            let chunk = Message::SnapshotChunk {
                                id,
                                offset: at as u64,
                                total: payload.len() as u64,
                                bytes: payload[at..end].to_vec(),
                            };
                            frames.extend(wire::encode(&chunk, 0xbeef));
                            if end == payload.len() {
                                break;
                            }
                            at = end;
                        }
                        frames
                    }
                    _ => vec![frame],
                }
            }
            _ => vec![frame],
        }
    }
}

/// The host's snapshot bytes, as its first transfer to a fresh peer
/// sends them (not gzipped).
fn host_snapshot(net: &mut Net) -> Vec<u8> {
    net.nodes[HOST].engine().encode_snapshot()
}

fn check(lie: Lie, new: Newcomer, honest_folds: bool) -> Result<(), TestCaseError> {
    let (mut net, signed) = room(new, honest_folds);
    let (host, newcomer) = (net.nodes[HOST].peer(), net.nodes[NEW].peer());
    let host_state = state(&net.nodes[HOST]);
    let honest_state = state(&net.nodes[HONEST]);
    let mut writers = net.nodes[HONEST].engine().clock().clone();
    writers.merge(net.nodes[HOST].engine().clock());
    let raw = host_snapshot(&mut net);

    // The transfer, lied about, for long enough that stalls are asked
    // again and given up, and a lie found is refused.
    net.link(HOST, NEW);
    let mut tamper = liar(lie, host, newcomer, raw);
    net.run(20_000, 250, &mut tamper);
    let refused: Vec<Refusal> = net.seen[NEW].of(host).cloned().collect();
    let counted = net.nodes[NEW].stats(host).map_or(0, |s| s.rejected);
    prop_assert_eq!(
        counted,
        refused.len() as u64,
        "refusals of the liar reported {:?}, counted {}",
        refused,
        counted
    );
    shows_only_signed(&net.nodes[NEW], &signed, &writers).map_err(TestCaseError::fail)?;
    let took = state(&net.nodes[NEW]);
    if std::env::var("CPC_FUZZ_DEBUG").is_ok() {
        println!("took {} keys, refused {:?}", took.len(), refused);
    }
    prop_assert!(
        is_part_of(&took, &host_state),
        "took {:?}, not a part of the host's {:?}",
        took,
        host_state
    );

    // The liar goes quiet; an honest peer brings the newcomer to its
    // state.
    net.link(HONEST, NEW);
    let mut mute = |from: PeerId, _: PeerId, frame: Vec<u8>| {
        if from == host {
            vec![]
        } else {
            vec![frame]
        }
    };
    let mute: &mut Tamper<'_> = &mut mute;
    let settled = net.run_until(60_000, 250, mute, |net| {
        let root = net.nodes[HONEST].digest();
        net.nodes[NEW].digest() == root
            && net.nodes[NEW].engine().clock() == net.nodes[HONEST].engine().clock()
    });
    prop_assert!(
        settled,
        "the newcomer never reached the honest peer's state: {:?} vs {:?} (refused {:?})",
        net.nodes[NEW].engine().clock(),
        net.nodes[HONEST].engine().clock(),
        net.seen[NEW].rejected
    );
    let end = state(&net.nodes[NEW]);
    prop_assert_eq!(&end, &state(&net.nodes[HONEST]));
    // A value the liar left out (a live mark cleared, a run dropped) is
    // missing at the newcomer until Merkle repair under equal clocks joins
    // its leaf with the honest peer's by evidence: the value comes back,
    // and the honest peer loses nothing (no event supersedes it).
    prop_assert_eq!(&end, &honest_state, "the honest peer's state changed");
    shows_only_signed(&net.nodes[HONEST], &signed, &writers).map_err(TestCaseError::fail)?;
    let still = LocalWrite::Set {
        key: "still-works".into(),
        value: json("1"),
    };
    net.nodes[NEW]
        .apply(still, net.now)
        .expect("the newcomer still writes");
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_lied_about_snapshot_transfer_is_refused_or_signed(
        lie in lie(),
        new in newcomer_strategy(),
        honest_folds in any::<bool>(),
    ) {
        check(lie, new, honest_folds)?;
    }
}

/// Without a lie, the newcomer takes the host's snapshot whole, as it
/// is or gzipped, and refuses nothing: the fuzz's baseline.
#[test]
fn an_honest_transfer_loads_the_hosts_state() {
    for gzip in [false, true] {
        let new = Newcomer {
            gzip,
            offload: true,
            durable: true,
            sliced: true,
        };
        let (mut net, _) = room(new, false);
        let host = net.nodes[HOST].peer();
        net.link(HOST, NEW);
        net.run(5_000, 250, &mut common::net::honest);
        assert!(
            net.seen[NEW].rejected.is_empty(),
            "{:?}",
            net.seen[NEW].rejected
        );
        assert_eq!(state(&net.nodes[NEW]), state(&net.nodes[HOST]));
        assert_eq!(
            net.nodes[NEW].engine().clock(),
            net.nodes[HOST].engine().clock()
        );
        assert!(net.nodes[NEW].stats(host).is_some());
    }
}
