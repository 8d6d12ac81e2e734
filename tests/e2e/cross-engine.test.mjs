// Engines talking to each other: a page of every engine the suite knows
// (Chromium and Firefox) in one room, meeting only through a real
// cpc-signal and connected by a real RTCPeerConnection between the two
// browsers' WebRTC stacks. The room has a secret, so both engines derive
// the same room key (Argon2id, in wasm) and room name.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ENGINES, launch, startServer, openPage, openPeerPage, connected, converged } from "./harness.mjs";

let server;
/** One browser per engine, in ENGINES' order. */
let browsers = [];

before(async () => {
  server = await startServer();
  browsers = await Promise.all(ENGINES.map((engine) => launch(engine)));
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  await server?.stop();
});

const room = (name) => `${name}-${Math.random().toString(36).slice(2)}`;
const sibling = (key, n) => `#conflicts-card article[data-key="${key}"] .sibling:nth-child(${n})`;

test("a page of each engine in a secret room: writes both ways, a conflict shown on both, settled on one", async () => {
  const query = `room=${room("engines")}&storage=memory#secret=cross-engine-${Math.random().toString(36).slice(2)}`;
  const pages = [];
  for (const browser of browsers) pages.push(await openPeerPage(browser, server.url, query));
  const [x, y] = pages;
  await connected(x.page, y.id);
  await connected(y.page, x.id);

  await Promise.all([
    x.page.evaluate(async () => {
      const p = window.cpc.peer;
      await Promise.all([p.set("from-x", { text: "hello" }), p.increment("n", 2), p.add("tags", "x")]);
    }),
    y.page.evaluate(async () => {
      const p = window.cpc.peer;
      await Promise.all([p.set("from-y", [1, 2]), p.increment("n", 3), p.add("tags", "y")]);
    }),
  ]);
  const [stateX, stateY] = await converged([x.page, y.page]);
  assert.deepEqual(stateX, { "from-x": { text: "hello" }, "from-y": [1, 2], n: 5, tags: ["x", "y"] });
  assert.deepEqual(stateY, stateX);

  // Concurrent writes under "multi-value", made apart: both keep both.
  await x.page.evaluate(() => window.cpc.peer.setPolicy("doc/", "multi-value"));
  await converged([x.page, y.page]);
  await Promise.all(pages.map((p) => p.page.evaluate(() => window.cpc.peer.goOffline())));
  await Promise.all(pages.map((p) => p.page.evaluate((id) => window.cpc.peer.set("doc/title", `by ${id}`), p.id)));
  await Promise.all(pages.map((p) => p.page.evaluate(() => window.cpc.peer.goOnline())));
  for (const p of pages) await p.page.waitForSelector(sibling("doc/title", 2), { timeout: 30_000 });
  const shown = await Promise.all(
    pages.map((p) =>
      p.page.evaluate(() => window.cpc.peer.conflicts().map((c) => c.candidates.map((k) => k.value).sort())),
    ),
  );
  for (const list of shown) assert.deepEqual(list, [[`by ${x.id}`, `by ${y.id}`].sort()]);

  // Settled with the page's own button in the second engine's page.
  await y.page.click(`${sibling("doc/title", 1)} button[data-action="keep"]`);
  for (const p of pages) {
    await p.page.waitForFunction(() => window.cpc.peer.conflicts().length === 0, null, { timeout: 30_000 });
  }
  const [settled] = await converged([x.page, y.page]);
  assert.equal(settled["doc/title"], shown[1][0][0]);
  assert.deepEqual([...x.errors, ...y.errors], []);
  for (const p of pages) await p.page.close();
});

// A peer folds its log into a snapshot (past 4 x compactAfter events, at
// its next tick); a newcomer behind that gets the snapshot, in 60 KiB
// chunks, not the log.
for (const [from, to] of [[0, 1], [1, 0]]) {
  test(`a snapshot crosses from ${ENGINES[from]} to ${ENGINES[to]}`, async () => {
    const options = { room: room("snapshot"), signaling: new URL("/signal", server.url).href.replace(/^http/, "ws") };
    const open = async (browser) => {
      const { page, errors } = await openPage(browser, `${server.url}?signaling=none&storage=memory`);
      await page.waitForSelector("body[data-ready=true]");
      await page.evaluate(async (options) => {
        window.p = await window.cpc.module.Peer.open({ ...options, storage: "memory", compactAfter: 100 });
        window.chunks = [];
        window.p.addEventListener("snapshot", (e) => window.chunks.push([e.received, e.total, e.peer]));
      }, options);
      return { page, errors, id: await page.evaluate(() => window.p.id) };
    };
    const sender = await open(browsers[from]);
    await sender.page.evaluate(async (options) => {
      // A peer takes the writes as they come and goes, so that the fold
      // takes them all (alone, a peer keeps its latest own writes, which
      // no peer has, in its log).
      const witness = await window.cpc.module.Peer.open({ ...options, storage: "memory" });
      const writes = [];
      // Random text: a snapshot of it does not gzip below a few chunks.
      const text = () => [...crypto.getRandomValues(new Uint8Array(300))].map((b) => b.toString(16)).join("");
      for (let i = 0; i < 1000; i++) writes.push(window.p.set(`k${i}`, text()));
      await Promise.all(writes);
      while (witness.digest() !== window.p.digest()) await new Promise((r) => setTimeout(r, 20));
      await witness.close();
    }, options);
    // Two ticks: the fold, then quiet.
    await sender.page.waitForTimeout(2500);
    const receiver = await open(browsers[to]);
    await receiver.page.waitForFunction(
      (id) => window.p.peers().some((p) => p.id === id && p.state === "open"),
      sender.id,
      { timeout: 30_000 },
    );
    const digest = await sender.page.evaluate(() => window.p.digest());
    await receiver.page.waitForFunction((d) => window.p.digest() === d, digest, { timeout: 30_000 });
    const chunks = await receiver.page.evaluate(() => window.chunks);
    assert.ok(chunks.length >= 3, `a snapshot in chunks, not the log: ${JSON.stringify(chunks)}`);
    const [received, total, peer] = chunks.at(-1);
    assert.equal(received, total);
    assert.equal(peer, sender.id);
    assert.equal(await receiver.page.evaluate(() => Object.keys(window.p.state()).length), 1000);
    assert.deepEqual([...sender.errors, ...receiver.errors], []);
    for (const p of [sender, receiver]) await p.page.close();
  });
}
