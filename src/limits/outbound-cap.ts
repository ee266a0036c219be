import type { Socket } from "socket.io";

type EngineSocket = Socket["conn"];

interface Packet {
  data?: unknown;
}

interface WsLike {
  bufferedAmount: number;
  terminate(): void;
}

function sizeOf(packet: Packet): number {
  const { data } = packet;
  if (typeof data === "string") return data.length;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Drops a connection whose unsent backlog passes `maxBytes`: what Engine.IO holds for it (its
 * write buffer, which grows while the transport is busy or, for polling, until the next poll) plus
 * what the WebSocket has not handed to the kernel. A client that stops reading would otherwise
 * make the worker hold everything the room says, without bound. Checked per packet: a counter
 * and two property reads, no timer.
 */
export function capOutbound(
  conn: EngineSocket,
  maxBytes: number,
  onDrop: (queuedBytes: number) => void,
): void {
  if (maxBytes <= 0) return;
  let queued = 0;
  let dropped = false;
  conn.on("flush", () => {
    queued = 0;
  });
  conn.on("packetCreate", (packet: Packet) => {
    if (dropped) return;
    queued += sizeOf(packet);
    const transport = conn.transport as unknown as { name: string; socket?: WsLike };
    const ws = transport.name === "websocket" ? transport.socket : undefined;
    const backlog = queued + (ws?.bufferedAmount ?? 0);
    if (backlog <= maxBytes) return;
    dropped = true;
    onDrop(backlog);
    // A graceful close would wait behind the very backlog that is the problem.
    ws?.terminate();
    conn.close(true);
  });
}
