//! Tests in a real headless Chromium (wasm-bindgen-test): the engine as the
//! browser runs it, and the browser APIs the peer builds on.
#![cfg(target_arch = "wasm32")]

use cpc_sync::protocol::{EngineConfig, JsonValue, PeerId, ReconciliationEngine, StateSnapshot};
use wasm_bindgen::JsCast;
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
    let c = ReconciliationEngine::from_snapshot(PeerId(3), EngineConfig::default(), snapshot);
    assert_eq!(c.state_json(), a.state_json());
}

#[wasm_bindgen_test]
async fn indexeddb_opens() {
    let window = web_sys::window().expect("a window");
    let factory = window.indexed_db().expect("no error").expect("IndexedDB");
    let request = factory.open("cpc-sync-browser-test").expect("open");
    let done = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    let result = wasm_bindgen_futures::JsFuture::from(done)
        .await
        .expect("opened");
    let event: web_sys::Event = result.dyn_into().expect("an event");
    let target: web_sys::IdbOpenDbRequest =
        event.target().expect("target").dyn_into().expect("request");
    let db: web_sys::IdbDatabase = target.result().expect("result").dyn_into().expect("db");
    assert_eq!(db.name(), "cpc-sync-browser-test");
    db.close();
}
