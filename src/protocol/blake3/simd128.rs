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
//! session"). The browser tests hold its digests
//! to the official test vectors and to the crate's transcript
//! (`testing::blake3_transcript`).

use core::arch::wasm32::{
    i32x4_shuffle, i8x16_shuffle, u32x4, u32x4_add, u32x4_extract_lane, u32x4_shl, u32x4_shr, v128,
    v128_or, v128_xor,
};

use super::compact::{word, Block, IV, SCHEDULE};

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
