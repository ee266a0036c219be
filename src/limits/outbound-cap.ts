import type { Socket } from "socket.io";

type EngineSocket = Socket["conn"];

interface Packet {
  data?: unknown;
}

interface WsLike {
  bufferedAmount: number;
  terminate(): void;
}

/** How often a slice of the connections is looked at. */
const SWEEP_MS = 250;
/** Slices per round: every connection is looked at once per SWEEP_MS × this. */
const SWEEPS_PER_ROUND = 4;

function sizeOf(packet: Packet): number {
  const { data } = packet;
  if (typeof data === "string") return data.length;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

function wsOf(conn: EngineSocket): WsLike | undefined {
  const transport = conn.transport as unknown as { name: string; socket?: WsLike };
  return transport.name === "websocket" ? transport.socket : undefined;
}

/** What is queued for a connection: Engine.IO's write buffer plus what the WebSocket holds. */
function backlogOf(conn: EngineSocket): number {
  let queued = wsOf(conn)?.bufferedAmount ?? 0;
  const buffer = (conn as unknown as { writeBuffer: Packet[] }).writeBuffer;
  for (let i = 0; i < buffer.length; i++) queued += sizeOf(buffer[i]);
  return queued;
}

/**
 * Drops connections whose unsent backlog passes `maxBytes`: what Engine.IO holds for them (its
 * write buffer grows while the transport is busy or, for polling, until the next poll) plus what
 * the WebSocket has not handed to the kernel. A client that stops reading would otherwise make
 * the worker hold everything its room says, without bound.
 *
 * Every connection is looked at once a second (a quarter of them every 250 ms); one with a backlog
 * is also checked on each packet queued for it until its backlog is gone. A per-packet listener
 * on every connection cost ~2 % of a worker's CPU in the fan-out benchmark; looking at every
 * connection 4 times a second cost 17 % of a worker holding 14,000 idle ones (scale benchmark).
 */
export class OutboundCap {
  private readonly conns = new Set<EngineSocket>();
  private readonly watched = new Map<EngineSocket, (packet: Packet) => void>();
  private readonly timer: NodeJS.Timeout;
  /** Where the sweep goes on from: a Set's iterator skips deleted entries and sees added ones. */
  private cursor?: IterableIterator<EngineSocket>;

  constructor(
    private readonly maxBytes: number,
    private readonly onDrop: (conn: EngineSocket, queuedBytes: number) => void,
  ) {
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  add(conn: EngineSocket): void {
    if (this.maxBytes <= 0) return;
    // No close listener per connection (~0.2 KB each): the sweep forgets closed ones.
    this.conns.add(conn);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private sweep(): void {
    let left = Math.ceil(this.conns.size / SWEEPS_PER_ROUND);
    while (left-- > 0) {
      this.cursor ??= this.conns.values();
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = undefined;
        return;
      }
      const conn = next.value;
      if (conn.readyState === "closed") {
        this.conns.delete(conn);
        this.unwatch(conn);
        continue;
      }
      const backlog = backlogOf(conn);
      if (backlog > this.maxBytes) this.drop(conn, backlog);
      else if (backlog > 0) this.watch(conn, backlog);
      else this.unwatch(conn);
    }
  }

  /** Counts what is queued from now on, packet by packet, on top of the backlog seen. */
  private watch(conn: EngineSocket, backlog: number): void {
    if (this.watched.has(conn)) return;
    let queued = backlog;
    const onPacket = (packet: Packet) => {
      queued += sizeOf(packet);
      if (queued > this.maxBytes) {
        // Recount: what was counted may have been sent meanwhile.
        queued = backlogOf(conn) + sizeOf(packet);
        if (queued > this.maxBytes) this.drop(conn, queued);
      }
    };
    this.watched.set(conn, onPacket);
    conn.on("packetCreate", onPacket);
  }

  private unwatch(conn: EngineSocket): void {
    const onPacket = this.watched.get(conn);
    if (!onPacket) return;
    conn.off("packetCreate", onPacket);
    this.watched.delete(conn);
  }

  private drop(conn: EngineSocket, backlog: number): void {
    if (!this.conns.delete(conn)) return;
    this.unwatch(conn);
    this.onDrop(conn, backlog);
    // A graceful close would wait behind the very backlog that is the problem.
    wsOf(conn)?.terminate();
    conn.close(true);
  }
}
