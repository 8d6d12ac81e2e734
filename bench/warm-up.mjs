// What `Peer.open`'s warm-up costs (`warmUp`, protocol/sync/warm.rs): the
// whole warm-up run in one go in Node's V8, three times in one process
// (the first is the cost a page pays, with cold code). Needs the bench
// build: `bash scripts/bench-wasm.sh && node bench/warm-up.mjs`
// (`CPC_BENCH_PKG=<dir>`: another build's package).
import { readFileSync } from "node:fs";

const pkg = process.env.CPC_BENCH_PKG
  ? new URL(`file://${process.env.CPC_BENCH_PKG.replace(/\/?$/, "/")}`)
  : new URL("../target/bench/pkg/", import.meta.url);
const mod = await import(new URL("cpc_sync.js", pkg));
mod.initSync({ module: readFileSync(new URL("cpc_sync_bg.wasm", pkg)) });
const runs = [mod.warmUpCost(), mod.warmUpCost(), mod.warmUpCost()];
const shown = runs.map(({ ms, longest_step_ms }) => `${ms.toFixed(0)} ms (longest step ${longest_step_ms.toFixed(0)} ms)`);
console.log(`warm-up: ${shown.join(", then ")}`);
