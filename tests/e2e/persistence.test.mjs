// IndexedDB persistence and identity slots, as a person meets them: reload
// a tab and its peer comes back with the same id and state; a second open
// tab of the same room is another peer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser } from "./harness.mjs";

const env = serverAndBrowser();


const open = (page, room) =>
  page.evaluate(async (room) => {
    window.peer = await window.cpc.module.Peer.open({ room });
    return { id: window.peer.id, state: window.peer.state(), clock: window.peer.clock() };
  }, room);

test("a reloaded tab keeps its id and state; two open tabs are two peers", async () => {
  const context = await env.browser.newContext();
  const tab = await context.newPage();
  await tab.goto(env.server.url);
  await tab.waitForSelector("body[data-ready=true]");
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
