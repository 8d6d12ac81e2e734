// The browser peer's storage where it fails: tabs crashed at each point of
// a write's life, browsers that lack what storage uses (CompressionStream,
// Web Locks for the page's origin), tabs racing for identity slots. What a
// write's promise resolved is kept, and no sequence number is made twice.
// Chromium only (it crashes pages through CDP).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, startStaticServer, moduleTab as openModuleTab } from "./harness.mjs";

let site;
let browser;
before(async () => {
  site = await startStaticServer();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await site?.stop();
});

/** A tab with the wasm loaded (the page's own peer in memory, alone). */
const moduleTab = (context) => openModuleTab(context, site.url);

// Firefox 89-112 (ESR 102 among them) run the wasm (128-bit SIMD since 89)
// but have no CompressionStream (since 113); Peer.open took notice
// (gzip_snapshots: false), yet storage gzipped every snapshot it committed. A
// fold (here: a compaction; also close(), and a snapshot a newcomer is sent)
// then failed its commit, the snapshot stayed queued at the head of the
// queue, and every later commit carried it and failed too: each write from
// then on was rejected, and none reached another peer (a review).
test("without CompressionStream, writes after a fold still commit", async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    delete globalThis.CompressionStream;
    delete globalThis.DecompressionStream;
    // Nor in workers: the page's workers are scripts from a Blob.
    const objectUrl = URL.createObjectURL;
    URL.createObjectURL = (blob) =>
      objectUrl.call(
        URL,
        blob instanceof Blob
          ? new Blob(["delete self.CompressionStream; delete self.DecompressionStream;\n", blob], { type: blob.type })
          : blob,
      );
  });
  const tab = await moduleTab(context);
  const room = `nogzip-${Math.random().toString(36).slice(2)}`;
  const seen = await tab.evaluate(async (room) => {
    const { Peer } = window.cpc.module;
    const peer = await Peer.open({ room, signaling: "none", compactAfter: 10 });
    window.peer = peer;
    for (let i = 0; i < 20; i++) await peer.set(`k${i}`, i);
    // The node folds once it is quiet for a gossip interval.
    await new Promise((r) => setTimeout(r, 3000));
    const after = [];
    for (let i = 0; i < 3; i++) {
      after.push(await peer.set(`late${i}`, i).then(() => "resolved", (e) => `${e.code}: ${e.message}`));
    }
    const closed = await peer.close().then(() => "closed", (e) => `${e.code}: ${e.message}`);
    return { after, closed };
  }, room);
  assert.deepEqual(seen, { after: ["resolved", "resolved", "resolved"], closed: "closed" });
  await tab.reload();
  await tab.waitForFunction(() => window.cpc?.module);
  const state = await tab.evaluate(async (room) => (await window.cpc.module.Peer.open({ room, signaling: "none" })).state(), room);
  assert.equal(Object.keys(state).length, 23, "every write is back after a reload");
  await context.close();
});

// A page whose origin is opaque (a sandboxed iframe or a `sandbox` CSP,
// as code playgrounds and embeds use) or whose storage the user blocked:
// Web Locks exists (a secure context) but `navigator.locks.request`
// rejects with a SecurityError, and never calls its callback. `try_slot`
// waited for the callback only: Peer.open never settled, neither opening a
// peer nor telling the app why (a review). It opens in memory now, as
// where there are no Web Locks.
test("Peer.open settles where Web Locks refuse the page (an opaque origin)", async () => {
  const http = await import("node:http");
  const { readFile } = await import("node:fs/promises");
  const path = await import("node:path");
  const { root } = await import("./harness.mjs");
  const page = `<!doctype html><script type="module">
    import init, * as cpc from "/pkg/cpc_sync.js";
    window.run = async () => {
      await init();
      const result = await Promise.race([
        cpc.Peer.open({ room: "sandboxed" }).then((p) => "opened " + p.id, (e) => "rejected " + e.code),
        new Promise((r) => setTimeout(() => r("still pending after 10 s"), 10000)),
      ]);
      const lock = await navigator.locks.request("probe", { ifAvailable: true }, () => "granted").catch((e) => e.name);
      return { origin: origin, secure: isSecureContext, lock, result };
    };
  </script>`;
  const server = http.createServer(async (req, res) => {
    if (req.url.startsWith("/pkg/")) {
      const body = await readFile(path.join(root, req.url));
      res.writeHead(200, {
        "content-type": req.url.endsWith(".wasm") ? "application/wasm" : "text/javascript",
        "access-control-allow-origin": "*",
      });
      return res.end(body);
    }
    res.writeHead(200, { "content-type": "text/html", "content-security-policy": "sandbox allow-scripts" });
    res.end(page);
  });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.run);
    const seen = await tab.evaluate(() => window.run());
    assert.match(seen.result, /^opened [0-9a-f]{16}$/, JSON.stringify(seen));
  } finally {
    await context.close();
    server.close();
  }
});

