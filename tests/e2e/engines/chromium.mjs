// Debian's Chromium, driven by playwright-core over CDP.
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Flags for an experiment, from `CPC_CHROMIUM_ARGS` (space-separated),
 * e.g. `--js-flags=--no-liftoff` to see what V8's tiering costs. */
const EXPERIMENT_ARGS = (process.env.CPC_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean);

/** Headless Chromium with CHROMIUM_ARGS and `extraArgs`; Playwright's
 * whole API (the benchmarks use more of it than the tests may). */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_ARGS, ...EXPERIMENT_ARGS, ...extraArgs],
  });
}
