//! Proptest strategies for events and their parts, shared by the fuzzers
//! of the codec and of the JSON the app is shown.

use cpc_sync::protocol::event::{CounterOp, CounterShare, RegisterOp, SetOp};
use cpc_sync::protocol::seal::Seal;
use cpc_sync::protocol::{EventId, JsonValue, Operation, P2PEvent, PeerId, Timestamp, VectorClock};
use proptest::prelude::*;

pub const PEERS: [u64; 4] = [1, 0x1111_1111, u64::MAX, 7];

pub fn peer() -> impl Strategy<Value = PeerId> {
    prop::sample::select(&PEERS[..]).prop_map(PeerId)
}

pub fn clock() -> impl Strategy<Value = VectorClock> {
    prop::collection::vec((peer(), prop_oneof![1u64..50, any::<u64>()]), 0..4)
        .prop_map(|entries| entries.into_iter().filter(|e| e.1 > 0).collect())
}

pub fn value() -> impl Strategy<Value = JsonValue> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zé\"\\\\]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("{\"a\":[1,null,true]}".to_string()),
    ]
    .prop_map(|text| JsonValue::verbatim(&text).unwrap())
}

pub fn op() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (value(), clock(), any::<bool>()).prop_map(|(value, observed, resolution)| {
            Operation::Register(RegisterOp::Write {
                value,
                observed,
                resolution,
            })
        }),
        clock().prop_map(|observed| Operation::Register(RegisterOp::Delete { observed })),
        (any::<i64>(), any::<i64>())
            .prop_map(|(by, sum)| Operation::Counter(CounterOp::Increment { by, sum })),
        prop::collection::vec((peer(), any::<u64>(), any::<i64>()), 0..3).prop_map(|shares| {
            let observed = shares
                .into_iter()
                .map(|(peer, seq, sum)| CounterShare { peer, seq, sum })
                .collect();
            Operation::Counter(CounterOp::Delete { observed })
        }),
        (value(), clock())
            .prop_map(|(member, observed)| Operation::Set(SetOp::Add { member, observed })),
        (value(), clock())
            .prop_map(|(member, observed)| Operation::Set(SetOp::Remove { member, observed })),
        clock().prop_map(|observed| Operation::Set(SetOp::Delete { observed })),
    ]
}

pub fn seal() -> impl Strategy<Value = Option<Box<Seal>>> {
    prop::option::of((
        1u64..40,
        prop::sample::select(vec![[1u8; 32], [2; 32]]),
        any::<[u8; 32]>(),
    ))
    .prop_map(|s| s.map(|(first, key, half)| Box::new(Seal::new(first, key, [half, [9; 32]]))))
}

/// One event: a few origins and keys often, any now and then.
pub fn event() -> impl Strategy<Value = P2PEvent> {
    (
        peer(),
        prop_oneof![1u64..30, any::<u64>()],
        // A few keys often, many now and then: batches past the encoder's
        // groups of keys looked up ahead, with repeats across them.
        prop_oneof![
            prop::sample::select(vec!["k", "key1", "é", ""]).prop_map(String::from),
            (0u32..60).prop_map(|i| format!("key {i}")),
        ],
        op(),
        clock(),
        prop_oneof![0u64..5_000_000, any::<u64>()],
        seal(),
    )
        .prop_map(|(peer, seq, key, op, deps, hlc, seal)| P2PEvent {
            id: EventId::new(peer, seq),
            key: key.as_str().into(),
            op,
            deps,
            hlc: Timestamp(hlc),
            seal,
        })
}
