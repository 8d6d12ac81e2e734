//! BLAKE3 as the core uses it: the `blake3` crate natively (its SIMD
//! backends, for the server), [`compact`] in the wasm (the same bytes in a
//! seventh of the code; see there).

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod compact;
#[cfg(target_feature = "simd128")]
mod simd128;

#[cfg(not(target_arch = "wasm32"))]
pub use ::blake3::{derive_key, hash, keyed_hash, Hash, Hasher};
#[cfg(target_arch = "wasm32")]
pub use compact::{derive_key, hash, keyed_hash, Hash, Hasher};
