// Presence (who is here): two pages of one room, as the page sets it (a
// name from `?name=`), updated through the API, gone from the other page
// when a page closes; never in the shared state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser, openPeerPage, connected } from "./harness.mjs";

const env = serverAndBrowser();

/** The other page's view of who is here: `{ name: id }`. */
const namesOn = (page) =>
  page.evaluate(() => Object.fromEntries(window.cpc.peer.presence().map((p) => [p.value?.name, p.id])));

test("presence appears, updates and disappears when a page closes", async () => {
  const room = `presence-${Math.random().toString(36).slice(2)}`;
  const context = await env.browser.newContext();
  const alice = await openPeerPage(context, env.server.url, `room=${room}&storage=memory&signaling=none&name=alice`);
  const bob = await openPeerPage(context, env.server.url, `room=${room}&storage=memory&signaling=none&name=bob`);
  await connected(alice.page, bob.id);
  await connected(bob.page, alice.id);

  // Each page shows both, itself marked.
  await bob.page.waitForFunction(() => window.cpc.peer.presence().length === 2, null, { timeout: 15_000 });
  assert.deepEqual(await namesOn(bob.page), { alice: alice.id, bob: bob.id });
  await alice.page.waitForFunction(() => document.querySelector("#here")?.textContent.includes("bob"), null, {
    timeout: 15_000,
  });
  assert.equal(await alice.page.textContent("#here"), "Here: alice (you), bob");

  // An update reaches the other page as a "presence" event.
  const seen = bob.page.evaluate(
    () =>
      new Promise((resolve) => {
        window.cpc.peer.addEventListener("presence", (e) => {
          const a = e.presence.find((p) => p.value?.cursor === 7);
          if (a) resolve(a);
        });
      }),
  );
  await alice.page.evaluate(() => window.cpc.peer.setPresence({ name: "alice", cursor: 7 }));
  const updated = await seen;
  assert.equal(updated.id, alice.id);
  assert.deepEqual(updated.value, { name: "alice", cursor: 7 });
  assert.ok(updated.lastSeen > 0);

  // Bad values are refused, and presence never enters the state.
  const refusals = await alice.page.evaluate(() => {
    const tries = [() => window.cpc.peer.setPresence("x".repeat(2000)), () => window.cpc.peer.setPresence(undefined)];
    return tries.map((t) => {
      try {
        t();
        return null;
      } catch (e) {
        return e.name;
      }
    });
  });
  assert.deepEqual(refusals, ["RangeError", "TypeError"]);
  assert.deepEqual(await bob.page.evaluate(() => window.cpc.peer.state()), {});

  // Alice's page closes: bob drops her with the link, well before the
  // 30 s timeout.
  await alice.page.close({ runBeforeUnload: true });
  await bob.page.waitForFunction(() => window.cpc.peer.presence().length === 1, null, { timeout: 15_000 });
  assert.deepEqual(await namesOn(bob.page), { bob: bob.id });
  await context.close();
});
