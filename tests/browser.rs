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
