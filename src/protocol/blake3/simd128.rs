//! BLAKE3's rounds on wasm's 128-bit SIMD, which the wasm build enables
//! (`.cargo/config.toml`): the state's four rows in four vectors, so that
//! each half of a round is one G on four lanes, the four columns, then
//! the four diagonals once the rows are rotated into them (the design of
//! the `blake3` crate's SSE4.1 backend, BLAKE2's before it). The message
//! words are gathered into vectors by the schedule, a load each.
//!
//! In Firefox this hashes at 1.5-1.6x the scalar rounds' throughput, in
//! Chromium 1.2-1.3x on short inputs and about the same on long ones; in
//! Node 20's older V8 15-20% slower (BENCHMARKS, "Issue 17, thirty-fifth
//! session").
//!
//! A long input's whole chunks are hashed four at a time instead
//! ([`chunks4`]): each vector holds one state word of four chunks, so a
//! round is eight G's of plain lane-wise arithmetic, with no rotation of
//! rows and no gathering of message words (they are transposed once per
//! block). The `blake3` crate's `hash4` for SSE4.1 does the same. On
//! 64 KB inputs this hashes at 2.4-2.5x the row-wise rounds' throughput
//! in Chromium and in Firefox (BENCHMARKS, "Issue 17, fifty-seventh
//! session").
//!
//! The browser tests hold both to the official test vectors and to the
//! crate's transcript (`testing::blake3_transcript`).

use core::arch::wasm32::{
    i32x4_shuffle, i64x2_shuffle, i8x16_shuffle, u32x4, u32x4_add, u32x4_extract_lane, u32x4_shl,
    u32x4_shr, u32x4_splat, v128, v128_load, v128_or, v128_xor,
};

use super::compact::{word, Block, BLOCK_LEN, CHUNK_END, CHUNK_LEN, CHUNK_START, IV, SCHEDULE};

/// Rotations right: by 16 and 8 a byte shuffle, by 12 and 7 two shifts.
#[inline(always)]
fn rot16(x: v128) -> v128 {
    i8x16_shuffle::<2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13>(x, x)
}
#[inline(always)]
fn rot12(x: v128) -> v128 {
    v128_or(u32x4_shr(x, 12), u32x4_shl(x, 20))
}
#[inline(always)]
fn rot8(x: v128) -> v128 {
    i8x16_shuffle::<1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12>(x, x)
}
#[inline(always)]
fn rot7(x: v128) -> v128 {
    v128_or(u32x4_shr(x, 7), u32x4_shl(x, 25))
}

/// The state's rows: `a` holds words 0-3, `b` 4-7, `c` 8-11, `d` 12-15.
struct Rows {
    a: v128,
    b: v128,
    c: v128,
    d: v128,
}

impl Rows {
    /// G on each lane: lane `i` takes `mx[i]` and `my[i]`.
    #[inline(always)]
    fn g(&mut self, mx: v128, my: v128) {
        self.a = u32x4_add(u32x4_add(self.a, self.b), mx);
        self.d = rot16(v128_xor(self.d, self.a));
        self.c = u32x4_add(self.c, self.d);
        self.b = rot12(v128_xor(self.b, self.c));
        self.a = u32x4_add(u32x4_add(self.a, self.b), my);
        self.d = rot8(v128_xor(self.d, self.a));
        self.c = u32x4_add(self.c, self.d);
        self.b = rot7(v128_xor(self.b, self.c));
    }

    /// One round: the columns (0, 4, 8, 12) ... (3, 7, 11, 15), then the
    /// diagonals (0, 5, 10, 15) ... (3, 4, 9, 14), lane `i` the one
    /// starting at word `i` once `b`, `c` and `d` are rotated left by one,
    /// two and three lanes.
    #[inline(always)]
    fn round(&mut self, block: &Block, s: &[u8; 16]) {
        let m = |i: usize| word(block, s[i]);
        self.g(u32x4(m(0), m(2), m(4), m(6)), u32x4(m(1), m(3), m(5), m(7)));
        self.b = i32x4_shuffle::<1, 2, 3, 0>(self.b, self.b);
        self.c = i32x4_shuffle::<2, 3, 0, 1>(self.c, self.c);
        self.d = i32x4_shuffle::<3, 0, 1, 2>(self.d, self.d);
        self.g(
            u32x4(m(8), m(10), m(12), m(14)),
            u32x4(m(9), m(11), m(13), m(15)),
        );
        self.b = i32x4_shuffle::<3, 0, 1, 2>(self.b, self.b);
        self.c = i32x4_shuffle::<2, 3, 0, 1>(self.c, self.c);
        self.d = i32x4_shuffle::<1, 2, 3, 0>(self.d, self.d);
    }
}

