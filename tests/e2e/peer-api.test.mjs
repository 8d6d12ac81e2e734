// The Peer API as an app calls it, in the page, in the run's engine (Chromium or Firefox).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { serverAndBrowser, openPage } from "./harness.mjs";

const env = serverAndBrowser();


test("a memory peer: writes of every kind, state, clock, digest, events", async () => {
  const { page, errors } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const result = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const peer = await Peer.open({ room: "e2e", storage: "memory" });
    const changes = [];
    peer.addEventListener("change", (e) => changes.push(...e.keys));
    await peer.set("title", { text: "<b>hi</b>", n: 1 });
    await peer.increment("likes", 2);
    await peer.increment("likes", -1);
    await peer.add("tags", "b");
    await peer.add("tags", "a");
    await peer.remove("tags", "b");
    await peer.set("gone", true);
    await peer.delete("gone");
    let kindError = null;
    try {
      await peer.increment("title", 1);
    } catch (e) {
      kindError = String(e.message);
    }
    let valueError = null;
    try {
      await peer.set("bad", undefined);
    } catch (e) {
      valueError = String(e.message);
    }
    return {
      id: peer.id,
      state: peer.state(),
      title: peer.get("title"),
      missing: peer.get("nope") === undefined,
      clock: peer.clock(),
      digest: peer.digest(),
      conflicts: peer.conflicts(),
      peers: peer.peers(),
      changes,
      kindError,
      valueError,
    };
  });
  assert.match(result.id, /^[0-9a-f]{16}$/);
  assert.deepEqual(result.state, { likes: 1, tags: ["a"], title: { n: 1, text: "<b>hi</b>" } });
  assert.deepEqual(result.title, { n: 1, text: "<b>hi</b>" });
  assert.ok(result.missing);
  assert.deepEqual(result.clock, { [result.id]: 8 });
  assert.match(result.digest, /^[0-9a-f]{64}$/);
  assert.deepEqual(result.conflicts, []);
  assert.deepEqual(result.peers, []);
  assert.deepEqual([...new Set(result.changes)].sort(), ["gone", "likes", "tags", "title"]);
  assert.match(result.kindError, /holds a register/);
  assert.match(result.valueError, /JSON/);
  assert.deepEqual(errors, []);
});

// The node reports at most 32,768 changed keys a task (CHANGES_AT_ONCE);
// the page tells its listeners once the last part is in.
test("a change of more keys than a report names at once is one event, each key once", async () => {
  const { page, errors } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const result = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const peer = await Peer.open({ room: `many-${Math.random()}`, storage: "memory" });
    const events = [];
    peer.addEventListener("change", (e) => events.push(e.keys));
    const writes = [];
    for (let i = 0; i < 40_000; i++) writes.push(peer.set(`k${i}`, i));
    await Promise.all(writes);
    for (let waited = 0; events.length === 0 && waited < 5_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Time for a wrongly early event's rest to follow as a second one.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const keys = events.flat();
    await peer.close();
    return { events: events.length, keys: keys.length, unique: new Set(keys).size, last: keys.includes("k39999") };
  });
  assert.deepEqual(result, { events: 1, keys: 40_000, unique: 40_000, last: true });
  assert.deepEqual(errors, []);
});

