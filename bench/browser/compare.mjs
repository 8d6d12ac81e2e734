// cpc-sync beside Yjs, Automerge and Loro in headless Chromium: B3.1,
// C1.2 and a run-heavy signed workload applied at one peer, sync bytes,
// cpc-sync's own workloads, and bundle sizes. It builds the wasm it
// measures first; `npm run bench` runs it in full; CPC_BENCH_QUICK=1 (what `npm test` runs) uses small
// sizes so the harness cannot rot. CPC_BENCH_ONLY picks sections
// (comma-separated): many, sync, cpc, gzip, bundle; the others keep the last
// committed run's figures, with its provenance. CPC_BENCH_WORKLOADS
// (B3_1,C1_2,run_heavy) and CPC_BENCH_ROWS (row names, "|" between) make
// a partial run, written aside to target/bench/compare-partial.json, as
// is a run of CPC_BENCH_VISIT=returning (each page a returning visit:
// see VISIT below).
// CPC_PROFILE=<path prefix> writes a CPU profile of each measurement (see
// `profiled` below).
//
// Fairness: every library's updates are generated once (its own default
// ids) and saved; each measurement is a fresh page (fresh browser
// context) applying the same bytes; rows run in a rotating order, run
// after run; every run's final state is checked against the expected one
// and a mismatch fails the benchmark.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, writeFile, readdir, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { root, startStaticServer, launchBrowser } from "../../tests/e2e/harness.mjs";
import { meta } from "../meta.mjs";
import { summary } from "../stats.mjs";
import { expectedState, canonical } from "./compare/workloads.js";

const run = promisify(execFile);
const QUICK = process.env.CPC_BENCH_QUICK === "1";
const ONLY = process.env.CPC_BENCH_ONLY?.split(",") ?? null;
const wanted = (section) => !ONLY || ONLY.includes(section);
const vite = path.join(root, "node_modules/.bin/vite");
const out = path.join(root, "target/bench");
const dist = path.join(out, "compare-dist");

const SIZES = QUICK
  ? {
      b31: 100,
      c12: 500,
      runHeavy: { writers: 4, updates: 500, keys: 1_000, burst: 50 },
      runs: Number(process.env.CPC_BENCH_RUNS ?? 1),
      warmup: 50,
      causal: 20_000,
      snapshot: 20_000,
      sync: 2_000,
      diffs: [0, 100],
      bursts: [1, 1_000],
    }
  : {
      b31: 1_540,
      c12: 30_000,
      runHeavy: { writers: 4, updates: 25_000, keys: 10_000, burst: 100 },
      runs: Number(process.env.CPC_BENCH_RUNS ?? 10),
      warmup: 1_000,
      causal: 1_000_000,
      snapshot: 1_000_000,
      // Automerge takes minutes to build two replicas of 100k changes.
      sync: Number(process.env.CPC_BENCH_SYNC ?? 20_000),
      diffs: [0, 1, 100, 10_000],
      bursts: [1, 1_000],
    };

const WORKLOADS = process.env.CPC_BENCH_WORKLOADS?.split(",") ?? ["B3_1", "C1_2", "run_heavy"];
/** Rows to run (all when unset), by name, `|` between them (row names hold commas). */
const ROWS_WANTED = process.env.CPC_BENCH_ROWS?.split("|") ?? null;

/**
 * How each measured page is opened (CPC_BENCH_VISIT): "fresh", a new
 * browser context with an empty HTTP cache (a first visit: V8 compiles
 * the wasm's functions with its baseline tier and optimizes the hot ones
 * as they run); or "returning", a page opened in a context whose first
 * page ran the same measurement and closed (a returning visitor: the wasm
 * comes from the HTTP cache with the optimized code V8 cached beside it).
 */
const VISIT = process.env.CPC_BENCH_VISIT ?? "fresh";
if (!["fresh", "returning"].includes(VISIT)) throw new Error(`CPC_BENCH_VISIT: "fresh" or "returning", not ${VISIT}`);
/** V8 caches a wasm module's optimized code a while after it first tiers up (its `wasm_caching_timeout_ms`, 2 s). */
const CODE_CACHE_WAIT_MS = 3_000;

/** A page on the benchmark page in a context of its own (after a first visit there, with
 * `returning`); closes it after `use`. */
