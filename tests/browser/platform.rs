//! The engine as the browser runs it, and the browser APIs the peer builds
//! on.

use cpc_sync::protocol::{EngineConfig, JsonValue, PeerId, ReconciliationEngine, StateSnapshot};
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
fn version_is_the_crate_version() {
    assert_eq!(cpc_sync::browser::version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        cpc_sync::browser::protocol_version(),
        cpc_sync::protocol::sync::wire::PROTOCOL_VERSION
    );
}

#[wasm_bindgen_test]
fn two_engines_converge_in_wasm() {
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let mut b = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
    let now = js_sys::Date::now() as u64;
    let ea = a.set("k", JsonValue::parse("\"a\"").unwrap(), now).unwrap();
    let eb = b.increment("n", 2, now).unwrap();
    a.receive(eb, now).unwrap();
    b.receive(ea, now).unwrap();
    assert_eq!(a.state_json(), r#"{"k":"a","n":2}"#);
    assert_eq!(a.digest(), b.digest());
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let c =
        ReconciliationEngine::from_snapshot(PeerId(3), EngineConfig::default(), snapshot).unwrap();
    assert_eq!(c.state_json(), a.state_json());
}

fn db_name(test: &str) -> String {
    format!("cpc-sync-test-{test}-{}", js_sys::Math::random())
}

#[wasm_bindgen_test]
async fn storage_round_trip_then_reopen_after_an_unclean_close() {
    use cpc_sync::browser::storage::Storage;
    use cpc_sync::protocol::sync::{SyncConfig, SyncNode};

    let name = db_name("round-trip");
    let now = js_sys::Date::now() as u64;
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let first: Vec<_> = (0..50)
        .map(|i| {
            a.set(
                &format!("k{i}"),
                JsonValue::parse(&i.to_string()).unwrap(),
                now,
            )
            .unwrap()
        })
        .collect();
    let storage = Storage::open(&name).await.expect("opens");
    storage.append(&first).await.expect("appends");
    storage
        .write_snapshot(&a.encode_snapshot())
        .await
        .expect("snapshot");
    let later = vec![
        a.increment("n", 5, now).unwrap(),
        a.add("s", JsonValue::parse("\"m\"").unwrap(), now).unwrap(),
    ];
    storage
        .append(&later)
        .await
        .expect("appends after the snapshot");
    // Dropped without close(): the next open must still see every commit.
    drop(storage);

    let reopened = Storage::open(&name).await.expect("reopens");
    let persisted = reopened.load().await.expect("loads");
    assert_eq!(
        persisted.events.len(),
        2,
        "the snapshot folded the first 50"
    );
    assert_eq!(persisted.damaged, 0);
    let mut node = SyncNode::restore(
        PeerId(1),
        EngineConfig::default(),
        SyncConfig::default(),
        persisted.snapshot.as_deref(),
        persisted.events,
    )
    .expect("restores");
    assert_eq!(node.engine().state_json(), a.state_json());
    assert_eq!(node.engine_mut().digest(), a.digest());
    reopened.close();
}

/// A snapshot larger than the compressor's slice (256 KiB), its values
/// barely compressible so the gzipped record is too: stored and read back
/// a slice a task each way, the same bytes; the record cut short fails
/// the load with an error rather than hanging it.
#[wasm_bindgen_test]
async fn a_large_snapshot_is_gzipped_and_read_back_in_slices() {
    use cpc_sync::browser::storage::Storage;

    let name = db_name("large-snapshot");
    let now = js_sys::Date::now() as u64;
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..24_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let value = JsonValue::parse(&format!("\"{x:016x}{:016x}\"", x.rotate_left(29))).unwrap();
        a.set(&format!("k{i}"), value, now).unwrap();
    }
    let snapshot = a.encode_snapshot();
    assert!(snapshot.len() > 3 * 256 * 1024, "{} bytes", snapshot.len());
    let storage = Storage::open(&name).await.expect("opens");
    storage.write_snapshot(&snapshot).await.expect("stores");
    let persisted = storage.load().await.expect("loads");
    assert!(persisted.snapshot.as_deref() == Some(&snapshot[..]));
    storage.close();

    let cut = js_sys::Function::new_with_args(
        "name",
        "return new Promise((resolve, reject) => {
            const open = indexedDB.open(name);
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
                const db = open.result;
                const tx = db.transaction('snapshot', 'readwrite');
                const store = tx.objectStore('snapshot');
                const get = store.get('state');
                get.onsuccess = () => {
                    if (get.result.length < 2 * 256 * 1024) reject(new Error('stored ' + get.result.length + ' bytes'));
                    store.put(get.result.slice(0, get.result.length - 1000), 'state');
                };
                tx.oncomplete = () => { db.close(); resolve(); };
                tx.onerror = () => reject(tx.error);
            };
        })",
    );
    let promise = cut
        .call1(&wasm_bindgen::JsValue::NULL, &name.as_str().into())
        .expect("runs");
    wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise))
        .await
        .expect("cuts the stored record");
    let reopened = Storage::open(&name).await.expect("reopens");
    assert!(reopened.load().await.is_err(), "a cut gzip stream loads");
    reopened.close();
}