// A newcomer's snapshot is reported in parts too: the one "conflict"
// event that follows the last part names the keys left in conflict in
// every part, not in the last part alone. (And the two writers are told
// of the conflicts by the small changes that made them.)
test("a newcomer's large snapshot: one change event, and every conflict in it named", { timeout: 120_000 }, async () => {
  const room = `parts-${Math.random().toString(36).slice(2)}`;
  // One context: its pages share a BroadcastChannel.
  const context = await env.browser.newContext();
  const open = async () => {
    const { page, errors } = await openPage(context, `${env.server.url}?signaling=none&storage=memory`);
    await page.waitForSelector("body[data-ready=true]");
    await page.evaluate(async (room) => {
      window.p = await window.cpc.module.Peer.open({ room, storage: "memory", signaling: "none", compactAfter: 100 });
      window.changes = [];
      window.conflicted = [];
      window.snapshots = 0;
      window.p.addEventListener("change", (e) => window.changes.push(e.keys));
      window.p.addEventListener("conflict", (e) => window.conflicted.push(...e.conflicts.map((c) => c.key)));
      window.p.addEventListener("snapshot", () => window.snapshots++);
    }, room);
    return { page, errors, id: await page.evaluate(() => window.p.id) };
  };
  // Until the two pages' peers have one digest (either may still be
  // taking the other's writes).
  const sameDigest = async (x, y) => {
    for (const deadline = Date.now() + 60_000; ; ) {
      const digests = await Promise.all([x, y].map((p) => p.page.evaluate(() => window.p.digest())));
      if (digests[0] === digests[1]) return;
      assert.ok(Date.now() < deadline, `no convergence: ${digests}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const [a, b] = [await open(), await open()];
  await a.page.waitForFunction((id) => window.p.peers().some((p) => p.id === id && p.state === "open"), b.id, {
    timeout: 30_000,
  });
  await a.page.evaluate(() => window.p.setPolicy("c/", "multi-value"));
  // 20,000 keys from each.
  await Promise.all(
    [a, b].map((p, n) =>
      p.page.evaluate(
        (n) => Promise.all(Array.from({ length: 20_000 }, (_, i) => window.p.set(`k${n * 20_000 + i}`, i))),
        n,
      ),
    ),
  );
  await sameDigest(a, b);
  // 20 keys written on both sides while apart: 20 conflicts once they meet.
  const conflicted = Array.from({ length: 20 }, (_, i) => `c/${i}`).sort();
  await Promise.all([a, b].map((p) => p.page.evaluate(() => window.p.goOffline())));
  for (const p of [a, b]) {
    await p.page.evaluate(([keys, id]) => Promise.all(keys.map((key) => window.p.set(key, id))), [conflicted, p.id]);
  }
  await Promise.all([a, b].map((p) => p.page.evaluate(() => window.p.goOnline())));
  await a.page.waitForFunction(() => window.p.conflicts().length === 20, null, { timeout: 30_000 });
  await sameDigest(a, b);
  // Each side was told of them by the change that made them.
  for (const p of [a, b]) {
    const told = await p.page.evaluate(() => [...new Set(window.conflicted)].sort());
    assert.deepEqual(told, conflicted, `${p.id}'s conflict events`);
  }
  // Alone, a peer folds its whole log at a tick once it holds more than
  // 4 x compactAfter events: the newcomer takes all of it as a snapshot,
  // and nothing after it.
  await b.page.close();
  await a.page.evaluate(() => Promise.all(Array.from({ length: 500 }, (_, i) => window.p.set(`m${i}`, i))));
  await a.page.waitForTimeout(2500);
  const c = await open();
  await sameDigest(a, c);
  // Time for a wrongly early event's rest to follow as another.
  await c.page.waitForTimeout(500);
  const seen = await c.page.evaluate(() => ({
    snapshot: window.snapshots > 0,
    changes: window.changes.map((keys) => keys.length),
    // Where the conflicted keys came: the parts are told in the order
    // they came, 32,768 keys each, the last one shorter.
    first: window.changes[0].findIndex((key) => key.startsWith("c/")),
    conflicted: [...new Set(window.conflicted)].sort(),
    conflicts: window.p.conflicts().length,
  }));
  assert.ok(seen.first >= 0 && seen.first < 32_768, `conflicted keys in a part before the last: ${seen.first}`);
  delete seen.first;
  assert.deepEqual(seen, { snapshot: true, changes: [40_520], conflicted, conflicts: 20 });
  assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
  await context.close();
});

test("an onReconcile handler that calls the peer gets REENTRANT, and the peer works on", { timeout: 60_000 }, async () => {
  const room = `reenter-${Math.random().toString(36).slice(2)}`;
  const context = await env.browser.newContext();
  const open = async () => {
    const { page, errors } = await openPage(context, `${env.server.url}?signaling=none&storage=memory`);
    await page.waitForSelector("body[data-ready=true]");
    await page.evaluate(async (room) => {
      window.p = await window.cpc.module.Peer.open({ room, storage: "memory", signaling: "none" });
      window.inside = [];
      // Reading another key inside the handler, as a merge might: the
      // peer is at work, so it is refused (it was a wasm panic that left
      // the peer unusable); a promise is not an answer.
      window.p.onReconcile((key, candidates) => {
        try {
          window.p.get("meta/sep");
          window.inside.push("read");
        } catch (e) {
          window.inside.push(e.code);
        }
        if (key === "rec/async") return Promise.resolve("later");
        return candidates.map((c) => c.value).sort().join(" + ");
      });
    }, room);
    return { page, errors, id: await page.evaluate(() => window.p.id) };
  };
  const [a, b] = [await open(), await open()];
  await a.page.waitForFunction((id) => window.p.peers().some((p) => p.id === id && p.state === "open"), b.id, {
    timeout: 30_000,
  });
  await Promise.all([a, b].map((p) => p.page.evaluate(() => window.p.setPolicy("rec/", "reconcile"))));
  await Promise.all([a, b].map((p) => p.page.evaluate(() => window.p.goOffline())));
  for (const p of [a, b]) {
    await p.page.evaluate((id) => Promise.all([window.p.set("rec/x", id), window.p.set("rec/async", id)]), p.id);
  }
  await Promise.all([a, b].map((p) => p.page.evaluate(() => window.p.goOnline())));
  const merged = [a.id, b.id].sort().join(" + ");
  for (const p of [a, b]) {
    await p.page.waitForFunction((v) => window.p.get("rec/x") === v, merged, { timeout: 30_000 });
    // The promise's answer was not taken: Last-Write-Wins, no conflict left.
    await p.page.waitForFunction(() => window.p.conflicts().length === 0, null, { timeout: 30_000 });
    assert.ok([a.id, b.id].includes(await p.page.evaluate(() => window.p.get("rec/async"))));
  }
  const inside = (await Promise.all([a, b].map((p) => p.page.evaluate(() => window.inside)))).flat();
  assert.ok(inside.length > 0 && inside.every((code) => code === "REENTRANT"), `inside the handler: ${inside}`);
  // The promise is named where an app's mistakes are looked for.
  const told = [...a.errors, ...b.errors];
  assert.ok(told.some((e) => e.includes("onReconcile handler returned a promise")), told.join("\n"));
  for (const p of [a, b]) {
    await p.page.evaluate(() => window.p.set("after", 1));
    assert.equal(await p.page.evaluate(() => window.p.get("after")), 1);
    await p.page.evaluate(() => window.p.close());
  }
  await context.close();
});

test("every refusal is an Error subclass with a stable code", async () => {
  const { page } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const seen = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const out = [];
    const record = (what, e) =>
      out.push({
        what,
        class: e instanceof RangeError ? "RangeError" : e instanceof TypeError ? "TypeError" : e instanceof Error ? "Error" : typeof e,
        code: e && e.code,
        message: String(e && e.message),
      });
    const attempt = async (what, f) => {
      try {
        await f();
        out.push({ what, class: "none" });
      } catch (e) {
        record(what, e);
      }
    };
    await attempt("no room", () => Peer.open({}));
    await attempt("not an object", () => Peer.open("room"));
    await attempt("bad storage", () => Peer.open({ room: "r", storage: "floppy" }));
    await attempt("bad compactAfter", () => Peer.open({ room: "r", storage: "memory", compactAfter: -1 }));
    await attempt("bad maxConnections", () => Peer.open({ room: "r", storage: "memory", maxConnections: 0 }));
    await attempt("maxConnections not a number", () => Peer.open({ room: "r", storage: "memory", maxConnections: "8" }));
    await attempt("connectTimeoutMs too short", () => Peer.open({ room: "r", storage: "memory", connectTimeoutMs: 10 }));
    await attempt("too many verifyWorkers", () => Peer.open({ room: "r", storage: "memory", verifyWorkers: 9 }));
    await attempt("bad signaling", () => Peer.open({ room: "r", storage: "memory", signaling: "ftp://x" }));
    await attempt("warmUp not a boolean", () => Peer.open({ room: "r", storage: "memory", warmUp: "no" }));
    await attempt("a misspelt option", () => Peer.open({ room: "r", storage: "memory", signalling: "ws://x" }));
    await attempt("a lone surrogate in the room", () => Peer.open({ room: "r\uD800", storage: "memory" }));
    // The ids of rooms with a secret: the room peer never kept such a room.
    await attempt("a secret room's prefix", () => Peer.open({ room: "secret-santa", storage: "memory" }));
    // Names the signaling server refuses (over 128 bytes: here 129 in 45
    // characters) opened, synced between this browser's tabs and met no
    // one else; 128 bytes, and a secret room of any name, open.
    const long = "ノート/" + "議事録".repeat(13) + "ab";
    await attempt("a room of 129 bytes", () => Peer.open({ room: long, storage: "memory" }));
    await attempt("a room of 128 bytes", async () => (await Peer.open({ room: long.slice(0, -1), storage: "memory" })).close());
    await attempt("a secret room of 129 bytes", async () =>
      (await Peer.open({ room: long, secret: "s3cret", storage: "memory" })).close(),
    );
    // Taken before, and every connection failed, told seconds later.
    await attempt("iceServers a string", () => Peer.open({ room: "r", storage: "memory", iceServers: "stun:x" }));
    await attempt("iceServers of an http URL", () =>
      Peer.open({ room: "r", storage: "memory", iceServers: [{ urls: "http://x" }] }),
    );
    const peer = await Peer.open({ room: "r", storage: "memory" });
    await peer.set("title", "x");
    await attempt("bad policy", () => peer.setPolicy("doc/", "sometimes"));
    await attempt("kind mismatch", () => peer.increment("title", 1));
    await attempt("not JSON", () => peer.set("bad", undefined));
    await attempt("a cycle", () => {
      const o = {};
      o.o = o;
      return peer.add("s", o);
    });
    await attempt("reserved key", () => peer.set("\u0000cpc/policy/x", "lww"));
    await attempt("too large", () => peer.set("big", "v".repeat(9 * 1024 * 1024)));
    await attempt("fraction", () => peer.increment("n", 1.5));
    await attempt("not a number", () => peer.increment("n", "1"));
    // Keys, prefixes and names of another type (a number there trapped the
    // wasm: "memory access out of bounds"), and listeners that are not
    // functions; the peer works on after each.
    await attempt("a number as key", () => peer.set(123, 1));
    await attempt("an object as key", () => peer.delete({}));
    await attempt("null as key", () => peer.add(null, 1));
    await attempt("an array as key", () => peer.increment(["a"], 1));
    await attempt("get of undefined", () => peer.get(undefined));
    await attempt("a number as prefix", () => peer.setPolicy(5, "lww"));
    // Half an emoji: it came out as U+FFFD, and two keys were one.
    await attempt("a lone surrogate in a key", () => peer.set("note/\uD83D", 1));
    await attempt("a lone surrogate in get", () => peer.get("\uDE00"));
    await attempt("a misspelt event", () => peer.addEventListener("changes", () => {}));
    await attempt("a listener not a function", () => peer.addEventListener("change", 5));
    await attempt("a handler not a function", () => peer.onReconcile("first"));
    await attempt("NaN", () => peer.set("n2", NaN));
    await attempt("an infinity", () => peer.set("n3", -Infinity));
    await attempt("still works", async () => {
      await peer.set("after", 1);
      if (peer.get("after") !== 1) throw new Error("the peer stopped working");
      peer.removeEventListener(5, 5); // removes nothing, without a word
    });
    await peer.close();
    await attempt("closed", () => peer.set("k", 1));
    return out;
  });
  const expected = {
    "no room": ["TypeError", "INVALID_OPTION"],
    "not an object": ["TypeError", "INVALID_OPTION"],
    "bad storage": ["RangeError", "INVALID_OPTION"],
    "bad compactAfter": ["RangeError", "INVALID_OPTION"],
    "bad maxConnections": ["RangeError", "INVALID_OPTION"],
    "maxConnections not a number": ["TypeError", "INVALID_OPTION"],
    "connectTimeoutMs too short": ["RangeError", "INVALID_OPTION"],
    "too many verifyWorkers": ["RangeError", "INVALID_OPTION"],
    "bad signaling": ["RangeError", "INVALID_OPTION"],
    "warmUp not a boolean": ["TypeError", "INVALID_OPTION"],
    "a misspelt option": ["TypeError", "INVALID_OPTION"],
    "a lone surrogate in the room": ["TypeError", "INVALID_OPTION"],
    "a secret room's prefix": ["RangeError", "INVALID_OPTION"],
    "a room of 129 bytes": ["RangeError", "INVALID_OPTION"],
    "a room of 128 bytes": ["none", undefined],
    "a secret room of 129 bytes": ["none", undefined],
    "iceServers a string": ["TypeError", "INVALID_OPTION"],
    "iceServers of an http URL": ["TypeError", "INVALID_OPTION"],
    "bad policy": ["RangeError", "INVALID_ARGUMENT"],
    "kind mismatch": ["Error", "KIND_MISMATCH"],
    "not JSON": ["TypeError", "INVALID_JSON"],
    "a cycle": ["TypeError", "INVALID_JSON"],
    "reserved key": ["RangeError", "RESERVED_KEY"],
    "too large": ["RangeError", "TOO_LARGE"],
    fraction: ["RangeError", "INVALID_ARGUMENT"],
    "not a number": ["TypeError", "INVALID_ARGUMENT"],
    "a number as key": ["TypeError", "INVALID_ARGUMENT"],
    "a lone surrogate in a key": ["TypeError", "INVALID_ARGUMENT"],
    "a lone surrogate in get": ["TypeError", "INVALID_ARGUMENT"],
    "an object as key": ["TypeError", "INVALID_ARGUMENT"],
    "null as key": ["TypeError", "INVALID_ARGUMENT"],
    "an array as key": ["TypeError", "INVALID_ARGUMENT"],
    "get of undefined": ["TypeError", "INVALID_ARGUMENT"],
    "a number as prefix": ["TypeError", "INVALID_ARGUMENT"],
    "a misspelt event": ["TypeError", "INVALID_ARGUMENT"],
    "a listener not a function": ["TypeError", "INVALID_ARGUMENT"],
    "a handler not a function": ["TypeError", "INVALID_ARGUMENT"],
    NaN: ["TypeError", "INVALID_JSON"],
    "an infinity": ["TypeError", "INVALID_JSON"],
    "still works": ["none", undefined],
    closed: ["Error", "CLOSED"],
  };
  for (const entry of seen) {
    assert.deepEqual([entry.class, entry.code], expected[entry.what], JSON.stringify(entry));
  }
  assert.equal(seen.length, Object.keys(expected).length);
});

