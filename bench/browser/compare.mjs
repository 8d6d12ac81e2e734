// cpc-sync beside Yjs, Automerge and Loro, in one headless Chromium run
// (issue 7's workloads): B3.1, C1.2, causal apply, snapshot, and bundle
// sizes. `npm run bench` builds and runs it in full; CPC_BENCH_QUICK=1
// (what `npm test` runs) uses small sizes so the harness cannot rot.
// Figures go to stdout and target/bench/compare.json. CPC_BENCH_ONLY picks
// one section: many (B3.1, C1.2), sync, cpc (cpc-sync's own workloads),
// responsiveness.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, writeFile, readdir, readFile, rm } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import os from "node:os";
import path from "node:path";
import { root, startStaticServer, launchBrowser, openPage } from "../../tests/e2e/harness.mjs";

const run = promisify(execFile);
const QUICK = process.env.CPC_BENCH_QUICK === "1";
const vite = path.join(root, "node_modules/.bin/vite");
const out = path.join(root, "target/bench");

const SIZES = QUICK
  ? { b31: 200, c12: 1_000, runs: 2, causal: 20_000, snapshot: 20_000, ingest: 5_000, sync: 2_000, diffs: [0, 1, 100] }
  : {
      b31: 1_540,
      c12: 30_000,
      runs: 5,
      causal: 1_000_000,
      snapshot: 1_000_000,
      ingest: 100_000,
      // Automerge takes minutes to build two replicas of 100k changes.
      sync: Number(process.env.CPC_BENCH_SYNC ?? 20_000),
      diffs: [0, 1, 100, 10_000],
    };

/**
 * Responsiveness: tab a writes `events` events (its log is never folded,
 * so they travel as events, not a snapshot); tab b joins and ingests them
 * over WebRTC while a PerformanceObserver counts its long tasks (> 50 ms).
 */
