// An app served over https, with `signaling` given as its author wrote it:
// which WebSocket URL the package opens. The README: "a page on https
// switches `http:` signaling URLs to `wss:` itself"; it opened `ws:`, which
// the browser refuses there, and the app saw only TRANSPORT errors (a
// review). A path or `//host/path` is resolved as the page's links are.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import path from "node:path";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { launchBrowser, root } from "./harness.mjs";

// A self-signed certificate for 127.0.0.1, for this test only.
const FIXTURES = path.join(root, "tests/e2e/fixtures");

test("a page on https opens http:, path and //host signaling URLs as wss:", async () => {
  const server = https.createServer(
    {
      key: readFileSync(path.join(FIXTURES, "https-key.pem")),
      cert: readFileSync(path.join(FIXTURES, "https-cert.pem")),
    },
    (request, response) => {
      const { pathname } = new URL(request.url, "https://x");
      if (pathname.startsWith("/pkg/")) {
        try {
          const body = readFileSync(path.join(root, pathname));
          const type = pathname.endsWith(".wasm") ? "application/wasm" : "text/javascript";
          return response.writeHead(200, { "content-type": type }).end(body);
        } catch {
          return response.writeHead(404).end();
        }
      }
      response.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><h1>app</h1>");
    },
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const origin = `127.0.0.1:${server.address().port}`;
  const browser = await launchBrowser(["--ignore-certificate-errors"]);
  try {
    const page = await browser.newPage();
    await page.goto(`https://${origin}/`);
    const seen = await page.evaluate(async () => {
      const opened = [];
      const Native = WebSocket;
      window.WebSocket = class extends Native {
        constructor(url, ...rest) {
          opened.push(String(url));
          super(url, ...rest);
        }
      };
      const { default: init, Peer } = await import("/pkg/cpc_sync.js");
      await init();
      const urls = ["http://signal.example.test/signal", "HTTPS://signal.example.test/s", "//signal.example.test/x", "/signal"];
      for (const signaling of urls) {
        const peer = await Peer.open({ room: "r", storage: "memory", signaling });
        // The socket is opened as the peer starts; give it a moment.
        for (let i = 0; i < 50 && opened.length < urls.indexOf(signaling) + 1; i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        await peer.close();
      }
      return { secure: isSecureContext, opened: [...new Set(opened)] };
    });
    assert.deepEqual(seen, {
      secure: true,
      opened: [
        "wss://signal.example.test/signal",
        "wss://signal.example.test/s",
        "wss://signal.example.test/x",
        `wss://${origin}/signal`,
      ],
    });
  } finally {
    await browser.close();
    server.close();
  }
});
