//! `Text`: immutable text, held in place when short, otherwise shared
//! cheaply as a range of a shared buffer.
//!
//! Most keys and many values are short (`todo:42`, `true`, `"done"`):
//! up to [`INLINE`] bytes sit in the `Text` itself, so making, cloning,
//! comparing and dropping one touches no other memory. Applying an event
//! reads its key and the entity's, and drops the value it supersedes;
//! held in place, none of these is a cache miss of its own.
//!
//! Longer text is made one at a time (a write, a frame from a peer) as
//! its own buffer, like the `Arc<str>` it replaced. A decoded snapshot
//! spells its keys in one column and its values in another; there every
//! long key and value is a range of its column, shared: loading 100k
//! entities makes no allocation per key or value, and reads their text in
//! the order it was stored.
//!
//! A range keeps its whole buffer alive. Only our own stored snapshot
//! shares (the events the restored state rests on, kept anyway), so what
//! a buffer holds beyond the live ranges is at most that snapshot, until
//! its last range goes; what peers send is copied.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Text that clones cheaply: in place when short, by reference count
/// when not. It compares, orders and hashes as the `str` it holds, so
/// maps keyed by it are looked up by `&str`.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// Up to [`INLINE`] bytes, held in place: no allocation, no reference
    /// count, and no pointer to follow to compare, hash or drop it. Most
    /// keys and many values are this short.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A range of a shared buffer, or the whole of it.
    Shared {
        buffer: Arc<str>,
        start: u32,
        /// [`WHOLE`] for the whole buffer, whatever its length.
        end: u32,
    },
}

/// The longest text held in place: what fits beside the tag and the length
/// in the 32 bytes a shared range takes anyway (aligned).
pub const INLINE: usize = 30;

/// `end` of a shared `Text` that is its whole buffer: a text made on its
/// own may be longer than a range's 32 bits can say (natively).
const WHOLE: u32 = u32::MAX;

impl Text {
    /// The range `range` of `buffer`, or `None` when it is not one (out of
    /// bounds, not on character boundaries, or past 4 GiB). A short range
    /// is copied out: it does not keep the buffer alive.
    pub fn slice(buffer: &Arc<str>, range: Range<usize>) -> Option<Text> {
        let text = buffer.get(range.clone())?;
        if let Some(inline) = Text::inline(text) {
            return Some(inline);
        }
        Some(Text(Repr::Shared {
            buffer: buffer.clone(),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok().filter(|&end| end != WHOLE)?,
        }))
    }

    /// `text` held in place, when it is short enough.
    #[inline]
    fn inline(text: &str) -> Option<Text> {
        let len = text.len();
        if len > INLINE {
            return None;
        }
        let mut bytes = [0; INLINE];
        bytes[..len].copy_from_slice(text.as_bytes());
        Some(Text(Repr::Inline {
            len: len as u8,
            bytes,
        }))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // SAFETY: the bytes are a `str`'s, copied whole (`inline`),
                // and never change.
                unsafe { std::str::from_utf8_unchecked(bytes.get_unchecked(..*len as usize)) }
            }
            Repr::Shared { buffer, end, .. } if *end == WHOLE => buffer,
            Repr::Shared { buffer, start, end } => {
                // SAFETY: the range is in bounds and on character
                // boundaries: checked on construction, and neither it nor
                // the buffer changes.
                unsafe { buffer.get_unchecked(*start as usize..*end as usize) }
            }
        }
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<Arc<str>> for Text {
    fn from(buffer: Arc<str>) -> Self {
        Text::inline(&buffer).unwrap_or(Text(Repr::Shared {
            buffer,
            start: 0,
            end: WHOLE,
        }))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::inline(text).unwrap_or_else(|| Arc::<str>::from(text).into())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::inline(&text).unwrap_or_else(|| Arc::<str>::from(text).into())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// As the `str`: `Borrow<str>` lookups need the same hash.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl serde::de::Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text::from(text))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text, E> {
                Ok(Text::from(text))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_slice_is_its_range_and_compares_as_its_text() {
        let buffer: Arc<str> = "keyäb".into();
        let a = Text::slice(&buffer, 0..3).expect("a range");
        assert_eq!(a.as_str(), "key");
        assert_eq!(a, Text::from("key"));
        assert!(Text::slice(&buffer, 3..5).is_some(), "ä is two bytes");
        let mut map = HashMap::new();
        map.insert(a, 1);
        assert_eq!(map.get("key"), Some(&1), "looked up by &str");
    }

    #[test]
    fn a_whole_text_is_its_buffer() {
        let whole = Text::from("keyäb");
        assert_eq!(whole.as_str(), "keyäb");
        assert_eq!(whole, Text::slice(&"keyäb".into(), 0..6).expect("a range"));
    }

    #[test]
    fn short_text_is_held_in_place_and_long_text_shared() {
        assert_eq!(std::mem::size_of::<Text>(), 32, "no larger than a range");
        let buffer: Arc<str> = "ä".repeat(40).into();
        // 15 two-byte characters: 30 bytes, in place; the buffer is not kept.
        let short = Text::slice(&buffer, 0..2 * 15).expect("a range");
        assert_eq!(Arc::strong_count(&buffer), 1);
        let long = Text::slice(&buffer, 0..2 * 16).expect("a range");
        assert_eq!(Arc::strong_count(&buffer), 2, "a longer range shares");
        assert_eq!(short.as_str(), "ä".repeat(15));
        assert_eq!(long.as_str(), "ä".repeat(16));
        assert!(short < long);
        for text in ["", "k", &"x".repeat(INLINE), &"x".repeat(INLINE + 1)] {
            let made = [
                Text::from(text),
                Text::from(text.to_string()),
                Text::from(Arc::<str>::from(text)),
            ];
            for t in &made {
                assert_eq!(t.as_str(), text);
                let bytes = postcard::to_allocvec(t).expect("encodes");
                let back: Text = postcard::from_bytes(&bytes).expect("decodes");
                assert_eq!(back, *t);
            }
        }
    }

    #[test]
    fn ranges_that_are_not_text_are_refused() {
        let buffer: Arc<str> = "keyäb".into();
        assert!(Text::slice(&buffer, 0..4).is_none(), "inside ä");
        assert!(Text::slice(&buffer, 4..6).is_none(), "from inside ä");
        assert!(Text::slice(&buffer, 2..9).is_none(), "past the end");
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..2;
        assert!(Text::slice(&buffer, reversed).is_none());
    }
}
