// Debian's stock Firefox ESR, driven by puppeteer-core over WebDriver BiDi
// (Playwright's Firefox is a patched build of its own, which cannot be
// installed here), behind the part of Playwright's API that index.mjs
// lists, with Playwright's signatures and defaults.
import puppeteer from "puppeteer-core";

/** Playwright's defaults, so a test reads the same in both engines. */
const VIEWPORT = { width: 1280, height: 720 };
const TIMEOUT = 30_000;

export async function launchFirefox() {
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
    headless: true,
    defaultViewport: null,
  });
  return new FirefoxBrowser(browser);
}

class FirefoxBrowser {
  #browser;

  constructor(browser) {
    this.#browser = browser;
  }

  /** A BiDi user context: storage, Web Locks and BroadcastChannel of its
   * own, as a Playwright context has. */
  async newContext({ viewport = VIEWPORT } = {}) {
    return new FirefoxContext(await this.#browser.createBrowserContext(), viewport);
  }

  /** As Playwright's `browser.newPage()`: a page in a context of its own,
   * which closes with it. */
  async newPage() {
    const context = await this.newContext();
    const page = await context.newPage();
    page.closing = () => context.close();
    return page;
  }

  /** "firefox/153.8.0" → "153.8.0", as Playwright gives Chromium's. */
  async version() {
    return (await this.#browser.version()).replace(/^firefox\//i, "");
  }

  close() {
    return this.#browser.close();
  }
}

class FirefoxContext {
  #context;
  #viewport;
  /** Scripts run before the page's own in each new page (Playwright's
   * `addInitScript`, through Puppeteer's `evaluateOnNewDocument`). */
  #init = [];

  constructor(context, viewport) {
    this.#context = context;
    this.#viewport = viewport;
  }

  async addInitScript(fn) {
    this.#init.push(fn);
  }

  /** Each page in a window of its own: Firefox hides every tab of a window
   * but the selected one, and a hidden tab's timers and animation frames
   * are throttled, while Playwright's Chromium pages are all visible. */
  async newPage() {
    const page = await this.#context.newPage({ type: "window" });
    await page.setViewport(this.#viewport);
    for (const fn of this.#init) await page.evaluateOnNewDocument(fn);
    return new FirefoxPage(page);
  }

  close() {
    return this.#context.close();
  }
}

class FirefoxPage {
  #page;
  /** Set by `FirefoxBrowser.newPage`: closes the page's own context. */
  closing = null;

  constructor(page) {
    this.#page = page;
  }

  /** "console" (a message with type() and text()) and "pageerror" (an
   * Error) have the same shapes in both drivers, but for one name: a
   * console.warn is "warn" to Puppeteer and "warning" to Playwright. */
  on(event, listener) {
    if (event === "console") {
      this.#page.on(event, (m) => listener({ type: () => (m.type() === "warn" ? "warning" : m.type()), text: () => m.text() }));
    } else {
      this.#page.on(event, listener);
    }
    return this;
  }

  async goto(url) {
    return this.#page.goto(url);
  }

  async reload() {
    return this.#page.reload();
  }

  url() {
    return this.#page.url();
  }

  async close() {
    await this.#page.close();
    await this.closing?.();
  }

  evaluate(fn, arg) {
    return this.#page.evaluate(fn, arg);
  }

  waitForSelector(selector, { state = "visible", timeout = TIMEOUT } = {}) {
    return this.#page.waitForSelector(selector, { visible: state === "visible", timeout });
  }

  waitForFunction(fn, arg, { timeout = TIMEOUT } = {}) {
    return this.#page.waitForFunction(fn, { timeout, polling: 100 }, arg);
  }

  async waitForURL(pattern, { timeout = TIMEOUT } = {}) {
    const deadline = Date.now() + timeout;
    while (!pattern.test(this.#page.url())) {
      if (Date.now() > deadline) throw new Error(`no URL like ${pattern} in ${timeout} ms: ${this.#page.url()}`);
      await this.waitForTimeout(50);
    }
  }

  async textContent(selector) {
    const element = await this.waitForSelector(selector, { state: "attached" });
    return element.evaluate((e) => e.textContent);
  }

  async getAttribute(selector, name) {
    const element = await this.waitForSelector(selector, { state: "attached" });
    return element.evaluate((e, name) => e.getAttribute(name), name);
  }

  /** Puppeteer's locators wait, as Playwright's actions do, for the element
   * to be visible, enabled and still. */
  click(selector) {
    return this.#page.locator(selector).setTimeout(TIMEOUT).click();
  }

  fill(selector, value) {
    return this.#page.locator(selector).setTimeout(TIMEOUT).fill(value);
  }

  /** As Playwright's: focus the element, then press `key` there. */
  async press(selector, key) {
    await this.#page.locator(selector).setTimeout(TIMEOUT).click();
    await this.#page.keyboard.press(key);
  }

  async isChecked(selector) {
    const element = await this.waitForSelector(selector, { state: "attached" });
    return element.evaluate((e) => e.checked);
  }

  async selectOption(selector, value) {
    await this.waitForSelector(selector);
    return this.#page.select(selector, value);
  }

  check(selector) {
    return this.#setChecked(selector, true);
  }

  uncheck(selector) {
    return this.#setChecked(selector, false);
  }

  /** As Playwright: a click when the box is not as wanted, then a check
   * that the click did it. */
  async #setChecked(selector, wanted) {
    const element = await this.waitForSelector(selector);
    if ((await element.evaluate((e) => e.checked)) !== wanted) await this.click(selector);
    if ((await element.evaluate((e) => e.checked)) !== wanted) {
      throw new Error(`${selector} did not become ${wanted ? "checked" : "unchecked"}`);
    }
  }

  screenshot({ path, fullPage = false } = {}) {
    return this.#page.screenshot({ path, fullPage });
  }

  setViewportSize(size) {
    return this.#page.setViewport(size);
  }

  exposeFunction(name, fn) {
    return this.#page.exposeFunction(name, fn);
  }

  waitForTimeout(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}
