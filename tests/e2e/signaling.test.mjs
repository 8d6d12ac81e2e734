// cpc-signal's origin check with real browser pages: a page of the
// server's own origin opens /signal and gets its hello; a page of another
// origin is refused before any message. The rest of the server's signaling
// (signed joins, relay, limits, floods) is tested in Rust against the real
// server, with clients that can sign joins: tests/native/signal_server.rs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { serverAndBrowser, startStaticServer, openPage } from "./harness.mjs";

const env = serverAndBrowser();
let elsewhere;
let dir;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cpc-sync-origin-"));
  await writeFile(path.join(dir, "index.html"), `<!doctype html><html><head><link rel="icon" href="data:,"></head></html>`);
  elsewhere = await startStaticServer(dir);
});

after(async () => {
  await elsewhere?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Opens a WebSocket to `url` from `page`; what happened within 5 s. */
function tryOpen(page, url) {
  return page.evaluate(
    (url) =>
      new Promise((resolve) => {
        const ws = new WebSocket(url);
        const timer = setTimeout(() => resolve({ opened: false, timeout: true }), 5000);
        ws.onmessage = (e) => {
          clearTimeout(timer);
          ws.close();
          resolve({ opened: true, first: JSON.parse(e.data) });
        };
        ws.onclose = () => {
          clearTimeout(timer);
          resolve({ opened: false });
        };
      }),
    url,
  );
}

test("a page of the server's own origin may signal; a page of another origin is refused", async () => {
  await env.ready;
  const signal = new URL("/signal", env.server.url).href.replace(/^http/, "ws");
  const own = await openPage(env.browser, env.server.url + "?signaling=none");
  const mine = await tryOpen(own.page, signal);
  assert.equal(mine.opened, true, JSON.stringify(mine));
  assert.equal(mine.first.type, "hello");
  assert.match(mine.first.nonce, /^[0-9a-f]{64}$/);

  const other = await openPage(env.browser, elsewhere.url);
  const theirs = await tryOpen(other.page, signal);
  assert.deepEqual(theirs, { opened: false }, "refused (403), not hung");
  await own.page.close();
  await other.page.close();
});
