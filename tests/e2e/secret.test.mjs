// Rooms with a secret, through the real cpc-signal and separate browser
// contexts (no shared BroadcastChannel or storage): pages with the secret
// sync; a page with another secret, or none, never sees the room's state;
// the server never learns the room's name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser, openPeerPage, connected, converged } from "./harness.mjs";

const env = serverAndBrowser();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("only pages with the room's secret join it and read it", async () => {
  await env.ready;
  const room = `secret-${Math.random().toString(36).slice(2)}`;
  const secret = "k8Qv2-long-random-secret-3fZ";
  const open = async (hash) => {
    const context = await env.browser.newContext();
    const peer = await openPeerPage(context, env.server.url, `room=${room}&storage=memory${hash}`);
    return { ...peer, context };
  };
  const a = await open(`#secret=${secret}`);
  const b = await open(`#secret=${secret}`);
  const wrong = await open("#secret=a-guess");
  const none = await open("");

  await connected(a.page, b.id);
  await a.page.evaluate(() => window.cpc.peer.set("plan", "private"));
  const [stateA, stateB] = await converged([a.page, b.page]);
  assert.deepEqual(stateB, { plan: "private" });
  assert.deepEqual(stateA, stateB);

  // The others had as long as the two took, and more.
  await sleep(3000);
  for (const outsider of [wrong, none]) {
    const seen = await outsider.page.evaluate(() => ({
      state: window.cpc.peer.state(),
      peers: window.cpc.peer.peers().map((p) => p.id),
    }));
    assert.deepEqual(seen.state, {}, "an outsider read the room");
    assert.ok(!seen.peers.includes(a.id) && !seen.peers.includes(b.id), JSON.stringify(seen.peers));
  }
  const insiders = await a.page.evaluate(() => window.cpc.peer.peers().map((p) => p.id));
  assert.deepEqual(insiders, [b.id]);

  // A socket joining the room's name on the server finds only the page
  // without a secret: the secret room is under another, opaque name.
  const present = await a.page.evaluate(
    (room) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace("http", "ws")}/signal`);
        ws.onopen = () => ws.send(JSON.stringify({ type: "join", room, peer: "ffff" }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === "peers") {
            ws.close();
            resolve(m.peers);
          }
        };
        ws.onerror = reject;
      }),
    room,
  );
  assert.deepEqual(present, [none.id]);

  assert.deepEqual([...a.errors, ...b.errors], []);
  for (const p of [a, b, wrong, none]) await p.context.close();
});
