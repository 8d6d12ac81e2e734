// Workloads users ask about (issue 16), cpc-sync beside Yjs, Automerge and
// Loro in headless Chromium, each library alone in a fresh page of its own
// (bench/browser/workloads/, built with Vite), libraries in rotating order:
//
//   memory     bytes per key after writing 100k and 1M keys (JS heap after
//              a forced GC, and wasm linear memory)
//   codec      encode and load a 100k-key document: time and size
//   stored     load a 100k-key document from IndexedDB in a cold page
//   newcomer   a new page's first full sync with a 100k-key room
//   ingest     long tasks while a new page takes in 100k updates
//
// Every final state is checked against the keys written (a mismatch, a
// missing figure or a page error fails the run). `npm run bench:workloads`
// builds and runs it in full; CPC_BENCH_QUICK=1 runs small sizes (npm test
// does, as a smoke test); CPC_BENCH_ONLY=memory,codec,... picks some;
// CPC_BENCH_NO_BUILD=1 takes the wasm packages as they are; CPC_ROOM_BURST=16
// has the rooms written in bursts of 16 keys; CPC_ROOM_STORAGE=indexeddb has
// cpc-sync's newcomers keep their state in IndexedDB;
// CPC_ROOM_HOST_STORAGE=indexeddb has cpc-sync's room hosts keep theirs (and
// offer the snapshot their fold stored); CPC_ROOM_KEYS and
// CPC_ROOM_RUNS size the newcomer workload; CPC_ROOM_LISTEN=1 has cpc-sync's
// newcomers listen for "change" events, as a page that renders on them;
// CPC_TRACE=<prefix> traces each newcomer (below); CPC_HOST_PROFILE=<prefix>
// CPU-profiles cpc-sync's host page during each join
// (`<prefix>-<workload>-<run>.cpuprofile`; `node bench/cpu-profile.mjs`).
// Figures go to stdout and target/bench/workloads.json.
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { root, startStaticServer, launchBrowser, UNTHROTTLED_ARGS } from "../../tests/e2e/harness.mjs";
import { meta } from "../meta.mjs";
import { summary } from "../stats.mjs";

const run = promisify(execFile);
const QUICK = process.env.CPC_BENCH_QUICK === "1";
const out = path.join(root, "target/bench");
const dist = path.join(out, "workloads-dist");
// CPC_BENCH_LIBS=yjs,loro runs some libraries (a partial run, kept aside).
const LIBRARIES = process.env.CPC_BENCH_LIBS?.split(",") ?? ["cpc-sync", "yjs", "automerge", "loro"];
// CPC_ROOM_BURST=16: the rooms' hosts write in bursts of 16 keys, not
// 1,000 (cpc-sync: a sealed run each, so a newcomer's snapshot carries
// n / 16 seals), a partial run too.
const ROOM_BURST = process.env.CPC_ROOM_BURST ? Number(process.env.CPC_ROOM_BURST) : undefined;
// CPC_ROOM_STORAGE=indexeddb: cpc-sync's newcomers keep their state in
// IndexedDB (the others' keep none either way); CPC_ROOM_KEYS=1000000 and
// CPC_ROOM_RUNS=3: the newcomer's room size and newcomers; partial runs too.
const ROOM_KEYS = process.env.CPC_ROOM_KEYS ? Number(process.env.CPC_ROOM_KEYS) : undefined;
const ROOM_RUNS = process.env.CPC_ROOM_RUNS ? Number(process.env.CPC_ROOM_RUNS) : undefined;
const PARTIAL = Boolean(
  process.env.CPC_BENCH_ONLY || process.env.CPC_BENCH_LIBS || ROOM_BURST || process.env.CPC_ROOM_STORAGE || process.env.CPC_ROOM_HOST_STORAGE || ROOM_KEYS || ROOM_RUNS || process.env.CPC_ROOM_LISTEN,
);

const SIZES = QUICK
  ? { memory: [2_000], memoryRuns: 1, codec: 2_000, codecRuns: 1, stored: 2_000, storedRuns: 1, room: 2_000, roomRuns: 1, ingest: 2_000, ingestRuns: 1 }
  : { memory: [100_000, 1_000_000], memoryRuns: 3, codec: 100_000, codecRuns: 10, stored: 100_000, storedRuns: 10, room: 100_000, roomRuns: 5, ingest: 100_000, ingestRuns: 5 };
