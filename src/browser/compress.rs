//! Gzip through the browser's own `CompressionStream`: stored snapshots
//! are compressed without a compressor in the wasm. (web-sys marks the
//! stream classes unstable, so they are declared here; `Blob`, the stream
//! pipe and `Response` are web-sys's.)

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, ReadableWritablePair, Response};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = CompressionStream)]
    type Compressor;
    #[wasm_bindgen(constructor, js_class = "CompressionStream", catch)]
    fn new(format: &str) -> Result<Compressor, JsValue>;
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = DecompressionStream)]
    type Decompressor;
    #[wasm_bindgen(constructor, js_class = "DecompressionStream", catch)]
    fn new(format: &str) -> Result<Decompressor, JsValue>;
}

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` are a gzip stream (a stored snapshot's own bytes begin
/// with its magic `CPCS` instead).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

async fn pipe(bytes: &[u8], transform: &ReadableWritablePair) -> Result<Vec<u8>, JsValue> {
    let blob = Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(bytes)))?;
    let out = blob.stream().pipe_through(transform);
    let response = Response::new_with_opt_readable_stream(Some(&out))?;
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

pub async fn gzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    pipe(bytes, Compressor::new("gzip")?.unchecked_ref()).await
}

/// Fails on bytes that are not a whole gzip stream.
pub async fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    pipe(bytes, Decompressor::new("gzip")?.unchecked_ref()).await
}
