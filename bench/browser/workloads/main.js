// The page of `bench/browser/workloads.mjs`: one library per page
// (`?lib=cpc-sync|yjs|automerge|loro`), loaded alone so its memory and
// timings are its own, and one workload's calls (`?workload=memory|codec|
// stored|room`) on `window.bench` for the harness to drive. With
// `?load=<name>&n=<keys>` the page loads that stored document as soon as
// the library is ready, so navigation-to-ready is measured by the page.
import { trackWasmMemory, wasmBytes, writeInBursts, checkState, longTasks, now, BURST } from "./common.js";

trackWasmMemory();

const LIBRARIES = {
  "cpc-sync": () => import("./libs/cpc-sync.js"),
  "cpc-sync-engine": () => import("./libs/cpc-sync-engine.js"),
  yjs: () => import("./libs/yjs.js"),
  automerge: () => import("./libs/automerge.js"),
  loro: () => import("./libs/loro.js"),
};

const params = new URLSearchParams(location.search);
const name = params.get("lib");
const workload = params.get("workload");

/** Workload 1: a document in memory, written in bursts. */
function memoryCalls(lib) {
  let doc;
  return {
    async open() {
      doc = await lib.memory.open();
    },
    async fill(n) {
      const start = now();
      await writeInBursts(n, (from, to) => lib.memory.write(doc, from, to));
      return { write_ms: now() - start };
    },
    check: (n) => checkState(lib.memory.state(doc), n, `${name} in memory`),
  };
}

/** Workload 2: build a document, encode it, load it into a fresh one. */
function codecCalls(lib) {
  return {
    async run(n) {
      const source = await lib.codec.build(n, BURST);
      checkState(lib.codec.state(source), n, `${name} as written`);
      let start = now();
      const bytes = lib.codec.encode(source);
      const encode_ms = now() - start;
      start = now();
      const loaded = lib.codec.load(bytes);
      // A load counts once a key can be read (a lazy load pays here).
      lib.codec.read(loaded);
      const load_ms = now() - start;
      checkState(lib.codec.state(loaded), n, `${name} loaded`);
      return { encode_ms, load_ms, bytes: bytes.byteLength };
    },
  };
}

/** Workload 3: write a document to IndexedDB, and load it back. */
function storedCalls(lib) {
  return {
    write: (db, n) => lib.stored.write(db, n),
    /** Loads once in this page and checks, so the reloads that follow
     * measure a document known to be stored whole. */
    async verify(db, n) {
      const doc = await lib.stored.load(db);
      checkState(lib.stored.state(doc), n, `${name} stored`);
      await lib.stored.close(doc);
    },
  };
}

/** Workloads 4 and 5: host a room, or join one and time the first full sync. */
function roomCalls(lib) {
  let hosted, watching;
  return {
    async host(room, n, perUpdate, burst) {
      const { doc, target } = await lib.room.host(room, n, { perUpdate, burst });
      hosted = doc;
      checkState(lib.room.state(doc), n, `${name} host`);
      return target;
    },
    async join(room, target, n) {
      await lib.room.prepare?.(room);
      const tasks = longTasks();
      const start = now();
      const { doc, ...extra } = await lib.room.join(room, target);
      const ms = now() - start;
      const long = await tasks.stop();
      lib.room.verify(doc, target);
      checkState(lib.room.state(doc), n, `${name} newcomer`);
      await lib.room.close(doc);
      return { ms, ...long, ...extra };
    },
    hosting: () => Boolean(hosted),
    /** The host's long tasks while a newcomer joins: from `watch()` to
     * `watched()`. */
    watch() {
      watching = longTasks();
    },
    watched: () => watching.stop(),
  };
}

const CALLS = { memory: memoryCalls, codec: codecCalls, stored: storedCalls, room: roomCalls };

/** With `?load=`: time the stored document's load from a cold page. */
async function loadOnStart(lib, initMs) {
  const db = params.get("load");
  const n = Number(params.get("n"));
  const start = now();
  const doc = await lib.stored.load(db);
  const ready = now();
  checkState(lib.stored.state(doc), n, `${name} reloaded`);
  await lib.stored.close(doc);
  return { navigation_to_ready_ms: ready, load_ms: ready - start, init_ms: initMs };
}

async function main() {
  const lib = (await LIBRARIES[name]()).default;
  const start = now();
  await lib.init(workload);
  const initMs = now() - start;
  window.bench = {
    lib: { name: lib.name, transport: lib.transport, persistence: lib.persistence },
    wasmBytes,
    ...CALLS[workload](lib),
  };
  if (params.has("load")) window.bench.loaded = await loadOnStart(lib, initMs);
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  console.error(`workloads page (${name}, ${workload}): ${error?.stack ?? error}`);
  document.body.dataset.failed = String(error);
});