// Runs at 1M keys: each writes a million keys per library in a fresh page.
const MEMORY_RUNS_AT = (n) => (n >= 1_000_000 ? 1 : SIZES.memoryRuns);
// Automerge's writes slow down as the document grows (here 15 s for 100k
// keys, 26 s for 200k, 168 s for 500k; 1M had not finished after 14
// minutes), so its "1M" row stops at 500k keys.
const MEMORY_CAP = { automerge: 500_000 };
const memoryKeys = (lib, n) => Math.min(n, MEMORY_CAP[lib] ?? n);
// The memory workload also measures cpc-sync's engine alone (labelled).
const MEMORY_LIBRARIES = process.env.CPC_BENCH_LIBS ? LIBRARIES : [...LIBRARIES, "cpc-sync-engine"];

/** Every page error of the run, labelled; any fails it. */
const pageErrors = [];

/** The libraries in an order rotated by `r`, so none always goes first. */
const rotated = (r, libs = LIBRARIES) => libs.map((_, i) => libs[(i + r) % libs.length]);

const unique = (what) => `${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** Samples and their min / median / p90. */
const figure = (samples) => ({ samples, ...summary(samples) });

/** Runs a build command with its output shown. */
function step(command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")}: exit ${code}`))));
  });
}

/**
 * The wasm the page needs, as scripts/bench.sh builds it: the release
 * package (pkg/: the `Peer` measured; a quick run takes an existing one,
 * as npm test has just built it), then the bench build (target/bench/pkg:
 * `WorkloadDoc`).
 */
async function buildWasm() {
  if (!QUICK || !existsSync(path.join(root, "pkg/cpc_sync_bg.wasm"))) await step("bash", ["scripts/build.sh"]);
  await step("bash", ["scripts/bench-wasm.sh"]);
}

// Tasks, V8's work and its CPU samples: enough to attribute a long task.
const TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "toplevel", "v8.execute", "disabled-by-default-v8.cpu_profiler"];

/** The page, with both packages and the four libraries (Vite). */
async function buildPage() {
  await run(path.join(root, "node_modules/.bin/vite"), ["build", "--logLevel", "error", "--outDir", dist, "--emptyOutDir"], {
    cwd: path.join(root, "bench/browser/workloads"),
  });
}