/// A snapshot gzipped by the browser for transfer inflates back whole
/// within the length its offer names, and not one byte over: a lie about
/// the length, a bomb (8 MiB of zeros, a few KB gzipped) and bytes that are
/// not gzip are errors, not a page's memory. Both in the page's compressor
/// worker (which answers every job here) and in place (where no worker
/// runs).
#[wasm_bindgen_test]
async fn a_gzipped_snapshot_inflates_to_no_more_than_its_offer() {
    use cpc_sync::browser::compress;

    assert!(compress::available());
    let answered = compress::worker::answered();
    gzip_checks(false).await;
    assert_eq!(
        compress::worker::answered() - answered,
        6,
        "jobs the worker answered"
    );
    gzip_checks(true).await;
    assert_eq!(
        compress::worker::answered() - answered,
        6,
        "in place went to the worker"
    );
}

async fn gzip_checks(in_place: bool) {
    use cpc_sync::browser::compress;

    let gzip = |bytes: Vec<u8>| async move {
        match in_place {
            true => compress::gzip_in_place(&bytes).await,
            false => compress::gzip(&bytes).await,
        }
    };
    let gunzip = |bytes: Vec<u8>, limit: u64| async move {
        match in_place {
            true => compress::gunzip_at_most_in_place(bytes, limit).await,
            false => compress::gunzip_at_most(bytes, limit).await,
        }
    };
    let bytes: Vec<u8> = (0..700_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let gzipped = gzip(bytes.clone()).await.expect("gzips");
    assert!(gzipped.len() < bytes.len() / 2, "{} bytes", gzipped.len());
    let total = bytes.len() as u64;
    let inflated = gunzip(gzipped.clone(), total).await;
    assert!(inflated.expect("inflates") == bytes);
    let short = gunzip(gzipped, total - 1).await;
    assert!(short.is_err(), "inflated past its limit");

    let bomb = gzip(vec![0; 8 << 20]).await.expect("gzips");
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let refused = gunzip(bomb, 1 << 20).await;
    let reason = refused.expect_err("a bomb inflates").as_string();
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("more than the 1048576 bytes")),
        "{reason:?}"
    );
    assert!(gunzip(vec![7; 64], 1_000).await.is_err());
}

#[wasm_bindgen_test]
async fn damaged_log_records_are_skipped_and_counted() {
    use cpc_sync::browser::storage::Storage;

    let storage = Storage::open(&db_name("damaged")).await.expect("opens");
    let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    let e = a.increment("n", 1, js_sys::Date::now() as u64).unwrap();
    storage.append(&[e]).await.unwrap();
    storage.append_raw(&[0xde, 0xad]).await.unwrap();
    let persisted = storage.load().await.unwrap();
    assert_eq!(persisted.events.len(), 1);
    assert_eq!(persisted.damaged, 1);
    storage.close();
}

/// Writes a database as `version` of the storage wrote it: the stores, a
/// snapshot, one log record and an identity, in the bytes given, and a
/// record that is no batch at all.
async fn write_version(version: u32, name: &str, snapshot: &[u8], record: &[u8], identity: &[u8]) {
    let write = js_sys::Function::new_with_args(
        "version, name, snapshot, record, identity",
        "return new Promise((resolve, reject) => {
            const open = indexedDB.open(name, version);
            open.onupgradeneeded = () => {
                open.result.createObjectStore('log', { autoIncrement: true });
                open.result.createObjectStore('snapshot');
            };
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
                const db = open.result;
                const tx = db.transaction(['log', 'snapshot'], 'readwrite');
                tx.objectStore('snapshot').put(snapshot, 'state');
                tx.objectStore('snapshot').put(identity, 'identity');
                tx.objectStore('log').add(record);
                tx.objectStore('log').add(new Uint8Array([0xde, 0xad]));
                tx.oncomplete = () => { db.close(); resolve(); };
                tx.onerror = () => reject(tx.error);
            };
        })",
    );
    let bytes = |b: &[u8]| js_sys::Uint8Array::from(b).into();
    let args = js_sys::Array::of5(
        &version.into(),
        &name.into(),
        &bytes(snapshot),
        &bytes(record),
        &bytes(identity),
    );
    let promise = write
        .apply(&wasm_bindgen::JsValue::NULL, &args)
        .expect("runs");
    wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise))
        .await
        .expect("writes");
}

