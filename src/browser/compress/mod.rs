//! Gzip through the browser's own `CompressionStream`: snapshots are
//! stored and sent compressed without a compressor in the wasm. (web-sys
//! marks the stream classes unstable, so they are declared here; the
//! streams' two sides, their writer and `Response` are web-sys's.)
//!
//! [`gzip`] and [`gunzip_at_most`] (a fold's, an offer's, a newcomer's
//! snapshot) run in the page's compressor [`worker`]. In place, and where
//! no worker runs, the stream (de)compresses on the page's main thread,
//! each chunk written at once in the task that writes it, and chunks a
//! pipe feeds follow one another in promise reactions: one task. A
//! durable newcomer's store of a 100k-key room (2.2 MB) was one task of
//! 75-90 ms of deflate in Chromium; a fold of a million keys, a second.
//! So in place the bytes go in slices of [`SLICE`], each in a task of
//! its own. [`gunzip`] (a stored snapshot, read as a page opens) stays in
//! place: a cold start would wait for the worker to start.

pub mod worker;

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageChannel, ReadableStream, ReadableStreamDefaultReader, Response, WritableStream,
    WritableStreamDefaultWriter,
};

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

#[wasm_bindgen]
extern "C" {
    /// Either stream: bytes written to one side come out of the other
    /// (de)compressed.
    type Transform;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &Transform) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &Transform) -> WritableStream;
}

/// Bytes (de)compressed in one task: deflating 256 KiB took ~8 ms in
/// Chromium on the project's machine (about 30 MB/s), inflating them less.
const SLICE: usize = 256 * 1024;

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` are a gzip stream (a stored snapshot's own bytes begin
/// with its magic `CPCS` instead).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// `bytes` through `transform`, a slice a task.
async fn pipe(bytes: &[u8], transform: &Transform) -> Result<Vec<u8>, JsValue> {
    let writer = transform.writable().get_writer()?;
    // Read as it is written, so each write's promise settles once its
    // slice went through.
    let read =
        Response::new_with_opt_readable_stream(Some(&transform.readable()))?.array_buffer()?;
    let wrote = write_slices(&writer, bytes).await;
    if wrote.is_err() {
        // Errors the readable side too, so the read settles.
        let _ = writer.abort();
    }
    let read = JsFuture::from(read).await;
    wrote?;
    Ok(Uint8Array::new(&read?).to_vec())
}

async fn write_slices(writer: &WritableStreamDefaultWriter, bytes: &[u8]) -> Result<(), JsValue> {
    for (i, slice) in bytes.chunks(SLICE).enumerate() {
        if i > 0 {
            next_task().await?;
        }
        JsFuture::from(writer.write_with_chunk(&Uint8Array::from(slice))).await?;
    }
    JsFuture::from(writer.close()).await.map(drop)
}

/// Resolves in a task of its own: a message to a channel of its own (a
/// timeout would be clamped to 4 ms when nested).
pub(crate) async fn next_task() -> Result<(), JsValue> {
    let channel = MessageChannel::new()?;
    let port = channel.port1();
    let arrived = Promise::new(&mut |resolve, _| port.set_onmessage(Some(&resolve)));
    channel.port2().post_message(&JsValue::NULL)?;
    let arrived = JsFuture::from(arrived).await;
    port.close();
    channel.port2().close();
    arrived.map(drop)
}

/// Whether this browser has both streams (every current one does): a
/// page without them sends and takes snapshots as they are.
pub fn available() -> bool {
    let global = js_sys::global();
    ["CompressionStream", "DecompressionStream"]
        .iter()
        .all(|name| Reflect::has(&global, &JsValue::from_str(name)).unwrap_or(false))
}

/// `bytes` gzipped, in the worker or else in place.
pub async fn gzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    match worker::gzip(bytes).await {
        worker::Outcome::Answered(gzipped) => gzipped,
        worker::Outcome::NoWorker => gzip_in_place(bytes).await,
    }
}

/// `bytes` gzipped on this thread, a slice a task.
pub async fn gzip_in_place(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    pipe(bytes, Compressor::new("gzip")?.unchecked_ref()).await
}

/// Fails on bytes that are not a whole gzip stream.
pub async fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    pipe(bytes, Decompressor::new("gzip")?.unchecked_ref()).await
}

/// `bytes` gunzipped, refused once they inflate past `limit` bytes: a
/// snapshot from a peer, which must inflate to the length its offer
/// named. A few MB of gzip can claim gigabytes; no more than `limit` is
/// ever held. In the worker, or else in place.
pub async fn gunzip_at_most(bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, JsValue> {
    match worker::gunzip_at_most(&bytes, limit).await {
        worker::Outcome::Answered(inflated) => inflated,
        worker::Outcome::NoWorker => gunzip_at_most_in_place(bytes, limit).await,
    }
}

/// [`gunzip_at_most`] on this thread, a slice a task.
pub async fn gunzip_at_most_in_place(bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, JsValue> {
    let transform: Transform = Decompressor::new("gzip")?.unchecked_into();
    let writer = transform.writable().get_writer()?;
    let reader: ReadableStreamDefaultReader = transform.readable().get_reader().unchecked_into();
    // Written in tasks of their own while read here; a write that fails
    // aborts the stream, which fails the read.
    let feeding = writer.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if write_slices(&feeding, &bytes).await.is_err() {
            let _ = feeding.abort();
        }
    });
    let mut out: Vec<u8> = Vec::new();
    loop {
        let read = JsFuture::from(reader.read()).await?;
        if Reflect::get(&read, &"done".into())?.is_truthy() {
            return Ok(out);
        }
        let chunk: Uint8Array = Reflect::get(&read, &"value".into())?.unchecked_into();
        let (at, len) = (out.len(), chunk.length() as usize);
        if (at + len) as u64 > limit {
            let _ = reader.cancel();
            let _ = writer.abort();
            return Err(JsValue::from_str(&format!(
                "it inflates to more than the {limit} bytes offered"
            )));
        }
        // Room for all of it once a quarter is in (as a transfer does):
        // the claim is checked by then, and the rest is not copied again.
        if (at + len).saturating_mul(4) as u64 >= limit {
            out.reserve_exact(limit as usize - at);
        }
        out.resize(at + len, 0);
        chunk.copy_to(&mut out[at..]);
    }
}
