//! Reading postcard's forms by hand ([`content`](super::content) gives the
//! rules): the wire's message bodies and the forms a page stored before
//! event batches ([`legacy`](super::legacy)), without serde's visitors and
//! postcard's deserializer in the wasm.
//!
//! What this reader takes, postcard takes as the same value: integers of
//! 32 bits, lengths among them, in at most 5 bytes (as postcard reads them
//! on wasm32; natively it read lengths in up to 10, so a native peer took
//! frames a page refused), a bool or an `Option` only as 0 or 1. Counts
//! are bounded by the bytes left before anything is reserved for them.

use super::varint::Reader;
use super::CodecError;
use crate::protocol::clock::{PeerId, VectorClock, MAX_CLOCK_ENTRIES};

/// The most items [`Postcard::many`] reserves room for before reading them.
const RESERVED: usize = 4096;

/// A cursor over one postcard value.
///
/// Its first error sticks ([`finish`](Self::finish) returns it): a read
/// that fails, and every read after it, gives a default (zero, empty,
/// nothing left to read, so no count reserves anything), and the value
/// built from them is dropped. A reader is then straight-line code with
/// one check at its end, where one `?` on every field built an error path
/// of its own: the wire's message reader was 11.5 KB of wasm that way.
pub struct Postcard<'a> {
    reader: Reader<'a>,
    error: Option<CodecError>,
}

impl<'a> Postcard<'a> {
    /// `what` names the value in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Postcard {
            reader: Reader::new(bytes, what),
            error: None,
        }
    }

    /// Records `error` unless an earlier one stuck; nothing is read after.
    pub fn fail(&mut self, error: CodecError) {
        self.error.get_or_insert(error);
        self.reader = Reader::new(&[], self.reader.column);
    }

    /// `result`'s value, or the default after recording its error.
    pub fn or_fail<T: Default>(&mut self, result: Result<T, CodecError>) -> T {
        self.or(result, T::default())
    }

    /// `result`'s value, or `default` after recording its error.
    pub fn or<T>(&mut self, result: Result<T, CodecError>, default: T) -> T {
        match result {
            Ok(value) => value,
            Err(e) => {
                self.fail(e);
                default
            }
        }
    }

    /// Records an unknown variant (or tag) `index`.
    pub fn unknown(&mut self, index: u64) {
        let column = self.reader.column;
        self.fail(CodecError::Variant { column, index });
    }

    pub fn u8(&mut self) -> u8 {
        let read = self.reader.u8();
        self.or_fail(read)
    }

    pub fn u64(&mut self) -> u64 {
        let read = self.reader.u64();
        self.or_fail(read)
    }

    pub fn i64(&mut self) -> i64 {
        let read = self.reader.i64();
        self.or_fail(read)
    }

    /// A varint of at most 5 bytes that fits 32 bits: a `u32`, a length,
    /// an enum's variant.
    pub fn u32(&mut self) -> u32 {
        let before = self.reader.remaining();
        let value = self.u64();
        match u32::try_from(value) {
            Ok(v) if before - self.reader.remaining() <= 5 => v,
            _ => {
                self.fail(CodecError::Wide(self.reader.column));
                0
            }
        }
    }

    /// A bool, or an `Option`'s tag.
    pub fn bool(&mut self) -> bool {
        match self.u8() {
            0 => false,
            1 => true,
            other => {
                self.unknown(other.into());
                false
            }
        }
    }

    /// A length of items of at least `min_bytes` each, bounded by what
    /// is left, so reserving for it is safe.
    pub fn count(&mut self, min_bytes: usize) -> usize {
        let count = self.u32();
        let limit = self.reader.remaining() / min_bytes.max(1);
        match usize::try_from(count) {
            Ok(n) if n <= limit => n,
            _ => {
                let column = self.reader.column;
                self.fail(CodecError::Count {
                    column,
                    count: u64::from(count),
                    limit: limit as u64,
                });
                0
            }
        }
    }

    /// A sequence of items of at least `min_bytes` each. Room is reserved
    /// for at most [`RESERVED`] of them before they are read: an event
    /// takes 160 bytes in memory and 16 at least in a stored record, so a
    /// damaged record would reserve ten times its bytes and then fail.
    pub fn many<T>(&mut self, min_bytes: usize, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let count = self.count(min_bytes);
        let mut out = Vec::with_capacity(count.min(RESERVED));
        for _ in 0..count {
            if self.error.is_some() {
                break;
            }
            out.push(item(self));
        }
        out
    }

    /// Bytes after their length.
    pub fn slice(&mut self) -> &'a [u8] {
        let len = self.count(1);
        let read = self.reader.take(len);
        self.or_fail(read)
    }

    /// A string: UTF-8 after its length.
    pub fn str(&mut self) -> &'a str {
        let bytes = self.slice();
        let read = std::str::from_utf8(bytes).map_err(|_| CodecError::Utf8(self.reader.column));
        self.or_fail(read)
    }

    /// An array of bytes, as they are.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let read = self.reader.array();
        self.or(read, [0; N])
    }

    /// Its 8 bytes, little-endian.
    pub fn peer(&mut self) -> PeerId {
        PeerId(u64::from_le_bytes(self.array()))
    }

    /// A clock as its map, taken as serde's visitor takes it: at most
    /// [`MAX_CLOCK_ENTRIES`], the last of a repeated peer, zeros dropped.
    pub fn clock(&mut self) -> VectorClock {
        let count = self.u32() as usize;
        if count > MAX_CLOCK_ENTRIES {
            let column = self.reader.column;
            self.fail(CodecError::Count {
                column,
                count: count as u64,
                limit: MAX_CLOCK_ENTRIES as u64,
            });
        }
        if count > self.reader.remaining() / 9 {
            self.fail(CodecError::Truncated(self.reader.column));
        }
        let count = count.min(self.reader.remaining() / 9);
        let entries = (0..count).map(|_| (self.peer(), self.u64())).collect();
        VectorClock::from_entries(entries)
    }

    /// `value`, if everything was read without an error (`whole`: to the
    /// end of the bytes); else the first error.
    pub fn finish<T>(mut self, value: T, whole: bool) -> Result<T, CodecError> {
        if whole && self.error.is_none() {
            if let Err(e) = self.reader.finish() {
                self.fail(e);
            }
        }
        match self.error {
            None => Ok(value),
            Some(e) => Err(e),
        }
    }
}
