/**
 * The browser chat page (public/) against the real service (2 workers), in Debian's Chromium
 * driven by playwright-core. Never downloads a browser: /usr/bin/chromium must exist.
 *
 * Then the same two-page chat through the real nginx (deploy/nginx.conf) in front of two nodes in
 * Redis mode, with the two chatting pages served by different nodes. nginx picks the node by
 * hashing the client address, and Chromium's loopback connections all come from 127.0.0.1, so
 * each page opens a relay (test/support/source-relay.ts) that reaches nginx from a 127.0.0.x
 * address that nginx sends to the wanted node.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Locator,
  type Page,
} from "playwright-core";
import {
  addressesPerNode,
  type NodeHandle,
  type NodeStatus,
  startNode,
} from "./support/cluster-nodes.js";
import { type NginxHandle, startNginx } from "./support/nginx.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { startService, tempDir, waitUntil } from "./support/service.js";
import { type SourceRelay, startSourceRelay } from "./support/source-relay.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
/** Longest wait for any state change the page should show. */
const WAIT_MS = 10_000;
/** Leaving may be reported after a short grace period. */
const LEAVE_WAIT_MS = 20_000;
/** The service's text limit in this suite, so the error case needs no huge message. */
const MAX_MESSAGE_LENGTH = 200;
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));
/** A 1×1 red PNG. */
const PNG_DATA_URL =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const XSS = "<img src=x onerror=alert(1)>";

type Service = Awaited<ReturnType<typeof startService>>;

interface ChatPage {
  page: Page;
  username: string;
  /** The userId the service gave this page (from its own entry in the online list). */
  userId: string;
  /** Uncaught page errors and dialogs (alert/confirm/prompt) seen so far. */
  problems: string[];
}

let service: Service;
let browser: Browser;
let contexts: BrowserContext[] = [];
let roomSeq = 0;

function uniqueRoom(): string {
  roomSeq += 1;
  return `room${roomSeq}-${process.pid}`;
}