/// Writes `v`'s lanes to `out[at..at + 4]`.
#[inline(always)]
fn lanes(out: &mut [u32; 16], at: usize, v: v128) {
    out[at] = u32x4_extract_lane::<0>(v);
    out[at + 1] = u32x4_extract_lane::<1>(v);
    out[at + 2] = u32x4_extract_lane::<2>(v);
    out[at + 3] = u32x4_extract_lane::<3>(v);
}

/// The compression function's state after its seven rounds (see
/// [`super::compact`]'s scalar `rounds`).
pub(super) fn rounds(
    cv: &[u32; 8],
    block: &Block,
    counter: u64,
    block_len: u32,
    flags: u32,
) -> [u32; 16] {
    let mut rows = Rows {
        a: u32x4(cv[0], cv[1], cv[2], cv[3]),
        b: u32x4(cv[4], cv[5], cv[6], cv[7]),
        c: u32x4(IV[0], IV[1], IV[2], IV[3]),
        d: u32x4(counter as u32, (counter >> 32) as u32, block_len, flags),
    };
    // Unrolled, so that every message index is a constant.
    rows.round(block, &SCHEDULE[0]);
    rows.round(block, &SCHEDULE[1]);
    rows.round(block, &SCHEDULE[2]);
    rows.round(block, &SCHEDULE[3]);
    rows.round(block, &SCHEDULE[4]);
    rows.round(block, &SCHEDULE[5]);
    rows.round(block, &SCHEDULE[6]);
    let mut out = [0u32; 16];
    lanes(&mut out, 0, rows.a);
    lanes(&mut out, 4, rows.b);
    lanes(&mut out, 8, rows.c);
    lanes(&mut out, 12, rows.d);
    out
}

/// The chaining values of the four whole chunks at the start of `input`
/// (at least `4 * CHUNK_LEN` bytes), numbered `counter` to `counter + 3`,
/// hashed side by side: lane `i` of every vector is chunk `i`'s. None of
/// them may be the root (the caller has input after them).
pub(super) fn chunks4(key: &[u32; 8], input: &[u8], counter: u64, flags: u32) -> [[u32; 8]; 4] {
    let chunks: [&[u8]; 4] = [
        &input[..CHUNK_LEN],
        &input[CHUNK_LEN..2 * CHUNK_LEN],
        &input[2 * CHUNK_LEN..3 * CHUNK_LEN],
        &input[3 * CHUNK_LEN..4 * CHUNK_LEN],
    ];
    let counters = [0u64, 1, 2, 3].map(|i| counter + i);
    let counter_low = u32x4(
        counters[0] as u32,
        counters[1] as u32,
        counters[2] as u32,
        counters[3] as u32,
    );
    let counter_high = u32x4(
        (counters[0] >> 32) as u32,
        (counters[1] >> 32) as u32,
        (counters[2] >> 32) as u32,
        (counters[3] >> 32) as u32,
    );
    let mut cv = key.map(|word| u32x4_splat(word));
    for block in 0..CHUNK_LEN / BLOCK_LEN {
        let at = block * BLOCK_LEN;
        let m = transposed([
            block_of(chunks[0], at),
            block_of(chunks[1], at),
            block_of(chunks[2], at),
            block_of(chunks[3], at),
        ]);
        let block_flags = flags
            | if block == 0 { CHUNK_START } else { 0 }
            | if block == CHUNK_LEN / BLOCK_LEN - 1 {
                CHUNK_END
            } else {
                0
            };
        let mut v = [
            cv[0],
            cv[1],
            cv[2],
            cv[3],
            cv[4],
            cv[5],
            cv[6],
            cv[7],
            u32x4_splat(IV[0]),
            u32x4_splat(IV[1]),
            u32x4_splat(IV[2]),
            u32x4_splat(IV[3]),
            counter_low,
            counter_high,
            u32x4_splat(BLOCK_LEN as u32),
            u32x4_splat(block_flags),
        ];
        // A loop: with the seven rounds unrolled (~1,000 vector
        // operations) Chromium hashed 64 KB inputs at ~670 MB/s, with the
        // loop at 1,150-1,230 (the row-wise rounds above were as fast
        // either way, and are kept unrolled).
        for schedule in &SCHEDULE {
            round4(&mut v, &m, schedule);
        }
        for i in 0..8 {
            cv[i] = v128_xor(v[i], v[i + 8]);
        }
    }
    // Back to one chaining value per chunk: words 0-3 of the four, then
    // words 4-7.
    let low = transpose4([cv[0], cv[1], cv[2], cv[3]]);
    let high = transpose4([cv[4], cv[5], cv[6], cv[7]]);
    let mut out = [[0u32; 8]; 4];
    for (i, chunk) in out.iter_mut().enumerate() {
        let mut words = [0u32; 16];
        lanes(&mut words, 0, low[i]);
        lanes(&mut words, 4, high[i]);
        chunk.copy_from_slice(&words[..8]);
    }
    out
}

