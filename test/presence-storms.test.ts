/**
 * No flaps, no storms: a reload, a worker SIGKILL and a `restart` close every (or some) client's
 * transport; clients that come back within the grace (socket.io-client's default back-off) cause
 * no 202/203 for their users, and nobody gets a 202 for a user who never left.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { RECONNECT_GRACE_MS } from "../src/presence/reconnect-grace.js";
import { ChatClient } from "./support/chat-client.js";
import { freePort } from "./support/nginx.js";
import { PresenceView } from "./support/presence-view.js";
import {
  runCli,
  runCliAsync,
  SCRIPTED_RATES,
  startService,
  tempDir,
  waitUntil,
} from "./support/service.js";

const USERS = 30;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function connectAll(url: string, room: string): { tabs: ChatClient[]; views: PresenceView[] } {
  const tabs: ChatClient[] = [];
  const views: PresenceView[] = [];
  for (let i = 0; i < USERS; i++) {
    // Default back-off, as a browser would reconnect.
    const client = new ChatClient(
      url,
      { userId: `u${i}`, username: `u${i}`, room },
      { reconnection: true },
    );
    tabs.push(client);
    views.push(new PresenceView(client));
  }
  cleanups.push(() => {
    for (const t of tabs) t.close();
  });
  return { tabs, views };
}

const everyone = Array.from({ length: USERS }, (_, i) => `u${i}`).sort();

/**
 * Waits for the store to hold exactly the live tabs: the entries kept for the grace (a dead
 * worker's, a previous run's) are gone, which happens only once the grace has passed.
 */
async function reaped(pidArgs: string[], tabs: ChatClient[]): Promise<void> {
  const live = tabs.length;
  await waitUntil(
    async () => {
      const r = await runCliAsync(["status", "--json", ...pidArgs]);
      const s = JSON.parse(r.stdout) as {
        users: number;
        workers: { presence?: { connections: number } }[];
      };
      return s.workers.some((w) => w.presence?.connections === live);
    },
    "the entries kept for the grace to be removed",
    RECONNECT_GRACE_MS + 10_000,
    250,
  );
  // A 203 wrongly sent by that removal would come before a message stored after it.
  const text = `after the grace ${Date.now()}`;
  tabs[0].send({ type: "text", content: { message: text } });
  for (const t of tabs) {
    await t.waitFor((e) => e.data.content.message === text, "the marker after the grace", 10_000);
  }
}

async function settled(tabs: ChatClient[], views: PresenceView[], what: string): Promise<void> {
  await waitUntil(
    () =>
      tabs.every(
        (t, i) =>
          t.connected && JSON.stringify(views[i].sorted(`u${i}`)) === JSON.stringify(everyone),
      ) || undefined,
    what,
    30_000,
  );
}

function changes(views: PresenceView[]): number {
  return views.reduce((n, v) => n + v.changesFor(everyone), 0);
}

describe("no presence flaps or storms", { timeout: 150_000 }, () => {
  it("reload and a worker SIGKILL: no 202/203 for users whose clients come back", async () => {
    const service = await startService(SCRIPTED_RATES);
    cleanups.push(() => service.stop());
    const { tabs, views } = connectAll(service.url, "storm-reload");
    await settled(tabs, views, "everyone connected and listed");
    for (const v of views) v.resetChanges();

    const r = await runCliAsync(["reload", "--pid-file", service.pidFile]);
    assert.equal(r.code, 0, r.stderr);
    await settled(tabs, views, "everyone back after the reload");
    assert.ok(
      tabs.every((t) => t.disconnects.length > 0),
      "every client was moved",
    );
    assert.equal(changes(views), 0, "202/203 received after the reload");

    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
      workers: { pid: number }[];
    };
    process.kill(status.workers[0].pid, "SIGKILL");
    await waitUntil(
      () => tabs.some((t) => t.disconnects.length > 1) || undefined,
      "some clients cut by the crash",
    );
    await settled(tabs, views, "everyone back after the crash");
    // Once the grace has passed the dead worker's entries are reaped; nobody was anyone's last tab.
    await reaped(["--pid-file", service.pidFile], tabs);
    assert.equal(changes(views), 0, "202/203 received after the worker crash");
  });

  it("restart (cluster mode): no 202 storm, no 203, everyone listed again", async () => {
    const dir = tempDir();
    const pidFile = path.join(dir, "w.pid");
    const port = await freePort();
    const started = runCli([
      "start",
      "-d",
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      "--pid-file",
      pidFile,
      ...SCRIPTED_RATES,
    ]);
    assert.equal(started.code, 0, started.stderr);
    cleanups.push(() => existsSync(pidFile) && runCliAsync(["stop", "--pid-file", pidFile]));
    const url = `http://127.0.0.1:${port}`;
    const { tabs, views } = connectAll(url, "storm-restart");
    await settled(tabs, views, "everyone connected and listed");
    for (const v of views) v.resetChanges();

    const r = await runCliAsync(["restart", "--pid-file", pidFile]);
    assert.equal(r.code, 0, r.stderr);
    await settled(tabs, views, "everyone back after the restart");
    // Once the grace has passed the restored entries of clients that came back are gone, no 203.
    await reaped(["--pid-file", pidFile], tabs);
    const received = changes(views);
    assert.equal(received, 0, `${received} 202/203 received after the restart`);
    await settled(tabs, views, "everyone still listed");
  });
});