// A page the browser refuses IndexedDB (storage blocked for the site, an
// embed's partitioned or opaque origin, an older Firefox's private
// window) while Web Locks work: Peer.open rejected with STORAGE, and the
// app had no peer at all. Such a page holds nothing stored, so it opens
// in memory as a page without Web Locks does, and says so in the console.
for (const [how, refuse] of [
  ["throws a SecurityError", () => {
    Object.defineProperty(window, "indexedDB", {
      configurable: true,
      get() {
        throw new DOMException("The user denied permission to access the database.", "SecurityError");
      },
    });
  }],
  ["is missing", () => {
    Object.defineProperty(window, "indexedDB", { configurable: true, value: undefined });
  }],
  ["fails its open with an InvalidStateError", () => {
    const open = IDBFactory.prototype.open;
    IDBFactory.prototype.open = function (...args) {
      const req = open.apply(this, args);
      const fail = new DOMException("A mutation operation was attempted on a database that did not allow mutations.", "InvalidStateError");
      Object.defineProperty(req, "error", { get: () => fail });
      req.addEventListener("success", (e) => {
        e.stopImmediatePropagation();
        e.target.result.close();
        req.onerror?.(new Event("error"));
      }, { capture: true, once: true });
      return req;
    };
  }],
]) {
  test(`where the page's indexedDB ${how}, Peer.open opens in memory`, async () => {
    const context = await browser.newContext();
    await context.addInitScript(refuse);
    const tab = await moduleTab(context);
    const warnings = [];
    tab.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
    const seen = await tab.evaluate(async () => {
      const room = `noidb-${Math.random().toString(36).slice(2)}`;
      try {
        const peer = await window.cpc.module.Peer.open({ room, signaling: "none" });
        await peer.set("k", 1);
        const state = peer.state();
        const storage = peer.storage;
        await peer.close();
        return { state, storage };
      } catch (e) {
        return { rejected: `${e.code}: ${e.message}` };
      }
    });
    assert.deepEqual(seen, { state: { k: 1 }, storage: "memory" });
    assert.ok(warnings.some((w) => w.includes("may not use IndexedDB")), `a warning: ${warnings}`);
    await context.close();
  });
}

/** Crashes `tab`'s renderer (as an out-of-memory kill would). */
async function crash(context, tab) {
  const cdp = await context.newCDPSession(tab);
  const crashed = new Promise((r) => tab.once("crash", r));
  cdp.send("Page.crash").catch(() => {}); // never answered
  await crashed;
}

const openPeer = (tab, room, extra = {}) =>
  tab.evaluate(
    async ({ room, extra }) => {
      window.peer = await window.cpc.module.Peer.open({ room, signaling: "none", ...extra });
      return { id: window.peer.id, state: window.peer.state(), clock: window.peer.clock() };
    },
    { room, extra },
  );

// A tab killed at each point of a write's life, with a second tab of the
// room watching: what resolved is back after the crash and reaches the
// other tab; what had not resolved may be gone, but its sequence number was
// never seen by the other tab (no equivocation once the crashed tab writes
// again).
for (const when of ["after set() resolved", "with a large write in flight", "during close()'s fold (200 writes not yet committed)"]) {
  test(`a tab crashed ${when} loses nothing it promised and never equivocates`, async () => {
    const context = await browser.newContext();
    const room = `crash-${Math.random().toString(36).slice(2)}`;
    const a = await moduleTab(context);
    const b = await moduleTab(context);
    const first = await openPeer(a, room);
    await openPeer(b, room);
    await a.evaluate(async () => {
      for (let i = 0; i < 5; i++) await window.peer.set(`kept${i}`, i);
    });
    await b.waitForFunction(() => window.peer.get("kept4") === 4, null, { timeout: 30_000 });
    if (when === "after set() resolved") {
      await a.evaluate(() => window.peer.set("resolved", "yes"));
    } else if (when === "with a large write in flight") {
      await a.evaluate(() => {
        window.peer.set("big", "x".repeat(6 << 20));
      });
    } else {
      await a.evaluate(async () => {
        await window.peer.set("resolved", "yes");
        for (let i = 0; i < 200; i++) window.peer.set(`bulk${i}`, "y".repeat(1000));
        window.peer.close();
      });
    }
    await crash(context, a);
    const again = await moduleTab(context);
    const reopened = await openPeer(again, room);
    assert.equal(reopened.id, first.id, "the crashed tab's slot and identity");
    console.log(when, "reopened with", Object.keys(reopened.state).length, "keys", reopened.clock);
    if (when !== "with a large write in flight") {
      assert.equal(reopened.state.resolved, "yes", `a resolved write is back: ${JSON.stringify(reopened.clock)}`);
    }
    await again.evaluate(() => window.peer.set("after", "crash"));
    await b.waitForFunction(() => window.peer.get("after") === "crash", null, { timeout: 30_000 });
    const seen = await b.evaluate(
      (id) => ({
        state: window.peer.state(),
        rejected: window.peer.peers().map((p) => [p.id === id, p.rejected, p.lastError]),
      }),
      first.id,
    );
    assert.ok(seen.rejected.every(([, rejected]) => !rejected), JSON.stringify(seen.rejected));
    if (when !== "with a large write in flight") assert.equal(seen.state.resolved, "yes");
    await context.close();
  });
}

