//! The browser edge: `#[wasm_bindgen]` facade over the protocol core.

use wasm_bindgen::prelude::*;

/// The engine version compiled into this `.wasm`.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}