async function measuredPage(browser, url, use, { returning = false } = {}) {
  const context = await browser.newContext();
  try {
    if (returning) {
      await visit(context, url, use);
      await new Promise((resolve) => setTimeout(resolve, CODE_CACHE_WAIT_MS));
    }
    return await visit(context, url, use);
  } finally {
    await context.close();
  }
}

/** `use` on a new page of `context`, failing on the page's errors; the page is closed after. */
async function visit(context, url, use) {
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await page.goto(url);
    await page.waitForSelector("body[data-ready=true]", { state: "attached", timeout: 60_000 });
    const result = await use(page);
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    return result;
  } finally {
    await page.close();
  }
}

/**
 * `measure()`, its timed part CPU-profiled with CPC_PROFILE=<path prefix>
 * (the page's thread, sampled every 100 µs; the page brackets the part
 * with `console.profile`) into
 * `<prefix>-<workload>-<row>-<run>.cpuprofile`, for bench/cpu-profile.mjs;
 * the wasm's functions are named in a `CPC_WASM_NAMES=1` build.
 */
async function profiled(page, label, measure) {
  const prefix = process.env.CPC_PROFILE;
  if (!prefix) return measure();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  const finished = new Promise((resolve) => cdp.on("Profiler.consoleProfileFinished", (e) => resolve(e.profile)));
  await page.evaluate(() => (globalThis.profileMeasured = true));
  const result = await measure();
  const profile = await finished;
  await writeFile(`${prefix}-${label.replace(/[^A-Za-z0-9_.-]+/g, "_")}.cpuprofile`, JSON.stringify(profile));
  return result;
}

/** Each library's updates for `workload`, saved for the measuring pages. */
async function generate(browser, url, workload, libraries) {
  const made = {};
  for (const library of libraries) {
    const g = await measuredPage(browser, url, (page) =>
      page.evaluate((args) => window.bench.generate(args), { library, workload, sizes: SIZES }),
    );
    const file = `updates/${library}-${workload}.bin`;
    await writeFile(path.join(dist, file), Buffer.from(g.data, "base64"));
    const expected = workload === "B3_1" ? { shared: g.winner } : expectedState(workload, SIZES);
    made[library] = { file, count: g.count, bytes: g.bytes, expected: canonical(expected) };
  }
  return made;
}

/** Every row of `workload`, `SIZES.runs` times in rotating order, each in a fresh page. */
async function many(browser, url, workload, rows) {
  const updates = await generate(browser, url, workload, [...new Set(Object.values(rows))]);
  const result = {};
  const names = Object.keys(rows);
  for (let r = 0; r < SIZES.runs; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const row of order) {
      const made = updates[rows[row]];
      const m = await measuredPage(browser, url, (page) =>
        profiled(page, `${workload}-${row}-${r}`, () =>
          page.evaluate((args) => window.bench.measure(args), { row, url: made.file, warmup: SIZES.warmup }),
        ),
        { returning: VISIT === "returning" },
      );
      if (m.state !== made.expected) {
        throw new Error(
          `${workload} ${row}: final state differs from the expected one\n  got      ${m.state.slice(0, 300)}\n  expected ${made.expected.slice(0, 300)}`,
        );
      }
      result[row] ??= {
        updates: made.count,
        bytes_per_write: made.bytes / writes(workload),
        vv_bytes: m.vv_bytes,
        ms: [],
      };
      result[row].ms.push(m.ms);
    }
    process.stdout.write(`${workload}: run ${r + 1}/${SIZES.runs}\r`);
  }
  console.log();
  return result;
}

/** What each library costs a page: its JS and wasm as Vite bundles them, gzipped. */
const BUNDLE_ENTRIES = {
  "cpc-sync": `import init, * as m from "${path.join(root, "pkg/cpc_sync.js")}"; window.lib = [init, m];`,
  yjs: `import * as Y from "yjs"; window.lib = Y;`,
  automerge: `import * as A from "@automerge/automerge/slim"; import url from "@automerge/automerge/automerge.wasm?url"; window.lib = [A, url];`,
  loro: `import init, * as L from "loro-crdt/web"; window.lib = [init, L];`,
};

