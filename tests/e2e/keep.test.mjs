// The room's server peer (cpc-signal with KEEP on): a room outlives its
// pages and a `kill -9` of the server, and a page whose WebRTC cannot work
// (RTCPeerConnection removed) syncs through the server, both ways, with a
// page that has WebRTC. Real server process, real browser, real database.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startServer, launch, openPeerPage, converged, reading } from "./harness.mjs";

let browser;
let dataDir;
before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "cpc-keep-e2e-"));
  browser = await launch();
});
after(async () => {
  await browser?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const keeping = () => startServer(0, { KEEP: "on", DATA_DIR: dataDir });

/** Waits until the page's peer lists the room's server peer as open. */
const linked = (page) =>
  page.waitForFunction(() => window.cpc.peer.peers().some((p) => p.server && p.state === "open"), null, {
    timeout: 30_000,
  });

test("a room outlives its page and a kill -9; a page without WebRTC syncs both ways through the server", async () => {
  const room = `keep-${Math.random().toString(36).slice(2)}`;
  const query = `room=${room}&storage=memory`;
  let server = await keeping();
  try {
    // A page writes, the room's peer commits it, the page closes.
    const writer = await browser.newContext();
    const a = await openPeerPage(writer, server.url, query);
    await linked(a.page);
    const server_peer = await a.page.evaluate(() => window.cpc.peer.peers().find((p) => p.server));
    assert.equal(server_peer.state, "open");
    await a.page.evaluate(async () => {
      const peer = window.cpc.peer;
      await peer.set("title", "kept");
      await peer.increment("n", 3);
      await peer.add("tags", "a");
    });
    // Polled, not timed: until the server says the three are on its disk.
    while ((await reading(server, "cpc_signal_keep_events_persisted_total")) < 3) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await writer.close();
    await server.kill();

    server = await keeping();
    // A fresh page whose WebRTC is gone gets the writes from the server.
    const plain = await browser.newContext();
    await plain.addInitScript(() => {
      delete window.RTCPeerConnection;
      delete window.webkitRTCPeerConnection;
    });
    const b = await openPeerPage(plain, server.url, query);
    assert.equal(await b.page.evaluate(() => typeof window.RTCPeerConnection), "undefined");
    await b.page.waitForFunction(() => window.cpc.peer.get("title") === "kept", null, { timeout: 30_000 });
    assert.deepEqual(await b.page.evaluate(() => window.cpc.peer.state()), { n: 3, tags: ["a"], title: "kept" });

    // A page with WebRTC, in another context (no BroadcastChannel between
    // them): it and the page without sync both ways, through the server.
    const normal = await browser.newContext();
    const c = await openPeerPage(normal, server.url, query);
    await linked(c.page);
    await Promise.all([
      b.page.evaluate(() => window.cpc.peer.set("from-b", "no webrtc")),
      c.page.evaluate(() => window.cpc.peer.set("from-c", "webrtc")),
      b.page.evaluate(() => window.cpc.peer.increment("n", 1)),
      c.page.evaluate(() => window.cpc.peer.increment("n", 1)),
    ]);
    const [stateB, stateC] = await converged([b.page, c.page]);
    assert.deepEqual(stateB, { "from-b": "no webrtc", "from-c": "webrtc", n: 5, tags: ["a"], title: "kept" });
    assert.deepEqual(stateC, stateB);
    const peersOfB = await b.page.evaluate(() => window.cpc.peer.peers());
    assert.ok(!peersOfB.some((p) => p.id === c.id && p.state === "open"), "no direct link without WebRTC");
    assert.equal(peersOfB.filter((p) => p.server).length, 1);
    await plain.close();
    await normal.close();
  } finally {
    await server.stop();
  }
});
