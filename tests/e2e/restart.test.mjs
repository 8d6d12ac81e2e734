// The signaling server goes away and comes back on the same address: the
// peers' sockets reconnect on their own (the core's backoff says when) and
// join again, so a peer that arrives afterwards, in another browser process
// (no BroadcastChannel to fall back on), still finds them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, launch, openPeerPage, connected, converged } from "./harness.mjs";

test("after cpc-signal restarts, its peers rejoin and a newcomer reaches them", async () => {
  let server = await startServer();
  const port = new URL(server.url).port;
  const [first, second] = await Promise.all([launch(), launch()]);
  try {
    const query = `room=restart-${Math.random().toString(36).slice(2)}&storage=memory`;
    const a = await openPeerPage(first, server.url, query);
    await a.page.evaluate(() => window.cpc.peer.set("before", 1));

    await server.stop();
    // Let a reconnect or two fail against the closed port.
    await new Promise((r) => setTimeout(r, 1500));
    server = await startServer(port);

    const c = await openPeerPage(second, server.url, query);
    await connected(c.page, a.id);
    await connected(a.page, c.id);
    await c.page.evaluate(() => window.cpc.peer.set("after", 2));
    const [stateA, stateC] = await converged([a.page, c.page]);
    assert.deepEqual(stateA, { after: 2, before: 1 });
    assert.deepEqual(stateC, stateA);
    assert.deepEqual(c.errors, []);
  } finally {
    await Promise.all([first.close(), second.close()]);
    await server.stop();
  }
});

/** A page of a fresh room named after `name` in each of two browsers (no
 * BroadcastChannel between them), linked over WebRTC through `url`. */
async function linkedPages(browsers, url, name) {
  const query = `room=${name}-${Math.random().toString(36).slice(2)}&storage=memory`;
  const [a, b] = [await openPeerPage(browsers[0], url, query), await openPeerPage(browsers[1], url, query)];
  await connected(a.page, b.id);
  await connected(b.page, a.id);
  return [a, b];
}

// A server stopping (SIGTERM: a deploy) closed every socket with a `left`
// for each of the room's members, and the pages closed their WebRTC links
// to one another, which need no server: they were cut off from each other
// until it was back and they had linked again. A stopping server tells no
// one that anyone left; the links stay, and writes cross them meanwhile.
test("pages linked over WebRTC stay linked and in sync while cpc-signal is stopped", async () => {
  const server = await startServer();
  const [first, second] = await Promise.all([launch(), launch()]);
  try {
    const [a, b] = await linkedPages([first, second], server.url, "deploy");
    await server.stop();
    await a.page.evaluate(() => window.cpc.peer.set("during", 1));
    const [stateA, stateB] = await converged([a.page, b.page], 10_000);
    assert.deepEqual(stateA, { during: 1 });
    assert.deepEqual(stateB, stateA);
    const linked = await a.page.evaluate((id) => window.cpc.peer.peers().some((p) => p.id === id && p.state === "open"), b.id);
    assert.ok(linked, "the link outlived the server");
  } finally {
    await Promise.all([first.close(), second.close()]);
    await server.stop();
  }
});

// A server back from a crash knows no one: the first page to join again
// was told a room without the others, closed its open links to them and
// dialed each again as it joined. A page linked with a peer keeps the link.
test("after cpc-signal comes back, pages linked over WebRTC keep their links", async () => {
  let server = await startServer();
  const port = new URL(server.url).port;
  const [first, second] = await Promise.all([launch(), launch()]);
  try {
    const [a, b] = await linkedPages([first, second], server.url, "rejoin");
    for (const { page } of [a, b]) {
      await page.evaluate(() => {
        window.closes = [];
        window.cpc.peer.addEventListener("peer", (e) => e.state !== "open" && window.closes.push(e.peer));
      });
    }
    await server.kill();
    server = await startServer(port);
    // Both sockets join again (their backoff: a few seconds).
    await new Promise((r) => setTimeout(r, 8000));
    await a.page.evaluate(() => window.cpc.peer.set("after", 1));
    await converged([a.page, b.page], 10_000);
    assert.deepEqual(await a.page.evaluate(() => window.closes), [], "a kept its link to b");
    assert.deepEqual(await b.page.evaluate(() => window.closes), [], "b kept its link to a");
  } finally {
    await Promise.all([first.close(), second.close()]);
    await server.stop();
  }
});
