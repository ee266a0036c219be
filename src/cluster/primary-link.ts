import cluster from "node:cluster";
import net from "node:net";
import type { WorkerToPrimary } from "./ipc-messages.js";
import { FrameReader, FrameWriter } from "./link-frames.js";
import { LINK_PATH_ENV, LINK_TOKEN_ENV, type LinkHello } from "./worker-links.js";

let writer: FrameWriter | undefined;

/**
 * A worker's side of its link to the primary (see WorkerLinks). What arrives is emitted as the
 * process's own "message" events, so every listener of the cluster channel gets it unchanged.
 * Resolves once connected; without a link in the environment (tests, Redis mode before its
 * primary offers one) it resolves at once and everything stays on the cluster channel.
 */
export function connectPrimaryLink(): Promise<void> {
  const socketPath = process.env[LINK_PATH_ENV];
  const token = process.env[LINK_TOKEN_ENV];
  if (!socketPath || !token || !cluster.worker) return Promise.resolve();
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const reader = new FrameReader((messages) => {
      for (const msg of messages) process.emit("message", msg, undefined);
    });
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    socket.once("connect", () => {
      const w = new FrameWriter((frame) => socket.write(frame));
      const hello: LinkHello = { type: "wws:link", workerId: cluster.worker?.id ?? 0, token };
      w.send(hello);
      w.flush();
      writer = w;
      resolve();
    });
    socket.on("error", () => {
      // No link (or it broke): the cluster channel carries everything; its loss stops the worker.
      writer = undefined;
      resolve();
    });
    socket.on("close", () => {
      writer = undefined;
    });
  });
}

/** Sends to the primary over the link when there is one, else over the cluster channel. */
export function sendToPrimary(msg: WorkerToPrimary): void {
  if (writer) writer.send(msg);
  else if (process.connected) process.send?.(msg);
}