test("an unreachable signaling server reaches the app as an 'error' event (TRANSPORT)", { timeout: 30_000 }, async () => {
  const { page } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const seen = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const peer = await Peer.open({
      room: "unreachable",
      storage: "memory",
      signaling: "ws://127.0.0.1:45679/signal",
    });
    const event = await new Promise((resolve) => peer.addEventListener("error", resolve));
    await peer.close();
    return {
      type: event.type,
      isError: event.error instanceof Error,
      code: event.error.code,
      message: event.error.message,
    };
  });
  assert.equal(seen.type, "error");
  assert.ok(seen.isError);
  assert.equal(seen.code, "TRANSPORT");
  assert.match(seen.message, /signaling/);
});

test("a signaling server that takes the connection and never answers is given up and told (TRANSPORT)", { timeout: 60_000 }, async () => {
  // Accepts TCP and says nothing: a stuck proxy, a firewall that drops.
  const silent = net.createServer(() => {});
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const url = `ws://127.0.0.1:${silent.address().port}/signal`;
  const { page } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const seen = await page.evaluate(async (url) => {
    const { Peer } = window.cpc.module;
    const started = performance.now();
    const peer = await Peer.open({ room: "silent", storage: "memory", signaling: url });
    const messages = [];
    await new Promise((resolve) =>
      peer.addEventListener("error", (e) => {
        messages.push(e.error.code + " " + e.error.message);
        if (messages.length === 2) resolve();
      }),
    );
    await peer.close();
    return { messages, seconds: (performance.now() - started) / 1000 };
  }, url);
  silent.close();
  // Given up at 10 s, tried again half a second later, given up again.
  for (const message of seen.messages) assert.match(message, /^TRANSPORT .*did not answer in 10 s; trying again/);
  assert.ok(seen.seconds < 40, `${seen.seconds} s`);
});

