import http from "node:http";
import net from "node:net";
import WebSocket from "ws";
import type { ServiceHandle } from "./service.js";

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The parsed JSON body, when it is JSON. */
  json?: { code?: string; message?: string; retryAfterMs?: number };
}

/** The path of a new Engine.IO session's first request (polling handshake). */
export const HANDSHAKE_PATH = "/socket.io/?EIO=4&transport=polling";

/** A plain HTTP GET from an optional source address, with headers; no keep-alive. */
export function get(
  url: string,
  opts: { headers?: Record<string, string>; localAddress?: string; timeoutMs?: number } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      { headers: opts.headers, localAddress: opts.localAddress, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve(withJson(res.statusCode ?? 0, res.headers, body)));
        res.on("error", reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on("error", reject);
  });
}

/** A WebSocket handshake for a new session; resolves with the refusal, or "open". */
export function wsHandshake(
  svc: ServiceHandle,
  headers: Record<string, string> = {},
): Promise<RawResponse | "open"> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/socket.io/?EIO=4&transport=websocket`, {
      headers,
    });
    ws.on("open", () => {
      ws.close();
      resolve("open");
    });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve(withJson(res.statusCode ?? 0, res.headers, body)));
    });
    ws.on("error", reject);
  });
}

/** A raw TCP connection from `localAddress`, open once connected. */
export function rawConnect(port: number, localAddress = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Everything a raw socket receives until it closes. */
export function readAll(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      out += d;
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(out));
  });
}

/** Parses a raw HTTP response (status line, headers, body). */
export function parseRaw(raw: string): RawResponse {
  const split = raw.indexOf("\r\n\r\n");
  const head = split === -1 ? raw : raw.slice(0, split);
  const [statusLine, ...lines] = head.split("\r\n");
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return withJson(
    Number(statusLine.split(" ")[1] ?? 0),
    headers,
    split === -1 ? "" : raw.slice(split + 4),
  );
}

function withJson(status: number, headers: http.IncomingHttpHeaders, body: string): RawResponse {
  let json: RawResponse["json"];
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status, headers, body, json };
}
