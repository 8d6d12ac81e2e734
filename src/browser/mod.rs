//! The browser edge: `#[wasm_bindgen]` facade over the protocol core. It
//! converts values and moves bytes; the protocol lives in `protocol`.

#[cfg(feature = "bench")]
pub mod bench;
pub mod compress;
#[doc(hidden)]
pub mod convert;
pub mod error;
mod identity;
mod peer;
pub mod storage;
pub mod transport;
mod verify;

use wasm_bindgen::prelude::*;

pub use peer::Peer;

/// Resolves after `ms` (0: in a new task, once the browser's pending
/// tasks ran).
pub(crate) async fn sleep(ms: u32) {
    let mut timeout = None;
    let later = js_sys::Promise::new(&mut |resolve, _| {
        timeout = Some(gloo::timers::callback::Timeout::new(ms, move || {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }));
    });
    let _ = wasm_bindgen_futures::JsFuture::from(later).await;
    // Dropped here, after it fired: a timer is never dropped while its
    // callback runs.
    drop(timeout);
}

/// Waits for `promise` to settle (resolved or rejected), at most `ms`.
pub(crate) async fn wait_at_most(promise: &js_sys::Promise, ms: u32) {
    let mut timeout = None;
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        timeout = Some(gloo::timers::callback::Timeout::new(ms, move || {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }));
    });
    let first = js_sys::Promise::race(&js_sys::Array::of2(promise, &timer));
    let _ = wasm_bindgen_futures::JsFuture::from(first).await;
    drop(timeout);
}

/// The engine version compiled into this `.wasm`.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// The sync protocol version this `.wasm` speaks: a peer of another one
/// does not sync with it (a `PROTOCOL_VERSION` "error" event tells of it).
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    crate::protocol::sync::wire::PROTOCOL_VERSION
}