/** Polls `check` until it is true (support's waitUntil, with this file's deadline). */
function poll(what: string, check: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<boolean> {
  return waitUntil(check, what, timeoutMs, 50);
}

function byTestId(page: Page, id: string): Locator {
  return page.locator(`[data-testid="${id}"]`);
}

function userItem(page: Page, userId: string): Locator {
  return page.locator(`[data-testid="user-item"][data-user-id="${userId}"]`);
}

function messageItems(page: Page): Locator {
  return page.locator('[data-testid="message-item"]');
}

/** The message carrying exactly this text (waits for it). */
async function waitForMessage(page: Page, text: string, timeout = WAIT_MS): Promise<Locator> {
  const item = messageItems(page).filter({
    has: page.locator(".body", { hasText: new RegExp(`^${escapeRegExp(text)}$`) }),
  });
  await item.first().waitFor({ timeout });
  return item;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function connState(page: Page): Promise<string> {
  return (await byTestId(page, "conn-state").textContent()) ?? "";
}

async function waitForConnState(page: Page, wanted: string) {
  await poll(`conn-state "${wanted}"`, async () => (await connState(page)) === wanted);
}

async function openPage(
  url: string,
  viewport = { width: 1000, height: 700 },
): Promise<{
  page: Page;
  problems: string[];
}> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => {
    problems.push(`dialog ${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  await page.goto(url);
  return { page, problems };
}

/**
 * Opens the page at `url` (default: the single service), joins `room` as `username` and waits
 * until the page shows itself online.
 */
async function joinChat(
  username: string,
  room: string,
  viewport?: { width: number; height: number },
  url = service.url,
): Promise<ChatPage> {
  const { page, problems } = await openPage(url, viewport);
  assert.equal(await connState(page), "disconnected");
  await byTestId(page, "join-username").fill(username);
  await byTestId(page, "join-room").fill(room);
  await byTestId(page, "join-submit").click();
  await waitForConnState(page, "connected");
  const self = page.locator('[data-testid="user-item"][data-self="true"]');
  await self.waitFor({ timeout: WAIT_MS });
  const userId = await self.getAttribute("data-user-id");
  assert.ok(userId, "the own user-item has a data-user-id");
  assert.equal(await byTestId(page, "error-banner").isVisible(), false);
  return { page, username, userId, problems };
}

async function send(chat: ChatPage, text: string) {
  await byTestId(chat.page, "composer-input").fill(text);
  await byTestId(chat.page, "composer-send").click();
}

async function userIds(page: Page): Promise<string[]> {
  const ids = await page
    .locator('[data-testid="user-item"]')
    .evaluateAll((items) => items.map((item) => item.getAttribute("data-user-id") ?? ""));
  return ids.sort();
}

/**
 * alice and bob (joined to one room, bob last) see each other join, chat both ways, see the
 * typing indicator, and alice sees bob leave; `other`, in another room, sees none of it. Saves a
 * screenshot of alice's page as test-artifacts/<screenshot>.
 */
async function twoPageChat(alice: ChatPage, bob: ChatPage, other: ChatPage, screenshot: string) {
  // Joins: alice sees bob arrive (202); bob's list (201) holds both, once each.
  await userItem(alice.page, bob.userId).waitFor({ timeout: WAIT_MS });
  await alice.page
    .locator('[data-testid="system-item"]', { hasText: "bob" })
    .waitFor({ timeout: WAIT_MS });
  assert.deepEqual(await userIds(alice.page), [alice.userId, bob.userId].sort());
  assert.deepEqual(await userIds(bob.page), [alice.userId, bob.userId].sort());
  assert.match((await byTestId(bob.page, "private-target").textContent()) ?? "", /everyone/);

  // Chat both ways, with the sender's name and time.
  await send(alice, "hello from alice");
  const atBob = await waitForMessage(bob.page, "hello from alice");
  assert.equal(await atBob.getAttribute("data-from"), alice.userId);
  assert.equal(await atBob.getAttribute("data-type"), "text");
  assert.equal(await atBob.getAttribute("data-private"), "false");
  assert.match((await atBob.locator(".sender").textContent()) ?? "", /alice/);
  assert.match((await atBob.locator("time").textContent()) ?? "", /\d{1,2}:\d{2}/);
  const ownCopy = await waitForMessage(alice.page, "hello from alice");
  assert.equal(await ownCopy.count(), 1, "the sender sees its message once");
  assert.equal(await byTestId(alice.page, "composer-input").inputValue(), "");

  await send(bob, "hi alice, bob here");
  const atAlice = await waitForMessage(alice.page, "hi alice, bob here");
  assert.equal(await atAlice.getAttribute("data-from"), bob.userId);

  // Typing: bob types, alice sees it, and it goes away by itself when bob stops.
  const typing = byTestId(alice.page, "typing-indicator");
  assert.equal(await typing.isVisible(), false);
  await byTestId(bob.page, "composer-input").pressSequentially("still typ", { delay: 20 });
  await typing.filter({ hasText: "bob" }).waitFor({ state: "visible", timeout: WAIT_MS });
  await typing.waitFor({ state: "hidden", timeout: WAIT_MS });
  await byTestId(bob.page, "composer-input").fill("");

  await mkdir(ARTIFACTS, { recursive: true });
  await alice.page.screenshot({ path: `${ARTIFACTS}${screenshot}` });

  // Another room sees none of it.
  assert.deepEqual(await userIds(other.page), [other.userId]);
  assert.equal(await messageItems(other.page).count(), 0);
  assert.equal(await other.page.locator('[data-testid="system-item"]').count(), 0);
  assert.equal(await byTestId(other.page, "typing-indicator").isVisible(), false);

  // Bob leaves: alice's list drops him, bob's page says disconnected and shows the form again.
  await byTestId(bob.page, "leave").click();
  await waitForConnState(bob.page, "disconnected");
  await byTestId(bob.page, "join-form").waitFor({ state: "visible", timeout: WAIT_MS });
  await userItem(alice.page, bob.userId).waitFor({ state: "detached", timeout: LEAVE_WAIT_MS });
  assert.deepEqual(await userIds(alice.page), [alice.userId]);
  assert.equal(await connState(alice.page), "connected");

  assert.equal(await messageItems(other.page).count(), 0);
  for (const chat of [alice, bob, other]) assert.deepEqual(chat.problems, []);
}

// One browser for the whole file.
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
});

async function closeContexts() {
  await Promise.all(contexts.map((context) => context.close()));
  contexts = [];
}

describe("browser chat page", { timeout: 120_000 }, () => {
  before(async () => {
    service = await startService([], {
      WEIGOT_WS_MAX_MESSAGE_LENGTH: String(MAX_MESSAGE_LENGTH),
    });
  });

  afterEach(closeContexts);

  after(async () => {
    await service?.stop();
  });

  it("two users in a room see each other, chat, type and leave; another room sees nothing", async () => {
    const room = uniqueRoom();
    const other = await joinChat("carol", uniqueRoom());
    const alice = await joinChat("alice", room);
    const bob = await joinChat("bob", room);
    await twoPageChat(alice, bob, other, "chat.png");
  });

  it("renders markup in a message as text: no element, no script", async () => {
    const room = uniqueRoom();
    const alice = await joinChat("alice", room);
    const bob = await joinChat("bob", room);
    await userItem(alice.page, bob.userId).waitFor({ timeout: WAIT_MS });

    await send(alice, XSS);
    for (const chat of [bob, alice]) {
      const item = await waitForMessage(chat.page, XSS);
      assert.equal(await item.locator(".body").textContent(), XSS);
      assert.equal(await item.locator("img").count(), 0);
      assert.equal(await chat.page.locator('[data-testid="messages"] img').count(), 0);
    }
    // A later message has arrived, so an onerror handler would have had its chance.
    await send(bob, "after the markup");
    await waitForMessage(alice.page, "after the markup");
    for (const chat of [alice, bob]) assert.deepEqual(chat.problems, []);
  });

  it("sends an image that loads, and refuses unsafe image URLs", async () => {
    const room = uniqueRoom();
    const alice = await joinChat("alice", room);
    const bob = await joinChat("bob", room);
    await userItem(alice.page, bob.userId).waitFor({ timeout: WAIT_MS });

    await byTestId(alice.page, "image-url-input").fill(PNG_DATA_URL);
    await byTestId(alice.page, "image-url-send").click();
    for (const chat of [bob, alice]) {
      const item = chat.page.locator('[data-testid="message-item"][data-type="img"]');
      await item.first().waitFor({ timeout: WAIT_MS });
      assert.equal(await item.count(), 1);
      assert.equal(await item.getAttribute("data-from"), alice.userId);
      const img = item.locator("img");
      assert.equal(await img.getAttribute("src"), PNG_DATA_URL);
      await poll("the image to load", () =>
        img.evaluate((node: HTMLImageElement) => node.complete && node.naturalWidth === 1),
      );
    }

    // A javascript: URL is refused in the page, with an error, and never sent.
    await byTestId(alice.page, "image-url-input").fill("javascript:alert(1)");
    await byTestId(alice.page, "image-url-send").click();
    await byTestId(alice.page, "error-banner").waitFor({ state: "visible", timeout: WAIT_MS });
    await send(alice, "marker after the refused image");
    await waitForMessage(bob.page, "marker after the refused image");
    assert.equal(await messageItems(bob.page).count(), 2);
    for (const chat of [alice, bob]) assert.deepEqual(chat.problems, []);
  });

  it("sends private messages to a user picked in the list, then back to the room", async () => {
    const room = uniqueRoom();
    const alice = await joinChat("alice", room);
    const bob = await joinChat("bob", room);
    const dave = await joinChat("dave", room);
    await userItem(alice.page, dave.userId).waitFor({ timeout: WAIT_MS });
    await userItem(alice.page, bob.userId).waitFor({ timeout: WAIT_MS });

    await userItem(alice.page, bob.userId).click();
    const target = byTestId(alice.page, "private-target");
    assert.equal(await target.getAttribute("data-private"), "true");
    assert.equal(await target.getAttribute("data-user-id"), bob.userId);
    assert.match((await target.textContent()) ?? "", /bob/);

    await send(alice, "psst, only for bob");
    const atBob = await waitForMessage(bob.page, "psst, only for bob");
    assert.equal(await atBob.getAttribute("data-private"), "true");
    assert.equal(await atBob.getAttribute("data-from"), alice.userId);
    assert.match((await atBob.textContent()) ?? "", /private/i);
    const ownCopy = await waitForMessage(alice.page, "psst, only for bob");
    assert.equal(await ownCopy.getAttribute("data-private"), "true");

    await byTestId(alice.page, "private-cancel").click();
    assert.equal(await target.getAttribute("data-private"), "false");
    await send(alice, "hello everyone");
    const atDave = await waitForMessage(dave.page, "hello everyone");
    assert.equal(await atDave.getAttribute("data-private"), "false");
    await waitForMessage(bob.page, "hello everyone");
    assert.equal(await messageItems(dave.page).count(), 1, "dave never saw the private message");
    for (const chat of [alice, bob, dave]) assert.deepEqual(chat.problems, []);
  });

  it("shows a refused message as an error and delivers nothing", async () => {
    const room = uniqueRoom();
    const alice = await joinChat("alice", room);
    const bob = await joinChat("bob", room);
    await userItem(alice.page, bob.userId).waitFor({ timeout: WAIT_MS });

    await send(alice, "x".repeat(MAX_MESSAGE_LENGTH + 50));
    const banner = byTestId(alice.page, "error-banner");
    await banner.waitFor({ state: "visible", timeout: WAIT_MS });
    // Refused by the page (it knows the limit from config.json) or by the service.
    const code = await banner.getAttribute("data-code");
    const text = (await banner.textContent()) ?? "";
    assert.ok(code === "E_MESSAGE_TOO_LONG" || /too long/i.test(text), `error shown: ${text}`);
    await send(alice, "a short one");
    await waitForMessage(bob.page, "a short one");
    assert.equal(await messageItems(bob.page).count(), 1);
    assert.equal(await connState(alice.page), "connected");
  });

  it("shows the room's recent messages to a page that joins later, once each", async () => {
    const room = uniqueRoom();
    const alice = await joinChat("alice", room);
    await send(alice, "said before bob came");
    await waitForMessage(alice.page, "said before bob came");
    await send(alice, "and once more");
    await waitForMessage(alice.page, "and once more");
    const bob = await joinChat("bob", room);
    await waitForMessage(bob.page, "said before bob came");
    await waitForMessage(bob.page, "and once more");
    await send(bob, "hello alice");
    await waitForMessage(alice.page, "hello alice");
    await waitForMessage(bob.page, "hello alice");
    assert.equal(await messageItems(bob.page).count(), 3, "history, then live, nothing twice");
    assert.deepEqual(alice.problems, []);
    assert.deepEqual(bob.problems, []);
  });

  it("fits a phone screen", async () => {
    const chat = await joinChat("pat", uniqueRoom(), { width: 375, height: 700 });
    await send(chat, "hello from a phone");
    await waitForMessage(chat.page, "hello from a phone");
    const overflow = await chat.page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
    for (const id of ["composer-input", "composer-send", "user-list", "conn-state"]) {
      assert.ok(await byTestId(chat.page, id).isVisible(), `${id} is visible`);
    }
    await chat.page.screenshot({ path: `${ARTIFACTS}chat-phone.png` });
    assert.deepEqual(chat.problems, []);
  });
});

/** The engine.io transport of the page's live socket ("polling", "websocket"), "" when none. */
async function transportOf(page: Page): Promise<string> {
  // `state` is a top-level const of public/app.js (a classic script): visible to evaluated code.
  return page.evaluate("state.socket ? state.socket.io.engine.transport.name : ''");
}

/** The access-log lines nginx wrote so far for requests from `address`. */
function accessLines(nginx: NginxHandle, address: string): string[] {
  return nginx
    .output()
    .split("\n")
    .filter((line) => line.startsWith(`${address} - [`));
}

describe("browser chat page through nginx across two nodes", { timeout: 120_000 }, () => {
  let redis: RedisServer | undefined;
  let nodes: NodeHandle[] = [];
  let nginx: NginxHandle | undefined;
  const relays: SourceRelay[] = [];
  /** nodes[n] is reached through nginx from sourceFor[n]. */
  let sourceFor: string[] = [];

  before(async () => {
    redis = await startRedisServer();
    const redisUrl = redis.url;
    nodes = await Promise.all(["a", "b"].map((nodeId) => startNode({ redisUrl, nodeId })));
    nginx = await startNginx({ upstreams: nodes.map((n) => n.port) });
    const byPort = await addressesPerNode(
      nginx,
      nodes.map((n) => n.port),
    );
    sourceFor = nodes.map((n) => byPort.get(n.port) as string);
  });

  afterEach(closeContexts);

  after(async () => {
    await closeContexts();
    await Promise.all(relays.map((relay) => relay.close()));
    await nginx?.stop();
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  /** A relay into nginx from the source address nginx sends to nodes[n]; for one page. */
  async function relayTo(n: number): Promise<SourceRelay> {
    assert.ok(nginx);
    const relay = await startSourceRelay({ port: nginx.port }, sourceFor[n]);
    relays.push(relay);
    return relay;
  }

  async function connectionsPerNode(): Promise<number[]> {
    const statuses: NodeStatus[] = await Promise.all(nodes.map((node) => node.status()));
    return statuses.map((status) => status.connections);
  }

  /** Waits until `status --json` of each node counts `expected[n]` sockets. */
  async function waitForConnections(expected: number[], what: string) {
    let last: number[] = [];
    await poll(`connections per node ${JSON.stringify(expected)} ${what}`, async () => {
      last = await connectionsPerNode();
      return last.every((count, n) => count === expected[n]);
    }).catch((err: Error) => {
      assert.fail(`${err.message}; last seen ${JSON.stringify(last)}`);
    });
  }

  it("two users on different nodes see each other, chat, type and leave; another room sees nothing", async () => {
    assert.ok(nginx);
    assert.notEqual(sourceFor[0], sourceFor[1]);
    assert.deepEqual(await connectionsPerNode(), [0, 0], "no connections before the pages join");
    const room = uniqueRoom();
    // carol (another room) and alice on node a, bob on node b.
    const other = await joinChat("carol", uniqueRoom(), undefined, (await relayTo(0)).url);
    const alice = await joinChat("alice", room, undefined, (await relayTo(0)).url);
    const bob = await joinChat("bob", room, undefined, (await relayTo(1)).url);

    // Every page has upgraded from polling to a WebSocket, through nginx.
    for (const chat of [other, alice, bob]) {
      await poll(
        `${chat.username}'s socket to upgrade to websocket`,
        async () => (await transportOf(chat.page)) === "websocket",
      );
    }
    // Where they landed, as the nodes count it: 2 sockets on a (carol, alice), 1 on b (bob).
    await waitForConnections([2, 1], "after the joins");
    // And as nginx logged it: every request of a page's address went to that page's node, the
    // page itself and the polling handshake included.
    for (const [n, address] of sourceFor.entries()) {
      const lines = accessLines(nginx, address);
      const upstream = `upstream=127.0.0.1:${nodes[n].port} `;
      assert.ok(
        lines.some((line) => line.includes('"GET / HTTP/1.1" 200')),
        `the page loaded through nginx from ${address}:\n${lines.join("\n")}`,
      );
      assert.ok(
        lines.some((line) => /"GET \/socket\.io\/\?EIO=4&transport=polling[^"]*" 200 /.test(line)),
        `a polling handshake through nginx from ${address}:\n${lines.join("\n")}`,
      );
      for (const line of lines) {
        // The probe of addressesPerNode() is from the same address and also went to node n.
        assert.ok(line.includes(upstream), `from ${address} to node ${nodes[n].nodeId}: ${line}`);
      }
    }

    await twoPageChat(alice, bob, other, "chat-nginx.png");

    // bob's socket on node b is gone; nginx logged his WebSocket (101) once it closed, to node b.
    await waitForConnections([2, 0], "after bob left");
    await poll("nginx to log bob's closed WebSocket", async () =>
      accessLines(nginx as NginxHandle, sourceFor[1]).some(
        (line) =>
          /"GET \/socket\.io\/\?EIO=4&transport=websocket[^"]*" 101 /.test(line) &&
          line.includes(`upstream=127.0.0.1:${nodes[1].port} `),
      ),
    );
  });
});

