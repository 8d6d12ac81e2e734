// Peers as people meet them: tabs of one browser with no server at all,
// two separate browsers through cpc-signal, and a tab that reloads. Every
// connection is a real RTCPeerConnection with a data channel.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  serverAndBrowser,
  startStaticServer,
  launch,
  openPeerPage,
  connected,
  converged,
} from "./harness.mjs";

const env = serverAndBrowser();
let plain;
before(async () => {
  plain = await startStaticServer();
});
after(async () => {
  await plain?.stop();
});

const room = (name) => `${name}-${Math.random().toString(36).slice(2)}`;

test("two tabs converge over BroadcastChannel + WebRTC with no signaling server", async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const query = `room=${room("tabs")}&signaling=none&storage=memory`;
  const a = await openPeerPage(context, plain.url, query);
  const b = await openPeerPage(context, plain.url, query);
  await connected(a.page, b.id);
  await connected(b.page, a.id);
  await a.page.evaluate(() => window.cpc.peer.set("title", "from a"));
  await b.page.evaluate(async () => {
    await window.cpc.peer.increment("n", 2);
    await window.cpc.peer.add("tags", "b");
  });
  const [stateA, stateB] = await converged([a.page, b.page]);
  assert.deepEqual(stateA, { n: 2, tags: ["b"], title: "from a" });
  assert.deepEqual(stateB, stateA);
  const peers = await a.page.evaluate(() => window.cpc.peer.peers());
  assert.equal(peers.length, 1);
  assert.equal(peers[0].state, "open");
  assert.equal(peers[0].rejected, 0);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await context.close();
});

test("two browser processes converge through cpc-signal", async () => {
  await env.ready;
  const other = await launch();
  try {
    const query = `room=${room("processes")}&storage=memory`;
    const a = await openPeerPage(env.browser, env.server.url, query);
    const b = await openPeerPage(other, env.server.url, query);
    await connected(a.page, b.id);
    await connected(b.page, a.id);
    await Promise.all([
      a.page.evaluate(() => window.cpc.peer.set("from-a", 1)),
      b.page.evaluate(() => window.cpc.peer.set("from-b", 2)),
      a.page.evaluate(() => window.cpc.peer.increment("both", 1)),
      b.page.evaluate(() => window.cpc.peer.increment("both", 1)),
    ]);
    const [stateA, stateB] = await converged([a.page, b.page]);
    assert.deepEqual(stateA, { both: 2, "from-a": 1, "from-b": 2 });
    assert.deepEqual(stateB, stateA);
    assert.deepEqual([...a.errors, ...b.errors], []);
    await a.page.close();
  } finally {
    await other.close();
  }
});

test("a reloaded tab keeps its id and state, then catches up", async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const query = `room=${room("reload")}`;
  const a = await openPeerPage(context, env.server.url, query);
  const b = await openPeerPage(context, env.server.url, query);
  await connected(a.page, b.id);
  await a.page.evaluate(() => window.cpc.peer.set("before", "reload"));
  await converged([a.page, b.page]);

  await a.page.evaluate(() => window.cpc.peer.close());
  await a.page.reload();
  // While a reloads, b writes.
  await b.page.evaluate(() => window.cpc.peer.set("during", "reload"));
  await a.page.waitForSelector("body[data-ready=true]");
  const id = await a.page.evaluate(() => window.cpc.peer.id);
  assert.equal(id, a.id, "the reloaded tab gets its identity back");
  const [state] = await converged([a.page, b.page]);
  assert.deepEqual(state, { before: "reload", during: "reload" });
  await context.close();
});
