//! Tests in a real headless browser (wasm-bindgen-test; `npm test` runs
//! them in Chromium and in Firefox), one binary:
//! - `platform`: the engine as the browser runs it, and the browser APIs
//!   the peer builds on (IndexedDB, compression);
//! - `peer`: peers of one page over real RTCPeerConnections, signaled over
//!   a real BroadcastChannel, driven through the JS API as an app would.
#![cfg(target_arch = "wasm32")]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod peer;
mod platform;
