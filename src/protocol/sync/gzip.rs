//! A native edge's answers to [`Output::GzipSnapshot`] and
//! [`Output::GunzipSnapshot`] (the room peer's, the tests'), with flate2;
//! a page's edge uses the browser's own streams instead
//! (`browser::compress`). Built with the `server` or `testing` feature.
//!
//! [`Output::GzipSnapshot`]: super::Output::GzipSnapshot
//! [`Output::GunzipSnapshot`]: super::Output::GunzipSnapshot

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// `bytes` gzipped, at zlib's default level (as `CompressionStream`).
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

/// `bytes` gunzipped, refused past `limit` bytes (what the snapshot's
/// offer named) without holding more than one byte over it: a few KB of
/// gzip can claim gigabytes.
pub fn gunzip_at_most(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!(
            "it inflates to more than the {limit} bytes offered"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflates_to_the_limit_and_not_a_byte_over() {
        let bytes = vec![5u8; 10_000];
        let gzipped = gzip(&bytes).unwrap();
        assert!(gzipped.len() < 200);
        assert_eq!(gunzip_at_most(&gzipped, 10_000).unwrap(), bytes);
        let over = gunzip_at_most(&gzipped, 9_999).unwrap_err();
        assert!(over.contains("more than the 9999 bytes"), "{over}");
        assert!(gunzip_at_most(&[1, 2, 3], 100).is_err());
    }
}
