// What each long task of a page's main thread ran, from a Chromium trace
// with CPU samples (`CPC_TRACE=<prefix>` of bench/browser/workloads.mjs):
//
//   node bench/long-tasks.mjs <trace.json>... [--over <ms>]
//
// For every task over 50 ms (or --over) of every page's main thread: its
// length, the functions its samples were in (self), and the cpc-sync
// functions under which they ran (inclusive). The wasm's functions have
// names only in a build that keeps them: `CPC_WASM_NAMES=1 bash
// scripts/build.sh` (wasm-opt -g).
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const over = args.includes("--over") ? Number(args[args.indexOf("--over") + 1]) : 50;
const files = args.filter((a, i) => a !== "--over" && args[i - 1] !== "--over");
if (files.length === 0) {
  console.error("usage: node bench/long-tasks.mjs <trace.json>... [--over <ms>]");
  process.exit(2);
}

const short = (name) => name.split("::h")[0].slice(-70);
const top = (counts, n, total, keep = () => true) =>
  [...counts]
    .filter(([name]) => keep(name))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, c]) => `${short(name)} ${Math.round((100 * c) / total)}%`)
    .join("; ");

for (const file of files) {
  const parsed = JSON.parse(readFileSync(file, "utf8"));
  const events = Array.isArray(parsed) ? parsed : parsed.traceEvents;
  const thread = (e) => `${e.pid}:${e.tid}`;
  const mains = new Set(
    events.filter((e) => e.ph === "M" && e.name === "thread_name" && e.args.name === "CrRendererMain").map(thread),
  );
  // One CPU profile a thread, in chunks.
  const profiles = new Map();
  for (const e of events) {
    // A profile's id is unique within its process only: two renderers
    // (the host's and a newcomer's page) both have a 0x2.
    if (e.name === "Profile" && mains.has(thread(e))) {
      profiles.set(`${e.pid}:${e.id}`, { thread: thread(e), start: e.args.data.startTime, nodes: new Map(), parent: new Map(), samples: [] });
    }
  }
  for (const e of events) {
    const profile = e.name === "ProfileChunk" && profiles.get(`${e.pid}:${e.id}`);
    if (!profile) continue;
    const { cpuProfile = {}, timeDeltas = [] } = e.args.data;
    for (const node of cpuProfile.nodes ?? []) {
      profile.nodes.set(node.id, node.callFrame.functionName || "(anonymous)");
      if (node.parent !== undefined) profile.parent.set(node.id, node.parent);
    }
    (cpuProfile.samples ?? []).forEach((s, i) => profile.samples.push([s, timeDeltas[i]]));
  }
  console.log(`== ${file}`);
  for (const profile of profiles.values()) {
    let t = profile.start;
    const samples = profile.samples.map(([s, dt]) => [(t += dt), s]);
    const stack = (id) => {
      const out = [];
      for (let at = id; at !== undefined; at = profile.parent.get(at)) out.push(profile.nodes.get(at));
      return out;
    };
    const tasks = events.filter(
      (e) => e.ph === "X" && e.name === "ThreadControllerImpl::RunTask" && thread(e) === profile.thread && e.dur > over * 1000,
    );
    console.log(` thread ${profile.thread}: ${tasks.length} tasks over ${over} ms`);
    for (const task of tasks) {
      const inside = samples.filter(([ts]) => ts >= task.ts && ts < task.ts + task.dur);
      const self = new Map();
      const inclusive = new Map();
      for (const [, id] of inside) {
        const frames = stack(id);
        self.set(frames[0], (self.get(frames[0]) ?? 0) + 1);
        for (const name of new Set(frames)) inclusive.set(name, (inclusive.get(name) ?? 0) + 1);
      }
      console.log(`  task of ${(task.dur / 1000).toFixed(1)} ms at ${(task.ts / 1000).toFixed(0)} ms, ${inside.length} samples`);
      if (inside.length === 0) continue;
      console.log(`   self: ${top(self, 8, inside.length)}`);
      console.log(`   under: ${top(inclusive, 16, inside.length, (name) => name.includes("cpc_sync"))}`);
    }
  }
}
