// Where a page's main thread spent a CPU profile (a `.cpuprofile` from
// Chrome DevTools' Profiler, as `CPC_PROFILE=<prefix>` of
// bench/browser/peer.mjs writes them): its idle time, and its busy time
// by function (self), the largest first.
//
//   node bench/cpu-profile.mjs <file.cpuprofile>... [--top <n>]
//
// The wasm's functions have names only in a build that keeps them:
// `CPC_WASM_NAMES=1 bash scripts/build.sh` (wasm-opt -g).
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const top = args.includes("--top") ? Number(args[args.indexOf("--top") + 1]) : 25;
const files = args.filter((a, i) => a !== "--top" && args[i - 1] !== "--top");
if (files.length === 0) {
  console.error("usage: node bench/cpu-profile.mjs <file.cpuprofile>... [--top <n>]");
  process.exit(2);
}

const ms = (us) => `${(us / 1000).toFixed(1)} ms`;

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const name = (functionName || `(${url.split("/").pop()}:${lineNumber})`).split("::h")[0];
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    self.set(name, (self.get(name) ?? 0) + us);
  });
  const idle = self.get("(idle)") ?? 0;
  console.log(`${file}: ${ms(total)} profiled, ${ms(idle)} idle, ${ms(total - idle)} busy`);
  const busy = [...self].filter(([name]) => name !== "(idle)").sort((a, b) => b[1] - a[1]);
  for (const [name, us] of busy.slice(0, top)) {
    console.log(`${ms(us).padStart(10)}  ${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${name.slice(-100)}`);
  }
}
