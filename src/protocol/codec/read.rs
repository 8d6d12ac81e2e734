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

/// A cursor over one postcard value.
pub struct Postcard<'a>(Reader<'a>);

impl<'a> Postcard<'a> {
    /// `what` names the value in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Postcard(Reader::new(bytes, what))
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        self.0.u8()
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        self.0.u64()
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        self.0.i64()
    }

    /// A varint of at most 5 bytes that fits 32 bits: a `u32`, a length,
    /// an enum's variant.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let before = self.0.remaining();
        let value = self.0.u64()?;
        match u32::try_from(value) {
            Ok(v) if before - self.0.remaining() <= 5 => Ok(v),
            _ => Err(CodecError::Wide(self.0.column)),
        }
    }

    /// A bool, or an `Option`'s tag.
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.0.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.unknown(u64::from(other))),
        }
    }

    /// The error of an unknown variant (or tag) `index`.
    pub fn unknown(&self, index: u64) -> CodecError {
        CodecError::Variant {
            column: self.0.column,
            index,
        }
    }

    /// A length of items of at least `min_bytes` each, bounded by what
    /// is left, so reserving for it is safe.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, CodecError> {
        let count = self.u32()?;
        match usize::try_from(count) {
            Ok(n) if n <= self.0.remaining() / min_bytes.max(1) => Ok(n),
            _ => Err(CodecError::Count {
                column: self.0.column,
                count: u64::from(count),
                limit: (self.0.remaining() / min_bytes.max(1)) as u64,
            }),
        }
    }

    /// A sequence of items of at least `min_bytes` each.
    pub fn many<T>(
        &mut self,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        let count = self.count(min_bytes)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Bytes after their length.
    pub fn slice(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.count(1)?;
        self.0.take(len)
    }

    /// A string: UTF-8 after its length.
    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let bytes = self.slice()?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::Utf8(self.0.column))
    }

    /// An array of bytes, as they are.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.0.array()
    }

    /// Its 8 bytes, little-endian.
    pub fn peer(&mut self) -> Result<PeerId, CodecError> {
        self.array().map(|b| PeerId(u64::from_le_bytes(b)))
    }

    /// A clock as its map, taken as serde's visitor takes it: at most
    /// [`MAX_CLOCK_ENTRIES`], the last of a repeated peer, zeros dropped.
    pub fn clock(&mut self) -> Result<VectorClock, CodecError> {
        let count = self.u32()?;
        let mut entries = Vec::with_capacity((count as usize).min(self.0.remaining() / 9));
        for _ in 0..count {
            if entries.len() >= MAX_CLOCK_ENTRIES {
                return Err(CodecError::Count {
                    column: self.0.column,
                    count: u64::from(count),
                    limit: MAX_CLOCK_ENTRIES as u64,
                });
            }
            entries.push((self.peer()?, self.u64()?));
        }
        Ok(VectorClock::from_entries(entries))
    }

    /// Fails unless the value was read to its end.
    pub fn finish(&self) -> Result<(), CodecError> {
        self.0.finish()
    }
}
