// An app served over https, with `signaling` given as its author wrote it:
// which WebSocket URL the package opens. The README: "a page on https
// switches `http:` signaling URLs to `wss:` itself"; it opened `ws:`, which
// the browser refuses there, and the app saw only TRANSPORT errors (a
// review). A path or `//host/path` is resolved as the page's links are; a
// loopback host keeps `ws:` (a local cpc-signal in development).
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import path from "node:path";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { launchBrowser, root, startServer } from "./harness.mjs";

// A self-signed certificate for 127.0.0.1, for this test only.
const FIXTURES = path.join(root, "tests/e2e/fixtures");

/** An app served over https on 127.0.0.1 (the package under /pkg/, a blank
 * page elsewhere), and a Chromium that takes its certificate. */
async function httpsApp() {
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
  const page = await browser.newPage();
  await page.goto(`https://${origin}/`);
  const stop = async () => {
    await browser.close();
    server.close();
  };
  return { origin, page, stop };
}

test("a page on https opens http:, ws:, path and //host signaling URLs as wss:", async () => {
  const { origin, page, stop } = await httpsApp();
  try {
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
      const urls = [
        "http://signal.example.test/signal",
        "HTTPS://signal.example.test/s",
        "//signal.example.test/x",
        "/signal",
        // The browser refuses `ws:` from https but to a loopback host, and
        // every WebSocket URL with a fragment (a review).
        "ws://signal.example.test/y",
        "wss://signal.example.test/z#main",
      ];
      for (const [i, signaling] of urls.entries()) {
        const peer = await Peer.open({ room: "r", storage: "memory", signaling });
        // The socket is opened as the peer starts; give it a moment.
        for (let wait = 0; wait < 50 && opened.length < i + 1; wait++) {
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
        "wss://signal.example.test/y",
        "wss://signal.example.test/z",
      ],
    });
  } finally {
    await stop();
  }
});

// A developer's app on https (a dev server's --https, a tunnel) and a local
// cpc-signal on plain http, named as it prints itself: `http://127.0.0.1:
// <port>`. The browser opens `ws:` to a loopback host from an https page;
// the first fix sent it as `wss:` to a server without TLS, and only
// TRANSPORT errors came (a review).
test("a page on https reaches a local cpc-signal named http://127.0.0.1:<port>", async () => {
  const signal = await startServer(0, { ORIGINS: "*" });
  const { page, stop } = await httpsApp();
  try {
    const seen = await page.evaluate(async (signaling) => {
      const sockets = [];
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(url, ...rest) {
          super(url, ...rest);
          const seen = { url: String(url), opened: false };
          sockets.push(seen);
          this.addEventListener("open", () => (seen.opened = true));
        }
      };
      const { default: init, Peer } = await import("/pkg/cpc_sync.js");
      await init();
      const peer = await Peer.open({ room: "local-dev", storage: "memory", signaling });
      for (let i = 0; i < 100 && !sockets.some((s) => s.opened); i++) await new Promise((r) => setTimeout(r, 50));
      await peer.close();
      return { opened: sockets.some((s) => s.opened), urls: [...new Set(sockets.map((s) => s.url))] };
    }, `${signal.url}signal`);
    assert.deepEqual(seen, { opened: true, urls: [`${signal.url.replace("http:", "ws:")}signal`] });
  } finally {
    await stop();
    await signal.stop();
  }
});
