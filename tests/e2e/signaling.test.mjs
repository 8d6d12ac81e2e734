// cpc-signal's WebSocket signaling, with real browser WebSockets against
// the real server: rooms, notices, relay to the addressed peer only, and
// bad input that must not take the server down.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser, openPage } from "./harness.mjs";

const env = serverAndBrowser();
let page;

before(async () => {
  await env.ready;
  ({ page } = await openPage(env.browser, env.server.url));
  // Helpers inside the page: sockets that record what they receive.
  await page.evaluate(() => {
    window.connect = (peer, room) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace("http", "ws")}/signal`);
        ws.got = [];
        ws.closed = false;
        ws.onmessage = (e) => ws.got.push(JSON.parse(e.data));
        ws.onclose = () => (ws.closed = true);
        ws.onerror = reject;
        ws.onopen = () => {
          if (peer) ws.send(JSON.stringify({ type: "join", room, peer }));
          resolve(ws);
        };
      });
    window.settle = () => new Promise((r) => setTimeout(r, 150));
  });
});

test("joining tells who is there; signals reach the addressed peer only", async () => {
  const r = await page.evaluate(async () => {
    const a = await connect("a", "room1");
    await settle();
    const b = await connect("b", "room1");
    const c = await connect("c", "room1");
    const other = await connect("x", "room2");
    await settle();
    a.send(JSON.stringify({ type: "signal", to: "b", data: { sdp: "offer from a" } }));
    a.send(JSON.stringify({ type: "signal", to: "nobody", data: {} }));
    await settle();
    c.close();
    await settle();
    const out = { a: a.got, b: b.got, c: c.got, other: other.got };
    for (const ws of [a, b, other]) ws.close();
    return out;
  });
  assert.deepEqual(r.a[0], { type: "peers", room: "room1", peers: [] });
  assert.deepEqual(
    r.a.filter((m) => m.type === "joined").map((m) => m.peer),
    ["b", "c"],
  );
  assert.deepEqual(r.b[0].type, "peers");
  assert.deepEqual(r.b[0].peers, ["a"]);
  assert.deepEqual(
    r.b.filter((m) => m.type === "signal"),
    [{ type: "signal", from: "a", data: { sdp: "offer from a" } }],
  );
  assert.equal(r.c.filter((m) => m.type === "signal").length, 0, "not relayed to c");
  assert.deepEqual(r.other, [{ type: "peers", room: "room2", peers: [] }], "rooms are separate");
  assert.match(r.a.find((m) => m.type === "error").message, /no peer "nobody"/);
  assert.ok(r.a.some((m) => m.type === "left" && m.peer === "c"));
});

test("malformed and oversized messages are dropped; huge frames close only that socket", async () => {
  const r = await page.evaluate(async () => {
    const a = await connect("a", "room3");
    const b = await connect("b", "room3");
    await settle();
    a.send("{not json");
    a.send(JSON.stringify({ type: "explode" }));
    a.send(JSON.stringify({ type: "signal", to: "b", data: "x".repeat(70 * 1024) }));
    a.send(new Uint8Array([1, 2, 3]));
    a.send(JSON.stringify({ type: "ping" }));
    await settle();
    b.send(JSON.stringify({ type: "signal", to: "a", data: "x".repeat(300 * 1024) }));
    await settle();
    const c = await connect("c", "room3");
    await settle();
    const out = { a: a.got, aClosed: a.closed, bClosed: b.closed, c: c.got };
    a.close();
    c.close();
    return out;
  });
  const errors = r.a.filter((m) => m.type === "error").map((m) => m.message);
  assert.equal(errors.length, 4, JSON.stringify(errors));
  assert.match(errors[0], /malformed/);
  assert.match(errors[2], /dropped: the limit is 65536/);
  assert.match(errors[3], /JSON text/);
  assert.ok(r.a.some((m) => m.type === "pong"), "the socket still works");
  assert.equal(r.aClosed, false);
  assert.equal(r.bClosed, true, "a frame over 256 KiB closes that socket");
  assert.ok(r.a.some((m) => m.type === "left" && m.peer === "b"));
  assert.deepEqual(r.c[0].peers, ["a"], "the server still serves the room");
});
