// The host's tasks answering a newcomer's digest, in fresh Chromium pages:
// a signed host of 100k writes (bursts of 1,000) answers a digest that
// lacks them all, a slice of 8,192 events a task (`answerTasks` in the
// bench build). With and without the page's warm-up (`Peer.open`'s
// `warmUp`) before the join, alternating, a fresh page a sample: the first
// answer of a page that never sent one runs code V8 has not optimized.
//
// `bash scripts/bench-wasm.sh && node bench/answer-tasks.mjs [samples] [updates]`
// (default 6 and 100000; `CPC_BENCH_PKG=<dir>`: another build's package).
import path from "node:path";
import { launchBrowser, root, startStaticServer } from "../tests/e2e/harness.mjs";

const [samples = 6, updates = 100_000] = process.argv.slice(2).map(Number);
const pkg = process.env.CPC_BENCH_PKG ?? path.join(root, "target/bench/pkg");
const server = await startStaticServer(pkg);
const browser = await launchBrowser();
const rows = { cold: [], warm: [] };
try {
  for (let s = 0; s < samples; s++) {
    for (const mode of ["cold", "warm"]) {
      const context = await browser.newContext();
      const page = await context.newPage();
      // A blank page of the package's origin (the package has none).
      const blank = `${server.url}index.html`;
      await page.route(blank, (route) => route.fulfill({ contentType: "text/html", body: "<!doctype html><title>answer tasks</title>" }));
      await page.goto(blank);
      const times = await page.evaluate(
        async ([updates, warm]) => {
          const mod = await import("/cpc_sync.js");
          await mod.default();
          return Array.from(mod.answerTasks(updates, warm, 6));
        },
        [updates, mode === "warm"],
      );
      rows[mode].push(times);
      await context.close();
    }
  }
} finally {
  await browser.close();
  await server.stop();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [mode, runs] of Object.entries(rows)) {
  const first = runs.map((r) => r[0]);
  console.log(
    `${mode}: the digest's task median ${median(first).toFixed(0)} ms (${Math.min(...first).toFixed(0)}-${Math.max(...first).toFixed(0)}); ` +
      `tasks a page: ${runs.map((r) => r.map((ms) => ms.toFixed(0)).join("/")).join("  ")}`,
  );
}