async function responsiveness(browser, events) {
  const site = await startStaticServer();
  const context = await browser.newContext();
  const room = `ingest-${Math.random().toString(36).slice(2)}`;
  const open = async () => {
    const { page, errors } = await openPage(context, `${site.url}?signaling=none&storage=memory&room=unused-${room}`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    await page.evaluate(async (room) => {
      window.ingest = await window.cpc.module.Peer.open({
        room,
        signaling: "none",
        storage: "memory",
        compactAfter: 1e9,
      });
    }, room);
    return { page, errors };
  };
  try {
    const a = await open();
    await a.page.evaluate(async (events) => {
      for (let i = 0; i < events; i += 10_000) {
        const writes = [];
        for (let j = i; j < Math.min(events, i + 10_000); j++) writes.push(window.ingest.set(`k${j}`, j));
        await Promise.all(writes);
      }
    }, events);
    // Converged when b's version vector equals a's (cheap to read; the
    // digest is checked once at the end).
    const clock = await a.page.evaluate(() => JSON.stringify(window.ingest.clock()));
    const digest = await a.page.evaluate(() => window.ingest.digest());
    const b = await open();
    const result = await b.page.evaluate(async ([clock, digest]) => {
      const long = [];
      const observer = new PerformanceObserver((list) => long.push(...list.getEntries().map((e) => e.duration)));
      observer.observe({ type: "longtask" });
      const start = performance.now();
      while (JSON.stringify(window.ingest.clock()) !== clock) {
        await new Promise((r) => setTimeout(r, 20));
        if (performance.now() - start > 120_000) throw new Error("no convergence in 120 s");
      }
      const ms = performance.now() - start;
      await new Promise((r) => setTimeout(r, 100));
      observer.disconnect();
      if (window.ingest.digest() !== digest) throw new Error("same clock, different state");
      return { ms, long_tasks: long.length, longest_ms: Math.max(0, ...long), long_task_ms: long };
    }, [clock, digest]);
    if (a.errors.length || b.errors.length) throw new Error(`page errors: ${[...a.errors, ...b.errors]}`);
    return { events, ...result };
  } finally {
    await context.close();
    await site.stop();
  }
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

function table(title, rows, columns) {
  console.log(`\n${title}`);
  for (const [name, r] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(20)} ${columns.map(([label, get]) => `${label} ${get(r)}`).join("  ")}`);
  }
}

async function main() {
  await mkdir(out, { recursive: true });
  if (process.env.CPC_BENCH_ONLY === "responsiveness") {
    const browser = await launchBrowser();
    try {
      console.log(JSON.stringify(await responsiveness(browser, SIZES.ingest)));
    } finally {
      await browser.close();
    }
    return;
  }
  await run(vite, ["build", "--logLevel", "error", "--outDir", path.join(out, "compare-dist"), "--emptyOutDir"], {
    cwd: path.join(root, "bench/browser/compare"),
  });
  const server = await startStaticServer(path.join(out, "compare-dist"));
  const browser = await launchBrowser();
  let results;
  try {
    const { page, errors } = await openPage(browser, server.url);
    await page.waitForSelector("body[data-ready=true]", { state: "attached", timeout: 30_000 });
    const only = process.env.CPC_BENCH_ONLY ?? null;
    results = await page.evaluate((options) => window.bench.run(options), { ...SIZES, only });
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    results.browser = `Chromium ${browser.version()}`;
    if (!process.env.CPC_BENCH_ONLY) results.responsiveness = await responsiveness(browser, SIZES.ingest);
  } finally {
    await browser.close();
    await server.stop();
  }
  if (!process.env.CPC_BENCH_ONLY) results.bundle = await bundles();
  results.machine = `${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  results.sizes = SIZES;
  results.quick = QUICK;

  const fixed = (d) => (x) => (typeof x === "number" ? x.toFixed(d) : String(x));
  if (results.B3_1) table(`B3.1: ${SIZES.b31} peers set one key (apply all at one peer)`, results.B3_1, [
    ["ms", (r) => fixed(2)(r.ms)],
    ["bytes/update", (r) => fixed(1)(r.bytes_per_update)],
  ]);
  if (results.C1_2) table(`C1.2: ${SIZES.c12} peers set a key each`, results.C1_2, [
    ["ms", (r) => fixed(1)(r.ms)],
    ["version vector bytes", (r) => r.vv_bytes],
  ]);
  console.log(`\nsync: ${SIZES.sync} updates, the second replica lacking d (bytes a->b / b->a, round trips)`);
  for (const [name, byD] of Object.entries(results.sync ?? {})) {
    if (name === "updates") continue;
    const cells = Object.entries(byD).map(([d, r]) => `d=${d}: ${r.a_to_b}/${r.b_to_a} B, ${r.round_trips} RT`);
    console.log(`  ${name.padEnd(20)} ${cells.join("  ")}`);
  }
  if (results.causal_apply) {
    console.log(`\ncausal apply (cpc-sync): ${JSON.stringify(results.causal_apply)}`);
    console.log(`snapshot (cpc-sync): ${JSON.stringify(results.snapshot)}`);
    console.log(`verified snapshots (cpc-sync): ${JSON.stringify(results.snapshot_verified)}`);
    console.log(`room key (Argon2id), ms per derivation: ${results.room_key_ms}`);
  }
  if (results.seal) {
    console.log(`seal (cpc-sync, µs per event): ${JSON.stringify(results.seal)}`);
  }
  if (results.responsiveness) {
    console.log(`responsiveness (cpc-sync, a tab ingesting events over WebRTC): ${JSON.stringify(results.responsiveness)}`);
  }
  if (results.bundle) table("bundle, gzipped (Vite build)", results.bundle, [
    ["js", (r) => r.js_gzip],
    ["wasm", (r) => r.wasm_gzip],
    ["total", (r) => r.total_gzip],
  ]);
  await writeFile(path.join(out, "compare.json"), JSON.stringify(results, null, 2));
  for (const workload of ["B3_1", "C1_2"]) {
    for (const [name, r] of Object.entries(results[workload] ?? {})) {
      if (!(r.ms >= 0)) throw new Error(`${workload} ${name}: no time measured`);
    }
  }
  for (const s of [results.snapshot, ...(results.snapshot_verified ?? [])].filter(Boolean)) {
    // A snapshot that did not verify, or did not load whole, is a failure.
    if (!(s.verify_ms >= 0) || s.entities !== s.requested) {
      throw new Error(`verified snapshot did not verify or load: ${JSON.stringify(s)}`);
    }
  }
}

await main();
