// Does verifying seals in Web Workers pay? Issue 17 asks for the signed
// path at the batch-verification floor "divided by the cores used, if
// verifying in Workers pays: measure it". This measures the floor itself,
// in Chromium: the seals of C1.2's 30,000 lone writers (packed 128 bytes a
// seal: key, run digest, signature), verified in batches of 256 as a node
// does, on the page's main thread and split across 1, 2 and 4 module
// workers, each running its own instance of the bench build's wasm. A
// worker pool's time is the wall time from handing out the slices (copied
// and transferred) to the last answer; the workers are started and warmed
// (one batch each) beforehand, as a peer's would be while it opens.
//
// Then the signed path itself: C1.2's, B3.1's and run-heavy's frames through a signed
// node (`BenchNode`, the frames a browser peer receives), its seals
// verified in place and in 1, 2 and 4 workers (`BenchNode.withWorkers`,
// the pool a page's peer starts: `verifyWorkers`), 16 frames a task (the
// workers' answers come between tasks), each run's final state checked
// equal to the in-place run's. "Main thread" is the time
// the page's thread spent in the loop's calls into the node (taking
// frames, finishing); the workers' verdicts are applied in message tasks
// of their own, not counted there (`pageThread` in the bench build,
// `node bench/wasm-speed.mjs`, measures the page thread's whole share).
//
// `npm run build && bash scripts/bench-wasm.sh && node bench/browser/verify-workers.mjs`
// (the release build gives the page's server, `cpc-signal`; `CPC_BENCH_RUNS`,
// default 5; `CPC_BENCH_SEALS`, default 30000; `CPC_BENCH_POOLS`, default
// 1,2,4; `CPC_BENCH_WORKLOADS`, default C1.2,B3.1,run-heavy).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { launchBrowser, root, startServer } from "../../tests/e2e/harness.mjs";

const RUNS = Number(process.env.CPC_BENCH_RUNS ?? 5);
const SEALS = Number(process.env.CPC_BENCH_SEALS ?? 30_000);
const POOLS = (process.env.CPC_BENCH_POOLS ?? "1,2,4").split(",").map(Number);
const WORKLOADS = (process.env.CPC_BENCH_WORKLOADS ?? "C1.2,B3.1,run-heavy").split(",");

const WORKER = `import init, { verifySealItems } from "/pkg/cpc_sync.js";
const ready = init();
onmessage = async (e) => {
  await ready;
  const start = performance.now();
  const ok = verifySealItems(new Uint8Array(e.data));
  postMessage({ ok, ms: performance.now() - start });
};`;