#[wasm_bindgen_test]
async fn a_database_of_the_previous_format_migrates_on_open() {
    use cpc_sync::browser::storage::Storage;
    use cpc_sync::protocol::codec::legacy;
    use cpc_sync::protocol::sync::{SyncConfig, SyncNode};
    use cpc_sync::protocol::{seal, Identity};

    let identity = Identity::from_seed(11);
    let now = js_sys::Date::now() as u64;
    let mut a = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut first: Vec<_> = (0..20)
        .map(|i| {
            a.set(
                &format!("k{i}"),
                JsonValue::parse(&i.to_string()).unwrap(),
                now,
            )
            .unwrap()
        })
        .collect();
    seal::seal(&identity, &mut first);
    let snapshot = StateSnapshot::decode(&a.encode_snapshot()).unwrap();
    let mut later = vec![a.increment("n", 5, now).unwrap()];
    seal::seal(&identity, &mut later);

    let name = db_name("migrates");
    write_version(
        3,
        &name,
        &legacy::encode_snapshot(&snapshot),
        &legacy::encode_record(&later),
        &identity.secret(),
    )
    .await;
    let storage = Storage::open(&name).await.expect("opens and migrates");
    let persisted = storage.load().await.expect("loads");
    assert_eq!(
        persisted.identity,
        Some(identity.secret()),
        "the identity is kept"
    );
    assert_eq!(persisted.events, later);
    assert_eq!(persisted.damaged, 1, "the unreadable record is counted");
    let node = SyncNode::restore(
        identity.peer(),
        EngineConfig::default(),
        SyncConfig::default(),
        persisted.snapshot.as_deref(),
        persisted.events,
    )
    .expect("restores from the migrated bytes");
    assert_eq!(node.engine().state_json(), a.state_json());
    storage.close();

    // Opened again: already migrated, nothing to do twice.
    let again = Storage::open(&name).await.expect("reopens");
    let persisted = again.load().await.expect("loads");
    assert_eq!((persisted.events.len(), persisted.damaged), (1, 0));
    again.close();
}

/// A database of version 4 (today's forms, run-coded batches among them)
/// opens as it is; once opened it is version 5, which a build of version
/// 4 cannot open: such builds read batch format 1 only, and opened a
/// newer build's database as an empty room with the same identity (a
/// review of upgrades), where now the browser refuses them the database.
#[wasm_bindgen_test]
async fn a_version_4_database_opens_as_it_is_and_is_closed_to_version_4_builds() {
    use cpc_sync::browser::storage::Storage;
    use cpc_sync::protocol::{seal, Identity, P2PEvent};

    let identity = Identity::from_seed(12);
    let mut a = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut events: Vec<_> = (0..5)
        .map(|i| a.increment("n", i + 1, js_sys::Date::now() as u64).unwrap())
        .collect();
    seal::seal(&identity, &mut events);
    let name = db_name("version-4");
    write_version(
        4,
        &name,
        &a.encode_snapshot(),
        &P2PEvent::encode_batch(events.iter()),
        &identity.secret(),
    )
    .await;
    let storage = Storage::open(&name).await.expect("opens");
    let persisted = storage.load().await.expect("loads");
    assert_eq!(persisted.identity, Some(identity.secret()));
    assert_eq!(persisted.events, events);
    assert_eq!(persisted.damaged, 1, "the record that is no batch");
    assert_eq!(persisted.snapshot, Some(a.encode_snapshot()));
    storage.close();
    let opened_as_4 = js_sys::Function::new_with_args(
        "name",
        "return new Promise((resolve) => {
            const open = indexedDB.open(name, 4);
            open.onsuccess = () => { open.result.close(); resolve('opened'); };
            open.onerror = () => resolve(open.error.name);
        })",
    )
    .call1(&wasm_bindgen::JsValue::NULL, &name.as_str().into())
    .expect("runs");
    let said = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(opened_as_4))
        .await
        .expect("settles");
    assert_eq!(said.as_string().as_deref(), Some("VersionError"));
}

