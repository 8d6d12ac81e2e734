//! Fuzzing what a socket sends `/signal`, through the server's own
//! `handle` (no network): valid joins, signals, leaves and pings of the
//! socket, mutated, and JSON made up. Nothing panics; every error reply
//! is a refusal counted by class (or a signal to no such peer, counted
//! as dropped); what reaches another member parses as a server message;
//! and members still join and signal after.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it (as in `tests/native/common`).

use cpc_sync::protocol::Identity;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::tests::texts;
use super::*;

fn config() -> ProptestConfig {
    fuzz_config("signaling fuzz", 256)
}

/// A fuzz run's proptest configuration (as `tests/native/common`'s):
/// `CPC_FUZZ_CASES` cases (else `cases`), from a seed printed under
/// `test`, which `CPC_SEED` replays.
pub(super) fn fuzz_config(test: &str, cases: u32) -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let seed = env("CPC_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("{test}: seed {seed} (replay with CPC_SEED={seed})");
    ProptestConfig {
        cases: env("CPC_FUZZ_CASES").map_or(cases, |n| n as u32),
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn rooms() -> Rooms {
    Rooms::new(Config {
        max_room: 4,
        origins: Origins::Own,
    })
}

/// Every refusal counted, all classes together.
fn refused(rooms: &Rooms) -> u64 {
    rooms.stats().refused.iter().map(|(_, n)| n).sum()
}

/// The texts a fuzzed socket starts from: its own valid messages, and a
/// few near misses.
fn seeds(conn: &Conn, who: &Identity, member: &str) -> Vec<String> {
    let nonce = hex(&conn.nonce);
    vec![
        ClientMessage::join(who, &nonce, "r").to_text(),
        ClientMessage::join(who, &nonce, "other").to_text(),
        format!(
            r#"{{"type":"signal","to":"{member}","data":{{"description":{{"epoch":1,"type":"offer","sdp":"v=0"}}}}}}"#
        ),
        format!(r#"{{"type":"signal","to":"{member}","data":"c2VhbGVk"}}"#),
        r#"{"type":"leave"}"#.into(),
        r#"{"type":"ping"}"#.into(),
        r#"{"type":"join","room":"r","peer":"p","key":"00","proof":"00"}"#.into(),
        r#"{"type":"signal","to":"x","data":[1,2,{"a":null}],"extra":1}"#.into(),
    ]
}

/// One message: a seed text edited (`(kind, where, a char)` each), or
/// JSON made up.
#[derive(Debug, Clone)]
enum Text {
    Edited(prop::sample::Index, Vec<(u8, prop::sample::Index, char)>),
    Made(String),
}

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop::sample::select(vec![
            "\"join\"",
            "\"signal\"",
            "\"leave\"",
            "\"ping\"",
            "\"\\ud800\"",
            "1e999",
            "-0",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "type", "room", "peer", "key", "proof", "to", "data", "x",
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        2 => (
            any::<prop::sample::Index>(),
            prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<char>()), 0..4)
        )
            .prop_map(|(which, edits)| Text::Edited(which, edits)),
        1 => json_value().prop_map(Text::Made),
        1 => "\\PC{0,40}".prop_map(Text::Made),
    ]
}

fn edited(seed: &str, edits: &[(u8, prop::sample::Index, char)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for (kind, at, c) in edits {
        if chars.is_empty() {
            chars.push(*c);
        }
        let i = at.index(chars.len());
        match kind % 5 {
            0 => chars[i] = *c,
            1 => chars.truncate(i),
            2 => chars.insert(i, *c),
            3 => {
                chars.remove(i);
            }
            // A JSON-significant character.
            _ => chars[i] = ['"', '{', '}', ',', ':', '\\', '[', '0'][usize::from(*kind) % 8],
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn what_a_socket_sends_is_handled_or_refused_and_counted(
        messages in prop::collection::vec(text(), 1..12),
    ) {
        let rooms = rooms();
        let member_id = Identity::from_seed(2);
        let mut member = Conn::new(&rooms, [2; 32]);
        texts(&member);
        let join = ClientMessage::join(&member_id, &hex(&member.nonce), "r");
        prop_assert_eq!(handle(&rooms, &mut member, &join.to_text()), None);
        let member_peer = member_id.peer().to_string();

        let who = Identity::from_seed(1);
        let mut conn = Conn::new(&rooms, [1; 32]);
        texts(&conn);
        let seeds = seeds(&conn, &who, &member_peer);
        for message in messages {
            let text = match &message {
                Text::Edited(which, edits) => edited(&seeds[which.index(seeds.len())], edits),
                Text::Made(text) => text.clone(),
            };
            let (before, no_peer) = (refused(&rooms), rooms.stats().dropped_no_peer);
            let reply = handle(&rooms, &mut conn, &text);
            let counted = refused(&rooms) - before;
            let stats = rooms.stats();
            match &reply {
                Some(ServerMessage::Error { message }) => prop_assert!(
                    counted == 1 || (counted == 0 && stats.dropped_no_peer == no_peer + 1),
                    "error {:?} for {:?}, counted {}",
                    message,
                    text,
                    counted
                ),
                Some(ServerMessage::Pong) | None => {
                    prop_assert_eq!(counted, 0, "counted a refusal of {:?} without an error", text)
                }
                Some(other) => prop_assert!(false, "replied {:?} to {:?}", other, text),
            }
            // Whatever reaches the member, a page reads.
            for got in texts(&member) {
                let parsed = serde_json::from_str::<ServerMessage>(&got);
                prop_assert!(parsed.is_ok(), "the member got {:?}: {:?} (from {:?})", got, parsed, text);
            }
            texts(&conn);
        }
        // A member still joins, and signals reach it.
        let late_id = Identity::from_seed(3);
        let mut late = Conn::new(&rooms, [3; 32]);
        texts(&late);
        let join = ClientMessage::join(&late_id, &hex(&late.nonce), "r");
        let joined = handle(&rooms, &mut late, &join.to_text());
        let full = matches!(&joined, Some(ServerMessage::Error { message }) if message.starts_with("room full"));
        prop_assert!(joined.is_none() || full, "{:?}", joined);
        if !full {
            let signal = format!(r#"{{"type":"signal","to":"{member_peer}","data":{{"x":1}}}}"#);
            prop_assert_eq!(handle(&rooms, &mut late, &signal), None);
            let got = texts(&member);
            prop_assert!(got.iter().any(|t| t.contains(r#""data":{"x":1}"#)), "{:?}", got);
        }
    }
}
