// Where a page's main thread spent a CPU profile (a `.cpuprofile` from
// Chrome DevTools' Profiler, as `CPC_PROFILE=<prefix>` of
// bench/browser/peer.mjs and `CPC_HOST_PROFILE=<prefix>` of
// bench/browser/workloads.mjs write them): its idle time, and its busy
// time by function (self), the largest first; with `--stretches <n>`, the
// n longest busy stretches (samples with no idle one between: a task, or
// tasks back to back), each with the cpc-sync functions it ran under
// (inclusive).
//
//   node bench/cpu-profile.mjs <file.cpuprofile>... [--top <n>] [--stretches <n>]
//
// The wasm's functions have names only in a build that keeps them:
// `CPC_WASM_NAMES=1 bash scripts/build.sh` (wasm-opt -g).
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const top = option("--top", 25);
const stretches = option("--stretches", 0);
const files = args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
if (files.length === 0) {
  console.error("usage: node bench/cpu-profile.mjs <file.cpuprofile>... [--top <n>] [--stretches <n>]");
  process.exit(2);
}

const ms = (us) => `${(us / 1000).toFixed(1)} ms`;
const largest = (map, n) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map(profile.nodes.flatMap((n) => (n.children ?? []).map((c) => [c, n.id])));
  const name = (id) => {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    return (functionName || `(${url.split("/").pop()}:${lineNumber})`).split("::h")[0];
  };
  const self = new Map();
  const runs = [];
  let [total, at, run] = [0, profile.startTime, null];
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    at += us;
    self.set(name(id), (self.get(name(id)) ?? 0) + us);
    if (name(id) === "(idle)") {
      run = null;
    } else if (run) {
      run.samples.push([id, us]);
      run.end = at;
    } else {
      runs.push((run = { start: at, end: at, samples: [[id, us]] }));
    }
  });
  const idle = self.get("(idle)") ?? 0;
  self.delete("(idle)");
  console.log(`${file}: ${ms(total)} profiled, ${ms(idle)} idle, ${ms(total - idle)} busy`);
  for (const [fn, us] of largest(self, top)) {
    console.log(`${ms(us).padStart(10)}  ${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${fn.slice(-100)}`);
  }
  for (const { start, end, samples } of runs.sort((a, b) => b.end - b.start - (a.end - a.start)).slice(0, stretches)) {
    const under = new Map();
    for (const [id, us] of samples) {
      const seen = new Set();
      for (let n = id; n !== undefined; n = parent.get(n)) {
        const fn = name(n);
        if (!fn.startsWith("cpc_sync") || seen.has(fn)) continue;
        seen.add(fn);
        under.set(fn, (under.get(fn) ?? 0) + us);
      }
    }
    console.log(`a busy stretch of ${ms(end - start)}, under:`);
    for (const [fn, us] of largest(under, 12)) console.log(`${ms(us).padStart(10)}  ${fn.slice(-100)}`);
  }
}
