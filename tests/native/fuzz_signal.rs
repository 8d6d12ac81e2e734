//! Fuzzing signaling JSON where pages read it (the server's and other
//! tabs' messages, negotiation steps, sealed or not) and where the server
//! reads it (`ClientMessage`, join proofs): nothing panics, anything not a
//! message is a typed error or `None`, and a sealed step altered on the
//! way never opens. The server's own handling of every message is fuzzed
//! in `src/bin/cpc-signal/signaling/fuzz.rs`; here a real `cpc-signal`
//! also takes a burst of mutated messages and then serves a join.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common;
use cpc_sync::protocol::json;
use cpc_sync::protocol::room::{KdfCost, RoomSecret};
use cpc_sync::protocol::signal::{
    verify_join, ClientMessage, Negotiation, SdpKind, ServerMessage, TabMessage,
};
use cpc_sync::protocol::Identity;
use proptest::prelude::*;

fn config() -> proptest::test_runner::Config {
    common::fuzz_config("fuzz_signal", 512)
}

/// Valid messages of every kind a page or the server reads, to mutate.
fn samples() -> Vec<String> {
    let who = Identity::from_seed(1);
    let step = Negotiation::Candidate {
        epoch: 3,
        reply_to: None,
        candidate: "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    };
    vec![
        ClientMessage::join(&who, &"ab".repeat(32), "r").to_text(),
        r#"{"type":"signal","to":"p","data":{"description":{"epoch":1,"type":"offer","sdp":"v=0"}}}"#.into(),
        r#"{"type":"hello","nonce":"00ff"}"#.into(),
        r#"{"type":"peers","room":"r","peers":["a","b"],"sampled":true}"#.into(),
        r#"{"type":"signal","from":"a","data":{"candidate":{"epoch":2,"candidate":"c","sdpMid":null,"sdpMLineIndex":1}}}"#.into(),
        r#"{"type":"here","from":"a","to":"b"}"#.into(),
        r#"{"type":"unkeep","reason":"full"}"#.into(),
        step.to_data(None, [0; 12], "a", "b").to_text(),
    ]
}

fn edited(seed: &str, edits: &[(u8, prop::sample::Index, char)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for (kind, at, c) in edits {
        if chars.is_empty() {
            chars.push(*c);
        }
        let i = at.index(chars.len());
        match kind % 6 {
            0 => chars[i] = *c,
            1 => chars.truncate(i),
            2 => chars.insert(i, *c),
            3 => {
                chars.remove(i);
            }
            4 => chars[i] = chars[i].to_ascii_uppercase(),
            // A character JSON or hex reads.
            _ => chars[i] = ['"', '{', '}', ',', ':', '\\', '[', '0', '+', '-'][*c as usize % 10],
        }
    }
    chars.into_iter().collect()
}

fn edits() -> impl Strategy<Value = Vec<(u8, prop::sample::Index, char)>> {
    prop::collection::vec(
        (any::<u8>(), any::<prop::sample::Index>(), any::<char>()),
        0..5,
    )
}

/// Every reader of signaling JSON, on `text`.
fn read_all(text: &str) {
    let _ = serde_json::from_str::<ClientMessage>(text);
    let _ = serde_json::from_str::<ServerMessage>(text);
    let _ = serde_json::from_str::<TabMessage>(text);
    if let Ok(value) = json::parse(text) {
        let _ = ServerMessage::from_value(value.clone());
        let _ = TabMessage::from_value(value.clone());
        let _ = Negotiation::from_value(value.clone());
        let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
        let _ = Negotiation::from_data(value, Some(&room), "a", "b");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn signaling_readers_never_panic(
        which in any::<prop::sample::Index>(),
        edits in edits(),
        junk in "\\PC{0,64}",
    ) {
        let samples = samples();
        read_all(&edited(&samples[which.index(samples.len())], &edits));
        read_all(&junk);
    }

    /// A join's fields edited: refused with a typed error, or the very
    /// join that was signed.
    #[test]
    fn a_join_proof_edited_is_refused(
        field in 0usize..4,
        edits in edits(),
    ) {
        let who = Identity::from_seed(1);
        let nonce = [5u8; 32];
        let ClientMessage::Join { room, peer, key, proof } =
            ClientMessage::join(&who, &"05".repeat(32), "r")
        else {
            unreachable!()
        };
        let mut fields = [room, peer, key, proof];
        let before = fields.clone();
        fields[field] = edited(&fields[field], &edits);
        let [room, peer, key, proof] = &fields;
        let verdict = verify_join(&nonce, room, peer, key, proof);
        // The key and proof are hex, read either case: the same bytes.
        let same = fields.iter().zip(&before).enumerate().all(|(i, (a, b))| {
            if i < 2 { a == b } else { a.eq_ignore_ascii_case(b) }
        });
        prop_assert_eq!(verdict.is_ok(), same, "{:?} for {:?}", verdict, fields);
    }

    /// A sealed negotiation step, its text edited: opened only unaltered.
    #[test]
    fn a_sealed_step_altered_never_opens(edits in edits(), nonce in any::<[u8; 12]>()) {
        let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
        let step = Negotiation::Description { epoch: 9, reply_to: Some(4), kind: SdpKind::Answer, sdp: "v=0".into() };
        let sealed = step.to_data(Some(&room), nonce, "a", "b");
        let text = sealed.as_str().expect("a sealed step is a string").to_string();
        let altered = edited(&text, &edits);
        let opened = Negotiation::from_data(
            json::Json::String(altered.clone()),
            Some(&room),
            "a",
            "b",
        );
        // Hex is read either case: the same bytes.
        if altered.eq_ignore_ascii_case(&text) {
            prop_assert_eq!(opened, Some(step));
        } else {
            prop_assert_eq!(opened, None, "{:?} opened", altered);
        }
    }
}

/// A real `cpc-signal` takes mutated messages (a seeded burst, printed)
/// from one socket, answers every refusal with an error a page reads,
/// and then still answers pings and serves a join and a signal.
#[cfg(feature = "server")]
#[tokio::test]
async fn a_real_server_takes_mutated_messages_and_serves_on() {
    use crate::server::Server;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;

    async fn next(ws: &mut crate::server::Ws) -> Option<ServerMessage> {
        loop {
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
            match got {
                Ok(Some(Ok(Ws::Text(text)))) => {
                    return Some(
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
                    )
                }
                Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }
    async fn hello(ws: &mut crate::server::Ws) -> String {
        match next(ws).await {
            Some(ServerMessage::Hello { nonce }) => nonce,
            other => panic!("no hello: {other:?}"),
        }
    }

    let server = Server::start(&[("ORIGINS", "*")]);
    let mut rng = common::Rng::from_env("fuzz_signal::a_real_server");
    let samples = samples();
    let mut fuzzed = server.connect(None).await.expect("connect");
    hello(&mut fuzzed).await;
    for _ in 0..40 {
        let seed = &samples[rng.below(samples.len())];
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(chars.len().max(1));
            let c = ['"', '{', '}', ',', ':', '\\', 'x', '0', 'é'][rng.below(9)];
            match rng.below(3) {
                0 if i < chars.len() => chars[i] = c,
                1 => chars.insert(i.min(chars.len()), c),
                _ => chars.truncate(i),
            }
        }
        let text: String = chars.into_iter().collect();
        fuzzed.send(Ws::Text(text.into())).await.expect("send");
    }
    fuzzed
        .send(Ws::Text(ClientMessage::Ping.to_text().into()))
        .await
        .expect("send");
    // Every reply a page reads (`next` parses it), the pong last.
    loop {
        match next(&mut fuzzed).await {
            Some(ServerMessage::Pong) => break,
            Some(_) => {}
            None => panic!("no pong after the mutated messages"),
        }
    }
    // Two members join and signal.
    let (a, b) = (Identity::from_seed(11), Identity::from_seed(12));
    let mut wa = server.connect(None).await.expect("connect");
    let nonce = hello(&mut wa).await;
    let join = ClientMessage::join(&a, &nonce, "fuzzed-room").to_text();
    wa.send(Ws::Text(join.into())).await.expect("send");
    assert!(matches!(
        next(&mut wa).await,
        Some(ServerMessage::Peers { .. })
    ));
    let mut wb = server.connect(None).await.expect("connect");
    let nonce = hello(&mut wb).await;
    let join = ClientMessage::join(&b, &nonce, "fuzzed-room").to_text();
    wb.send(Ws::Text(join.into())).await.expect("send");
    assert!(
        matches!(next(&mut wb).await, Some(ServerMessage::Peers { peers, .. }) if peers == [a.peer().to_string()])
    );
    let signal = format!(
        r#"{{"type":"signal","to":"{}","data":{{"x":1}}}}"#,
        a.peer()
    );
    wb.send(Ws::Text(signal.into())).await.expect("send");
    loop {
        match next(&mut wa).await {
            Some(ServerMessage::Signal { from, .. }) => {
                assert_eq!(from, b.peer().to_string());
                break;
            }
            Some(ServerMessage::Joined { .. }) => {}
            other => panic!("no signal: {other:?}"),
        }
    }
}

/// A sealed step whose hex has a `+` for a leading `0` of a byte (`0a`
/// as `+a`): `u8::from_str_radix` reads both as 10, so the altered text
/// opened as the step. Found by `a_sealed_step_altered_never_opens`.
#[test]
fn a_sealed_step_with_a_plus_sign_does_not_open() {
    let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
    let step = Negotiation::Description {
        epoch: 9,
        reply_to: None,
        kind: SdpKind::Answer,
        sdp: "v=0".into(),
    };
    let sealed = step.to_data(Some(&room), [0x0a; 12], "a", "b");
    let text = sealed.as_str().expect("a string");
    assert!(text.starts_with("0a"));
    let altered = format!("+{}", &text[1..]);
    let opened = Negotiation::from_data(json::Json::String(altered), Some(&room), "a", "b");
    assert_eq!(opened, None);
}
