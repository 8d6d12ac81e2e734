// cpc-signal's WebSocket signaling, with real browser WebSockets against
// the real server: rooms, notices, relay to the addressed peer only, and
// bad input (floods, crowds) that must not take the server down.
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

test("a flooding socket is told once, then closed; its room keeps working", async () => {
  const r = await page.evaluate(async () => {
    const a = await connect("a", "flood");
    const b = await connect("b", "flood");
    const c = await connect("c", "flood");
    await settle();
    for (let i = 0; i < 5000; i++) a.send(JSON.stringify({ type: "signal", to: "b", data: i }));
    const deadline = Date.now() + 5000;
    while (!a.closed && Date.now() < deadline) await settle();
    c.send(JSON.stringify({ type: "signal", to: "b", data: "after the flood" }));
    b.send(JSON.stringify({ type: "ping" }));
    await settle();
    const out = { a: a.got, aClosed: a.closed, b: b.got, bClosed: b.closed };
    b.close();
    c.close();
    return out;
  });
  const errors = r.a.filter((m) => m.type === "error").map((m) => m.message);
  assert.equal(r.aClosed, true, "the flooding socket is closed");
  assert.equal(errors.length, 2, JSON.stringify(errors));
  assert.match(errors[0], /over the rate limit of 100 messages\/s \(burst 1000\)/);
  assert.match(errors[1], /^closed: still flooding/);
  const relayed = r.b.filter((m) => m.type === "signal" && m.from === "a").length;
  assert.ok(relayed >= 1000 && relayed < 1500, `${relayed} of 5000 relayed: the burst, not the flood`);
  assert.ok(r.b.some((m) => m.type === "left" && m.peer === "a"));
  assert.ok(r.b.some((m) => m.type === "signal" && m.from === "c" && m.data === "after the flood"));
  assert.ok(r.b.some((m) => m.type === "pong"));
  assert.equal(r.bClosed, false);
});

test("a room takes 64 peers: the 65th join gets room full until one leaves", async () => {
  const r = await page.evaluate(async () => {
    const members = [];
    for (let i = 0; i < 64; i++) members.push(await connect(`p${i}`, "crowd"));
    await settle();
    const late = await connect("late", "crowd");
    const reloaded = await connect("p1", "crowd"); // a reloaded tab takes its place
    await settle();
    members[2].close();
    await settle();
    late.send(JSON.stringify({ type: "join", room: "crowd", peer: "late" }));
    await settle();
    const out = { late: late.got, reloaded: reloaded.got, p0: members[0].got };
    for (const ws of [...members, late, reloaded]) ws.close();
    return out;
  });
  assert.equal(r.late[0].type, "error", JSON.stringify(r.late[0]));
  assert.match(r.late[0].message, /^room full: "crowd" has 64 peers/);
  assert.equal(r.late[1].type, "peers", "joins once a peer left");
  assert.equal(r.late[1].peers.length, 63);
  assert.equal(r.reloaded[0].type, "peers");
  assert.equal(r.reloaded[0].peers.length, 63);
  const notices = r.p0.filter((m) => m.type !== "peers").map((m) => `${m.type} ${m.peer}`);
  assert.deepEqual(notices.slice(-3), ["joined p1", "left p2", "joined late"]);
});
