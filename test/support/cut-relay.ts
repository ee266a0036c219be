/**
 * A TCP relay the test can cut, the way a network fails: clients open `relay.url` instead of the
 * server's and every connection is piped byte for byte to the target. `cut(ms)` then either
 * destroys every piped connection at once and refuses (resets) new ones until the cut is over
 * (`mode: "reset"`: a dropped Wi-Fi, a NAT that forgot the flow), or stalls them (`"stall"`:
 * what either side writes meanwhile is dropped, nothing is closed) and destroys them when the cut
 * ends: the server believes it delivered what it wrote meanwhile, and only a resume (`since`) can
 * bring it back.
 */
import net from "node:net";

export type CutMode = "reset" | "stall";

export interface CutRelay {
  url: string;
  port: number;
  /** Connections accepted (piped) so far. */
  accepted(): number;
  /** Connections refused during cuts so far. */
  refused(): number;
  /** True while a cut is on. */
  isCut(): boolean;
  /** Cuts the network for `ms`; resolves when it is back (connections are accepted again). */
  cut(ms: number, mode?: CutMode): Promise<void>;
  /** Stops listening and destroys every open connection. Idempotent. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  stalled: boolean;
}

export async function startCutRelay(target: { host?: string; port: number }): Promise<CutRelay> {
  const pairs = new Set<Pair>();
  let accepted = 0;
  let refused = 0;
  let cutUntil = 0;
  const server = net.createServer((client) => {
    if (Date.now() < cutUntil) {
      refused += 1;
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    accepted += 1;
    const upstream = net.connect({ host: target.host ?? "127.0.0.1", port: target.port });
    const pair: Pair = { client, upstream, stalled: false };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.setNoDelay(true);
      from.on("error", end);
      from.on("close", end);
      // Not pipe(): a stalled pair drops what it reads instead of forwarding it.
      from.on("data", (chunk) => {
        if (pair.stalled) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once("drain", () => from.resume());
        }
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  const destroyAll = () => {
    for (const p of [...pairs]) {
      pairs.delete(p);
      p.client.resetAndDestroy();
      p.upstream.destroy();
    }
  };
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accepted: () => accepted,
    refused: () => refused,
    isCut: () => Date.now() < cutUntil,
    cut: async (ms, mode = "reset") => {
      cutUntil = Date.now() + ms;
      if (mode === "reset") destroyAll();
      else for (const p of pairs) p.stalled = true;
      await new Promise((resolve) => setTimeout(resolve, ms));
      cutUntil = 0;
      // A stall ends the way a long one does: both sides have given the connection up.
      if (mode === "stall") destroyAll();
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        cutUntil = 0;
        server.close(() => resolve());
        destroyAll();
      });
      return closing;
    },
  };
}