/// `chunk`'s block at byte `at`, as four vectors of four words.
#[inline(always)]
fn block_of(chunk: &[u8], at: usize) -> [v128; 4] {
    let block: &Block = chunk[at..at + BLOCK_LEN]
        .try_into()
        .expect("a whole block: chunks are whole");
    // SAFETY: each load reads 16 bytes at offset 0, 16, 32 or 48 of a
    // 64-byte block; `v128_load` takes unaligned addresses.
    [0, 16, 32, 48].map(|offset| unsafe { v128_load(block.as_ptr().add(offset).cast()) })
}

/// Rows to columns: lane `j` of output `i` is lane `i` of input `j`.
#[inline(always)]
fn transpose4([a, b, c, d]: [v128; 4]) -> [v128; 4] {
    let ab_low = i32x4_shuffle::<0, 4, 1, 5>(a, b);
    let cd_low = i32x4_shuffle::<0, 4, 1, 5>(c, d);
    let ab_high = i32x4_shuffle::<2, 6, 3, 7>(a, b);
    let cd_high = i32x4_shuffle::<2, 6, 3, 7>(c, d);
    [
        i64x2_shuffle::<0, 2>(ab_low, cd_low),
        i64x2_shuffle::<1, 3>(ab_low, cd_low),
        i64x2_shuffle::<0, 2>(ab_high, cd_high),
        i64x2_shuffle::<1, 3>(ab_high, cd_high),
    ]
}

/// The sixteen message words of four chunks' blocks: vector `w` holds
/// word `w` of each.
#[inline(always)]
fn transposed(blocks: [[v128; 4]; 4]) -> [v128; 16] {
    let mut m = [u32x4_splat(0); 16];
    for quarter in 0..4 {
        let t = transpose4([
            blocks[0][quarter],
            blocks[1][quarter],
            blocks[2][quarter],
            blocks[3][quarter],
        ]);
        m[4 * quarter..4 * quarter + 4].copy_from_slice(&t);
    }
    m
}

/// G on four states at once: words `a`, `b`, `c` and `d` of each.
#[inline(always)]
fn g4(v: &mut [v128; 16], a: usize, b: usize, c: usize, d: usize, mx: v128, my: v128) {
    v[a] = u32x4_add(u32x4_add(v[a], v[b]), mx);
    v[d] = rot16(v128_xor(v[d], v[a]));
    v[c] = u32x4_add(v[c], v[d]);
    v[b] = rot12(v128_xor(v[b], v[c]));
    v[a] = u32x4_add(u32x4_add(v[a], v[b]), my);
    v[d] = rot8(v128_xor(v[d], v[a]));
    v[c] = u32x4_add(v[c], v[d]);
    v[b] = rot7(v128_xor(v[b], v[c]));
}

/// One round on four states: the columns, then the diagonals (each
/// index `& 15`: no bounds check where the schedule is not a constant).
#[inline(always)]
fn round4(v: &mut [v128; 16], m: &[v128; 16], s: &[u8; 16]) {
    let m = |i: usize| m[usize::from(s[i] & 15)];
    g4(v, 0, 4, 8, 12, m(0), m(1));
    g4(v, 1, 5, 9, 13, m(2), m(3));
    g4(v, 2, 6, 10, 14, m(4), m(5));
    g4(v, 3, 7, 11, 15, m(6), m(7));
    g4(v, 0, 5, 10, 15, m(8), m(9));
    g4(v, 1, 6, 11, 12, m(10), m(11));
    g4(v, 2, 7, 8, 13, m(12), m(13));
    g4(v, 3, 4, 9, 14, m(14), m(15));
}
