/**
 * The chat page warns, visibly, when the service runs open (no --jwt-secret): anyone can claim
 * any name there. In Debian's Chromium (playwright-core; /usr/bin/chromium must exist).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { type ServiceHandle, startService } from "./support/service.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
const WAIT_MS = 10_000;

let browser: Browser;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
});

/** Opens the page and waits until it has read /config.json (the join form is ready). */
async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  const config = page.waitForResponse((r) => r.url().endsWith("/config.json"));
  await page.goto(url);
  await config;
  return { page, problems };
}

describe("open-mode banner", { timeout: 60_000 }, () => {
  let open: ServiceHandle;
  let secured: ServiceHandle;
  before(async () => {
    [open, secured] = await Promise.all([
      startService(),
      startService(["--jwt-secret", "page-secret-0123456789abcdef0123456789"]),
    ]);
  });
  after(async () => {
    await Promise.all([open?.stop(), secured?.stop()]);
  });

  it("open mode: a visible banner says development mode and names --jwt-secret", async () => {
    const { page, problems } = await openPage(open.url);
    const banner = page.locator('[data-testid="open-mode-banner"]');
    await banner.waitFor({ state: "visible", timeout: WAIT_MS });
    const text = (await banner.textContent()) ?? "";
    assert.match(text, /development mode/i);
    assert.match(text, /anyone can claim any name/);
    assert.match(text, /--jwt-secret/);
    // Text only: no markup inside the banner.
    assert.equal(await banner.locator("*").count(), 0);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("JWT mode: no banner (and the token field instead)", async () => {
    const { page, problems } = await openPage(secured.url);
    await page
      .locator('[data-testid="join-token"]')
      .waitFor({ state: "visible", timeout: WAIT_MS });
    assert.equal(await page.locator('[data-testid="open-mode-banner"]').isVisible(), false);
    assert.deepEqual(problems, []);
    await page.close();
  });
});