/** A page of `lib` for `workload`, its library loaded (fails on a page error). */
async function libPage(context, site, lib, workload, extra = "") {
  const page = await context.newPage();
  const label = `${lib}/${workload}`;
  page.on("console", (m) => m.type() === "error" && pageErrors.push(`${label}: ${m.text()}`));
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e}`));
  const warmUp = process.env.CPC_WARM_UP === "0" ? "&warmUp=0" : "";
  const storage = process.env.CPC_ROOM_STORAGE ? `&storage=${process.env.CPC_ROOM_STORAGE}` : "";
  const hostStorage = process.env.CPC_ROOM_HOST_STORAGE ? `&hostStorage=${process.env.CPC_ROOM_HOST_STORAGE}` : "";
  const listen = process.env.CPC_ROOM_LISTEN === "1" ? "&listen=1" : "";
  await page.goto(`${site.url}?lib=${lib}&workload=${workload}${extra}${warmUp}${storage}${hostStorage}${listen}`);
  await page.waitForSelector("body[data-ready=true], body[data-failed]", { state: "attached", timeout: 300_000 });
  const failed = await page.evaluate(() => document.body.dataset.failed);
  if (failed) throw new Error(`${label}: ${failed}`);
  return page;
}

/** The JS heap in use after a full garbage collection, bytes. */
async function heapAfterGc(page) {
  const cdp = await page.context().newCDPSession(page);
  // Twice: finalizers run by the first (wasm-bindgen frees through a
  // FinalizationRegistry) leave garbage for the second.
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("HeapProfiler.collectGarbage");
  const { usedSize } = await cdp.send("Runtime.getHeapUsage");
  await cdp.detach();
  return usedSize;
}

/** What holding n keys costs a fresh page of `lib`: bytes, and the writes' time. */
async function memoryRun(browser, site, lib, n) {
  const context = await browser.newContext();
  try {
    const page = await libPage(context, site, lib, "memory");
    await page.evaluate(() => window.bench.open());
    const before = { heap: await heapAfterGc(page), wasm: await page.evaluate(() => window.bench.wasmBytes()) };
    const { write_ms } = await page.evaluate((n) => window.bench.fill(n), n);
    // Let background work the writes started finish (cpc-sync folds its
    // log on a timer tick, past 50k events), for every library alike.
    await page.waitForTimeout(QUICK ? 300 : 2_000);
    const heap = (await heapAfterGc(page)) - before.heap;
    const after = await page.evaluate(() => window.bench.wasmBytes());
    const wasm = after === null ? null : after - before.wasm;
    await page.evaluate((n) => window.bench.check(n), n);
    console.log(`memory ${n} ${lib}: heap ${heap} B, wasm ${wasm ?? "-"} B, writes ${write_ms.toFixed(0)} ms`);
    return { heap, wasm, write_ms };
  } finally {
    await context.close();
  }
}

/** Workload 1: what holding 100k and 1M keys costs a page, per key. */
async function memory(browser, site) {
  const result = {};
  for (const n of SIZES.memory) {
    result[n] = {};
    const runs = Object.fromEntries(MEMORY_LIBRARIES.map((lib) => [lib, []]));
    for (let r = 0; r < MEMORY_RUNS_AT(n); r++) {
      for (const lib of rotated(r, MEMORY_LIBRARIES)) runs[lib].push(await memoryRun(browser, site, lib, memoryKeys(lib, n)));
    }
    for (const [lib, rs] of Object.entries(runs)) {
      const keys = memoryKeys(lib, n);
      result[n][lib] = {
        keys,
        heap_bytes_per_key: figure(rs.map((x) => x.heap / keys)),
        // Yjs is plain JS: no wasm memory to read.
        wasm_bytes_per_key: rs[0].wasm === null ? null : figure(rs.map((x) => x.wasm / keys)),
        total_bytes_per_key: figure(rs.map((x) => (x.heap + (x.wasm ?? 0)) / keys)),
        write_ms: figure(rs.map((x) => x.write_ms)),
      };
    }
  }
  return result;
}

/** Workload 2: encode a document of n keys and load it into a fresh one. */
async function codec(browser, site) {
  const n = SIZES.codec;
  const runs = Object.fromEntries(LIBRARIES.map((lib) => [lib, []]));
  for (let r = 0; r < SIZES.codecRuns; r++) {
    for (const lib of rotated(r)) {
      const context = await browser.newContext();
      try {
        const page = await libPage(context, site, lib, "codec");
        runs[lib].push(await page.evaluate((n) => window.bench.run(n), n));
      } finally {
        await context.close();
      }
    }
  }
  const result = { keys: n };
  for (const [lib, rs] of Object.entries(runs)) {
    result[lib] = {
      encode_ms: figure(rs.map((x) => x.encode_ms)),
      load_ms: figure(rs.map((x) => x.load_ms)),
      bytes: figure(rs.map((x) => x.bytes)),
    };
    console.log(`codec ${n} ${lib}: encode ${result[lib].encode_ms.median.toFixed(1)} ms, load ${result[lib].load_ms.median.toFixed(1)} ms, ${result[lib].bytes.median} B`);
  }
  return result;
}

/** Workload 3: a document of n keys written to IndexedDB, then loaded by
 * a freshly navigated page (its library loaded anew), in turn per library. */
async function stored(browser, site) {
  const n = SIZES.stored;
  const holders = {};
  try {
    for (const lib of LIBRARIES) {
      const context = await browser.newContext();
      const db = unique(`stored-${lib}`);
      holders[lib] = { context, db, runs: [] };
      const page = await libPage(context, site, lib, "stored");
      await page.evaluate(([db, n]) => window.bench.write(db, n), [db, n]);
      await page.evaluate(([db, n]) => window.bench.verify(db, n), [db, n]);
      await page.close();
    }
    for (let r = 0; r < SIZES.storedRuns; r++) {
      for (const lib of rotated(r)) {
        const { context, db, runs } = holders[lib];
        const page = await libPage(context, site, lib, "stored", `&load=${db}&n=${n}`);
        runs.push(await page.evaluate(() => window.bench.loaded));
        await page.close();
      }
    }
  } finally {
    for (const { context } of Object.values(holders)) await context.close();
  }
  const result = { keys: n };
  for (const [lib, { runs }] of Object.entries(holders)) {
    result[lib] = {
      navigation_to_ready_ms: figure(runs.map((x) => x.navigation_to_ready_ms)),
      load_ms: figure(runs.map((x) => x.load_ms)),
      init_ms: figure(runs.map((x) => x.init_ms)),
    };
    console.log(`stored ${n} ${lib}: load ${result[lib].load_ms.median.toFixed(1)} ms, navigation to ready ${result[lib].navigation_to_ready_ms.median.toFixed(1)} ms`);
  }
  return result;
}

/**
 * Workloads 4 and 5: a page per library holds a room of n keys (written
 * `perUpdate`: each key its own update; else 1,000 keys per transaction),
 * then new pages of the same browser join it one at a time and are timed
 * from their open to holding the whole state, their long tasks counted.
 */
async function rooms(browser, site, { n, runs: count, perUpdate, label }) {
  const hosts = {};
  try {
    for (const lib of LIBRARIES) {
      const context = await browser.newContext();
      const room = unique(`${label}-${lib}`);
      const page = await libPage(context, site, lib, "room");
      const target = await page.evaluate(([room, n, perUpdate, burst]) => window.bench.host(room, n, perUpdate, burst), [room, n, perUpdate, ROOM_BURST]);
      hosts[lib] = { context, page, room, target, runs: [] };
    }
    for (let r = 0; r < count; r++) {
      for (const lib of rotated(r)) {
        const { context, page: host, room, target, runs } = hosts[lib];
        const page = await libPage(context, site, lib, "room");
        await host.evaluate(() => window.bench.watch());
        const hostProfile = process.env.CPC_HOST_PROFILE && lib === "cpc-sync" && (await context.newCDPSession(host));
        if (hostProfile) {
          await hostProfile.send("Profiler.enable");
          await hostProfile.send("Profiler.setSamplingInterval", { interval: 100 });
          await hostProfile.send("Profiler.start");
        }
        // CPC_TRACE=<path prefix>: a Chromium trace of each newcomer's join,
        // its CPU samples included (`node bench/long-tasks.mjs <file>` names
        // what each long task ran).
        const trace = process.env.CPC_TRACE && `${process.env.CPC_TRACE}-${lib}-${r}.json`;
        if (trace) await browser.startTracing(page, { path: trace, categories: TRACE_CATEGORIES });
        const joined = await page.evaluate(([room, target, n]) => window.bench.join(room, target, n), [room, target, n]);
        if (trace) await browser.stopTracing();
        const hosting = await host.evaluate(() => window.bench.watched());
        if (hostProfile) {
          const { profile } = await hostProfile.send("Profiler.stop");
          await writeFile(`${process.env.CPC_HOST_PROFILE}-${label}-${r}.cpuprofile`, JSON.stringify(profile));
        }
        runs.push({ ...joined, host_longest_ms: hosting.longest_ms });
        await page.close();
        console.log(
          `${label} ${n} ${lib}: ${joined.ms.toFixed(0)} ms, ${joined.long_tasks} long tasks (longest ${joined.longest_ms.toFixed(0)} ms); ` +
            `the host's longest task ${hosting.longest_ms.toFixed(0)} ms`,
        );
      }
    }
  } finally {
    for (const { context } of Object.values(hosts)) await context.close();
  }
  const result = { keys: n, updates: perUpdate ? n : n / 1_000 };
  for (const [lib, { runs }] of Object.entries(hosts)) {
    result[lib] = {
      ms: figure(runs.map((x) => x.ms)),
      long_tasks: figure(runs.map((x) => x.long_tasks)),
      longest_ms: figure(runs.map((x) => x.longest_ms)),
      long_task_ms: runs.map((x) => x.long_task_ms),
      // The host's longest task while the newcomer joined (0: none over 50 ms).
      host_longest_ms: figure(runs.map((x) => x.host_longest_ms)),
      ...(runs[0].snapshot_bytes !== undefined ? { snapshot_bytes: runs.map((x) => x.snapshot_bytes) } : {}),
    };
  }
  return result;
}

