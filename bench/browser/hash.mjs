// Causal apply on a fresh page (`causalApply`: 200,000 events, 20%
// displaced, then in order; first, while the page's memory is new),
// BLAKE3's throughput in a browser's wasm engine (`hashCost`: MB/s on
// inputs of 64 B, 1 KB, 7 KB (a run of 100 writes, as its seal digests it)
// and 64 KB, each timed after a run as long to warm
// it), and the page thread's share of C1.2 and run-heavy (`pageThread`,
// three runs), for A/B runs of bench builds: each package folder given,
// in turn, in a fresh page, for `CPC_HASH_ROUNDS` rounds (default 2).
// `CPC_BROWSER=firefox` runs Firefox instead of Chromium. Node's V8 can
// rank builds differently from the browsers' (BENCHMARKS, "Issue 17,
// thirty-fifth session").
//
//   bash scripts/bench-wasm.sh && node bench/browser/hash.mjs [pkg ...]
import http from "node:http";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { launch } from "../../tests/e2e/engines/index.mjs";

const defaultPkg = new URL("../../target/bench/pkg", import.meta.url).pathname;
const pkgs = (process.argv.length > 2 ? process.argv.slice(2) : [defaultPkg]).map((p) => path.resolve(p));
const rounds = Number(process.env.CPC_HASH_ROUNDS ?? 2);

// Serves an empty page, and the package folders' files by absolute path.
const server = http.createServer((req, res) => {
  const file = decodeURIComponent(req.url.split("?")[0]);
  if (file === "/") {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>hash</title>");
    return;
  }
  if (!pkgs.some((p) => file.startsWith(p + "/")) || !existsSync(file)) {
    res.writeHead(404);
    res.end();
    return;
  }
  const type = file.endsWith(".js") ? "text/javascript" : file.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
  res.writeHead(200, { "content-type": type });
  res.end(readFileSync(file));
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await launch();
try {
  for (let round = 0; round < rounds; round++) {
    for (const pkg of pkgs) {
      const page = await browser.newPage();
      await page.goto(base + "/");
      const out = await page.evaluate(async (pkg) => {
        const mod = await import(pkg + "/cpc_sync.js");
        await mod.default(pkg + "/cpc_sync_bg.wasm");
        const out = {};
        const apply = mod.causalApply(200000, 64, 10000, 0.2);
        if (apply.applied !== 200000 || apply.in_order_applied !== 200000) throw new Error("causal apply fell short");
        out.apply_us_per_event = +(apply.ms / 200).toFixed(2);
        out.apply_in_order_us_per_event = +(apply.in_order_ms / 200).toFixed(2);
        for (const [len, times] of [[64, 200000], [1024, 40000], [7000, 6000], [65536, 600]]) {
          mod.hashCost(len, times);
          out[`blake3_${len}_b_mb_s`] = Math.round(mod.hashCost(len, times));
        }
        for (const w of ["c12", "run_heavy"]) out[`${w}_page_thread_ms`] = mod.pageThread(w, 3).ms;
        return out;
      }, pkg);
      console.log(JSON.stringify({ pkg, ...out }));
      await page.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
