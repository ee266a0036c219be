/**
 * A TCP relay that makes a client's connections to a server come from a chosen source address.
 *
 * Linux picks 127.0.0.1 as the source for every loopback destination (`ip route get 127.0.0.5`
 * says `src 127.0.0.1`), and a browser cannot be told to bind its sockets. So a browser page
 * opens `relay.url` instead of the server's URL, and every connection it makes there is piped,
 * byte for byte, to the target through a socket bound to `localAddress` (e.g. 127.0.0.7): nginx
 * then sees `$remote_addr` = 127.0.0.7 for the page's HTTP requests, long-polls and WebSockets
 * alike. Nothing is parsed or rewritten (the Host header names the relay, which nginx ignores).
 */
import net from "node:net";

export interface SourceRelay {
  /** `http://127.0.0.1:<port>`: what the page opens instead of the target. */
  url: string;
  port: number;
  /** The source address of every upstream connection. */
  localAddress: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Stops listening and destroys every open connection (both sides). Idempotent. */
  close(): Promise<void>;
}

export async function startSourceRelay(
  target: { host?: string; port: number },
  localAddress: string,
): Promise<SourceRelay> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect({
      host: target.host ?? "127.0.0.1",
      port: target.port,
      localAddress,
    });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      // Either side failing or closing ends the pair: no half-open leftovers.
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    localAddress,
    accepted: () => accepted,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}