const WORKLOADS = {
  memory,
  codec,
  stored,
  newcomer: (browser, site) =>
    rooms(browser, site, { n: ROOM_KEYS ?? SIZES.room, runs: ROOM_RUNS ?? SIZES.roomRuns, perUpdate: false, label: "newcomer" }),
  ingest: (browser, site) => rooms(browser, site, { n: SIZES.ingest, runs: SIZES.ingestRuns, perUpdate: true, label: "ingest" }),
};

/** What each library uses for the network and for storage, from its page. */
async function libraries(browser, site) {
  const context = await browser.newContext();
  try {
    const described = {};
    for (const lib of MEMORY_LIBRARIES) {
      const page = await libPage(context, site, lib, "memory");
      described[lib] = await page.evaluate(() => window.bench.lib);
      await page.close();
    }
    return described;
  } finally {
    await context.close();
  }
}

/** Every figure of every library present and finite; throws otherwise. */
function checkComplete(results, chosen) {
  const missing = [];
  const finite = (f) => f && f.samples.length > 0 && f.samples.every(Number.isFinite);
  const expect = (where, f) => finite(f) || missing.push(where);
  for (const lib of MEMORY_LIBRARIES.filter(() => chosen.includes("memory"))) {
    for (const n of SIZES.memory) {
      const m = results.memory[n][lib];
      expect(`memory ${n} ${lib} heap`, m.heap_bytes_per_key);
      expect(`memory ${n} ${lib} total`, m.total_bytes_per_key);
      if (lib !== "yjs") expect(`memory ${n} ${lib} wasm`, m.wasm_bytes_per_key);
    }
  }
  for (const lib of LIBRARIES) {
    if (chosen.includes("codec")) for (const k of ["encode_ms", "load_ms", "bytes"]) expect(`codec ${lib} ${k}`, results.codec[lib][k]);
    if (chosen.includes("stored")) for (const k of ["navigation_to_ready_ms", "load_ms"]) expect(`stored ${lib} ${k}`, results.stored[lib][k]);
    for (const w of ["newcomer", "ingest"].filter((w) => chosen.includes(w))) {
      for (const k of ["ms", "long_tasks", "longest_ms"]) expect(`${w} ${lib} ${k}`, results[w][lib][k]);
    }
  }
  if (missing.length) throw new Error(`figures missing: ${missing.join(", ")}`);
}

