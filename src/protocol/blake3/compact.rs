//! BLAKE3, written small: the reference implementation's design (one
//! compression function, a stack of chaining values) with the `blake3`
//! crate's interface as this crate uses it. The crate's portable backend
//! has two unrolled compression functions and the machinery for hashing
//! many chunks at once: ~22 KB of the wasm, where this is ~6 KB; in the
//! wasm it would hash a block at a time all the same. Natively the crate
//! is kept (its SIMD backends hash many chunks at once). The bytes
//! out are the same (tests below, against the crate; the browser tests
//! check the wasm's against the crate's transcript).
//!
//! The wasm's build has 128-bit SIMD, and its rounds are
//! `simd128.rs`'s (in Firefox 1.5x these scalar rounds'
//! throughput; see there); there [`Hasher::update`] also takes a long
//! input's whole chunks four at a time, side by side (`chunks4`: 2.5x
//! on 64 KB inputs).

const OUT_LEN: usize = 32;
pub(super) const BLOCK_LEN: usize = 64;
pub(super) const CHUNK_LEN: usize = 1024;

pub(super) const CHUNK_START: u32 = 1 << 0;
pub(super) const CHUNK_END: u32 = 1 << 1;
const PARENT: u32 = 1 << 2;
const ROOT: u32 = 1 << 3;
const KEYED_HASH: u32 = 1 << 4;
const DERIVE_KEY_CONTEXT: u32 = 1 << 5;
const DERIVE_KEY_MATERIAL: u32 = 1 << 6;

pub(super) const IV: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