async function bundles() {
  const sizes = {};
  for (const [name, entry] of Object.entries(BUNDLE_ENTRIES)) {
    const dir = path.join(out, "bundles", name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "entry.js"), entry);
    await writeFile(path.join(dir, "index.html"), `<script type="module" src="./entry.js"></script>`);
    await run(vite, ["build", "--logLevel", "error"], { cwd: dir });
    const assets = path.join(dir, "dist/assets");
    let js = 0;
    let wasm = 0;
    for (const file of await readdir(assets)) {
      const gz = gzipSync(await readFile(path.join(assets, file)), { level: 9 }).length;
      if (file.endsWith(".wasm")) wasm += gz;
      else if (file.endsWith(".js")) js += gz;
    }
    sizes[name] = { js_gzip: js, wasm_gzip: wasm, total_gzip: js + wasm };
  }
  return sizes;
}

/** The writes each workload makes (its updates may carry several each). */
function writes(workload) {
  if (workload === "B3_1") return SIZES.b31;
  if (workload === "C1_2") return SIZES.c12;
  return SIZES.runHeavy.writers * SIZES.runHeavy.updates;
}

/** The seals each workload's updates carry: one per writer's burst. */
function seals(workload) {
  if (workload === "B3_1") return SIZES.b31;
  if (workload === "C1_2") return SIZES.c12;
  const { writers, updates, burst } = SIZES.runHeavy;
  return writers * Math.ceil(updates / burst);
}

function print(results) {
  for (const workload of WORKLOADS) {
    const rows = results.many?.[workload];
    if (!rows) continue;
    console.log(`\n${workload} (ms: min / median / p90 of ${SIZES.runs} ${VISIT === "fresh" ? "fresh pages" : "returning visits"})`);
    for (const [row, r] of Object.entries(rows)) {
      const s = summary(r.ms);
      console.log(
        `  ${row.padEnd(24)} ${s.min.toFixed(1)} / ${s.median.toFixed(1)} / ${s.p90.toFixed(1)} ms` +
          `  ${r.bytes_per_write.toFixed(1)} B/write  vv ${r.vv_bytes} B`,
      );
    }
    const floor = results.floor?.[workload];
    if (floor) console.log(`  verification floor: ${floor.seals} seals, ${floor.ms.toFixed(1)} ms`);
  }
  for (const [library, byBurst] of Object.entries(results.sync ?? {})) {
    for (const [burst, byD] of Object.entries(byBurst)) {
      const cells = Object.entries(byD).map(([d, r]) => `d=${d}: ${r.a_to_b}/${r.b_to_a} B ${r.round_trips} RT`);
      console.log(`sync ${library}, bursts of ${burst}: ${cells.join("  ")}`);
    }
  }
  if (results.cpc) console.log(`cpc-sync only: ${JSON.stringify(results.cpc)}`);
  if (results.gzip) console.log(`snapshot gzip: ${JSON.stringify(results.gzip)}`);
  if (results.bundle) console.log(`bundles (gzip): ${JSON.stringify(results.bundle)}`);
}

/** Fails the run on anything that is not a measured figure. */
function check(results) {
  for (const workload of WORKLOADS) {
    for (const [row, r] of Object.entries(results.many?.[workload] ?? {})) {
      if (r.ms.length !== SIZES.runs || !r.ms.every((ms) => ms >= 0)) throw new Error(`${workload} ${row}: runs missing`);
    }
  }
  for (const [library, byBurst] of Object.entries(results.sync ?? {})) {
    for (const byD of Object.values(byBurst)) {
      for (const [d, r] of Object.entries(byD)) {
        if (r.settled !== 1) throw new Error(`sync ${library} d=${d}: the replicas did not settle`);
      }
    }
  }
  const c = results.cpc;
  for (const s of c ? [c.snapshot, ...c.snapshot_verified] : []) {
    // A snapshot that did not verify, or did not load whole, is a failure.
    if (!(s.verify_ms >= 0) || s.entities !== s.requested) {
      throw new Error(`verified snapshot did not verify or load: ${JSON.stringify(s)}`);
    }
  }
}

/**
 * The wasm the page needs: the release package (pkg/: the bundle; a quick
 * run takes an existing one, as npm test has just built it), then the
 * bench build (target/bench/pkg: every cpc-sync row), remade only when
 * its wasm changed. Built here, not by the caller, so a run of this file
 * alone (`CPC_BENCH_ONLY=...`) measures the tree it runs in.
 */
