//! The event batch codec (runs in columns): every list of events survives
//! a round trip exactly, arbitrary and mutated bytes decode to a typed
//! error or to events that themselves round-trip, and stored bytes of the
//! previous forms migrate.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common;
use crate::common::strategies::{self, clock};

use cpc_sync::protocol::codec::{events, legacy, CodecError};
use cpc_sync::protocol::entity::Entity;
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::testing::Rng;
use cpc_sync::protocol::{
    EngineConfig, EventId, JsonValue, Operation, P2PEvent, PeerId, ReconciliationEngine,
    StateSnapshot, Timestamp, VectorClock,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config() -> Config {
    common::fuzz_config("codec", 1_000)
}

/// The "keys" and "key bytes" columns' places in a batch's header.
const KEYS: usize = 4;
const KEY_BYTES: usize = 5;

/// A varint of `bytes` at `at`, and the place after it.
fn varint_at(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = bytes[at];
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return (value, at);
        }
    }
}

/// A batch's header: its run-coded columns' bits, each column's length,
/// and where the columns start.
fn header(batch: &[u8]) -> (u64, [usize; 12], usize) {
    let (coded, mut at) = match batch[0] {
        1 => (0, 1),
        _ => varint_at(batch, 1),
    };
    let mut lengths = [0; 12];
    for length in &mut lengths {
        let (value, next) = varint_at(batch, at);
        (*length, at) = (value as usize, next);
    }
    (coded, lengths, at)
}

