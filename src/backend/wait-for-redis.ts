import { createClient } from "redis";

/**
 * Resolves once Redis answers PING, retrying until `waitSeconds` have passed; then rejects with a
 * message that says where and why (a node that cannot reach Redis must not start half-working).
 */
export async function waitForRedis(url: string, waitSeconds: number): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const client = createClient({
      url,
      socket: { reconnectStrategy: false, connectTimeout: 2000 },
    });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.ping();
      await client.close();
      return;
    } catch (err) {
      client.destroy();
      if (Date.now() >= deadline) {
        const reason = err instanceof Error ? err.message || err.name : String(err);
        throw new Error(
          `cannot reach Redis at ${redactUrl(url)} (${reason})` +
            (waitSeconds > 0
              ? ` after waiting ${waitSeconds} s`
              : "; --redis-wait <seconds> waits for it"),
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}
