//! `protocol::json` against serde_json, which it replaces in the wasm:
//! canonical text is hashed and signed inside events, so for any input the
//! two must accept the same texts and write the same bytes; and what the
//! app is shown as JSON must be what serde_json wrote of it before.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common;
use crate::common::strategies::{self, clock, peer, value};

use cpc_sync::protocol::engine::{Candidate, Conflict};
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::json::{self, Json, WriteJson};
use cpc_sync::protocol::seal::Seal;
use cpc_sync::protocol::signal::{ClientMessage, Negotiation, SdpKind, TabMessage};
use cpc_sync::protocol::sync::PeerReport;
use cpc_sync::protocol::{
    EventId, JsonValue, Operation, P2PEvent, PeerId, ReconciliationRequest, ReconciliationResponse,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(test: &str) -> Config {
    common::fuzz_config(test, 2_000)
}

/// Number texts, valid or nearly: signs, leading zeros, long runs of
/// digits (beyond u64), fractions, exponents small, huge and overflowing.
fn number() -> impl Strategy<Value = String> {
    let digits = prop_oneof![
        "[0-9]{1,3}",
        "[1-9][0-9]{15,22}",
        "[0-9]{30,60}",
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("9223372036854775808".to_string()),
        Just("9223372036854775809".to_string()),
    ];
    let fraction = prop_oneof![
        Just(String::new()),
        "\\.[0-9]{1,4}",
        "\\.[0-9]{15,40}",
        Just(".".to_string()),
    ];
    let exponent = prop_oneof![
        Just(String::new()),
        "[eE][+-]?[0-9]{1,3}",
        "[eE][+-]?(30[0-9]|32[0-9]|2147483647|2147483648|99999999999)",
        Just("e".to_string()),
    ];
    ("-?", digits, fraction, exponent).prop_map(|(s, d, f, e)| format!("{s}{d}{f}{e}"))
}

/// String texts: plain, unicode, control characters raw and escaped,
/// every short escape, surrogate pairs and lone surrogates.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z /]{0,4}",
        "[é€😀\u{7f}\u{80}\u{ffff}]{1,2}",
        "[\u{0}-\u{1f}]",
        Just("\\\"".to_string()),
        Just("\\\\".to_string()),
        Just("\\/".to_string()),
        "\\\\[bfnrt]",
        "\\\\u00[0-1][0-9a-fA-F]",
        "\\\\u[0-9a-fA-F]{4}",
        "\\\\u[dD][89abAB][0-9a-f]{2}\\\\u[dD][c-fC-F][0-9a-f]{2}",
        "\\\\u[dD][89abAB][0-9a-f]{2}",
        "\\\\u[dD][c-fC-F][0-9a-f]{2}",
        Just("\\x".to_string()),
        Just("\\u12".to_string()),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\n\t", "\r", "\u{a0}"])
}

/// JSON-ish text, mostly valid: nested arrays and objects (duplicate keys
/// too) of numbers, strings and literals.
fn text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        prop::sample::select(vec!["null", "true", "false", "nul", "tru"]).prop_map(String::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                prop::collection::vec((inner.clone(), ws()), 0..6),
                any::<bool>()
            )
                .prop_map(|(items, trailing)| {
                    let body: Vec<String> =
                        items.iter().map(|(t, w)| format!("{w}{t}{w}")).collect();
                    format!("[{}{}]", body.join(","), if trailing { "," } else { "" })
                }),
            prop::collection::vec((prop_oneof!["\"[a-c]{0,2}\"", string()], inner, ws()), 0..6)
                .prop_map(|entries| {
                    let body: Vec<String> = entries
                        .iter()
                        .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
        ]
    })
}

/// Valid and broken texts alike: some with a byte cut or changed.
fn any_text() -> impl Strategy<Value = String> {
    (
        ws(),
        text(),
        ws(),
        any::<u8>(),
        any::<prop::sample::Index>(),
        0..6u8,
    )
        .prop_map(|(w1, t, w2, byte, at, how)| {
            let mut s = format!("{w1}{t}{w2}");
            let i = at.index(s.len() + 1);
            if !s.is_char_boundary(i) {
                return s;
            }
            match how {
                0 => s.truncate(i),
                1 => s.insert(i, (byte % 128) as char),
                _ => {}
            }
            s
        })
}

