//! Seals verified in Web Workers: the batches a node hands out
//! ([`Output::Verify`](crate::protocol::sync::Output::Verify)) go to a few
//! workers, round robin, and their verdicts come back to the node, so a
//! flood of signed events (a newcomer's catch-up, a room of many writers)
//! is verified off the page's main thread and on several cores.
//!
//! Each worker runs this page's own wasm module, posted to it once
//! compiled (`WebAssembly.Module` is shared, not fetched or compiled
//! again): its script is a few lines of JS from a `Blob`, so a bundler has
//! no file to find. The worker instantiates the module with every import
//! stubbed (verifying calls none) and calls one export,
//! [`verify_seals`], through wasm-bindgen's ABI for a byte slice in and a
//! byte vector out (the crate pins wasm-bindgen's exact version).
//!
//! A worker that cannot start or fails (no `Worker`, a page's CSP without
//! `blob:` workers) reports it, and the peer verifies in place from then
//! on (see [`SyncNode::verify_here`](crate::protocol::sync::SyncNode::verify_here)).

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Blob, BlobPropertyBag, MessageEvent, Url, Worker};

use crate::protocol::seal;

/// What a worker runs. Its first message is the module, answered with
/// `{ ready }` once it runs (or `{ error }`); each later one a
/// `[batch, seals]` pair, answered with `[batch, verdicts]` (buffers
/// transferred, not copied).
const SCRIPT: &str = r#"
let verify;
const early = [];
const answer = ([batch, seals]) => {
  const verdicts = verify(new Uint8Array(seals));
  postMessage([batch, verdicts.buffer], [verdicts.buffer]);
};
onmessage = async ({ data }) => {
  if (!(data instanceof WebAssembly.Module)) {
    if (verify) answer(data); else early.push(data);
    return;
  }
  try {
    const imports = {};
    for (const { module, name } of WebAssembly.Module.imports(data)) {
      (imports[module] ??= {})[name] = () => {
        throw new Error(`cpc-sync verifier: ${name} is not available in a worker`);
      };
    }
    const wasm = (await WebAssembly.instantiate(data, imports)).exports;
    verify = (seals) => {
      const at = wasm.__wbindgen_malloc(seals.length, 1) >>> 0;
      new Uint8Array(wasm.memory.buffer, at, seals.length).set(seals);
      const [ptr, len] = wasm.__cpc_verify_seals(at, seals.length);
      const verdicts = new Uint8Array(wasm.memory.buffer, ptr >>> 0, len).slice();
      wasm.__wbindgen_free(ptr, len, 1);
      return verdicts;
    };
    postMessage({ ready: true });
    early.splice(0).forEach(answer);
  } catch (e) {
    postMessage({ error: String(e) });
  }
};
"#;

/// Verifies packed seals: one verdict a seal, 1 when it verifies. What a
/// verifier worker calls; not part of the package's API (nor of its
/// `.d.ts`).
#[doc(hidden)]
#[wasm_bindgen(js_name = __cpc_verify_seals, skip_typescript)]
pub fn verify_seals(seals: &[u8]) -> Vec<u8> {
    seal::verify_packed(seals)
}

/// A `blob:` URL of `script`, for a worker to run (no file for a bundler to
/// find); revoked by the worker's owner when it is dropped.
pub(crate) fn script_url(script: &str) -> Result<String, JsValue> {
    let options = BlobPropertyBag::new();
    options.set_type("text/javascript");
    let script = Blob::new_with_str_sequence_and_options(&Array::of1(&script.into()), &options)?;
    Url::create_object_url_with_blob(&script)
}

/// A pool of verifier workers, terminated when dropped.
pub struct Verifiers {
    workers: Vec<Worker>,
    next: Cell<usize>,
    /// Workers whose module runs (read by the benchmarks, which time a
    /// warmed pool).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    ready: Rc<Cell<usize>>,
    url: String,
    /// The workers' handlers, alive as long as the pool.
    on_message: Closure<dyn FnMut(MessageEvent)>,
    on_error: Closure<dyn FnMut(JsValue)>,
}

impl Verifiers {
    /// Starts `count` workers. `on_verdicts` gets each batch's verdicts;
    /// `on_failure` is called (once or more) when a worker fails: the pool
    /// is of no more use then.
    pub fn start(
        count: usize,
        on_verdicts: impl Fn(u64, Vec<u8>) + 'static,
        on_failure: impl Fn(String) + 'static,
    ) -> Result<Verifiers, JsValue> {
        let url = script_url(SCRIPT)?;
        let on_failure = Rc::new(on_failure);
        let failed = on_failure.clone();
        let ready = Rc::new(Cell::new(0));
        let started = ready.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            if Reflect::get(&data, &"ready".into()).is_ok_and(|r| r.is_truthy()) {
                started.set(started.get() + 1);
                return;
            }
            if let Some(answer) = data.dyn_ref::<Array>() {
                let batch = answer.get(0).as_f64();
                let verdicts = answer.get(1);
                if let (Some(batch), true) = (batch, verdicts.is_object()) {
                    on_verdicts(batch as u64, Uint8Array::new(&verdicts).to_vec());
                    return;
                }
            }
            let error = Reflect::get(&data, &"error".into()).ok();
            let reason = error.and_then(|e| e.as_string());
            failed(reason.unwrap_or_else(|| "a verifier answered what it should not".into()));
        });
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let message = Reflect::get(&event, &"message".into()).ok();
            let reason = message.and_then(|m| m.as_string());
            on_failure(reason.unwrap_or_else(|| "a verifier worker failed".into()));
        });
        let mut pool = Verifiers {
            workers: Vec::with_capacity(count),
            next: Cell::new(0),
            ready,
            url,
            on_message,
            on_error,
        };
        // A worker that cannot start drops the pool: the ones started are
        // terminated with it.
        let module = wasm_bindgen::module();
        for _ in 0..count.max(1) {
            let worker = Worker::new(&pool.url)?;
            worker.set_onmessage(Some(pool.on_message.as_ref().unchecked_ref()));
            worker.set_onerror(Some(pool.on_error.as_ref().unchecked_ref()));
            worker.set_onmessageerror(Some(pool.on_error.as_ref().unchecked_ref()));
            pool.workers.push(worker);
            if let Some(worker) = pool.workers.last() {
                worker.post_message(&module)?;
            }
        }
        Ok(pool)
    }

    /// Whether every worker runs the module (a batch handed out earlier
    /// waits in its worker until then).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub fn ready(&self) -> bool {
        self.ready.get() == self.workers.len()
    }

    /// How many workers the pool runs (read by the benchmarks, which
    /// check it against the count their rows name).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Hands a batch to the next worker; its verdicts come to
    /// `on_verdicts`.
    pub fn verify(&self, batch: u64, seals: &[u8]) -> Result<(), JsValue> {
        let at = self.next.get() % self.workers.len();
        self.next.set(at + 1);
        let bytes = Uint8Array::from(seals);
        let message = Array::of2(&(batch as f64).into(), &bytes.buffer());
        self.workers[at].post_message_with_transfer(&message, &Array::of1(&bytes.buffer()))
    }
}

impl Drop for Verifiers {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.set_onmessage(None);
            worker.set_onerror(None);
            worker.set_onmessageerror(None);
            worker.terminate();
        }
        let _ = Url::revoke_object_url(&self.url);
    }
}