test("a write to IndexedDB resolves once committed, and survives a reopen", async () => {
  const { page } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const result = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const room = `durable-${Math.random()}`;
    let peer = await Peer.open({ room, signaling: "none" });
    const writes = [];
    for (let i = 0; i < 50; i++) writes.push(peer.increment("n", 1));
    await Promise.all(writes);
    await peer.set("last", "written");
    await peer.close();
    peer = await Peer.open({ room, signaling: "none" });
    const state = peer.state();
    const storage = [peer.storage, (await Peer.open({ room: `${room}-m`, storage: "memory", signaling: "none" })).storage];
    await peer.close();
    return { state, storage };
  });
  assert.deepEqual(result, { state: { last: "written", n: 50 }, storage: ["indexeddb", "memory"] });
});

test("Peer.open refuses bad options with a clear error", async () => {
  const { page } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const messages = await page.evaluate(async () => {
    const { Peer } = window.cpc.module;
    const out = [];
    for (const options of [{}, { room: "r", storage: "floppy" }]) {
      try {
        await Peer.open(options);
        out.push("opened");
      } catch (e) {
        out.push(String(e.message));
      }
    }
    const peer = await Peer.open({ room: "r", storage: "memory" });
    try {
      await peer.setPolicy("doc/", "sometimes");
    } catch (e) {
      out.push(String(e.message));
    }
    await peer.close();
    try {
      await peer.set("k", 1);
      out.push("wrote after close");
    } catch (e) {
      out.push(String(e.message));
    }
    return out;
  });
  assert.match(messages[0], /needs \{ room \}/);
  assert.match(messages[1], /unknown storage/);
  assert.match(messages[2], /unknown conflict policy/);
  assert.match(messages[3], /the peer is closed/);
});