fn same_as_serde_json(text: &str) -> Result<(), TestCaseError> {
    let theirs = serde_json::from_str::<serde_json::Value>(text);
    let ours = json::parse(text);
    prop_assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "parse of {:?}: {:?} / {:?}",
        text,
        ours,
        theirs
    );
    if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
        let canonical = serde_json::to_string(&theirs).unwrap();
        prop_assert_eq!(&ours.to_text(), &canonical, "canonical text of {:?}", text);
        let value = JsonValue::parse(text).unwrap();
        prop_assert_eq!(value.as_str(), canonical.as_str());
        // The serde impls write and read the same.
        prop_assert_eq!(serde_json::to_string(&ours).unwrap(), canonical.clone());
        prop_assert_eq!(serde_json::from_str::<Json>(text).unwrap(), ours);
    }
    let theirs = serde_json::from_str::<serde::de::IgnoredAny>(text);
    let ours = json::check(text);
    prop_assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "check of {:?}: {:?} / {:?}",
        text,
        ours,
        theirs
    );
    Ok(())
}

proptest! {
    #![proptest_config(config("json_texts"))]

    #[test]
    fn texts_read_and_write_as_serde_json(text in any_text()) {
        same_as_serde_json(&text)?;
    }

    #[test]
    fn numbers_read_and_write_as_serde_json(n in number(), w in ws()) {
        same_as_serde_json(&format!("{w}{n}{w}"))?;
        same_as_serde_json(&format!("[{n}]"))?;
    }

    #[test]
    fn strings_read_and_write_as_serde_json(s in string()) {
        same_as_serde_json(&s)?;
    }
}

proptest! {
    #![proptest_config(config("json_scalars"))]

    #[test]
    fn floats_write_as_serde_json(bits in any::<u64>(), small in any::<f64>()) {
        for f in [f64::from_bits(bits), small] {
            if f.is_finite() {
                let mut ours = String::new();
                json::write_f64(&mut ours, f);
                prop_assert_eq!(ours, serde_json::to_string(&f).unwrap());
            }
        }
    }

    #[test]
    fn any_string_writes_as_serde_json(s in any::<String>(), t in "[\u{0}-\u{7f}]{0,16}") {
        prop_assert_eq!(json::quote(&s), serde_json::to_string(&s).unwrap());
        prop_assert_eq!(json::quote(&t), serde_json::to_string(&t).unwrap());
    }
}

