// IndexedDB persistence and identity slots, as a person meets them: reload
// a tab and its peer comes back with the same id and state; a second open
// tab of the same room is another peer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { ENGINE, serverAndBrowser, startServer } from "./harness.mjs";

const env = serverAndBrowser();


/** A new tab of `context` on the page, its wasm ready. */
async function readyTab(context) {
  const tab = await context.newPage();
  await tab.goto(env.server.url);
  await tab.waitForSelector("body[data-ready=true]");
  return tab;
}

const open = (page, room) =>
  page.evaluate(async (room) => {
    window.peer = await window.cpc.module.Peer.open({ room });
    return { id: window.peer.id, state: window.peer.state(), clock: window.peer.clock() };
  }, room);

test("a reloaded tab keeps its id and state; two open tabs are two peers", async () => {
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  const first = await open(tab, "persist");
  assert.deepEqual(first.state, {});
  await tab.evaluate(async () => {
    // Writes of one tick share one transaction; each promise resolves once
    // it has committed.
    await Promise.all([
      window.peer.set("title", "kept"),
      window.peer.increment("visits", 1),
      window.peer.add("tags", "x"),
    ]);
    await window.peer.increment("visits", 1);
  });

  const other = await context.newPage();
  await other.goto(env.server.url);
  await other.waitForSelector("body[data-ready=true]");
  const second = await open(other, "persist");
  assert.notEqual(second.id, first.id, "an open tab's identity is not shared");
  assert.deepEqual(second.state, {}, "each slot has its own store until sync");

  await tab.reload();
  await tab.waitForSelector("body[data-ready=true]");
  const again = await open(tab, "persist");
  assert.equal(again.id, first.id, "the reloaded tab gets its identity back");
  assert.deepEqual(again.state, { tags: ["x"], title: "kept", visits: 2 });
  assert.deepEqual(again.clock, { [first.id]: 4 });
  await context.close();
});

// Tab B holds slot 1 and writes while offline; tab A (slot 0) closes; B
// reloads. Taking the lowest free slot, B came back as A, with A's state,
// and its own offline write was hidden until another tab opened slot 1.
// A tab asks for the slot it held first (kept in its sessionStorage).
test("a reloaded tab gets its own slot back after a lower one came free", async () => {
  const context = await env.browser.newContext();
  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const tab = await readyTab(context);
    tabs.push({ tab, ...(await open(tab, "slots")) });
  }
  const [a, b] = tabs;
  assert.notEqual(a.id, b.id);
  await b.tab.evaluate(async () => {
    window.peer.goOffline();
    await window.peer.set("offline/b", "kept");
  });
  await a.tab.close();
  await b.tab.reload();
  await b.tab.waitForSelector("body[data-ready=true]");
  const again = await open(b.tab, "slots");
  assert.equal(again.id, b.id, "the reloaded tab is the peer it was");
  assert.equal(again.state["offline/b"], "kept", "its offline write is there");
  // A new tab takes the slot A left.
  const fresh = await context.newPage();
  await fresh.goto(env.server.url);
  await fresh.waitForSelector("body[data-ready=true]");
  assert.equal((await open(fresh, "slots")).id, a.id, "a new tab takes the lowest free slot");
  await context.close();
});

// An app that closes its peer and opens the room again without awaiting
// the close (React's StrictMode mounting twice, a route change, a hot
// reload) got the next free slot: another identity, and none of the
// writes it had just made durable. A peer opened while one of the same
// room is closing in this page waits for it and takes its slot.
test("a room closed and opened again at once in one tab is the same peer with its data", async () => {
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  const seen = await tab.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const first = await Peer.open({ room: "remount" });
    await first.set("k", "kept");
    first.close(); // not awaited
    const second = await Peer.open({ room: "remount" });
    const seen = { same: second.id === first.id, k: second.get("k") };
    await second.close();
    return seen;
  });
  assert.deepEqual(seen, { same: true, k: "kept" });
  await context.close();
});

// StrictMode as an effect writes it: a peer whose open has not resolved
// cannot be closed yet, so it is closed once it opens, and the second
// mount opens again in the same task. That second open took the next
// identity slot while the first held the tab's, and the tab remembered
// it: each reload went back and forth between two peers, every other one
// showing an empty state (a review).
test("StrictMode's open, close once open, open again keeps the tab's peer and its data over reloads", async () => {
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  const first = await tab.evaluate(async () => {
    const p = await window.cpc.module.Peer.open({ room: "strict" });
    await p.set("k", "kept");
    await p.close();
    return p.id;
  });
  const visits = [];
  for (let visit = 0; visit < 2; visit++) {
    await tab.reload();
    await tab.waitForSelector("body[data-ready=true]");
    visits.push(
      await tab.evaluate(async () => {
        const { Peer } = window.cpc.module;
        let opening = Peer.open({ room: "strict" }); // mount
        opening.then((p) => p.close()); // StrictMode's unmount
        opening = Peer.open({ room: "strict" }); // mount again
        const p = await opening;
        const seen = { id: p.id, k: p.get("k") ?? null };
        await p.close();
        return seen;
      }),
    );
  }
  assert.deepEqual(visits, [
    { id: first, k: "kept" },
    { id: first, k: "kept" },
  ]);
  await context.close();
});

// A write made while close() ran was taken, never settled, and lost: an app
// awaiting it (a component unmounting) hung.
test("a write while close() runs is refused at once; what came before is kept", async () => {
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  const seen = await tab.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const first = await Peer.open({ room: "closing-write" });
    const before = first.set("a", 1); // still committing
    const closed = first.close();
    const during = await first.set("b", 2).then(
      () => "resolved",
      (e) => e.code,
    );
    await Promise.all([before, closed]);
    const second = await Peer.open({ room: "closing-write" });
    const state = second.state();
    await second.close();
    return { during, state };
  });
  assert.deepEqual(seen, { during: "CLOSED", state: { a: 1 } });
  await context.close();
});