// Every method of a peer called with arguments of every kind an app could
// pass by mistake, a seeded sequence of them: each call returns, or throws
// or rejects with an Error that has a known `code`; none traps the wasm
// (a key of the wrong type once did: "memory access out of bounds"); and
// the peer works on after all of them. `CPC_SEED=n` replays a run.
test("any argument to any method is a coded error or works, and the peer works on", async () => {
  const seed = Number(process.env.CPC_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`seed ${seed} (CPC_SEED=${seed} replays it)`);
  const { page, errors } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready=true]");
  const result = await page.evaluate(async (seed) => {
    const { Peer } = window.cpc.module;
    let state = seed >>> 0 || 1;
    const next = () => {
      // xorshift32
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 2 ** 32;
    };
    const pick = (list) => list[Math.floor(next() * list.length)];
    const cyclic = {};
    cyclic.self = cyclic;
    const values = () => [
      undefined, null, true, 0, -0, 1, -1, 1.5, NaN, Infinity, 2 ** 53, 10n, Symbol("s"),
      "", "k", "key/1", "\u0000cpc/policy/x", "\ud800", "x".repeat(pick([10, 2000, 100_000])),
      "change", "conflict", "lww", "multi-value", "reconcile",
      {}, [], [1, "a"], { a: { b: [1] } }, cyclic, () => 1, new Map([[1, 2]]), new Date(0),
      new Uint8Array(3), Object.create(null), { toJSON() { throw new Error("boom"); } },
      new Proxy({}, { get() { throw new Error("trap"); }, ownKeys() { throw new Error("trap"); } }),
    ];
    const methods = [
      "set", "delete", "increment", "add", "remove", "resolve", "setPolicy", "setPresence", "get",
      "addEventListener", "removeEventListener", "onReconcile", "state", "entries", "clock", "digest",
      "conflicts", "peers", "presence",
    ];
    const codes = new Set([
      "INVALID_OPTION", "INVALID_ARGUMENT", "INVALID_JSON", "KIND_MISMATCH", "RESERVED_KEY", "CLOSED",
      "STORAGE", "TRANSPORT", "UNSUPPORTED", "EXHAUSTED", "TOO_LARGE",
    ]);
    const bad = [];
    const check = (what, e) => {
      if (e instanceof WebAssembly.RuntimeError || !(e instanceof Error) || !codes.has(e.code)) {
        bad.push(`${what}: ${e instanceof Error ? `${e.constructor.name} ${e.code} ${e.message}` : String(e)}`);
      }
    };
    const peer = await Peer.open({ room: `fuzz-${seed}`, storage: "memory", signaling: "none" });
    const describe = (v) => {
      try {
        return typeof v === "string" ? JSON.stringify(v.slice(0, 20)) : typeof v === "symbol" || typeof v === "bigint" ? typeof v : String(v).slice(0, 20);
      } catch {
        return typeof v;
      }
    };
    let calls = 0;
    for (let i = 0; i < 400; i++) {
      const method = pick(methods);
      const args = [pick(values()), pick(values())];
      const what = `${method}(${args.map(describe).join(", ")})`;
      calls++;
      try {
        const out = peer[method](...args);
        if (out instanceof Promise) await out.catch((e) => check(what, e));
      } catch (e) {
        check(what, e);
      }
    }
    await peer.set("after", { ok: true });
    const works = JSON.stringify(peer.get("after")) === '{"ok":true}' && typeof peer.digest() === "string";
    await peer.close();
    return { bad, works, calls };
  }, seed);
  assert.deepEqual(result.bad, [], `seed ${seed}`);
  assert.ok(result.works, `the peer works on (seed ${seed})`);
  assert.equal(result.calls, 400);
  assert.deepEqual(errors, []);
});