#[test]
fn edge_texts_read_as_serde_json() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    for text in [
        "",
        " ",
        "-",
        "-0",
        "-0.0",
        "0",
        "00",
        "01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "1E2",
        "1e400",
        "-1e400",
        "1e-400",
        "0e99999999999",
        "1e-99999999999",
        "1e99999999999",
        "0.30000000000000004",
        "123456789012345678901234567890",
        "18446744073709551616.5",
        "-9223372036854775808",
        "-9223372036854775809",
        "2.2250738585072011e-308",
        "4.9e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        r#"{"b":1,"a":2,"b":3}"#,
        r#"{"a":1,}"#,
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\" 1}",
        "{1:2}",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud83d\\n\"",
        "\"\u{1}\"",
        "\"\u{7f}\"",
        "nul",
        "nulll",
        "[] x",
        "\u{feff}1",
        &deep(127),
        &deep(128),
        &deep(20_000),
        &deep_objects(127),
        &deep_objects(128),
    ] {
        same_as_serde_json(text).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn values_order_and_policies_as_before() {
    // Set members shown by type, then value (numbers by value).
    let mut members: Vec<JsonValue> = ["\"b\"", "1e400", "10", "9.5", "null", "[1]", "-3"]
        .iter()
        .map(|t| JsonValue::verbatim(t).unwrap())
        .collect();
    members.sort_by(|a, b| a.display_cmp(b));
    let shown: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
    // "1e400" is JSON by syntax but not a number serde_json would read:
    // it shows as null did before.
    assert_eq!(shown, ["1e400", "null", "-3", "9.5", "10", "\"b\"", "[1]"]);
    assert_eq!(JsonValue::string("a\"\u{1}").as_str(), r#""a\"\u0001""#);
}

#[test]
fn signaling_writes_as_serde_derive() {
    let data = Json::from(serde_json::json!({"z": [1, -2, 0.5, "s\n"], "a": null}));
    let client = [
        ClientMessage::Join {
            room: "r\"".into(),
            peer: "p".into(),
            key: "k".into(),
            proof: "f".into(),
        },
        ClientMessage::Signal {
            to: "t".into(),
            data: data.clone(),
        },
        ClientMessage::Leave,
        ClientMessage::Ping,
    ];
    for message in &client {
        assert_eq!(message.to_text(), serde_json::to_string(message).unwrap());
    }
    let tabs = [
        TabMessage::Hello { from: "a".into() },
        TabMessage::Here {
            from: "a".into(),
            to: "b".into(),
        },
        TabMessage::Signal {
            from: "a".into(),
            to: "b".into(),
            data,
        },
        TabMessage::Bye { from: "a".into() },
    ];
    for message in &tabs {
        assert_eq!(message.to_text(), serde_json::to_string(message).unwrap());
        assert_eq!(
            TabMessage::from_text(&message.to_text()).as_ref(),
            Some(message)
        );
    }
    let steps = [
        Negotiation::Description {
            epoch: 5,
            reply_to: Some(u64::MAX),
            kind: SdpKind::Answer,
            sdp: "v=0\r\n".into(),
        },
        Negotiation::Description {
            epoch: 3,
            reply_to: None,
            kind: SdpKind::Offer,
            sdp: "v=0\r\n".into(),
        },
        Negotiation::Candidate {
            epoch: u64::MAX,
            reply_to: Some(7),
            candidate: "c".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(1),
        },
        Negotiation::Candidate {
            epoch: 0,
            reply_to: None,
            candidate: "c".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        },
    ];
    for step in &steps {
        let data = step.to_data(None, [0; 12], "a", "b");
        // Before: `serde_json::to_value` of the step (keys sorted).
        let before = serde_json::to_value(step).unwrap();
        assert_eq!(data.to_text(), serde_json::to_string(&before).unwrap());
        assert_eq!(
            Negotiation::from_data(data, None, "a", "b").as_ref(),
            Some(step)
        );
    }
}

// What the app is shown (`protocol::json::WriteJson`), against serde_json's
// text of the same values' `Serialize` form.

/// An event whose key is any text (escapes included).
/// An event whose key is any text (escapes included) and whose seal, if
/// any, has any bytes.
fn event() -> impl Strategy<Value = P2PEvent> {
    let bytes = any::<[u8; 32]>();
    let seal = (any::<u64>(), bytes, bytes, bytes)
        .prop_map(|(first, key, r, s)| Box::new(Seal::new(first, key, [r, s])));
    (strategies::event(), any::<String>(), prop::option::of(seal)).prop_map(|(event, key, seal)| {
        P2PEvent {
            key: key.into(),
            seal,
            ..event
        }
    })
}

fn report() -> impl Strategy<Value = PeerReport> {
    (
        (
            any::<String>(),
            prop::sample::select(vec!["connected", "connecting", "new", "failed"]),
        ),
        (
            prop::option::of(any::<f64>()),
            any::<u64>(),
            prop::option::of(any::<String>()),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (prop::option::of(clock()), prop::option::of(any::<String>())),
        (
            prop::option::of(prop::sample::select(vec!["even", "ahead", "behind"])),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (id, state),
                (rtt, rejected, last_error),
                (bytes_in, bytes_out, buffered),
                (clock, digest),
                (standing, server, relayed),
            )| {
                PeerReport {
                    id,
                    state,
                    // Any `f64`: a non-finite one is `null`, as serde_json writes it.
                    rtt,
                    rejected,
                    last_error,
                    bytes_in,
                    bytes_out,
                    buffered,
                    clock,
                    digest,
                    standing,
                    server,
                    relayed,
                }
            },
        )
}

proptest! {
    #![proptest_config(config("json_shown"))]

    #[test]
    fn reconciliation_messages_write_as_serde_json(
        events in prop::collection::vec(event(), 0..4),
        source in peer(),
        target in peer(),
    ) {
        let request = ReconciliationRequest {
            message_type: Default::default(),
            source_peer_id: source,
            target_peer_id: target,
            key: events.first().map(|e| e.key.clone()),
            conflicting_events: events.clone(),
        };
        prop_assert_eq!(request.to_json_text(), serde_json::to_string(&request).unwrap());
        let response = ReconciliationResponse {
            message_type: Default::default(),
            source_peer_id: source,
            target_peer_id: target,
            resolution_events: events,
        };
        prop_assert_eq!(response.to_json_text(), serde_json::to_string(&response).unwrap());
    }

    #[test]
    fn views_write_as_serde_json(
        clock in clock(),
        conflicts in prop::collection::vec((any::<String>(), prop::collection::vec((value(), peer()), 0..3)), 0..3),
        reports in prop::collection::vec(report(), 0..3),
    ) {
        prop_assert_eq!(clock.to_json_text(), serde_json::to_string(&clock).unwrap());
        let conflicts: Vec<Conflict> = conflicts
            .into_iter()
            .map(|(key, candidates)| Conflict {
                key,
                candidates: candidates.into_iter().map(|(value, peer)| Candidate { value, peer }).collect(),
            })
            .collect();
        prop_assert_eq!(conflicts.to_json_text(), serde_json::to_string(&conflicts).unwrap());
        prop_assert_eq!(reports.to_json_text(), serde_json::to_string(&reports).unwrap());
    }
}

/// A value is written as its stored text. A peer's value is checked for
/// syntax only: written as it came, it leaves the message one well-formed
/// JSON text.
#[test]
fn a_peers_unusual_value_leaves_the_message_well_formed() {
    let texts = [
        " 1e400 ",
        r#""\ud800""#,
        r#"{ "b" : [ 1 , 2 ] , "a" : null }"#,
        "-0",
    ];
    // A number far from 1, made here: its stored text is written.
    let made = JsonValue::parse("1.1e24").unwrap();
    // Its stored text is the number written (the reader once read it as
    // its neighbour, `1.0999999999999999e+24`).
    assert_eq!(made.as_str(), "1.1e+24");
    assert_eq!(made.to_json().to_text(), "1.1e+24");
    let values = texts.map(|t| JsonValue::verbatim(t).unwrap());
    for value in values.into_iter().chain([made]) {
        let text = value.as_str().to_string();
        let mut event = common::register_write(EventId::new(PeerId(1), 1), "k", "1", 5);
        if let Operation::Register(RegisterOp::Write { value: v, .. }) = &mut event.op {
            *v = value.clone();
        }
        let request = ReconciliationRequest {
            message_type: Default::default(),
            source_peer_id: PeerId(1),
            target_peer_id: PeerId(2),
            key: None,
            conflicting_events: vec![event],
        };
        let written = request.to_json_text();
        json::check(&written).unwrap_or_else(|e| panic!("{text}: {e} in {written}"));
        assert!(written.contains(&text), "{written}");
        let conflict = Conflict {
            key: "k".into(),
            candidates: vec![Candidate {
                value,
                peer: PeerId(1),
            }],
        };
        json::check(&conflict.to_json_text()).unwrap();
    }
}

/// Every double's shortest form, as a JS engine's `JSON.stringify` writes
/// it, is stored as written: the reader's conversion is not correctly
/// rounded, and read about one in ten as its neighbour (an app's
/// `Math.random()` of `0.9577971067778701` came back `0.95779710677787`:
/// a review). Random doubles of every magnitude, and of `Math.random()`'s.
#[test]
fn every_shortest_number_is_stored_as_written() {
    common::for_seeds("shortest numbers", "CPC_NUMBER_SEEDS", 4, |seed| {
        let mut rng = cpc_sync::protocol::testing::Rng::new(seed);
        let mut changed = Vec::new();
        for i in 0..20_000 {
            let f = if i % 2 == 0 {
                f64::from_bits(rng.next_u64() >> 1)
            } else {
                (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
            };
            if !f.is_finite() || f == 0.0 {
                continue;
            }
            let text = serde_json::to_string(&f).unwrap();
            let stored = JsonValue::parse(&text).unwrap();
            if stored.as_str() != text {
                changed.push((text, stored.as_str().to_string()));
            }
        }
        assert!(
            changed.is_empty(),
            "seed {seed}: {} numbers stored otherwise, as {:?}",
            changed.len(),
            &changed[..changed.len().min(3)]
        );
    });
}
