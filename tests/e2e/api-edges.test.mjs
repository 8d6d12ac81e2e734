// The README's JS API at its edges, on the page's peer (window.cpc.peer,
// the npm package as the page loads it), from a newcomer's review. No
// cpc-signal: the static server of the harness,
// `?signaling=none&storage=memory`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, startStaticServer, openPeerPage } from "./harness.mjs";

let server, browser, page;
before(async () => {
  server = await startStaticServer();
  browser = await launch();
  ({ page } = await openPeerPage(browser, server.url, `room=newcomer-${Date.now()}&signaling=none&storage=memory`));
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

// README: "As the DOM's, a listener added twice for one event is called
// once". In the DOM, a listener removed while an event is dispatched (by a
// listener called before it) is not called for that event: an app that
// unsubscribes a component as another's listener unmounts it relies on it.
// The peer called it: it walked a copy of its listeners.
test("a listener removed by an earlier listener of the same event is not called", async () => {
  const calls = await page.evaluate(async () => {
    const peer = window.cpc.peer;
    const calls = [];
    const second = () => calls.push("second");
    const first = () => {
      calls.push("first");
      peer.removeEventListener("change", second);
    };
    peer.addEventListener("change", first);
    peer.addEventListener("change", second);
    // The same with a DOM EventTarget, for comparison.
    const t = new EventTarget();
    const dom = [];
    const s2 = () => dom.push("second");
    t.addEventListener("x", () => { dom.push("first"); t.removeEventListener("x", s2); });
    t.addEventListener("x", s2);
    t.dispatchEvent(new Event("x"));
    calls.push("dom:" + dom.join(","));
    await peer.set("listener-removal", 1);
    await new Promise((r) => setTimeout(r, 200));
    peer.removeEventListener("change", first);
    return calls;
  });
  assert.deepEqual(calls, ["dom:first", "first"]);
});

// A key's error names a lone surrogate plainly; a value holding one was
// refused with a message about a hex escape the app never wrote (in the
// JSON text made inside).
test("a value with a lone surrogate is refused with a message that says so", async () => {
  const err = await page.evaluate(async () => {
    try {
      await window.cpc.peer.set("lone", "a\ud800b");
      return { ok: true };
    } catch (e) {
      return { name: e.name, code: e.code, message: e.message };
    }
  });
  assert.equal(err.code, "INVALID_JSON");
  assert.match(err.message, /surrogate/, `message: ${err.message}`);
});

// README: "Values are JSON, kept in canonical form (what peers sign and
// hash): as `JSON.stringify` writes them". The number reader followed
// serde_json without `float_roundtrip`, which is not correctly rounded:
// about one double in ten (Math.random()'s, coordinates, timestamps in
// seconds) read back as a neighbouring double, on the writer and on
// every peer. It asks the browser's parseFloat now.
test("a number reads back as the number written", async () => {
  const back = await page.evaluate(async () => {
    const written = [0.9577971067778701, 29.856613711759678, 916540.8604066921, 1796690930.1397681, 123456789012345680000];
    await window.cpc.peer.set("numbers", written);
    await window.cpc.peer.set("number", written[0]);
    return { written, read: window.cpc.peer.get("numbers"), one: window.cpc.peer.get("number") };
  });
  assert.deepEqual(back.read, back.written);
  assert.equal(back.one, back.written[0]);
});