// The browser deletes a page's database under it when the user clears the
// site's data (or a response says `Clear-Site-Data`): its connection
// closes, and every later commit failed ("the database connection is
// closing"). Each write was rejected yet stayed in the state, went to no
// one (no frame leaves before its write is durable) and was gone after a
// reload, and an "error" came with every write. The database is made anew
// and given the whole state with the next write, which resolves.
test("a tab whose database is deleted under it stores its state again with its next write", async (t) => {
  if (ENGINE !== "chromium") return t.skip("deletes the database through Chromium's DevTools protocol");
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  const first = await open(tab, "cleared");
  await tab.evaluate(async () => {
    window.errors = [];
    window.peer.addEventListener("error", (e) => window.errors.push(e.error.message));
    await window.peer.set("before", 1);
  });
  const cdp = await context.newCDPSession(tab);
  await cdp.send("Storage.clearDataForOrigin", { origin: new URL(env.server.url).origin, storageTypes: "indexeddb" });
  const errors = await tab.evaluate(async () => {
    await window.peer.set("after", 2);
    await window.peer.set("later", 3);
    return window.errors;
  });
  assert.deepEqual(errors, [], "the writes resolve, and no error is told");
  await tab.reload();
  await tab.waitForSelector("body[data-ready=true]");
  const again = await open(tab, "cleared");
  assert.equal(again.id, first.id, "the identity was stored again with the state");
  assert.deepEqual(again.state, { after: 2, before: 1, later: 3 });
  assert.deepEqual(again.clock, { [first.id]: 3 });
  await context.close();
});

// A tab of a newer build opening the room's database at a higher version
// waited for this tab's connection, which nothing closed: its Peer.open
// hung for as long as this tab lived, in silence (a review). This tab now
// lets the database go when asked, and its next write says why it cannot
// be stored (the database is of a version it does not know).
test("a newer build's tab upgrading the database is not blocked by this tab, whose next write says so", async () => {
  const context = await env.browser.newContext();
  const tab = await readyTab(context);
  await open(tab, "upgraded");
  await tab.evaluate(() => window.peer.set("before", 1));
  const other = await readyTab(context);
  const upgraded = await other.evaluate(async () => {
    const db = (await indexedDB.databases()).find((d) => d.name.includes(":upgraded:"));
    return new Promise((resolve) => {
      const req = indexedDB.open(db.name, db.version + 1);
      req.onblocked = () => resolve("blocked");
      req.onsuccess = () => {
        req.result.close();
        resolve("upgraded");
      };
      req.onerror = () => resolve(String(req.error));
    });
  });
  assert.equal(upgraded, "upgraded");
  const write = await tab.evaluate(() =>
    window.peer.set("after", 2).then(
      () => "resolved",
      (e) => `${e.code}: ${e.message}`,
    ),
  );
  assert.match(write, /^STORAGE: .*version/i);
  await context.close();
});

/** This machine's first non-loopback IPv4 address, if it has one. */
function lanAddress() {
  const all = Object.values(networkInterfaces()).flat();
  return all.find((a) => a.family === "IPv4" && !a.internal)?.address;
}

// A page on plain http at a LAN address (the README's HOST=0.0.0.0) is no
// secure context: no Web Locks, so no identity slot can be held. Two tabs
// must still be two peers (one stored identity shared would reuse its
// sequence numbers); each keeps its state in memory and gets it back from
// the other.
test("without Web Locks (plain http on a LAN address) every tab is its own peer", async (t) => {
  const address = lanAddress();
  if (!address) return t.skip("this machine has no non-loopback IPv4 address");
  const server = await startServer(0, { HOST: "0.0.0.0" });
  const url = server.url.replace("0.0.0.0", address);
  const context = await env.browser.newContext();
  try {
    const tabs = [];
    for (let i = 0; i < 2; i++) {
      const tab = await context.newPage();
      const warnings = [];
      tab.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
      await tab.goto(url);
      await tab.waitForSelector("body[data-ready=true]");
      assert.equal(await tab.evaluate(() => window.isSecureContext), false, "not a secure context");
      tabs.push({ tab, warnings, ...(await open(tab, "lan")) });
    }
    const [a, b] = tabs;
    assert.notEqual(a.id, b.id, "two tabs, two peers");
    assert.ok(a.warnings.some((w) => w.includes("no Web Locks")), `a warning: ${a.warnings}`);
    await a.tab.evaluate(() => window.peer.set("from-a", 1));
    await b.tab.evaluate(() => window.peer.set("from-b", 2));
    const both = { "from-a": 1, "from-b": 2 };
    for (const { tab } of tabs) {
      await tab.waitForFunction((want) => JSON.stringify(window.peer.state()) === want, JSON.stringify(both), {
        timeout: 30_000,
      });
    }
    // Reloaded, the tab is a new peer, and gets the room back from the other.
    await a.tab.reload();
    await a.tab.waitForSelector("body[data-ready=true]");
    const again = await open(a.tab, "lan");
    assert.notEqual(again.id, a.id, "no identity is kept without a lock");
    assert.notEqual(again.id, b.id);
    await a.tab.waitForFunction((want) => JSON.stringify(window.peer.state()) === want, JSON.stringify(both), {
      timeout: 30_000,
    });
  } finally {
    await context.close();
    await server.stop();
  }
});
