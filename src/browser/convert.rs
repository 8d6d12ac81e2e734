//! Values across the JS boundary: JSON text both ways, so what the app
//! stores is exactly what `JSON.stringify` makes of it.

use wasm_bindgen::prelude::*;

use crate::protocol::JsonValue;

/// A JS value as a canonical JSON value; `undefined`, functions and cycles
/// are errors.
pub fn to_json(value: &JsValue) -> Result<JsonValue, JsError> {
    let text = js_sys::JSON::stringify(value)
        .map_err(|_| JsError::new("value cannot be turned into JSON (a cycle, or a BigInt)"))?;
    let text = text
        .as_string()
        .ok_or_else(|| JsError::new("value must be a JSON value, not undefined or a function"))?;
    JsonValue::parse(&text).map_err(|e| JsError::new(&e.to_string()))
}

/// JSON text as a JS value.
pub fn from_json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap_or(JsValue::UNDEFINED)
}

/// Any serializable Rust value as JS, through its JSON form.
pub fn to_js(value: &impl serde::Serialize) -> JsValue {
    serde_json::to_string(value)
        .map(|text| from_json(&text))
        .unwrap_or(JsValue::UNDEFINED)
}

pub fn error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}
