//! Values across the JS boundary: JSON text both ways, so what the app
//! stores is exactly what `JSON.stringify` makes of it.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::error::{Code, PeerError};
use crate::protocol::json::WriteJson;
use crate::protocol::text::Text;
use crate::protocol::{json, JsonValue};

/// A JS value as a canonical JSON value, as `JSON.stringify` writes it
/// (within an object or array, `NaN` is `null`, a `Date` its ISO string, a
/// `Map` `{}`), with its objects' keys sorted; `undefined`, functions,
/// cycles and a number JSON cannot hold (`NaN`, `Infinity`, which
/// `JSON.stringify` writes `null`) are `INVALID_JSON` `TypeError`s.
pub fn to_json(value: &JsValue) -> Result<JsonValue, PeerError> {
    if let Some(json) = scalar_json(value) {
        return Ok(json);
    }
    let invalid = |why: &str| PeerError::type_error(Code::InvalidJson, why);
    if value.as_f64().is_some_and(|n| !n.is_finite()) {
        return Err(invalid("the value must be JSON, not NaN or an infinity"));
    }
    let text = js_sys::JSON::stringify(value)
        .map_err(|_| invalid("the value cannot be turned into JSON (a cycle, or a BigInt)"))?;
    let text = text
        .as_string()
        .ok_or_else(|| invalid("the value must be JSON, not undefined or a function"))?;
    JsonValue::parse(&text).map_err(|e| {
        let e = e.to_string();
        // JSON.stringify escapes nothing as \uXXXX but control characters
        // and lone surrogates: a hex escape the parse refuses is the latter.
        // (Bytes, not `str::contains`: its searcher is 2 KB of wasm.)
        if e.as_bytes().windows(10).any(|w| w == b"hex escape") {
            invalid("the value holds a string with a lone surrogate (half of a character)")
        } else {
            invalid(&e)
        }
    })
}

/// The canonical JSON of a safe integer, a boolean, null or a well-formed
/// string, without a trip through `JSON.stringify` and a parse: the same
/// text that trip gives (`protocol::json` writes integers and strings as
/// it would after parsing them). `None` for anything else (other numbers
/// have forms of their own, such as `1e21`; strings with lone surrogates
/// are refused by the parse, and must still be).
fn scalar_json(value: &JsValue) -> Option<JsonValue> {
    const SAFE: f64 = 9_007_199_254_740_991.0;
    let text = if let Some(n) = value.as_f64() {
        if n.fract() != 0.0 || n.abs() > SAFE {
            return None;
        }
        // `-0` is written `0`, as JSON.stringify writes it.
        (n as i64).to_string()
    } else if let Some(b) = value.as_bool() {
        b.to_string()
    } else if value.is_null() {
        "null".to_string()
    } else {
        let s = value.dyn_ref::<js_sys::JsString>()?;
        if !s.is_valid_utf16() {
            return None;
        }
        crate::protocol::json::quote(&String::from(s))
    };
    Some(JsonValue::from_canonical(text))
}

/// JSON text as a JS value.
pub fn from_json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap_or(JsValue::UNDEFINED)
}

/// Strings as a JS array, through one `JSON.parse`: each string made on
/// its own is a `TextDecoder` call, ~1 µs a key in Chromium (100 ms for
/// a newcomer's 100k keys), where the parse makes them all at native
/// speed.
pub fn strings(items: &[Text]) -> JsValue {
    let mut text = String::with_capacity(items.iter().map(|s| s.len() + 3).sum::<usize>() + 2);
    text.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        json::write_str(&mut text, item);
    }
    text.push(']');
    from_json(&text)
}

/// A value the app is shown as JS, through its JSON form (written by
/// hand: no serde_json in the wasm).
pub fn to_js(value: &(impl WriteJson + ?Sized)) -> JsValue {
    from_json(&value.to_json_text())
}

/// What a JS exception says: an `Error`'s or a `DOMException`'s message, a
/// thrown string, or its JSON. (Not `{:?}`: that brings wasm-bindgen's
/// `debugString` into the JS glue for this one fallback.)
pub fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        // A DOMException is an Error; some have no message
        // (Chromium's QuotaExceededError from IndexedDB): its name then.
        .map(|e| match String::from(e.message()) {
            m if m.is_empty() => String::from(e.name()),
            m => m,
        })
        .or_else(|| e.dyn_ref::<web_sys::DomException>().map(|e| e.message()))
        .or_else(|| e.as_string())
        .or_else(|| js_sys::JSON::stringify(e).ok()?.as_string())
        .unwrap_or_else(|| "a value that is not an Error".to_string())
}

/// Whether `value`, a JS string read as `text`, is well-formed UTF-16: a
/// lone surrogate (half of an emoji cut by `slice`) is read as U+FFFD, so
/// two strings would be one.
pub fn well_formed(value: &JsValue, text: &str) -> bool {
    // U+FFFD's bytes, looked for as bytes (a `char` pattern of more than a
    // byte brings 1.5 KB of the string searcher into the wasm).
    let replaced = text.as_bytes().windows(3).any(|w| w == [0xEF, 0xBF, 0xBD]);
    !replaced || value.unchecked_ref::<js_sys::JsString>().is_valid_utf16()
}
