// Shared pieces of the end-to-end suite: a real cpc-signal process and a
// real headless browser of the run's engine (engines/: Chromium or Firefox).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { before, after } from "node:test";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { launch, ENGINE } from "./engines/index.mjs";
import { launchChromium } from "./engines/chromium.mjs";

export { launch, ENGINE, ENGINES } from "./engines/index.mjs";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Where a test of this run's engine puts its screenshots (ignored by git). */
export const SCREENSHOTS = path.join(root, "tests/e2e/screenshots", ENGINE);

/**
 * Starts cpc-signal on `port` (a free one by default), with `env` added to
 * its environment (`ORIGINS`, `MAX_ROOM`); resolves to { url, stop, kill }.
 * The binary is `CPC_SIGNAL_BIN` if set (`npm test` sets the one its native
 * suite built), else the release build. The room peer is off (`KEEP=off`)
 * unless `env` turns it on with a `DATA_DIR` (keep.test.mjs): the other
 * suites count the pages' peers among themselves.
 */
export async function startServer(port = 0, env = {}) {
  const binary = path.resolve(root, process.env.CPC_SIGNAL_BIN || "target/release/cpc-signal");
  if (!existsSync(binary)) {
    throw new Error(`${path.relative(root, binary)} is not built: run \`npm run build\` first`);
  }
  const child = spawn(binary, [], {
    // Every page of the suite connects from 127.0.0.1, up to 65 sockets
    // at once (a full room and one more): over the per-address default.
    env: { ...process.env, PORT: String(port), MAX_PER_ADDRESS: "1024", KEEP: "off", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cpc-signal did not start: ${output}`)), 10_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = output.match(/listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`cpc-signal exited with ${code}: ${output}`)));
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    },
    /** `kill -9`. */
    async kill() {
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    },
  };
}

const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
  ".wasm": "application/wasm",
  ".json": "application/json",
};

/**
 * A plain static server (no signaling) for www/ and pkg/, or for the folder
 * `dir`: pages served by it find each other over BroadcastChannel only.
 * With `{ cache: true }` its responses may be cached for ten minutes (as a
 * site's hashed assets are), so a browser's HTTP cache, and V8's cache of
 * the wasm's optimized code beside it, serve a page's later visits.
 * Resolves to { url, stop }.
 */
export async function startStaticServer(dir, { cache = false } = {}) {
  const http = await import("node:http");
  const { readFile } = await import("node:fs/promises");
  const server = http.createServer(async (request, response) => {
    const { pathname } = new URL(request.url, "http://localhost");
    const page = pathname === "/" ? "index.html" : pathname;
    const base = dir ?? root;
    const file = dir
      ? path.join(dir, page)
      : pathname.startsWith("/pkg/")
        ? path.join(root, pathname)
        : path.join(root, "www", page);
    if (!file.startsWith(base)) return response.writeHead(403).end();
    try {
      const body = await readFile(file);
      response.writeHead(200, {
        "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
        ...(cache ? { "cache-control": "max-age=600" } : {}),
      });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** For pages that must run side by side (tabs of a room, measured): no
 * throttling of background pages and their timers. */
export const UNTHROTTLED_ARGS = [
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/** Headless Chromium with `extraArgs`, whatever the run's engine: the
 * benchmarks measure Chromium (tests call `launch()`). */
export const launchBrowser = launchChromium;

/** Opens `url` in a new page and collects console errors and page errors. */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  return { page, errors };
}

/** Opens the page for `query` and waits for its peer (`window.cpc.peer`). */
export async function openPeerPage(browserOrContext, url, query) {
  const { page, errors } = await openPage(browserOrContext, `${url}?${query}`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  return { page, errors, id: await page.evaluate(() => window.cpc.peer.id) };
}

/** A tab of `context` with the wasm module loaded from the static site at
 * `siteUrl` (`window.cpc.module`), its own page's peer alone in memory:
 * for tests that drive the JS API themselves. */
export async function moduleTab(context, siteUrl) {
  const tab = await context.newPage();
  tab.on("console", (m) => process.env.VERBOSE && console.log("  [page]", m.type(), m.text()));
  await tab.goto(`${siteUrl}?room=page-${Math.random().toString(36).slice(2)}&storage=memory&signaling=none`);
  await tab.waitForFunction(() => window.cpc?.module);
  return tab;
}

/** Waits until `page`'s peer has an open connection to peer `id`. */
export async function connected(page, id, timeout = 30_000) {
  await page.waitForFunction(
    (id) => window.cpc.peer.peers().some((p) => p.id === id && p.state === "open"),
    id,
    { timeout },
  );
}

/** Waits until every page's peer has the same digest; returns their states. */
export async function converged(pages, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen = await Promise.all(
      pages.map((p) => p.evaluate(() => ({ digest: window.cpc.peer.digest(), state: window.cpc.peer.state() }))),
    );
    if (seen.every((s) => s.digest === seen[0].digest)) return seen.map((s) => s.state);
    if (Date.now() > deadline) {
      throw new Error(`no convergence in ${timeout} ms: ${JSON.stringify(seen)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const crateVersion = async () => {
  const { readFile } = await import("node:fs/promises");
  const toml = await readFile(path.join(root, "Cargo.toml"), "utf8");
  return toml.match(/^version = "(.*)"$/m)[1];
};

/**
 * Registers before/after hooks that start a cpc-signal and a browser of
 * the run's engine for the file's tests; returns an object whose `server`
 * and `browser` are set once `ready` resolves (other hooks of the file
 * await it).
 */
export function serverAndBrowser() {
  const env = {};
  let started;
  env.ready = new Promise((resolve, reject) => (started = { resolve, reject }));
  before(async () => {
    try {
      env.server = await startServer();
      env.browser = await launch();
      started.resolve();
    } catch (error) {
      started.reject(error);
      throw error;
    }
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/** A reading of `server`'s /metrics by name (0 when absent). */
export async function reading(server, name) {
  const text = await (await fetch(new URL("/metrics", server.url))).text();
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line ? Number(line.split(" ").pop()) : 0;
}
