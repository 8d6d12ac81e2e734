// The sealed relay of rooms with a secret: a page whose WebRTC is gone
// (RTCPeerConnection removed) and a page with WebRTC, in separate browser
// contexts (no BroadcastChannel between them), sync both ways through
// cpc-signal, which forwards frames it cannot read (the room peer never
// joins a secret room); and two pages whose ICE can never connect fall
// back to it. Real server process, real browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser, openPeerPage, connected, converged, reading } from "./harness.mjs";

const env = serverAndBrowser();

test("a secret room's page without WebRTC syncs both ways through the server's sealed relay", async () => {
  await env.ready;
  const room = `relay-${Math.random().toString(36).slice(2)}`;
  const query = `room=${room}&storage=memory#secret=k8Qv2-long-random-secret-3fZ`;
  const plain = await env.browser.newContext();
  await plain.addInitScript(() => {
    delete window.RTCPeerConnection;
    delete window.webkitRTCPeerConnection;
  });
  const normal = await env.browser.newContext();
  try {
    const a = await openPeerPage(plain, env.server.url, query);
    assert.equal(await a.page.evaluate(() => typeof window.RTCPeerConnection), "undefined");
    const b = await openPeerPage(normal, env.server.url, query);
    await connected(a.page, b.id);
    await connected(b.page, a.id);
    const before = await reading(env.server, "cpc_signal_relayed_frames_total");

    await Promise.all([
      a.page.evaluate(() => window.cpc.peer.set("from-a", "no webrtc")),
      b.page.evaluate(() => window.cpc.peer.set("from-b", "webrtc")),
      a.page.evaluate(() => window.cpc.peer.increment("n", 1)),
      b.page.evaluate(() => window.cpc.peer.increment("n", 2)),
    ]);
    const [stateA, stateB] = await converged([a.page, b.page]);
    assert.deepEqual(stateA, { "from-a": "no webrtc", "from-b": "webrtc", n: 3 });
    assert.deepEqual(stateB, stateA);

    // Each lists the other as one open, relayed link; no room peer.
    for (const [page, other] of [
      [a.page, b.id],
      [b.page, a.id],
    ]) {
      const peers = await page.evaluate(() => window.cpc.peer.peers());
      assert.deepEqual(
        peers.map((p) => [p.id, p.state, p.relayed]),
        [[other, "open", true]],
        JSON.stringify(peers),
      );
      assert.ok(!peers.some((p) => p.server));
    }
    // The writes went through the server, sealed.
    assert.ok((await reading(env.server, "cpc_signal_relayed_frames_total")) > before);
    assert.equal(await reading(env.server, 'cpc_signal_relay_refused_total{reason="not_joined"}'), 0);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await plain.close();
    await normal.close();
  }
});

test("two secret-room pages whose ICE never connects fall back to the relay", async () => {
  await env.ready;
  const room = `relay-ice-${Math.random().toString(36).slice(2)}`;
  // Every remote candidate is dropped: the connection is made, and stays
  // checking until the links time it out (as behind a strict NAT, no TURN).
  const noIce = async () => {
    const context = await env.browser.newContext();
    await context.addInitScript(() => {
      RTCPeerConnection.prototype.addIceCandidate = function () {
        return Promise.resolve();
      };
    });
    return context;
  };
  // Each page opens a peer of its own through the package's API, with
  // attempts of 2 s (`connectTimeoutMs`) instead of 15: the page's peer
  // stays alone in a tabs-only room.
  const open = async (context) => {
    const { page, errors } = await openPeerPage(context, env.server.url, `room=${room}-page&storage=memory&signaling=none`);
    const id = await page.evaluate(async (room) => {
      window.relayed = await window.cpc.module.Peer.open({
        room,
        secret: "k8Qv2-long-random-secret-3fZ",
        signaling: "/signal",
        storage: "memory",
        connectTimeoutMs: 2_000,
      });
      return window.relayed.id;
    }, room);
    return { page, errors, id };
  };
  const linked = (page, id, timeout) =>
    page.waitForFunction((id) => window.relayed.peers().some((p) => p.id === id && p.state === "open"), id, {
      timeout,
    });
  const [one, two] = [await noIce(), await noIce()];
  try {
    const a = await open(one);
    const b = await open(two);
    assert.equal(await a.page.evaluate(() => typeof window.RTCPeerConnection), "function");
    // Two attempts of 2 s each fail first (RELAY_AFTER), then the relay.
    await linked(a.page, b.id, 30_000);
    await linked(b.page, a.id, 10_000);
    await a.page.evaluate(() => window.relayed.set("k", "relayed after ICE failed"));
    await b.page.waitForFunction(() => window.relayed.get("k") === "relayed after ICE failed", null, {
      timeout: 30_000,
    });
    for (const page of [a.page, b.page]) {
      const peers = await page.evaluate(() => window.relayed.peers());
      assert.deepEqual(
        peers.map((p) => [p.state, p.relayed]),
        [["open", true]],
        JSON.stringify(peers),
      );
    }
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await one.close();
    await two.close();
  }
});
