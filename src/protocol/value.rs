use crate::protocol::text::Text;
use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::json::{self, Json};

/// A JSON value as compact text, shared cheaply between the event log and the
/// state.
///
/// Values made locally are canonical (object keys sorted, no white space), so
/// equal values have equal bytes and equal hashes on every peer. Values from
/// the network are checked to be JSON and kept byte for byte: their bytes are
/// part of the event they came in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonValue(Text);

/// Text that is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON value: {0}")]
pub struct InvalidJson(pub String);

impl JsonValue {
    /// Parses and canonicalizes JSON text.
    pub fn parse(text: &str) -> Result<Self, InvalidJson> {
        let value = json::parse(text).map_err(|e| InvalidJson(e.to_string()))?;
        Ok(Self::from(&value))
    }

    /// Text the caller made canonical itself (see `browser::convert`).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_canonical(text: String) -> Self {
        JsonValue(text.into())
    }

    /// A string value.
    pub fn string(s: &str) -> Self {
        JsonValue(json::quote(s).into())
    }

    pub fn null() -> Self {
        JsonValue("null".into())
    }

    /// Keeps `text` as it is after checking that it is one JSON value.
    pub fn verbatim(text: &str) -> Result<Self, InvalidJson> {
        json::check(text).map_err(|e| InvalidJson(e.to_string()))?;
        Ok(JsonValue(text.into()))
    }

    /// [`verbatim`](Self::verbatim), keeping `text` as it is shared.
    pub fn verbatim_text(text: Text) -> Result<Self, InvalidJson> {
        json::check(&text).map_err(|e| InvalidJson(e.to_string()))?;
        Ok(JsonValue(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a tree.
    pub fn to_json(&self) -> Json {
        // Checked on construction, but only by syntax (a value from the
        // network may hold a number beyond `f64` or a lone surrogate,
        // which the tree refuses): Null is a harmless fallback rather
        // than a panic.
        json::parse(&self.0).unwrap_or(Json::Null)
    }

    /// The order sets show their members in: null < booleans < numbers <
    /// strings < arrays < objects; numbers by value, strings by code point.
    pub fn display_cmp(&self, other: &Self) -> Ordering {
        fn rank(v: &Json) -> u8 {
            match v {
                Json::Null => 0,
                Json::Bool(_) => 1,
                Json::U64(_) | Json::I64(_) | Json::F64(_) => 2,
                Json::String(_) => 3,
                Json::Array(_) => 4,
                Json::Object(_) => 5,
            }
        }
        let (a, b) = (self.to_json(), other.to_json());
        rank(&a).cmp(&rank(&b)).then_with(|| match (&a, &b) {
            (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
            (Json::String(x), Json::String(y)) => x.cmp(y),
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => self.0.cmp(&other.0),
            },
        })
    }
}

/// For the server and the tests; the wasm calls neither.
impl JsonValue {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::Value::from(&self.to_json())
    }
}

impl From<&serde_json::Value> for JsonValue {
    fn from(value: &serde_json::Value) -> Self {
        JsonValue::from(&Json::from(value.clone()))
    }
}

impl From<&Json> for JsonValue {
    /// The canonical form: object keys sorted (a [`Json`] object is), no
    /// white space.
    fn from(value: &Json) -> Self {
        JsonValue(value.to_text().into())
    }
}

impl fmt::Debug for JsonValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for JsonValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// JSON forms embed the value itself; binary forms carry its text.
impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.to_json().serialize(serializer)
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = Json::deserialize(deserializer)?;
            Ok(JsonValue::from(&value))
        } else {
            let text = String::deserialize(deserializer)?;
            JsonValue::verbatim(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_drops_space() {
        let v = JsonValue::parse(r#"{ "b": 1, "a": [true, null] }"#).unwrap();
        assert_eq!(v.as_str(), r#"{"a":[true,null],"b":1}"#);
        assert!(JsonValue::parse("{oops").is_err());
        assert!(JsonValue::verbatim("1 2").is_err());
    }

    #[test]
    fn canonical_text_is_serde_json_display() {
        for text in [
            r#"{"z":[1.5,-0.0,1e300,2.5e-8,100000000000000000000,-9223372036854775808],"a":"\u0001\"é/"}"#,
            "18446744073709551615",
            "0.1",
            "1E2",
            r#"[null,true,{"b":{},"a":[]}]"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(JsonValue::parse(text).unwrap().as_str(), value.to_string());
        }
    }

    #[test]
    fn binary_and_json_forms_round_trip() {
        let v = JsonValue::parse(r#"{"x":"<img src=x>"}"#).unwrap();
        let bytes = postcard::to_allocvec(&v).unwrap();
        assert_eq!(postcard::from_bytes::<JsonValue>(&bytes).unwrap(), v);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, v.as_str());
        assert_eq!(serde_json::from_str::<JsonValue>(&json).unwrap(), v);
        // Garbage text inside a binary frame is a decode error, not a value.
        let bad = postcard::to_allocvec("{oops").unwrap();
        assert!(postcard::from_bytes::<JsonValue>(&bad).is_err());
    }

    #[test]
    fn display_order_is_by_type_then_value() {
        let mut members: Vec<JsonValue> = ["\"b\"", "10", "9", "null", "\"a\"", "true", "[1]"]
            .iter()
            .map(|t| JsonValue::parse(t).unwrap())
            .collect();
        members.sort_by(|a, b| a.display_cmp(b));
        let shown: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
        assert_eq!(shown, ["null", "true", "9", "10", "\"a\"", "\"b\"", "[1]"]);
    }
}
