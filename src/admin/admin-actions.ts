import type { Namespace } from "socket.io";
import type { ChatNamespace } from "../chat/chat-io.js";
import { envelope } from "../chat/envelope.js";
import { Action, type ErrorInfo } from "../chat/protocol.js";
import { anyRoomKey, roomKey, userKey } from "../chat/rooms.js";
import type { Logger } from "../log/logger.js";

/** Who to disconnect: a user everywhere, or a user in one room. */
export type AdminCommand =
  | { kind: "disconnect"; userId: string; reason: string; retryAfterMs?: number }
  | { kind: "kick"; userId: string; room: string; reason: string };

/** The server-side event carrying an {@link AdminCommand} to every other server. */
const ADMIN_EVENT = "wws:admin";

/** What an admin action reached, summed over every server that answered. */
export interface Reach {
  /** Sockets that got the notice and were disconnected. */
  disconnected: number;
  /** False when some server did not answer within the adapter's timeout (5 s). */
  complete: boolean;
}

/**
 * The admin API's actions on sockets, on every worker of every node: each server acts on its own
 * sockets (the 100 notice, then the disconnect, in that order on each socket) and answers how
 * many it reached. Commands travel with the adapter's serverSideEmit (cluster IPC, or Redis).
 */
export class AdminActions {
  private readonly nsp: Namespace;

  constructor(
    private readonly io: ChatNamespace,
    private readonly log: Logger,
  ) {
    // InterServerEvents is empty in the typed server: our one server-side event is untyped here.
    this.nsp = io as unknown as Namespace;
    this.nsp.on(ADMIN_EVENT, (cmd: AdminCommand, ack?: (n: number) => void) => {
      const n = this.applyLocal(cmd);
      if (typeof ack === "function") ack(n);
    });
  }

  /** Runs the command here and on every other server; resolves with what it reached. */
  async everywhere(cmd: AdminCommand): Promise<Reach> {
    const local = this.applyLocal(cmd);
    const remote = await new Promise<Reach>((resolve) => {
      this.nsp.serverSideEmit(ADMIN_EVENT, cmd, (err: Error | null, counts: number[]) => {
        if (err) this.log.warn("admin action: a server did not answer", { err: String(err) });
        resolve({ disconnected: sum(counts ?? []), complete: !err });
      });
    });
    return { disconnected: local + remote.disconnected, complete: remote.complete };
  }

  /** A server notice (100, no error) to a room or, without one, to every client everywhere. */
  notice(message: string, room?: string): void {
    const out = envelope(Action.Server, "state", { message });
    if (room === undefined) this.io.emit("message", out);
    else this.io.to(roomKey(room)).emit("message", out);
  }

  /** Notifies then disconnects this server's sockets the command is about; returns how many. */
  private applyLocal(cmd: AdminCommand): number {
    const nsp = this.io;
    const key = cmd.kind === "disconnect" ? anyRoomKey(cmd.userId) : userKey(cmd.room, cmd.userId);
    const ids = nsp.adapter.rooms.get(key);
    if (!ids) return 0;
    const error: ErrorInfo = {
      code: cmd.kind === "disconnect" ? "E_DISCONNECTED" : "E_KICKED",
      message: cmd.reason,
    };
    if (cmd.kind === "disconnect" && cmd.retryAfterMs !== undefined) {
      error.retryAfterMs = cmd.retryAfterMs;
    }
    const out = envelope(Action.Server, "state", { message: cmd.reason, error });
    let n = 0;
    for (const id of [...ids]) {
      const socket = nsp.sockets.get(id);
      if (!socket) continue;
      socket.emit("message", out);
      // The notice is queued on the transport first; the disconnect packet follows it in a later
      // tick, and socket.io-client does not reconnect after "io server disconnect".
      setImmediate(() => socket.disconnect(true));
      n++;
    }
    if (n > 0) this.log.info("admin disconnect", { ...cmd, sockets: n });
    return n;
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);