/// The length of column `column` of a batch, from its header.
fn column_length(batch: &[u8], column: usize) -> usize {
    header(batch).1[column]
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A batch's run-coded columns' bits, and its columns.
fn columns_of(batch: &[u8]) -> (u64, Vec<Vec<u8>>) {
    let (coded, lengths, mut at) = header(batch);
    let columns = lengths
        .into_iter()
        .map(|length| {
            at += length;
            batch[at - length..at].to_vec()
        })
        .collect();
    (coded, columns)
}

/// A batch of this build's format of `columns`.
fn batch_of(coded: u64, columns: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![events::FORMAT];
    put_varint(&mut out, coded);
    for column in columns {
        put_varint(&mut out, column.len() as u64);
    }
    out.extend(columns.concat());
    out
}

/// `batch` (of this build's format) in format 1, the format before
/// run-coded columns (their runs written out): what a page stored before.
fn as_format_1(batch: &[u8]) -> Vec<u8> {
    let (coded, coded_columns) = columns_of(batch);
    let mut columns = Vec::new();
    for (i, column) in coded_columns.into_iter().enumerate() {
        if coded & 1 << i == 0 {
            columns.push(column);
            continue;
        }
        let mut plain = Vec::new();
        let mut read = 0;
        while read < column.len() {
            let (count, next) = varint_at(&column, read);
            let (value, next) = varint_at(&column, next);
            read = next;
            for _ in 0..count {
                put_varint(&mut plain, value);
            }
        }
        columns.push(plain);
    }
    let mut out = vec![1u8];
    for column in &columns {
        put_varint(&mut out, column.len() as u64);
    }
    out.extend(columns.concat());
    out
}

/// Events of a few origins; sorted (so runs form) or in any order.
fn events() -> impl Strategy<Value = Vec<P2PEvent>> {
    let event = strategies::event();
    (prop::collection::vec(event, 0..100), any::<bool>()).prop_map(|(mut events, sort)| {
        if sort {
            events.sort_by_key(|e| e.id);
            // Consecutive sequence numbers per origin: runs.
            for i in 1..events.len() {
                if events[i].id.peer == events[i - 1].id.peer {
                    events[i].id.seq = events[i - 1].id.seq.wrapping_add(1).max(1);
                }
            }
        }
        events
    })
}

/// `bytes` decoded `slice` events at a time (whole runs), each slice
/// resumed where the last stopped, after a few bytes of padding before
/// the batch (where a snapshot has its header).
fn in_slices(bytes: &[u8], slice: usize) -> Result<events::Batch, CodecError> {
    let mut padded = vec![0xff; 3];
    padded.extend_from_slice(bytes);
    let mut batch = events::Resumable::new(padded, 3, events::Read::default())?;
    while !batch.step(slice)? {}
    Ok(batch.take().expect("decoded"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_batch_round_trips_exactly(events in events(), clock in clock(), slice in 1usize..8) {
        let bytes = events::encode(&events, &clock);
        let batch = events::decode(&bytes).expect("decodes");
        prop_assert_eq!(&in_slices(&bytes, slice).expect("decodes in slices"), &batch);
        prop_assert_eq!(&batch.events, &events);
        prop_assert_eq!(batch.sorted, events.windows(2).all(|w| w[0].id < w[1].id));
        prop_assert_eq!(&batch.clock, &clock);
        prop_assert_eq!(&events::decode_shared(&bytes).expect("decodes"), &batch);
        // The seals, which equality of events leaves out of nothing.
        let seals: Vec<_> = events.iter().map(|e| e.seal.clone()).collect();
        let decoded: Vec<_> = batch.events.iter().map(|e| e.seal.clone()).collect();
        prop_assert_eq!(seals, decoded);
        // Each distinct key is spelled once (a key the encoder failed to
        // find again would round-trip too, spelled twice).
        let distinct: std::collections::HashSet<&str> = events.iter().map(|e| &*e.key).collect();
        prop_assert_eq!(column_length(&bytes, KEY_BYTES), distinct.iter().map(|k| k.len()).sum::<usize>());
        // Stored before run-coded columns: the same batch in format 1.
        let old = as_format_1(&bytes);
        prop_assert_eq!(&events::decode(&old).expect("format 1 decodes"), &batch);
        prop_assert_eq!(&in_slices(&old, slice).expect("format 1 decodes in slices"), &batch);
    }

    #[test]
    fn mutated_batches_are_errors_or_round_trip(
        events in events(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        slice in 1usize..8,
    ) {
        let mut bytes = events::encode(&events, &VectorClock::new());
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        // Keys and values as ranges of shared columns, or one each, or
        // decoded a slice at a time: the same batches, the same refusals.
        prop_assert_eq!(events::decode_shared(&bytes).ok(), events::decode(&bytes).ok());
        prop_assert_eq!(in_slices(&bytes, slice), events::decode(&bytes));
        if let Ok(batch) = events::decode(&bytes) {
            let again = events::decode(&events::encode(&batch.events, &batch.clock)).expect("re-encoded");
            prop_assert_eq!(again, batch);
        }
    }

    /// A storage record of batches back to back, mutated or cut: an
    /// error, or events that each decoded batch holds (never a panic).
    #[test]
    fn mutated_records_of_batches_are_errors_or_their_batches(
        first in events(),
        second in events(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut record = events::encode(&first, &VectorClock::new());
        record.extend(events::encode(&second, &VectorClock::new()));
        for (at, byte) in flips {
            let at = at.index(record.len());
            record[at] ^= byte;
        }
        record.truncate(cut.index(record.len() + 1));
        if let Ok(decoded) = P2PEvent::decode_batch(&record) {
            let mut batches = Vec::new();
            let mut rest = &record[..];
            while !rest.is_empty() {
                let len = events::batch_len(rest).expect("decoded, so each batch has a length");
                batches.extend(events::decode(&rest[..len]).expect("decoded").events);
                rest = &rest[len..];
            }
            prop_assert_eq!(decoded, batches);
        }
    }

    /// What seals sign: the bytes written directly are postcard's encoding
    /// of the event without its seal, as they were when serde wrote them.
    #[test]
    fn content_bytes_are_postcards_encoding(events in events()) {
        #[derive(serde::Serialize)]
        struct Content<'a> {
            id: &'a EventId,
            key: &'a str,
            op: &'a Operation,
            deps: &'a VectorClock,
            hlc: &'a Timestamp,
        }
        for event in &events {
            let serde = postcard::to_allocvec(&Content {
                id: &event.id,
                key: &event.key,
                op: &event.op,
                deps: &event.deps,
                hlc: &event.hlc,
            })
            .expect("encodes");
            prop_assert_eq!(event.content_bytes(), serde);
        }
    }

    /// What the digest hashes: an entity's bytes written directly are
    /// postcard's encoding of it. The entities are the events' keys, each
    /// built from the events given for it (of any kinds, so with several
    /// claims; sets with members and their dots; counters with shares).
    #[test]
    fn entity_bytes_are_postcards_encoding(events in events()) {
        let mut entities: Vec<(&str, Entity)> = Vec::new();
        for event in &events {
            match entities.iter_mut().find(|(key, _)| *key == &*event.key) {
                Some((_, entity)) => entity.apply(event),
                None => entities.push((&event.key, Entity::new(event))),
            }
        }
        for (_, entity) in &entities {
            let mut direct = Vec::new();
            entity.append_bytes(&mut direct);
            prop_assert_eq!(direct, postcard::to_allocvec(entity).expect("encodes"));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = events::decode(&bytes);
        let mut with_format = vec![events::FORMAT];
        with_format.extend_from_slice(&bytes);
        let _ = events::decode(&with_format);
        prop_assert_eq!(events::decode_shared(&with_format).ok(), events::decode(&with_format).ok());
    }
}

#[test]
fn counts_are_bounded_before_anything_is_reserved() {
    // One run claiming 2^40 events, in a batch of a few bytes.
    let mut bytes = vec![events::FORMAT, 0];
    let lengths = [1usize, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend(lengths.iter().map(|l| *l as u8));
    bytes.extend([0, 0]); // no peers, no clock entries
    bytes.extend([1, 0, 0, 0]); // one run of peer 0 (there is none)
    assert!(matches!(
        events::decode(&bytes),
        Err(CodecError::Index { .. } | CodecError::Count { .. })
    ));
    assert!(matches!(events::decode(&[9]), Err(CodecError::Format(9))));
    assert!(matches!(events::decode(&[]), Err(CodecError::Truncated(_))));
}

/// A run-coded column may not expand past what the batch's events can
/// hold (13 bytes an op byte): a run of 2^40 key references in a batch
/// of a few bytes is an error before anything is reserved, and so is a
/// column marked run-coded that cannot be.
#[test]
fn a_run_coded_column_cannot_outgrow_its_batch() {
    let events: Vec<P2PEvent> = (1..=10)
        .map(|seq| {
            common::register_write(
                EventId::new(common::peer(1), seq),
                &format!("k{seq:02}"),
                "1",
                1_000,
            )
        })
        .collect();
    let bytes = events::encode(&events, &VectorClock::new());
    let (coded, mut columns) = columns_of(&bytes);
    assert_ne!(coded & 1 << KEYS, 0, "keys of one length are a run");
    let mut run = Vec::new();
    put_varint(&mut run, 1 << 40);
    put_varint(&mut run, 1);
    columns[KEYS] = run;
    let bomb = batch_of(coded, &columns);
    assert!(
        matches!(
            events::decode(&bomb),
            Err(CodecError::Count { column: "keys", .. })
        ),
        "{:?}",
        events::decode(&bomb)
    );
    let (_, columns) = columns_of(&bytes);
    let seals_coded = batch_of(coded | 1 << 11, &columns);
    assert!(matches!(
        events::decode(&seals_coded),
        Err(CodecError::Invalid(_))
    ));
}

/// A writer's burst: one origin, consecutive, one seal.
#[test]
fn a_run_costs_a_few_bytes_an_event_beyond_its_keys_and_values() {
    let identity = cpc_sync::protocol::Identity::from_seed(3);
    let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut run: Vec<P2PEvent> = (0..1000)
        .map(|i| {
            engine
                .set(
                    &format!("key{i}"),
                    JsonValue::parse("1").unwrap(),
                    1_000 + i,
                )
                .unwrap()
        })
        .collect();
    cpc_sync::protocol::seal::seal(&identity, &mut run);
    let bytes = events::encode(&run, &VectorClock::new()).len();
    // "keyN" spelled once (4-7 bytes) and the value (1 byte); their
    // lengths, the timestamps (a millisecond apart) and the op bytes are
    // what is beyond: the first three as runs of one value.
    let payload: usize = run.iter().map(|e| e.key.len() + 1).sum();
    let per_event = (bytes - payload) as f64 / run.len() as f64;
    println!("{per_event:.2} B an event beyond keys and values ({bytes} B in all)");
    assert!(
        per_event <= 1.2,
        "{per_event:.2} B an event beyond keys and values ({bytes} B in all)"
    );
    assert_eq!(
        events::decode(&events::encode(&run, &VectorClock::new()))
            .unwrap()
            .events,
        run
    );
}

/// A batch larger than the fuzzers make: past the encoder's table of
/// recent peers (256 events), hundreds of origins, clocks longer than the
/// 256 places it remembers, keys repeated far apart, the empty key and
/// keys alike in their first 16 bytes. It round-trips, and each distinct
/// key is spelled once.
#[test]
fn a_large_batch_round_trips_with_each_key_spelled_once() {
    let mut rng = Rng::from_env("a_large_batch_round_trips_with_each_key_spelled_once");
    let keys: Vec<String> = (0..500)
        .map(|i| match i % 3 {
            0 if i == 0 => String::new(),
            0 => format!("k{i}"),
            _ => format!("a key of sixteen+ bytes {i}"),
        })
        .collect();
    let clock = |rng: &mut Rng| -> VectorClock {
        let len = [0, 1, 3, 20, 300][rng.below(5)];
        (0..len)
            .map(|_| {
                (
                    PeerId(1 + rng.below(400) as u64),
                    1 + rng.below(1_000) as u64,
                )
            })
            .collect()
    };
    let mut seqs = vec![0u64; 300];
    let mut events: Vec<P2PEvent> = (0..3_000)
        .map(|i| {
            let origin = rng.below(300);
            seqs[origin] += 1;
            P2PEvent {
                id: EventId::new(PeerId(1 + origin as u64), seqs[origin]),
                key: keys[rng.below(keys.len())].as_str().into(),
                op: Operation::Register(RegisterOp::Write {
                    value: JsonValue::parse(&i.to_string()).unwrap(),
                    observed: clock(&mut rng),
                    resolution: false,
                }),
                deps: clock(&mut rng),
                hlc: Timestamp(1_000 + i),
                seal: None,
            }
        })
        .collect();
    for sorted in [false, true] {
        if sorted {
            events.sort_by_key(|e| e.id);
        }
        let bytes = events::encode(&events, &VectorClock::new());
        let batch = events::decode(&bytes).expect("decodes");
        assert_eq!(batch.events, events, "sorted: {sorted}");
        let distinct: std::collections::HashSet<&str> = events.iter().map(|e| &*e.key).collect();
        assert_eq!(
            column_length(&bytes, KEY_BYTES),
            distinct.iter().map(|k| k.len()).sum::<usize>()
        );
    }
}

proptest! {
    #![proptest_config(config())]

    /// The previous forms, read by hand, are what postcard wrote: every
    /// list of events, and a snapshot of them, reads back exactly.
    #[test]
    fn the_previous_forms_read_back_as_postcard_wrote_them(events in prop::collection::vec(strategies::event(), 0..12), live in any::<u64>()) {
        prop_assert_eq!(&legacy::decode_record(&legacy::encode_record(&events)).expect("reads"), &events);
        for (a, b) in legacy::decode_record(&legacy::encode_record(&events)).unwrap().iter().zip(&events) {
            prop_assert_eq!(&a.seal, &b.seal);
        }
        let snapshot = StateSnapshot {
            version_vector: events.iter().fold(VectorClock::new(), |mut c, e| {
                c.observe(e.id.peer, e.id.seq);
                c
            }),
            live: (0..events.len()).map(|i| live & (1 << i) != 0).collect(),
            events,
        };
        let read = legacy::decode_snapshot(&legacy::encode_snapshot(&snapshot)).expect("reads");
        prop_assert_eq!(read.events, snapshot.events);
        prop_assert_eq!(read.version_vector, snapshot.version_vector);
        prop_assert_eq!(read.live, snapshot.live);
    }

    /// What the hand reader takes of mutated records, postcard takes as
    /// the same events; where postcard takes a record that is its events'
    /// own bytes, so does the hand reader.
    #[test]
    fn the_previous_forms_read_by_hand_take_what_postcard_takes(
        events in prop::collection::vec(strategies::event(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
    ) {
        let mut bytes = legacy::encode_record(&events);
        for (at, how, byte) in edits {
            let at = at.index(bytes.len().max(1));
            match how {
                0 => bytes[at] ^= 1 << (byte % 8),
                1 => bytes[at] = byte,
                2 => bytes.truncate(at.max(1)),
                _ => bytes.insert(at, byte),
            }
        }
        let theirs = postcard::from_bytes::<Vec<P2PEvent>>(&bytes);
        match legacy::decode_record(&bytes) {
            Ok(ours) => prop_assert_eq!(theirs.ok(), Some(ours)),
            Err(e) => {
                if let Ok(read) = theirs {
                    prop_assert_ne!(legacy::encode_record(&read), bytes, "{}", e);
                }
            }
        }
    }

    /// A stored snapshot of format 2, mutated: read by hand as postcard
    /// reads it (the same clock, events and live bits) or refused, and
    /// migrated into today's form only as what it says. A page migrates
    /// what its storage holds, which may be damaged.
    #[test]
    fn mutated_snapshots_of_the_previous_form_read_as_postcard_reads_them(
        events in prop::collection::vec(strategies::event(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
    ) {
        let snapshot = StateSnapshot {
            version_vector: events.iter().fold(VectorClock::new(), |mut c, e| {
                c.observe(e.id.peer, e.id.seq);
                c
            }),
            live: (0..events.len()).map(|i| i % 2 == 0).collect(),
            events,
        };
        let mut bytes = legacy::encode_snapshot(&snapshot);
        // The magic and the format byte stay: a mutation of those is a
        // snapshot of no known form, refused before anything is read.
        let head = 5;
        for (at, how, byte) in edits {
            let at = head + at.index((bytes.len() - head).max(1));
            match how {
                0 if at < bytes.len() => bytes[at] ^= 1 << (byte % 8),
                1 if at < bytes.len() => bytes[at] = byte,
                2 => bytes.truncate(at),
                _ => bytes.insert(at.min(bytes.len()), byte),
            }
        }
        type V2 = (VectorClock, Vec<P2PEvent>, Vec<u8>);
        let theirs = bytes.get(head..).map(postcard::from_bytes::<V2>);
        match legacy::decode_snapshot(&bytes) {
            Ok(ours) => {
                let Some(Ok((clock, events, live))) = theirs else {
                    return Err(TestCaseError::fail("read what postcard refuses"));
                };
                prop_assert_eq!(&ours.version_vector, &clock);
                prop_assert_eq!(&ours.events, &events);
                let bits: Vec<bool> = (0..events.len()).map(|i| live[i / 8] & (1 << (i % 8)) != 0).collect();
                prop_assert_eq!(&ours.live, &bits);
                // Migrated, it is today's snapshot of the same events, or
                // one today's reader refuses (events out of order, say):
                // never other events.
                let migrated = legacy::migrate(Some(&bytes), &[]).expect("migrates");
                let today = StateSnapshot::decode(migrated.snapshot.as_deref().expect("a snapshot"));
                if let Ok(today) = today {
                    prop_assert_eq!(today.events, events);
                }
            }
            Err(_) => prop_assert!(legacy::migrate(Some(&bytes), &[]).is_err()),
        }
    }
}

#[test]
fn stored_bytes_of_the_previous_forms_migrate() {
    let identity = cpc_sync::protocol::Identity::from_seed(4);
    let mut a = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut first: Vec<P2PEvent> = (0..5)
        .map(|i| {
            a.set(&format!("k{i}"), JsonValue::parse("\"v\"").unwrap(), 10 + i)
                .unwrap()
        })
        .collect();
    cpc_sync::protocol::seal::seal(&identity, &mut first);
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let mut later = vec![a.increment("n", 2, 20).unwrap()];
    cpc_sync::protocol::seal::seal(&identity, &mut later);

    let old_snapshot = legacy::encode_snapshot(&snapshot);
    assert!(
        StateSnapshot::decode(&old_snapshot).is_err(),
        "the old form is not today's"
    );
    let records = vec![legacy::encode_record(&later), vec![0xff, 0xff]];
    let migrated = legacy::migrate(Some(&old_snapshot), &records).unwrap();
    assert_eq!(migrated.damaged, 1);
    let restored = StateSnapshot::decode(migrated.snapshot.as_deref().unwrap()).unwrap();
    assert_eq!(restored.events, snapshot.events);
    assert_eq!(restored.version_vector, snapshot.version_vector);
    assert_eq!(restored.live, snapshot.live);
    assert_eq!(
        P2PEvent::decode_batch(migrated.record.as_deref().unwrap()).unwrap(),
        later
    );
}

/// A page's stored snapshot and log record of event batch format 1 (from
/// before run-coded columns) restore as they are: the same state as the
/// page had.
#[test]
fn stored_batches_of_format_1_restore_as_they_are() {
    let identity = cpc_sync::protocol::Identity::from_seed(5);
    let mut a = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    // A sealed burst of writes of `value` to the first `n` keys, from `at`.
    let burst = |a: &mut ReconciliationEngine, n: u64, value: &str, at: u64| {
        let mut run: Vec<P2PEvent> = (0..n)
            .map(|i| {
                let value = JsonValue::parse(value).unwrap();
                a.set(&format!("key{i:03}"), value, at + i).unwrap()
            })
            .collect();
        cpc_sync::protocol::seal::seal(&identity, &mut run);
        run
    };
    burst(&mut a, 200, "\"v\"", 10);
    let stored = a.encode_snapshot();
    let snapshot = StateSnapshot::decode(&stored).unwrap();
    let later = burst(&mut a, 50, "7", 300);

    // The batch a snapshot ends with, and a record's, in format 1.
    let events: Vec<&P2PEvent> = snapshot.events.iter().collect();
    let mut batch = Vec::new();
    events::encode_into(&mut batch, &events, &snapshot.version_vector, None);
    assert!(stored.ends_with(&batch));
    assert_ne!(
        header(&batch).0,
        0,
        "the snapshot's batch has run-coded columns"
    );
    let old_snapshot = [&stored[..stored.len() - batch.len()], &as_format_1(&batch)].concat();
    let record = P2PEvent::encode_batch(&later);
    assert_ne!(header(&record).0, 0, "so has the record's");
    let old_record = as_format_1(&record);
    assert_eq!(old_record[0], 1);

    let restored = cpc_sync::protocol::sync::SyncNode::restore(
        identity.peer(),
        EngineConfig::default(),
        cpc_sync::protocol::sync::SyncConfig::default(),
        Some(&old_snapshot),
        P2PEvent::decode_batch(&old_record).unwrap(),
    )
    .unwrap();
    assert_eq!(restored.engine().state_json(), a.state_json());
    assert_eq!(restored.engine().clock(), a.clock());
    // A snapshot decoded a slice at a time reads format 1 too.
    let mut decoding = StateSnapshot::decoding(old_snapshot, usize::MAX).unwrap();
    let sliced = loop {
        if let Some(done) = decoding.step(7).unwrap() {
            break done;
        }
    };
    assert_eq!(sliced.events, snapshot.events);
}

/// A storage record joins the batches of one commit back to back: it
/// decodes as all their events, and cut anywhere but between two batches
/// (or with bytes after them) it is an error, not fewer events.
#[test]
fn a_record_of_batches_back_to_back_decodes_as_all_their_events() {
    let write = |seq, key: &str| {
        common::register_write(EventId::new(common::peer(1), seq), key, "1", 1_000 + seq)
    };
    let first = vec![write(1, "a"), write(2, "b")];
    let second = vec![write(3, "c")];
    let mut record = P2PEvent::encode_batch(&first);
    let boundary = record.len();
    record.extend(P2PEvent::encode_batch(&second));
    let all: Vec<P2PEvent> = first.iter().chain(&second).cloned().collect();
    assert_eq!(P2PEvent::decode_batch(&record).unwrap(), all);
    assert_eq!(P2PEvent::decode_batch(&record[..boundary]).unwrap(), first);
    for cut in (1..record.len()).filter(|&cut| cut != boundary) {
        assert!(
            P2PEvent::decode_batch(&record[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = record.clone();
    longer.push(events::FORMAT);
    assert!(P2PEvent::decode_batch(&longer).is_err());
    assert!(P2PEvent::decode_batch(&[]).is_err());
}

/// Records and a snapshot of the smallest
/// events postcard writes (16 bytes each: a dot of a 1-byte sequence, an
/// empty key, a register's delete of an empty clock, no deps, time 0, no
/// seal) and of counter deletes of the smallest shares (10 bytes each)
/// read by hand. The reader bounds a count by the bytes left over each
/// item's least size: were that least size overstated (mutation
/// `MIN_EVENT` + 1), honest records would be refused and no other test
/// would notice.
#[test]
fn records_of_the_smallest_events_read() {
    use cpc_sync::protocol::event::{CounterOp, CounterShare};
    let smallest = |p: u64| P2PEvent {
        id: EventId::new(PeerId(p), 1),
        key: "".into(),
        op: Operation::Register(RegisterOp::Delete {
            observed: VectorClock::new(),
        }),
        deps: VectorClock::new(),
        hlc: Timestamp(0),
        seal: None,
    };
    for n in [1usize, 2, 7, 40] {
        let events: Vec<P2PEvent> = (1..=n as u64).map(smallest).collect();
        let record = legacy::encode_record(&events);
        assert_eq!(record.len(), 1 + 16 * n, "the smallest form");
        assert_eq!(legacy::decode_record(&record).expect("reads"), events);
        let snapshot = StateSnapshot {
            version_vector: VectorClock::new(),
            live: vec![true; n],
            events: events.clone(),
        };
        let read = legacy::decode_snapshot(&legacy::encode_snapshot(&snapshot)).expect("reads");
        assert_eq!(read.events, events);
    }
    for shares in [1u64, 3, 30] {
        let mut event = smallest(1);
        event.op = Operation::Counter(CounterOp::Delete {
            observed: (1..=shares)
                .map(|p| CounterShare {
                    peer: PeerId(p),
                    seq: 1,
                    sum: 0,
                })
                .collect(),
        });
        let record = legacy::encode_record(std::slice::from_ref(&event));
        assert_eq!(legacy::decode_record(&record).expect("reads"), vec![event]);
    }
}
