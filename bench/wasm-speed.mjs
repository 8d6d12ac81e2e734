// The core's hot paths in Node's V8, for A/B runs of two wasm builds (an
// opt-level, a change to the codec): causal apply, B3.1, C1.2 and the
// run-heavy workload through a signed node (`BenchNode`, the frames a
// browser peer receives), the same with the seals' verdicts from
// elsewhere (`pageThread`: what stays on a page's thread when Workers
// verify; the side-by-side sizes, run-heavy 4 writers × 25,000), the
// batch verification of 30,000 seals alone,
// BLAKE3's throughput on inputs of 64 B, 1 KB and 64 KB (a Merkle leaf,
// a frame's check, a long run's digest),
// a 100k-entity snapshot's encode, decode and own load, and 24 MB of
// snapshot chunks framed and read (a million keys' snapshot). One line of
// JSON a run. `bash scripts/bench-wasm.sh && node bench/wasm-speed.mjs
// [package folder, default target/bench/pkg] [runs, default 1]`;
// `CPC_SPEED_ONLY=snapshot` runs the snapshot's encode, decode and own
// load alone (a quick A/B of the snapshot path).
import { readFileSync } from "node:fs";
import path from "node:path";

const pkg = path.resolve(process.argv[2] ?? new URL("../target/bench/pkg", import.meta.url).pathname);
const runs = Number(process.argv[3] ?? 1);
const snapshotOnly = process.env.CPC_SPEED_ONLY === "snapshot";
const mod = await import(path.join(pkg, "cpc_sync.js"));
mod.initSync({ module: readFileSync(path.join(pkg, "cpc_sync_bg.wasm")) });

const WORKLOADS = {
  b31: () => mod.oneWriteEach(1540, true),
  c12: () => mod.oneWriteEach(30000, false),
  run_heavy: () => mod.runHeavy(10, 10000, 1000, 100),
};

for (let run = 0; run < runs; run++) {
  const out = {};
  if (!snapshotOnly) hotPaths(out);
  const snapshot = mod.snapshot(100000, 16);
  out.snapshot_encode_ms = snapshot.encode_ms;
  out.snapshot_decode_ms = snapshot.decode_ms;
  const own = mod.ownSnapshotLoad(100000, 16, 1);
  out.own_load_first_ms = own.first_ready_ms;
  if (!snapshotOnly) {
    const chunks = mod.wireChunks(24);
    out.chunks_24mb_encode_ms = Math.round(chunks.encode_ms);
    out.chunks_24mb_decode_ms = Math.round(chunks.decode_ms);
  }
  console.log(JSON.stringify(out));
}

// Causal apply, the workloads through a signed node, the page thread's
// share of them and the batch verification alone, into `out`.
function hotPaths(out) {
  const apply = mod.causalApply(200000, 64, 10000, 0.2);
  if (apply.applied !== 200000 || apply.in_order_applied !== 200000) {
    throw new Error(`causal apply took ${apply.applied} and ${apply.in_order_applied} of 200000 events`);
  }
  out.apply_us_per_event = +(apply.ms / 200).toFixed(2);
  out.apply_in_order_us_per_event = +(apply.in_order_ms / 200).toFixed(2);
  for (const [name, frames] of Object.entries(WORKLOADS)) {
    const framesNow = frames();
    const start = performance.now();
    const node = new mod.BenchNode();
    for (const frame of framesNow) node.receive(frame);
    node.finish();
    out[`${name}_ms`] = Math.round(performance.now() - start);
    node.free();
  }
  // What stays on the page's thread when Workers verify (the verdicts
  // of an untimed first pass answer each batch at once).
  for (const name of ["b31", "c12", "run_heavy"]) {
    const runs = mod.pageThread(name, 1).ms.split(",").map(Number);
    out[`${name}_page_thread_ms`] = Math.round(runs[runs.length - 1]);
  }
  out.verify_30k_seals_ms = Math.round(mod.batchVerifyCost(30000).verify_ms);
  for (const [len, times] of [[64, 200000], [1024, 40000], [65536, 600]]) {
    mod.hashCost(len, times / 10);
    out[`blake3_${len}_b_mb_s`] = Math.round(mod.hashCost(len, times));
  }
}