async function buildWasm() {
  const build = (script, ...args) =>
    run("bash", [path.join(root, "scripts", script), ...args], { cwd: root, maxBuffer: 1 << 26 });
  if (!QUICK || !existsSync(path.join(root, "pkg/cpc_sync_bg.wasm"))) await build("build.sh", "--no-server");
  await build("bench-wasm.sh");
}

async function main() {
  await buildWasm();
  await rm(dist, { recursive: true, force: true });
  await run(vite, ["build", "--logLevel", "error", "--outDir", dist, "--emptyOutDir"], {
    cwd: path.join(root, "bench/browser/compare"),
  });
  await mkdir(path.join(dist, "updates"), { recursive: true });
  const server = await startStaticServer(dist, { cache: VISIT === "returning" });
  const browser = await launchBrowser();
  const results = { meta: meta({ browser: `Chromium ${browser.version()}`, quick: QUICK }), sizes: SIZES, visit: VISIT };
  try {
    if (wanted("many")) {
      // Every row, with the library that makes its updates.
      const all = await measuredPage(browser, server.url, (page) => page.evaluate(() => window.bench.rows));
      const rows = Object.fromEntries(Object.entries(all).filter(([row]) => !ROWS_WANTED || ROWS_WANTED.includes(row)));
      results.many = {};
      for (const workload of WORKLOADS) results.many[workload] = await many(browser, server.url, workload, rows);
      // Batch verification of as many seals, measured the same day: the
      // floor under the signed path.
      // On the page's thread; the headline row verifies in `workers`
      // Web Workers, so its floor is this divided by them.
      const verify = await measuredPage(browser, server.url, (page) =>
        page.evaluate(() => ({ ...window.bench.batchVerifyCost(5), workers: window.bench.verifyWorkers })),
      );
      results.floor = Object.fromEntries(
        WORKLOADS.map((w) => [
          w,
          { seals: seals(w), us_per_seal: verify.us_per_seal, ms: (seals(w) * verify.us_per_seal) / 1000, workers: verify.workers },
        ]),
      );
    }
    if (wanted("sync")) {
      results.sync = await measuredPage(browser, server.url, (page) =>
        page.evaluate((args) => window.bench.sync(args), { n: SIZES.sync, diffs: SIZES.diffs, bursts: SIZES.bursts }),
      );
    }
    if (wanted("cpc")) {
      results.cpc = await measuredPage(browser, server.url, (page) => page.evaluate((s) => window.bench.cpcOnly(s), SIZES));
    }
    if (wanted("gzip")) {
      // A snapshot of as many entities as the cpc section's.
      const args = [SIZES.snapshot, Math.min(SIZES.runs, 5)];
      results.gzip = await measuredPage(browser, server.url, (page) => page.evaluate((a) => window.bench.gzipCost(...a), args));
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  if (wanted("bundle") && !QUICK) results.bundle = await bundles();
  print(results);
  check(results);
  if (ROWS_WANTED || process.env.CPC_BENCH_WORKLOADS || VISIT !== "fresh") {
    // Some rows or workloads, or returning visits: a partial run goes
    // aside, as the report renders whole tables of fresh pages only.
    await writeFile(path.join(out, "compare-partial.json"), JSON.stringify(results, null, 2));
    return;
  }
  if (!QUICK) await carryOver(results);
  await writeFile(path.join(out, "compare.json"), JSON.stringify(results, null, 2));
}

/**
 * The sections not run this time (`CPC_BENCH_ONLY`) keep the figures of
 * the last committed run (bench/results/compare.json) with that run's
 * provenance, so that rendering this run does not drop their tables.
 */
async function carryOver(results) {
  let previous;
  try {
    previous = JSON.parse(await readFile(path.join(root, "bench/results/compare.json"), "utf8"));
  } catch {
    return;
  }
  if (!previous.meta || previous.meta.quick) return;
  for (const section of ["many", "sync", "cpc", "gzip", "bundle"]) {
    if (results[section] || !previous[section]) continue;
    results[section] = previous[section];
    if (section === "many") {
      // Its floor, and the sizes and runs it was measured with.
      results.floor = previous.floor;
      results.sizesOf = { many: previous.sizesOf?.many ?? previous.sizes };
    }
    results.provenance ??= {};
    results.provenance[section] = previous.provenance?.[section] ?? previous.meta;
  }
}

await main();
