//! `Text`: immutable text shared cheaply, as a range of a shared buffer.
//!
//! Keys and values are mostly made one at a time (a write, a frame from a
//! peer), and then a `Text` is its own buffer, like the `Arc<str>` it
//! replaced. A decoded snapshot spells its keys in one column and its
//! values in another; there every key and every value is a range of its
//! column, shared: loading 100k entities makes no allocation per key or
//! value, and reads their text in the order it was stored.
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

/// Text that clones by reference count. It compares, orders and hashes as
/// the `str` it holds, so maps keyed by it are looked up by `&str`.
#[derive(Clone)]
pub struct Text {
    buffer: Arc<str>,
    start: u32,
    /// [`WHOLE`] for the whole buffer, whatever its length.
    end: u32,
}

/// `end` of a `Text` that is its whole buffer: a text made on its own may
/// be longer than a range's 32 bits can say (natively).
const WHOLE: u32 = u32::MAX;

impl Text {
    /// The range `range` of `buffer`, or `None` when it is not one (out of
    /// bounds, not on character boundaries, or past 4 GiB).
    pub fn slice(buffer: &Arc<str>, range: Range<usize>) -> Option<Text> {
        buffer.get(range.clone())?;
        Some(Text {
            buffer: buffer.clone(),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok().filter(|&end| end != WHOLE)?,
        })
    }

    #[inline(always)]
    pub fn as_str(&self) -> &str {
        if self.end == WHOLE {
            return &self.buffer;
        }
        // SAFETY: the range is in bounds and on character boundaries:
        // checked on construction, and neither it nor the buffer changes.
        unsafe {
            self.buffer
                .get_unchecked(self.start as usize..self.end as usize)
        }
    }
}

impl Deref for Text {
    type Target = str;

    #[inline(always)]
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
        Text {
            buffer,
            start: 0,
            end: WHOLE,
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Arc::<str>::from(text).into()
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Arc::<str>::from(text).into()
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
        Arc::<str>::deserialize(deserializer).map(Text::from)
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
