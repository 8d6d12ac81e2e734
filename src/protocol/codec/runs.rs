//! Run-length coding of a column of varints: `(count, value)` pairs, each
//! a varint, for the columns whose values repeat from one event to the
//! next (a burst's events each a millisecond after the last, keys of one
//! length, values of one length). A batch marks the columns it codes so
//! ([`super::events`]); the decoder expands them back to their plain form
//! before reading it, within a bound the batch's own size sets.

use super::varint::{self, Reader};
use super::CodecError;

/// `plain` (a column of varints, as the encoder wrote it) as runs, when
/// that is shorter.
pub fn encode(plain: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader::new(plain, "runs");
    let mut out = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    while reader.remaining() > 0 {
        let value = reader.u64().ok()?;
        run = match run {
            Some((count, last)) if last == value => Some((count + 1, last)),
            Some((count, last)) => {
                varint::put(&mut out, count);
                varint::put(&mut out, last);
                if out.len() >= plain.len() {
                    return None;
                }
                Some((1, value))
            }
            None => Some((1, value)),
        };
    }
    if let Some((count, last)) = run {
        varint::put(&mut out, count);
        varint::put(&mut out, last);
    }
    (out.len() < plain.len()).then_some(out)
}

/// Appends the plain form of the runs `coded` to `out`: at most `limit`
/// bytes of it, else an error before anything past the limit is
/// allocated (a run's count is the sender's word).
pub fn expand_into(
    out: &mut Vec<u8>,
    coded: &[u8],
    limit: usize,
    column: &'static str,
) -> Result<(), CodecError> {
    let mut reader = Reader::new(coded, column);
    let mut written = 0usize;
    while reader.remaining() > 0 {
        let count = reader.u64()?;
        let value = reader.u64()?;
        if count == 0 {
            return Err(CodecError::Invalid("a run of no values"));
        }
        let (value_bytes, width) = varint::encoded(value);
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(width))
            .filter(|&n| n <= limit - written)
            .ok_or(CodecError::Count {
                column,
                count,
                limit: ((limit - written) / width) as u64,
            })?;
        if width == 1 {
            // Most values of these columns are one byte: a fill.
            out.resize(out.len() + bytes, value_bytes[0]);
        } else {
            out.reserve(bytes);
            for _ in 0..count {
                out.extend_from_slice(&value_bytes[..width]);
            }
        }
        written += bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(values: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &v in values {
            varint::put(&mut out, v);
        }
        out
    }

    #[test]
    fn runs_round_trip_when_shorter_and_are_left_out_when_not() {
        // One-byte values expand as a fill, wider ones value by value.
        let column = plain(&[4, 4, 4, 4, 300, 300, 300, 7]);
        let coded = encode(&column).expect("shorter as runs");
        assert_eq!(coded, plain(&[4, 4, 3, 300, 1, 7]));
        let mut out = vec![9];
        expand_into(&mut out, &coded, column.len(), "times").unwrap();
        assert_eq!(out[1..], column, "appended after what was there");

        assert_eq!(encode(&plain(&[1, 2, 3, 4])), None, "no value repeats");
        assert_eq!(encode(&[]), None, "nothing to code");
    }

    #[test]
    fn a_run_past_the_limit_is_refused_before_it_is_allocated() {
        let bomb = plain(&[1 << 40, 5]);
        let mut out = Vec::new();
        let err = expand_into(&mut out, &bomb, 1_000, "keys").unwrap_err();
        assert!(
            matches!(err, CodecError::Count { column: "keys", .. }),
            "{err}"
        );
        assert!(out.capacity() < 1_000);
        // Exactly at the limit is taken; one more is not.
        let coded = plain(&[500, 300]);
        assert!(expand_into(&mut Vec::new(), &coded, 1_000, "keys").is_ok());
        assert!(expand_into(&mut Vec::new(), &coded, 999, "keys").is_err());
        let empty = plain(&[0, 9]);
        assert!(matches!(
            expand_into(&mut Vec::new(), &empty, 1_000, "keys"),
            Err(CodecError::Invalid(_))
        ));
        let cut = [0x80];
        assert!(expand_into(&mut Vec::new(), &cut, 1_000, "keys").is_err());
    }
}
