//! Tests in a real headless Chromium (wasm-bindgen-test): the engine as the
//! browser runs it, and the browser APIs the peer builds on.
#![cfg(target_arch = "wasm32")]

use cpc_sync::protocol::{EngineConfig, JsonValue, PeerId, ReconciliationEngine, StateSnapshot};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn version_is_the_crate_version() {
    assert_eq!(cpc_sync::browser::version(), env!("CARGO_PKG_VERSION"));
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

/// Writes a database as version 3 of the storage wrote it: the stores, a
/// snapshot, one log record and an identity, in the bytes given.
async fn write_version_3(name: &str, snapshot: &[u8], record: &[u8], identity: &[u8]) {
    let write = js_sys::Function::new_with_args(
        "name, snapshot, record, identity",
        "return new Promise((resolve, reject) => {
            const open = indexedDB.open(name, 3);
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
    let args = js_sys::Array::of4(
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
    write_version_3(
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
        f64::NAN,
        f64::INFINITY,
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
    // A lone surrogate is not JSON, whichever way it comes.
    let lone = js_sys::JSON::parse(r#""\ud800""#).unwrap();
    assert!(to_json(&lone).is_err(), "a lone surrogate is refused");
    assert!(
        to_json(&JsValue::UNDEFINED).is_err(),
        "undefined is refused"
    );
}
