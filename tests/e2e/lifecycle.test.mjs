// An app's peers over their lives in one page: opened, closed and opened
// again as a framework's components mount and unmount (React's
// StrictMode), and let go of once closed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, launchBrowser, startStaticServer, moduleTab as openModuleTab } from "./harness.mjs";

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

// StrictMode's mount, unmount, mount, as an app with a small wrapper
// writes it: an async helper returning Peer.open's promise, a `then` that
// sets the peer up and a `catch` that reports a failure. The unmount's
// close then comes a few microtasks after the first open resolves; the
// second open, waiting only for that promise, claimed a slot first, took
// the next one while the tab's was still held, and the tab remembered it:
// every reload went back and forth between two identities and their data
// (a review of the first fix, which waited for that promise only).
test("StrictMode through an app's helper and a then/catch keeps the tab's peer over reloads", async () => {
  const context = await browser.newContext();
  const tab = await moduleTab(context);
  const room = `strict-helper-${Math.random().toString(36).slice(2)}`;
  const first = await tab.evaluate(async (room) => {
    const p = await window.cpc.module.Peer.open({ room, signaling: "none" });
    await p.set("k", "kept");
    await p.close();
    return p.id;
  }, room);
  const visits = [];
  for (let visit = 0; visit < 2; visit++) {
    await tab.reload();
    await tab.waitForFunction(() => window.cpc?.module);
    visits.push(
      await tab.evaluate(async (room) => {
        const { Peer } = window.cpc.module;
        const openRoom = async (room) => Peer.open({ room, signaling: "none" });
        const effect = () => {
          const opening = openRoom(room)
            .then((peer) => {
              peer.addEventListener("change", () => {});
              return peer;
            })
            .catch((e) => {
              console.error(e);
              return null;
            });
          return { opening, cleanup: () => opening.then((peer) => peer?.close()) };
        };
        effect().cleanup(); // mount, StrictMode's unmount
        const p = await effect().opening; // mount again
        const seen = { id: p.id, k: p.get("k") ?? null };
        await p.close();
        return seen;
      }, room),
    );
  }
  assert.deepEqual(visits, [
    { id: first, k: "kept" },
    { id: first, k: "kept" },
  ]);
  await context.close();
});

// The queue keeps each room's latest open's promise, resolved to its Peer,
// until the room is opened again (up to 64 rooms): a closed peer the app
// let go of is never freed, nor its whole state in the wasm's memory. An
// SPA going through documents, one room each, grew by each one's state
// (a review).
test("a closed peer the app let go of is freed (the open queue holds no peer)", async () => {
  const big = await launchBrowser(["--js-flags=--expose-gc"]);
  try {
    const tab = await big.newPage();
    await tab.goto(`${site.url}?room=page-gc&storage=memory&signaling=none`);
    await tab.waitForFunction(() => window.cpc?.module);
    const sizes = await tab.evaluate(async () => {
      const { Peer, default: init } = window.cpc.module;
      const wasm = await init();
      const settle = async () => {
        for (let i = 0; i < 5; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      const value = "x".repeat(2000);
      const sizes = [];
      for (let doc = 0; doc < 8; doc++) {
        const peer = await Peer.open({ room: `doc-${doc}`, storage: "memory", signaling: "none", warmUp: false });
        const writes = [];
        for (let i = 0; i < 3000; i++) writes.push(peer.set(`k${i}`, value + i));
        await Promise.all(writes);
        await peer.close();
        await settle();
        sizes.push(wasm.memory.buffer.byteLength);
      }
      return sizes;
    });
    const grown = (sizes.at(-1) - sizes[1]) / 1e6;
    assert.ok(grown < 5, `the wasm's memory grew by ${grown.toFixed(1)} MB over 6 closed rooms: ${sizes.map((s) => Math.round(s / 1e6)).join(" ")} MB`);
  } finally {
    await big.close();
  }
});