const PAGE = `<!doctype html><title>verify in workers</title><body></body>
<script type="module">
  import init, { sealItems, verifySealItems, oneWriteEach, runHeavy, BenchNode } from "/pkg/cpc_sync.js";
  await init();
  const ask = (worker, buffer) => new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.postMessage(buffer, [buffer]);
  });
  window.measure = async ({ seals, runs, pools }) => {
    const items = sealItems(seals);
    const main = [];
    for (let r = 0; r < runs; r++) {
      const start = performance.now();
      if (!verifySealItems(items)) throw new Error("a seal did not verify on the main thread");
      main.push(performance.now() - start);
    }
    const pooled = {};
    for (const size of pools) {
      const workers = Array.from({ length: size }, () => new Worker("/verify-worker.js", { type: "module" }));
      // Started and warmed: one batch each.
      await Promise.all(workers.map((w) => ask(w, items.slice(0, 256 * 128).buffer)));
      pooled[size] = [];
      for (let r = 0; r < runs; r++) {
        const per = Math.ceil(seals / size) * 128;
        const start = performance.now();
        const answers = await Promise.all(
          workers.map((w, i) => ask(w, items.slice(i * per, (i + 1) * per).buffer)),
        );
        const wall = performance.now() - start;
        if (!answers.every((a) => a.ok)) throw new Error("a seal did not verify in a worker");
        pooled[size].push({ wall, busiest: Math.max(...answers.map((a) => a.ms)) });
      }
      workers.forEach((w) => w.terminate());
    }
    return { cores: navigator.hardwareConcurrency, main, pooled };
  };
  const tick = () => new Promise((r) => setTimeout(r, 0));
  // A task boundary without a timer's clamp, as between two data channel
  // messages.
  const channel = new MessageChannel();
  const task = () => new Promise((r) => { channel.port1.onmessage = r; channel.port2.postMessage(0); });
  window.signedPath = async ({ writers, sameKey, heavy, runs, pools }) => {
    const frames = heavy
      ? runHeavy(heavy.writers, heavy.updates, heavy.keys, heavy.burst)
      : oneWriteEach(writers, sameKey);
    const out = {};
    let expected;
    for (const size of [0, ...pools]) {
      out[size] = [];
      for (let r = 0; r < runs; r++) {
        const node = size ? BenchNode.withWorkers(size) : new BenchNode();
        // The workers run the module before the frames come, as a warmed
        // page's do.
        while (!node.ready()) await new Promise((r) => setTimeout(r, 2));
        const start = performance.now();
        let busy = 0;
        let t = performance.now();
        // Frames come a few to a task, as a data channel delivers them:
        // the workers' answers are taken in between.
        for (let i = 0; i < frames.length; i += 16) {
          for (const f of frames.slice(i, i + 16)) node.receive(f);
          busy += performance.now() - t;
          await task();
          t = performance.now();
        }
        node.finish();
        busy += performance.now() - t;
        // Done when the last verdict is applied: told by the node, as a
        // page is by its peer's change callback (a timer's polling would
        // add up to its 4 ms clamp).
        await new Promise((resolve) => node.whenSettled(resolve));
        if (size) node.verifying(); // throws if a worker failed
        t = performance.now();
        node.finish();
        busy += performance.now() - t;
        const wall = performance.now() - start;
        const state = node.stateJson();
        node.free();
        expected ??= state;
        if (state !== expected) throw new Error("the state with " + size + " workers differs");
        out[size].push({ wall, busy });
        await tick();
      }
    }
    return out;
  };
  document.body.dataset.ready = "true";
</script>`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const www = await mkdtemp(path.join(os.tmpdir(), "cpc-verify-workers-"));
await writeFile(path.join(www, "index.html"), PAGE);
await writeFile(path.join(www, "verify-worker.js"), WORKER);
const server = await startServer(0, { CPC_WWW: www, CPC_PKG: path.join(root, "target/bench/pkg") });
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${server.url}index.html`);
  await page.waitForSelector("body[data-ready=true]", { state: "attached" });
  const r = await page.evaluate((args) => window.measure(args), { seals: SEALS, runs: RUNS, pools: POOLS });
  if (errors.length) throw new Error(errors.join("\n"));
  const main = median(r.main);
  console.log(`## Batch verification alone`);
  console.log(`${SEALS} seals, ${RUNS} runs each, ${r.cores} cores (navigator.hardwareConcurrency)`);
  console.log(`main thread: median ${main.toFixed(0)} ms (${r.main.map((x) => x.toFixed(0)).join(", ")})`);
  for (const [size, runs] of Object.entries(r.pooled)) {
    const wall = median(runs.map((x) => x.wall));
    const busiest = median(runs.map((x) => x.busiest));
    console.log(
      `${size} worker(s): median wall ${wall.toFixed(0)} ms (${(main / wall).toFixed(2)}x the main thread), ` +
        `busiest worker ${busiest.toFixed(0)} ms; runs ${runs.map((x) => x.wall.toFixed(0)).join(", ")}`,
    );
  }
  // Run-heavy as the side-by-side benchmark has it: 4 writers, 25,000
  // updates each over 10,000 keys, a sealed run per burst of 100.
  const heavy = { writers: 4, updates: 25_000, keys: 10_000, burst: 100 };
  for (const [name, what, args] of [
    ["C1.2", "30000 signed writers", { writers: 30_000, sameKey: false }],
    ["B3.1", "1540 signed writers", { writers: 1_540, sameKey: true }],
    ["run-heavy", "4 signed writers, 25,000 updates each in runs of 100", { heavy }],
  ].filter(([name]) => WORKLOADS.includes(name))) {
    const runs = await page.evaluate((a) => window.signedPath(a), { ...args, runs: RUNS, pools: POOLS });
    if (errors.length) throw new Error(errors.join("\n"));
    console.log(`## ${name}: ${what}, through a signed node, ${RUNS} runs each`);
    for (const [size, rows] of Object.entries(runs)) {
      const wall = median(rows.map((x) => x.wall));
      const busy = median(rows.map((x) => x.busy));
      console.log(
        `${size === "0" ? "in place" : `${size} worker(s)`}: median ${wall.toFixed(0)} ms, ` +
          `main thread busy ${busy.toFixed(0)} ms; runs ${rows.map((x) => x.wall.toFixed(0)).join(", ")}`,
      );
    }
  }
} finally {
  await browser.close();
  await server.stop();
  await rm(www, { recursive: true, force: true });
}
