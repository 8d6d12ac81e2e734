// The engines the end-to-end suites run in, behind one launcher: a test
// asks for `launch()` and never names an engine. `CPC_BROWSER` picks the
// engine of a run (default chromium); `npm test` runs the whole suite in
// Chromium and the suites that matter per engine again in Firefox.
//
// What a test may call is the part of Playwright's API listed here, with
// Playwright's signatures: Chromium hands out Playwright's own objects,
// Firefox an adapter over puppeteer-core (firefox.mjs). A call outside the
// list works in Chromium only, and fails the Firefox run.
//
//   browser: newContext({ viewport }), newPage(), version(), close()
//   context: newPage(), close()
//   page:    goto(url), reload(), url(), close(), on("console" | "pageerror"),
//            evaluate(fn, arg), waitForSelector(sel, { state, timeout }),
//            waitForFunction(fn, arg, { timeout }), waitForURL(regexp),
//            textContent(sel), getAttribute(sel, name), click(sel),
//            fill(sel, value), selectOption(sel, value), check(sel),
//            uncheck(sel), screenshot({ path, fullPage }),
//            setViewportSize(size), exposeFunction(name, fn),
//            waitForTimeout(ms)
import { launchChromium } from "./chromium.mjs";
import { launchFirefox } from "./firefox.mjs";

const LAUNCHERS = { chromium: launchChromium, firefox: launchFirefox };

/** Every engine the suites know, in the order cross-engine tests use. */
export const ENGINES = Object.keys(LAUNCHERS);

/** This run's engine: `CPC_BROWSER`, else chromium. */
export const ENGINE = process.env.CPC_BROWSER || "chromium";
if (!LAUNCHERS[ENGINE]) {
  throw new Error(`CPC_BROWSER=${ENGINE}: not one of ${ENGINES.join(", ")}`);
}

/** Starts a headless browser of `engine` (this run's by default). */
export function launch(engine = ENGINE) {
  return LAUNCHERS[engine]();
}
