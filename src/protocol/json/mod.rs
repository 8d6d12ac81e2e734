//! JSON text read and written by hand, byte for byte as serde_json 1.0
//! reads and writes it (without its `float_roundtrip` and
//! `arbitrary_precision` features), so values canonicalized before and
//! after keep their bytes and their hashes. The wasm had serde_json's
//! `Value` and deserializer for this: replacing them took 21.7 KB off it
//! (7.8 KB gzipped).
//!
//! Two readers, as serde_json has: [`parse`] builds a [`Json`] tree with
//! serde_json's limits (128 levels of nesting, numbers that overflow an
//! `f64` refused); [`check`] only checks the syntax, as deserializing to
//! `IgnoredAny` does (no depth limit, any number, lone surrogates in
//! escapes allowed), both in `read.rs`. `tests/native/json_compat.rs` holds
//! both to serde_json.

use std::fmt;

mod read;
mod write;

pub use read::read_floats_with;
use read::Reader;
pub use write::WriteJson;

/// A parsed JSON value. Objects keep one entry per key, sorted by key
/// (the last of duplicate keys wins), as serde_json's `Map` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Any other number; always finite.
    F64(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why text is not JSON: what went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    what: &'static str,
    line: usize,
    column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for JsonError {}

/// One JSON value, with white space around it at most.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let mut r = Reader::new(text);
    let value = r.value(128)?;
    r.end()?;
    Ok(value)
}

/// Whether `text` is one JSON value, by syntax alone.
pub fn check(text: &str) -> Result<(), JsonError> {
    let mut r = Reader::new(text);
    r.skip_value()?;
    r.end()
}

impl Json {
    /// The value as compact JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::U64(n) => out.push_str(&n.to_string()),
            Json::I64(n) => out.push_str(&n.to_string()),
            Json::F64(f) => write_f64(out, *f),
            Json::String(s) => write_str(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// A number as an `f64` (integers rounded), else `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::U64(n) => Some(n as f64),
            Json::I64(n) => Some(n as f64),
            Json::F64(f) => Some(f),
            _ => None,
        }
    }

    /// A non-negative integer, else `None`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Json::U64(n) => Some(n),
            _ => None,
        }
    }

    /// An object's field.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// An object from entries in any order; the last of equal keys wins.
    pub fn object(mut entries: Vec<(String, Json)>) -> Json {
        // Stable, so among equal keys the last stays last.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        super::heap_sort::heap_sort_by(&mut order, |&a, &b| {
            (entries[a].0.as_str(), a) < (entries[b].0.as_str(), b)
        });
        let mut slots: Vec<Option<(String, Json)>> = entries.drain(..).map(Some).collect();
        let mut out: Vec<(String, Json)> = Vec::with_capacity(slots.len());
        for i in order {
            let Some(entry) = slots[i].take() else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => out.push(entry),
            }
        }
        Json::Object(out)
    }
}

/// A string as JSON: quoted, with `"`, `\` and control characters escaped
/// as serde_json escapes them (short forms where JSON has one, else
/// `\u00xx`); everything else, `/` and non-ASCII included, as it is.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0A => b'n',
            0x0C => b'f',
            0x0D => b'r',
            0x00..=0x1F => b'u',
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push('\\');
        out.push(short as char);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A string's JSON text.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

/// A finite `f64` as serde_json writes it: the shortest digits that read
/// back as the same number (zmij, serde_json's own writer).
pub fn write_f64(out: &mut String, f: f64) {
    if f.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(f));
    } else {
        out.push_str("null");
    }
}

/// As serde_json's `Value` serializes: the server and the tests write
/// values inside serde-derived messages.
impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::U64(n) => serializer.serialize_u64(*n),
            Json::I64(n) => serializer.serialize_i64(*n),
            Json::F64(f) => serializer.serialize_f64(*f),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => serializer.collect_seq(items),
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Json;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                <Json as serde::Deserialize>::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::U64(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(if n < 0 {
                    Json::I64(n)
                } else {
                    Json::U64(n as u64)
                })
            }
            fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
                Ok(if f.is_finite() {
                    Json::F64(f)
                } else {
                    Json::Null
                })
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::object(entries))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl PartialEq<str> for Json {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Json {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

// Where serde_json's `Value` and this meet: the server, the tests. (The
// wasm calls neither, so neither is in it.)
impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        serde_json::from_value(value).unwrap_or(Json::Null)
    }
}

impl From<&Json> for serde_json::Value {
    fn from(value: &Json) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }
}