/// Scalars skip `JSON.stringify` and the parse (the write path's fast
/// path): the JSON they get is byte for byte what the long way gives.
#[wasm_bindgen_test]
fn scalars_get_the_json_the_long_way_gives() {
    use cpc_sync::browser::convert::to_json;
    use wasm_bindgen::JsValue;
    let long_way = |v: &JsValue| {
        let text = js_sys::JSON::stringify(v).unwrap().as_string().unwrap();
        JsonValue::parse(&text).unwrap()
    };
    let numbers = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        42.0,
        1.5,
        -2.25,
        1e21,
        1e-7,
        123456789012.0,
        9_007_199_254_740_991.0,
        -9_007_199_254_740_991.0,
        9_007_199_254_740_992.0,
        f64::MAX,
    ];
    let strings = [
        "",
        "plain",
        "quote \" and \\",
        "tab\tnewline\n",
        "\u{1}\u{1f}",
        "é ü 😀",
        "</script>",
    ];
    let values = numbers
        .iter()
        .map(|&n| JsValue::from_f64(n))
        .chain(strings.iter().map(|&s| JsValue::from_str(s)))
        .chain([JsValue::TRUE, JsValue::FALSE, JsValue::NULL]);
    for value in values {
        let fast = to_json(&value).expect("a JSON value");
        assert_eq!(fast.as_str(), long_way(&value).as_str(), "{value:?}");
    }
    // Numbers JSON cannot hold are refused (JSON.stringify writes `null`).
    for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(to_json(&JsValue::from_f64(n)).is_err(), "{n} is refused");
    }
    // A lone surrogate is not JSON, whichever way it comes.
    let lone = js_sys::JSON::parse(r#""\ud800""#).unwrap();
    assert!(to_json(&lone).is_err(), "a lone surrogate is refused");
    assert!(
        to_json(&JsValue::UNDEFINED).is_err(),
        "undefined is refused"
    );
}

/// BLAKE3's official test vectors (input bytes `i % 251`), through the
/// wasm's own compact BLAKE3 (natively the crate is used, and the compact
/// one is tested against it there): hash, keyed hash and key derivation,
/// across block and chunk boundaries, whole and in pieces.
#[wasm_bindgen_test]
fn blake3_in_the_wasm_gives_the_official_test_vectors() {
    use cpc_sync::protocol::blake3;
    const VECTORS: [(usize, &str, &str, &str); 10] = [
        (
            0,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26",
            "2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d",
        ),
        (
            1,
            "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
            "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b",
            "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c",
        ),
        (
            63,
            "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b",
            "bb1eb5d4afa793c1ebdd9fb08def6c36d10096986ae0cfe148cd101170ce37ae",
            "b6451e30b953c206e34644c6803724e9d2725e0893039cfc49584f991f451af3",
        ),
        (
            64,
            "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98",
            "ba8ced36f327700d213f120b1a207a3b8c04330528586f414d09f2f7d9ccb7e6",
            "a5c4a7053fa86b64746d4bb688d06ad1f02a18fce9afd3e818fefaa7126bf73e",
        ),
        (
            65,
            "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee",
            "c0a4edefa2d2accb9277c371ac12fcdbb52988a86edc54f0716e1591b4326e72",
            "51fd05c3c1cfbc8ed67d139ad76f5cf8236cd2acd26627a30c104dfd9d3ff8a8",
        ),
        (
            1023,
            "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
            "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e",
            "74a16c1c3d44368a86e1ca6df64be6a2f64cce8f09220787450722d85725dea5",
        ),
        (
            1024,
            "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
            "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4",
            "7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a689684302706",
        ),
        (
            1025,
            "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
            "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69",
            "effaa245f065fbf82ac186839a249707c3bddf6d3fdda22d1b95a3c970379bcb",
        ),
        (
            2049,
            "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
            "9f29700902f7c86e514ddc4df1e3049f258b2472b6dd5267f61bf13983b78dd5",
            "2ea477c5515cc3dd606512ee72bb3e0e758cfae7232826f35fb98ca1bcbdf273",
        ),
        (
            5121,
            "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff",
            "6ccf1c34753e7a044db80798ecd0782a8f76f33563accaddbfbb2e0ea4b2d024",
            "b07f01e518e702f7ccb44a267e9e112d403a7b3f4883a47ffbed4b48339b3c34",
        ),
    ];
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let key = *b"whats the Elvish word for friend";
    for (len, hash, keyed, derived) in VECTORS {
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            hex(blake3::hash(&input).as_bytes()),
            hash,
            "hash of {len} bytes"
        );
        assert_eq!(
            hex(blake3::keyed_hash(&key, &input).as_bytes()),
            keyed,
            "keyed hash of {len} bytes"
        );
        let context = "BLAKE3 2019-12-27 16:29:52 test vectors context";
        assert_eq!(
            hex(&blake3::derive_key(context, &input)),
            derived,
            "derived key of {len} bytes"
        );
        // Fed in pieces that straddle blocks and chunks.
        let mut hasher = blake3::Hasher::new();
        for piece in input.chunks(37) {
            hasher.update(piece);
        }
        assert_eq!(
            hex(hasher.finalize().as_bytes()),
            hash,
            "incremental hash of {len} bytes"
        );
    }
}

/// The wasm's BLAKE3 (its own compression, with SIMD in the shipped
/// build) over every length that matters, in every mode, in pieces and as
/// extendable output: one digest of it all, which the native tests pin
/// to the `blake3` crate's.
#[wasm_bindgen_test]
fn blake3_in_the_wasm_gives_the_crates_transcript() {
    use cpc_sync::protocol::testing::blake3_transcript::{transcript, EXPECTED};
    assert_eq!(transcript(), EXPECTED);
}
