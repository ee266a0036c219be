/**
 * Where a bench URL points, read the way socket.io-client reads it: the Engine.IO endpoint is
 * always `/socket.io/`, and any other path of the URL is the Socket.IO namespace, not an HTTP
 * path (`io("http://host:port/shop")` opens `/socket.io/` and joins the namespace `/shop`).
 */

export interface SocketIoTarget {
  /** `ws://host:port/socket.io/?EIO=4&transport=websocket`: what the raw agent opens. */
  engineUrl: string;
  /** `/` or `/<appId>`: what goes into the CONNECT packet (`40/<appId>,{auth}`). */
  namespace: string;
  /** `http://host:port` or `http://host:port/<appId>`: what socket.io-client is given. */
  clientUrl: string;
}

/**
 * Accepts an Engine.IO URL (`ws://host:port/socket.io/?EIO=4&transport=websocket`: the default
 * namespace) or a socket.io-client URL (`http://host:port[/namespace]`).
 */
export function socketIoTarget(url: string): SocketIoTarget {
  const u = new URL(url);
  const engine = u.pathname === "/socket.io" || u.pathname.startsWith("/socket.io/");
  const path = engine ? "/" : u.pathname.replace(/\/+$/, "");
  const namespace = path === "" ? "/" : path;
  const secure = u.protocol === "https:" || u.protocol === "wss:";
  return {
    engineUrl: `${secure ? "wss" : "ws"}://${u.host}/socket.io/?EIO=4&transport=websocket`,
    namespace,
    clientUrl: `${secure ? "https" : "http"}://${u.host}${namespace === "/" ? "" : namespace}`,
  };
}

/** The part of a Socket.IO packet naming its namespace: `` for `/`, `/shop,` otherwise. */
export function namespacePrefix(namespace: string): string {
  return namespace === "/" ? "" : `${namespace},`;
}
