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

/// Resolves after `ms` (0: once the browser's pending tasks ran).
pub(crate) async fn sleep(ms: i32) {
    let later = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(later).await;
}

/// The engine version compiled into this `.wasm`.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}