describe("browser chat page of an app (?app=<id>)", { timeout: 120_000 }, () => {
  let apps: Service | undefined;

  before(async () => {
    const file = path.join(tempDir(), "apps.json");
    // An open app (no secrets): the page's join form works as on the default app.
    writeFileSync(file, JSON.stringify({ apps: [{ id: "alpha", name: "Alpha shop" }] }));
    apps = await startService(["--apps-file", file]);
  });

  afterEach(closeContexts);

  after(async () => {
    await apps?.stop();
  });

  it("chats in the app's namespace, shows the app, and shares nothing with the default app's room of the same name", async () => {
    const base = (apps as Service).url;
    const room = uniqueRoom();
    const alice = await joinChat("alice", room, undefined, `${base}/?app=alpha`);
    assert.equal(await byTestId(alice.page, "app-name").textContent(), "Alpha shop");
    const bob = await joinChat("bob", room, undefined, `${base}/?app=alpha`);
    // The default app (no ?app), same room name: another room as far as alpha is concerned.
    const carol = await joinChat("carol", room, undefined, base);
    assert.equal(await byTestId(carol.page, "app-name").isVisible(), false);
    await twoPageChat(alice, bob, carol, "chat-app.png");

    const { page, problems } = await openPage(`${base}/?app=nope`);
    const banner = byTestId(page, "error-banner");
    await banner.waitFor({ state: "visible", timeout: WAIT_MS });
    assert.equal(await banner.getAttribute("data-code"), "E_UNKNOWN_APP");
    assert.deepEqual(problems, []);
  });
});
