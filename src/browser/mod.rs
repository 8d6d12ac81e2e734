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

/// The engine version compiled into this `.wasm`.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}