// A newcomer is sent a snapshot (the other tab folded its log); it writes
// while the snapshot arrives, and crashes at once after its write
// resolved. Reopened, its write is there, the room's state comes back,
// and the other tab has its write with no equivocation.
test("a newcomer crashed during a snapshot transfer keeps its resolved write", async () => {
  const context = await browser.newContext();
  const room = `transfer-${Math.random().toString(36).slice(2)}`;
  const b = await moduleTab(context);
  await openPeer(b, room, { compactAfter: 100 });
  await b.evaluate(async () => {
    const big = "v".repeat(200);
    for (let i = 0; i < 20000; i++) window.peer.set(`key${i}`, `${big}${i}`);
    await window.peer.set("last", 1);
  });
  await new Promise((r) => setTimeout(r, 4000)); // b folds once quiet
  const a = await moduleTab(context);
  const first = await a.evaluate(async (room) => {
    window.snapshots = [];
    const peer = await window.cpc.module.Peer.open({ room, signaling: "none" });
    window.peer = peer;
    peer.addEventListener("snapshot", (e) => window.snapshots.push([e.received, e.total]));
    return peer.id;
  }, room);
  await a.waitForFunction(() => window.snapshots.length > 0, null, { timeout: 30_000 });
  const mid = await a.evaluate(async () => {
    await window.peer.set("mine", "during the transfer");
    return { snapshots: window.snapshots.length, keys: Object.keys(window.peer.state()).length, clock: window.peer.clock() };
  });
  console.log("at the crash", mid);
  await crash(context, a);
  const again = await moduleTab(context);
  const reopened = await openPeer(again, room);
  assert.equal(reopened.id, first);
  assert.equal(reopened.state.mine, "during the transfer", JSON.stringify(reopened.clock));
  await again.waitForFunction(() => Object.keys(window.peer.state()).length === 20002, null, { timeout: 60_000 });
  await b.waitForFunction(() => window.peer.get("mine") === "during the transfer", null, { timeout: 30_000 });
  const rejected = await b.evaluate(() => window.peer.peers().map((p) => [p.rejected, p.lastError]));
  assert.ok(rejected.every(([r]) => !r), JSON.stringify(rejected));
  await context.close();
});

// Tabs opening the same room at the same moment, and a tab reloading
// while a new one opens: never two open peers with one identity.
test("tabs racing for identity slots never share one", async () => {
  const context = await browser.newContext();
  const room = `race-${Math.random().toString(36).slice(2)}`;
  const tabs = await Promise.all(Array.from({ length: 6 }, () => moduleTab(context)));
  const ids = await Promise.all(tabs.map((t) => openPeer(t, room).then((o) => o.id)));
  assert.equal(new Set(ids).size, 6, JSON.stringify(ids));
  // Reload three while three new tabs open.
  const reloads = tabs.slice(0, 3).map(async (t) => {
    await t.reload();
    await t.waitForFunction(() => window.cpc?.module);
    return (await openPeer(t, room)).id;
  });
  const fresh = Array.from({ length: 3 }, async () => (await openPeer(await moduleTab(context), room)).id);
  const after = await Promise.all([...reloads, ...fresh]);
  const open = [...ids.slice(3), ...after];
  assert.equal(new Set(open).size, 9, JSON.stringify(open));
  await context.close();
});
