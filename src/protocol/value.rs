use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON value as compact text, shared cheaply between the event log and the
/// state.
///
/// Values made locally are canonical (object keys sorted, no white space), so
/// equal values have equal bytes and equal hashes on every peer. Values from
/// the network are checked to be JSON and kept byte for byte: their bytes are
/// part of the event they came in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonValue(Arc<str>);

/// Text that is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON value: {0}")]
pub struct InvalidJson(pub String);

impl JsonValue {
    /// Parses and canonicalizes JSON text.
    pub fn parse(text: &str) -> Result<Self, InvalidJson> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| InvalidJson(e.to_string()))?;
        Ok(Self::from(&value))
    }

    /// Text the caller made canonical itself (see `browser::convert`).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_canonical(text: String) -> Self {
        JsonValue(text.into())
    }

    /// Keeps `text` as it is after checking that it is one JSON value.
    pub fn verbatim(text: &str) -> Result<Self, InvalidJson> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| InvalidJson(e.to_string()))?;
        Ok(JsonValue(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> serde_json::Value {
        // Checked on construction, so this parse cannot fail; Null is a
        // harmless fallback rather than a panic.
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The order sets show their members in: null < booleans < numbers <
    /// strings < arrays < objects; numbers by value, strings by code point.
    pub fn display_cmp(&self, other: &Self) -> Ordering {
        use serde_json::Value as V;
        fn rank(v: &V) -> u8 {
            match v {
                V::Null => 0,
                V::Bool(_) => 1,
                V::Number(_) => 2,
                V::String(_) => 3,
                V::Array(_) => 4,
                V::Object(_) => 5,
            }
        }
        let (a, b) = (self.to_value(), other.to_value());
        rank(&a).cmp(&rank(&b)).then_with(|| match (&a, &b) {
            (V::Bool(x), V::Bool(y)) => x.cmp(y),
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
            (V::String(x), V::String(y)) => x.cmp(y),
            _ => self.0.cmp(&other.0),
        })
    }
}

impl From<&serde_json::Value> for JsonValue {
    fn from(value: &serde_json::Value) -> Self {
        // serde_json's Map is a BTreeMap (no `preserve_order`), so this
        // serialization sorts object keys: the canonical form. The same
        // bytes as `Display` (`value.to_string()`), whose writer is a
        // second copy of the serializer in the wasm.
        JsonValue(serde_json::to_string(value).unwrap_or_default().into())
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
            self.to_value().serialize(serializer)
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = serde_json::Value::deserialize(deserializer)?;
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
