// What every library's workloads share in the page: the keys and values
// written, the check of a final state, writing in bursts as a page does,
// the wasm memory the page holds, and a long-task recorder.

/** Keys a user writes: `key${i}`, each set to the small value i. */
export const key = (i) => `key${i}`;

/** Keys written per task (one transaction, change or commit where the
 * library has them; one sealed run for cpc-sync). */
export const BURST = 1_000;

export const now = () => performance.now();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Yields to the event loop (a macrotask, without setTimeout's clamping). */
export function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/**
 * Writes keys 0..n through `burst(from, to)`, one burst per task, as a page
 * producing the writes would; `burst` may return a promise (awaited).
 */
export async function writeInBursts(n, burst, size = BURST) {
  for (let from = 0; from < n; from += size) {
    await burst(from, Math.min(n, from + size));
    await nextTask();
  }
}

/**
 * Throws unless `state` (a plain object) is exactly keys 0..n with their
 * values: a run whose final state differs from the written one fails.
 */
export function checkState(state, n, label) {
  const keys = Object.keys(state);
  if (keys.length !== n) throw new Error(`${label}: ${keys.length} keys, expected ${n}`);
  for (let i = 0; i < n; i++) {
    const value = state[key(i)];
    if (value !== i) throw new Error(`${label}: ${key(i)} is ${JSON.stringify(value)}, expected ${i}`);
  }
  return n;
}

// Every WebAssembly instance the page creates, recorded as it is made, so
// the linear memory of any library is reachable whether or not the library
// exposes its module (Automerge and Loro keep theirs private).
const memories = [];

function remember(result) {
  const instance = result instanceof WebAssembly.Instance ? result : result?.instance;
  const memory = instance?.exports?.memory;
  if (memory instanceof WebAssembly.Memory) memories.push(memory);
  return result;
}

export function trackWasmMemory() {
  const instantiate = WebAssembly.instantiate;
  const streaming = WebAssembly.instantiateStreaming;
  WebAssembly.instantiate = (...args) => instantiate(...args).then(remember);
  if (streaming) WebAssembly.instantiateStreaming = (...args) => streaming(...args).then(remember);
}

/** Bytes of wasm linear memory the page's instances hold; null: none. */
export function wasmBytes() {
  if (!memories.length) return null;
  return memories.reduce((sum, m) => sum + m.buffer.byteLength, 0);
}

/** Records long tasks (> 50 ms) from now until `stop()`. */
export function longTasks() {
  const durations = [];
  const observer = new PerformanceObserver((list) => durations.push(...list.getEntries().map((e) => e.duration)));
  observer.observe({ type: "longtask" });
  return {
    async stop() {
      // Entries are delivered after the task ends: let them arrive.
      await new Promise((r) => setTimeout(r, 100));
      observer.disconnect();
      return { long_tasks: durations.length, longest_ms: Math.max(0, ...durations), long_task_ms: durations };
    },
  };
}

/** Resolves once `done()` is true, checked on every `subscribe` callback
 * and every `every` ms; rejects after `timeout` ms. */
export function until(done, { subscribe = () => () => {}, every = 20, timeout = 300_000, what = "state" } = {}) {
  return new Promise((resolve, reject) => {
    const start = now();
    let finished = false;
    const check = () => {
      if (finished) return;
      let ok = false;
      try {
        ok = done();
      } catch (error) {
        finish(() => reject(error));
        return;
      }
      if (ok) finish(resolve);
      else if (now() - start > timeout) finish(() => reject(new Error(`no full ${what} in ${timeout} ms`)));
    };
    const unsubscribe = subscribe(check);
    const timer = setInterval(check, every);
    function finish(then) {
      finished = true;
      clearInterval(timer);
      unsubscribe?.();
      then();
    }
    check();
  });
}

/** A BroadcastChannel's next message matching `match`. */
export function nextMessage(channel, match) {
  return new Promise((resolve) => {
    const listener = ({ data }) => {
      if (!match(data)) return;
      channel.removeEventListener("message", listener);
      resolve(data);
    };
    channel.addEventListener("message", listener);
  });
}

/** A small promise API over one IndexedDB object store (`records`). */
export const idb = {
  open(name) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("records");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  },
  put(db, id, value) {
    return new Promise((resolve, reject) => {
      const tx = db.transaction("records", "readwrite");
      tx.objectStore("records").put(value, id);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  },
  get(db, id) {
    return new Promise((resolve, reject) => {
      const request = db.transaction("records").objectStore("records").get(id);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  },
};