/// The message words each round takes, in order: the reference
/// implementation's permutation applied 0 to 6 times.
pub(super) const SCHEDULE: [[u8; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

#[cfg(not(target_feature = "simd128"))]
#[inline(always)]
fn g(state: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, mx: u32, my: u32) {
    state[a] = state[a].wrapping_add(state[b]).wrapping_add(mx);
    state[d] = (state[d] ^ state[a]).rotate_right(16);
    state[c] = state[c].wrapping_add(state[d]);
    state[b] = (state[b] ^ state[c]).rotate_right(12);
    state[a] = state[a].wrapping_add(state[b]).wrapping_add(my);
    state[d] = (state[d] ^ state[a]).rotate_right(8);
    state[c] = state[c].wrapping_add(state[d]);
    state[b] = (state[b] ^ state[c]).rotate_right(7);
}

#[cfg(target_feature = "simd128")]
use super::simd128::rounds;

/// A block of input, as bytes: the rounds read its words in place (a
/// conversion to words first was a tenth of hashing a long input in V8).
pub(super) type Block = [u8; BLOCK_LEN];

/// Word `i` of `block`, little-endian: one load once `i` is a constant.
#[inline(always)]
pub(super) fn word(block: &Block, i: u8) -> u32 {
    let at = 4 * usize::from(i & 15);
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

#[cfg(not(target_feature = "simd128"))]
#[inline(always)]
fn round(state: &mut [u32; 16], block: &Block, s: &[u8; 16]) {
    let m = |i: usize| word(block, s[i]);
    g(state, 0, 4, 8, 12, m(0), m(1));
    g(state, 1, 5, 9, 13, m(2), m(3));
    g(state, 2, 6, 10, 14, m(4), m(5));
    g(state, 3, 7, 11, 15, m(6), m(7));
    g(state, 0, 5, 10, 15, m(8), m(9));
    g(state, 1, 6, 11, 12, m(10), m(11));
    g(state, 2, 7, 8, 13, m(12), m(13));
    g(state, 3, 4, 9, 14, m(14), m(15));
}

/// The compression function's state after its seven rounds, a word at a
/// time; the output is made from it by [`chaining_value`] (its first
/// half, which is all that most compressions need) or
/// [`Output::root_block`]. The wasm, built with SIMD, has
/// `simd128.rs`'s.
#[cfg(not(target_feature = "simd128"))]
fn rounds(cv: &[u32; 8], block: &Block, counter: u64, block_len: u32, flags: u32) -> [u32; 16] {
    let mut state = [
        cv[0],
        cv[1],
        cv[2],
        cv[3],
        cv[4],
        cv[5],
        cv[6],
        cv[7],
        IV[0],
        IV[1],
        IV[2],
        IV[3],
        counter as u32,
        (counter >> 32) as u32,
        block_len,
        flags,
    ];
    // Unrolled, so that every message index is a constant: a loop over
    // the schedule ran at half the speed, and every frame sent or
    // received is hashed.
    round(&mut state, block, &SCHEDULE[0]);
    round(&mut state, block, &SCHEDULE[1]);
    round(&mut state, block, &SCHEDULE[2]);
    round(&mut state, block, &SCHEDULE[3]);
    round(&mut state, block, &SCHEDULE[4]);
    round(&mut state, block, &SCHEDULE[5]);
    round(&mut state, block, &SCHEDULE[6]);
    state
}

/// The compression function's first 8 words of output: the chaining value.
fn chaining_value(
    cv: &[u32; 8],
    block: &Block,
    counter: u64,
    block_len: u32,
    flags: u32,
) -> [u32; 8] {
    let state = rounds(cv, block, counter, block_len, flags);
    let mut out = [0u32; 8];
    for (i, word) in out.iter_mut().enumerate() {
        *word = state[i] ^ state[i + 8];
    }
    out
}

/// The little-endian words of a key.
fn words(bytes: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (i, word) in out.iter_mut().enumerate() {
        let at = 4 * i;
        *word = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    }
    out
}

/// What one compression will make: a chaining value, or root output.
#[derive(Clone)]
struct Output {
    cv: [u32; 8],
    block: Block,
    counter: u64,
    block_len: u32,
    flags: u32,
}

impl Output {
    fn chaining_value(&self) -> [u32; 8] {
        chaining_value(
            &self.cv,
            &self.block,
            self.counter,
            self.block_len,
            self.flags,
        )
    }

    /// The root output's first 32 bytes: the hash (half of a root
    /// block's rounds' output).
    fn root_hash(&self) -> Hash {
        let cv = chaining_value(&self.cv, &self.block, 0, self.block_len, self.flags | ROOT);
        let mut out = [0u8; OUT_LEN];
        for (i, &word) in cv.iter().enumerate() {
            put(&mut out, i, word);
        }
        Hash(out)
    }

    /// Root output block `index`.
    fn root_block(&self, index: u64) -> Block {
        let state = rounds(
            &self.cv,
            &self.block,
            index,
            self.block_len,
            self.flags | ROOT,
        );
        let mut out = [0u8; BLOCK_LEN];
        for i in 0..8 {
            put(&mut out, i, state[i] ^ state[i + 8]);
            put(&mut out, i + 8, state[i + 8] ^ self.cv[i]);
        }
        out
    }
}

/// Writes word `i` of `block`, little-endian (byte by byte: a
/// `copy_from_slice` of four bytes is a call in the size-optimized wasm).
#[inline(always)]
fn put(block: &mut [u8], i: usize, word: u32) {
    let [a, b, c, d] = word.to_le_bytes();
    let at = 4 * i;
    block[at] = a;
    block[at + 1] = b;
    block[at + 2] = c;
    block[at + 3] = d;
}

fn parent_output(left: &[u32; 8], right: &[u32; 8], key: &[u32; 8], flags: u32) -> Output {
    let mut block = [0u8; BLOCK_LEN];
    for i in 0..8 {
        put(&mut block, i, left[i]);
        put(&mut block, i + 8, right[i]);
    }
    Output {
        cv: *key,
        block,
        counter: 0,
        block_len: BLOCK_LEN as u32,
        flags: PARENT | flags,
    }
}

#[derive(Clone)]
struct ChunkState {
    cv: [u32; 8],
    chunk_counter: u64,
    block: Block,
    block_len: usize,
    blocks_compressed: usize,
    flags: u32,
}

impl ChunkState {
    fn new(key: &[u32; 8], chunk_counter: u64, flags: u32) -> Self {
        ChunkState {
            cv: *key,
            chunk_counter,
            block: [0; BLOCK_LEN],
            block_len: 0,
            blocks_compressed: 0,
            flags,
        }
    }

    fn len(&self) -> usize {
        BLOCK_LEN * self.blocks_compressed + self.block_len
    }

    fn start_flag(&self) -> u32 {
        if self.blocks_compressed == 0 {
            CHUNK_START
        } else {
            0
        }
    }

    /// Compresses a block that is not the chunk's last.
    fn compress(&mut self, block: &Block) {
        self.cv = chaining_value(
            &self.cv,
            block,
            self.chunk_counter,
            BLOCK_LEN as u32,
            self.flags | self.start_flag(),
        );
        self.blocks_compressed += 1;
    }

    fn update(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            // A full block is compressed only once more input comes: the
            // last block of a chunk takes the CHUNK_END flag.
            if self.block_len == BLOCK_LEN {
                let block = self.block;
                self.compress(&block);
                self.block = [0; BLOCK_LEN];
                self.block_len = 0;
            }
            // Blocks with more input after them, read where they are
            // rather than copied to `block` first.
            while self.block_len == 0 && input.len() > BLOCK_LEN {
                let (block, rest) = input.split_at(BLOCK_LEN);
                // Always a block: the input was split there.
                if let Ok(block) = block.try_into() {
                    self.compress(block);
                }
                input = rest;
            }
            let take = (BLOCK_LEN - self.block_len).min(input.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&input[..take]);
            self.block_len += take;
            input = &input[take..];
        }
    }

    fn output(&self) -> Output {
        Output {
            cv: self.cv,
            block: self.block,
            counter: self.chunk_counter,
            block_len: self.block_len as u32,
            flags: self.flags | self.start_flag() | CHUNK_END,
        }
    }
}

/// A 32-byte hash, compared in constant time (it is also a MAC).
#[derive(Clone, Copy)]
pub struct Hash([u8; OUT_LEN]);

impl Hash {
    pub fn as_bytes(&self) -> &[u8; OUT_LEN] {
        &self.0
    }
}

impl From<[u8; OUT_LEN]> for Hash {
    fn from(bytes: [u8; OUT_LEN]) -> Self {
        Hash(bytes)
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Kept from being turned into an early exit.
        std::hint::black_box(diff) == 0
    }
}

impl Eq for Hash {}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hash(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// An incremental hasher: plain, keyed or deriving a key.
#[derive(Clone)]
pub struct Hasher {
    chunk: ChunkState,
    key: [u32; 8],
    /// Chaining values of complete subtrees, one per set bit of the number
    /// of chunks so far (54 covers 2^64 bytes).
    stack: Vec<[u32; 8]>,
    flags: u32,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    fn with_key(key: [u32; 8], flags: u32) -> Self {
        Hasher {
            chunk: ChunkState::new(&key, 0, flags),
            key,
            stack: Vec::new(),
            flags,
        }
    }

    pub fn new() -> Self {
        Self::with_key(IV, 0)
    }

    pub fn new_keyed(key: &[u8; 32]) -> Self {
        Self::with_key(words(key), KEYED_HASH)
    }

    pub fn new_derive_key(context: &str) -> Self {
        let mut context_hasher = Self::with_key(IV, DERIVE_KEY_CONTEXT);
        context_hasher.update(context.as_bytes());
        let context_key = context_hasher.finalize();
        Self::with_key(words(context_key.as_bytes()), DERIVE_KEY_MATERIAL)
    }

    fn push_chunk(&mut self, mut cv: [u32; 8], mut total_chunks: u64) {
        // Each trailing zero of the count completes a subtree: merge it
        // with the one on the stack.
        while total_chunks & 1 == 0 {
            let Some(left) = self.stack.pop() else { break };
            cv = parent_output(&left, &cv, &self.key, self.flags).chaining_value();
            total_chunks >>= 1;
        }
        self.stack.push(cv);
    }

    pub fn update(&mut self, mut input: &[u8]) -> &mut Self {
        while !input.is_empty() {
            // A full chunk is finished only once more input comes: the
            // last chunk may be the root.
            if self.chunk.len() == CHUNK_LEN {
                let cv = self.chunk.output().chaining_value();
                let total_chunks = self.chunk.chunk_counter + 1;
                self.push_chunk(cv, total_chunks);
                self.chunk = ChunkState::new(&self.key, total_chunks, self.flags);
            }
            // Whole chunks with more input after them, four at a time
            // side by side (`simd128::chunks4`).
            #[cfg(target_feature = "simd128")]
            while self.chunk.len() == 0 && input.len() > 4 * CHUNK_LEN {
                let counter = self.chunk.chunk_counter;
                let cvs = super::simd128::chunks4(&self.key, input, counter, self.flags);
                for (i, cv) in (1..).zip(cvs) {
                    self.push_chunk(cv, counter + i);
                }
                self.chunk = ChunkState::new(&self.key, counter + 4, self.flags);
                input = &input[4 * CHUNK_LEN..];
            }
            let take = (CHUNK_LEN - self.chunk.len()).min(input.len());
            self.chunk.update(&input[..take]);
            input = &input[take..];
        }
        self
    }

    fn final_output(&self) -> Output {
        let mut output = self.chunk.output();
        for left in self.stack.iter().rev() {
            output = parent_output(left, &output.chaining_value(), &self.key, self.flags);
        }
        output
    }

    pub fn finalize(&self) -> Hash {
        self.final_output().root_hash()
    }

    /// The extendable output, from its first byte.
    pub fn finalize_xof(&self) -> OutputReader {
        OutputReader {
            output: self.final_output(),
            position: 0,
        }
    }
}

/// Reads the root output, as long as wanted.
#[derive(Clone)]
pub struct OutputReader {
    output: Output,
    position: u64,
}

impl OutputReader {
    pub fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            let block = self.output.root_block(self.position / BLOCK_LEN as u64);
            let offset = (self.position % BLOCK_LEN as u64) as usize;
            let take = (BLOCK_LEN - offset).min(buf.len());
            buf[..take].copy_from_slice(&block[offset..offset + take]);
            self.position += take as u64;
            buf = &mut buf[take..];
        }
    }
}

pub fn hash(input: &[u8]) -> Hash {
    hash_with(&IV, 0, input)
}

pub fn keyed_hash(key: &[u8; 32], input: &[u8]) -> Hash {
    hash_with(&words(key), KEYED_HASH, input)
}

fn hash_with(key: &[u32; 8], flags: u32, input: &[u8]) -> Hash {
    // A chunk or less (a frame's check, a Merkle leaf, a seal's digest of
    // a short run) has no tree: its chunk's output is the root.
    if input.len() <= CHUNK_LEN {
        let mut chunk = ChunkState::new(key, 0, flags);
        chunk.update(input);
        return chunk.output().root_hash();
    }
    let mut hasher = Hasher::with_key(*key, flags);
    hasher.update(input);
    hasher.finalize()
}

pub fn derive_key(context: &str, key_material: &[u8]) -> [u8; 32] {
    *Hasher::new_derive_key(context)
        .update(key_material)
        .finalize()
        .as_bytes()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    use crate::protocol::testing::blake3_transcript::{input, lengths};

    #[test]
    fn agrees_with_the_blake3_crate() {
        let key = *::blake3::hash(b"a key").as_bytes();
        for len in lengths() {
            let data = input(len);
            assert_eq!(
                hash(&data).as_bytes(),
                ::blake3::hash(&data).as_bytes(),
                "{len}"
            );
            assert_eq!(
                keyed_hash(&key, &data).as_bytes(),
                ::blake3::keyed_hash(&key, &data).as_bytes(),
                "{len}"
            );
            assert_eq!(
                derive_key("cpc-sync test context", &data),
                ::blake3::derive_key("cpc-sync test context", &data),
                "{len}"
            );
            // Fed in uneven pieces.
            let mut ours = Hasher::new_derive_key("pieces");
            let mut theirs = ::blake3::Hasher::new_derive_key("pieces");
            for piece in data.chunks(len / 7 + 13) {
                ours.update(piece);
                theirs.update(piece);
            }
            assert_eq!(ours.finalize().as_bytes(), theirs.finalize().as_bytes());
            // Extendable output, read in uneven pieces across blocks.
            let (mut a, mut b) = (ours.finalize_xof(), theirs.finalize_xof());
            for n in [1usize, 16, 63, 64, 65, 200] {
                let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
                a.fill(&mut x);
                b.fill(&mut y);
                assert_eq!(x, y, "{len} {n}");
            }
        }
    }

    #[test]
    fn the_transcript_is_the_crates() {
        // The browser tests check the wasm's compression against this.
        assert_eq!(
            crate::protocol::testing::blake3_transcript::transcript(),
            crate::protocol::testing::blake3_transcript::EXPECTED
        );
    }

    #[test]
    fn known_answer() {
        // BLAKE3's official test vector for the empty input.
        let expected = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let got: String = hash(b"")
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn hashes_compare_by_every_byte() {
        let a = Hash::from([7; 32]);
        let mut b = [7; 32];
        assert_eq!(a, Hash::from(b));
        b[31] = 8;
        assert_ne!(a, Hash::from(b));
    }
}
