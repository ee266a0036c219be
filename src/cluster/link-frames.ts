import { deserialize, serialize } from "node:v8";

/**
 * Frames of the primary ↔ worker link (see worker-links.ts): a 4-byte big-endian length, then a
 * V8-serialized array of messages (the same encoding as the cluster channel's "advanced"
 * serialization: Uint8Array, undefined, Map survive).
 */
export function encodeFrame(messages: unknown[]): Buffer {
  const body = serialize(messages);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** Splits a byte stream into frames and hands each frame's messages on, in order. */
export class FrameReader {
  private pending: Buffer[] = [];
  private size = 0;

  constructor(private readonly onMessages: (messages: unknown[]) => void) {}

  push(chunk: Buffer): void {
    this.pending.push(chunk);
    this.size += chunk.length;
    if (this.size < 4) return;
    let buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.size);
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (buf.length - at - 4 < len) break;
      const messages = deserialize(buf.subarray(at + 4, at + 4 + len)) as unknown[];
      at += 4 + len;
      this.onMessages(messages);
    }
    buf = buf.subarray(at);
    this.pending = buf.length > 0 ? [buf] : [];
    this.size = buf.length;
  }
}

/**
 * Messages queued for one peer and written as one frame per turn of the event loop: the calls,
 * replies and events of a busy tick cost one write and one parse instead of one each.
 */
export class FrameWriter {
  private queue: unknown[] = [];
  private scheduled = false;

  constructor(private readonly write: (frame: Buffer) => void) {}

  send(message: unknown): void {
    this.queue.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const messages = this.queue;
    this.queue = [];
    this.write(encodeFrame(messages));
  }
}