async function main() {
  const chosen = process.env.CPC_BENCH_ONLY?.split(",") ?? Object.keys(WORKLOADS);
  await mkdir(out, { recursive: true });
  if (!process.env.CPC_BENCH_NO_BUILD) await buildWasm();
  await buildPage();
  const site = await startStaticServer(dist);
  // Pages of a room run side by side; none may be throttled.
  const browser = await launchBrowser(UNTHROTTLED_ARGS);
  const results = { meta: meta({ browser: `Chromium ${browser.version()}`, quick: QUICK }), sizes: SIZES };
  try {
    results.libraries = await libraries(browser, site);
    for (const name of chosen) {
      const started = Date.now();
      results[name] = await WORKLOADS[name](browser, site);
      console.log(`${name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      // Kept as it goes, so a run stopped late does not lose the rest.
      await writeFile(path.join(out, "workloads-partial.json"), JSON.stringify(results, null, 2));
    }
  } finally {
    await browser.close();
    await site.stop();
  }
  if (pageErrors.length) throw new Error(`page errors:\n${pageErrors.join("\n")}`);
  checkComplete(results, chosen);
  // A partial run goes aside: the report renders whole runs only.
  const file = path.join(out, PARTIAL ? "workloads-partial.json" : "workloads.json");
  await writeFile(file, JSON.stringify(results, null, 2));
  console.log(`workloads: ${chosen.join(", ")} -> ${path.relative(root, file)}`);
}

await main();
