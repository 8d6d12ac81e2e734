// The side-by-side benchmark page; `bench/browser/compare.mjs` builds it
// with Vite, opens a fresh page for every measurement and calls
// `window.bench.*`. Updates are generated once per library and workload
// (`generate`), saved by the harness, and fetched by every measuring page,
// so every run of a row applies the same bytes.
import * as A from "@automerge/automerge/slim";
import automergeWasm from "@automerge/automerge/automerge.wasm?url";
import initCpc from "../../../target/bench/pkg/cpc_sync.js";
import { LIBRARIES, ROWS, VERIFY_WORKERS } from "./libraries.js";
import { SYNC } from "./sync.js";
import { batchVerifyCost, cpcOnly, gzipCost, sealCost } from "./cpc-only.js";
import { canonical } from "./workloads.js";

const now = () => performance.now();

/** Updates as one buffer: a u32 count, then each as a u32 length and bytes. */
function pack(updates) {
  const size = 4 + updates.reduce((s, u) => s + 4 + u.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, updates.length, true);
  let at = 4;
  for (const u of updates) {
    view.setUint32(at, u.length, true);
    out.set(u, at + 4);
    at += 4 + u.length;
  }
  return out;
}

function unpack(buffer) {
  const view = new DataView(buffer);
  const updates = new Array(view.getUint32(0, true));
  let at = 4;
  for (let i = 0; i < updates.length; i++) {
    const len = view.getUint32(at, true);
    updates[i] = new Uint8Array(buffer, at + 4, len);
    at += 4 + len;
  }
  return updates;
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** One library's updates for `workload`, packed and base64-encoded. */
function generate({ library, workload, sizes }) {
  const lib = LIBRARIES[library];
  const made =
    workload === "run_heavy"
      ? lib.runHeavy(sizes.runHeavy)
      : lib.oneWriteEach(workload === "B3_1" ? sizes.b31 : sizes.c12, workload === "B3_1");
  const updates = Array.from(made.updates);
  return {
    data: base64(pack(updates)),
    count: updates.length,
    bytes: updates.reduce((s, u) => s + u.length, 0),
    winner: made.winner ?? null,
  };
}

/**
 * Applies the updates at `url` with `row`: a warm-up on the first `warmup`
 * into a document thrown away, then all of them into a fresh one, timed.
 * Returns the time, the resulting state (canonical JSON) and the version
 * vector's size.
 */
async function measure({ row, url, warmup }) {
  const impl = ROWS[row];
  const updates = unpack(await (await fetch(url)).arrayBuffer());
  const warm = impl.target();
  await impl.apply(warm, updates.slice(0, warmup));
  impl.free(warm);
  const target = impl.target();
  await impl.ready?.(target);
  // The timed part alone, when compare.mjs profiles (CPC_PROFILE).
  const profile = globalThis.profileMeasured === true;
  if (profile) console.profile("measured");
  const start = now();
  await impl.apply(target, updates);
  const ms = now() - start;
  if (profile) console.profileEnd("measured");
  const state = canonical(impl.state(target));
  const vv_bytes = impl.vvBytes(target);
  impl.free(target);
  return { ms, state, vv_bytes };
}

/** Every library's sync protocol, for each burst size and each d. */
function sync({ n, diffs, bursts }) {
  const out = {};
  for (const [name, measure] of Object.entries(SYNC)) {
    out[name] = {};
    for (const burst of bursts) {
      out[name][burst] = Object.fromEntries(diffs.map((d) => [d, measure(n, d, burst)]));
    }
  }
  return out;
}

await initCpc();
await A.initializeWasm(automergeWasm);
// Every row, with the library that makes its updates.
const rows = Object.fromEntries(Object.entries(ROWS).map(([row, impl]) => [row, impl.library]));
window.bench = { generate, measure, sync, cpcOnly, gzipCost, sealCost, batchVerifyCost, rows, verifyWorkers: VERIFY_WORKERS };
document.getElementById("out").textContent = "ready";
document.body.dataset.ready = "true";
