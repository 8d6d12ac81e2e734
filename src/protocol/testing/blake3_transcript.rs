//! One digest over everything [`crate::protocol::blake3`] computes for
//! inputs of every length that matters (around blocks, chunks and
//! subtrees of many chunks), plain, keyed, deriving a key, fed in uneven
//! pieces and read as extendable output. Natively that module is the
//! `blake3` crate, so the native tests pin [`EXPECTED`] to the crate; the
//! wasm has its own compression (scalar, or SIMD), and the browser tests
//! check it gives the same transcript.

use crate::protocol::blake3::{derive_key, hash, keyed_hash, Hasher};

/// The transcript as the `blake3` crate computes it.
pub const EXPECTED: &str = "4e949c89a0646fcb179a647a6e78c81d0ad07eb7a36466cc788a7e714dc51b41";

/// The official test vectors' input: bytes 0..251 repeating.
pub fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Lengths around every boundary: blocks, chunks, and subtrees of 2, 3,
/// 4, 8 and more chunks.
pub fn lengths() -> Vec<usize> {
    let mut out = vec![0, 1, 2, 3, 63, 64, 65, 127, 128, 129];
    for chunks in [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33] {
        let n = chunks * 1024;
        out.extend([n - 1, n, n + 1, n + 64, n + 65]);
    }
    out.push(100_000);
    out
}

/// The transcript's digest, in hex.
pub fn transcript() -> String {
    let key = *hash(b"a key").as_bytes();
    let mut all = Hasher::new();
    for len in lengths() {
        let data = input(len);
        all.update(hash(&data).as_bytes());
        all.update(keyed_hash(&key, &data).as_bytes());
        all.update(&derive_key("cpc-sync test context", &data));
        let mut pieces = Hasher::new_derive_key("pieces");
        for piece in data.chunks(len / 7 + 13) {
            pieces.update(piece);
        }
        all.update(pieces.finalize().as_bytes());
        let mut xof = pieces.finalize_xof();
        for n in [1usize, 16, 63, 64, 65, 200] {
            let mut out = vec![0u8; n];
            xof.fill(&mut out);
            all.update(&out);
        }
    }
    all.finalize()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
