import type { ChatNamespace } from "../chat/chat-io.js";
import type { ErrorInfo } from "../chat/protocol.js";
import type { Logger } from "../log/logger.js";
import { withTimeout } from "../util/deferred.js";
import type { BanStore } from "./ban-store.js";

/** How long a handshake waits for the ban store before it is let in (fails open, logged). */
const BAN_CHECK_TIMEOUT_MS = 1000;

/**
 * Refuses handshakes of banned users (connect_error, data { code: "E_BANNED", message,
 * retryAfterMs }). Installed after the ChatServer's middleware, which knows the user. A store that
 * cannot answer (Redis down) admits: an outage must not lock every user out.
 */
export function refuseBanned(io: ChatNamespace, bans: BanStore, log: Logger): void {
  io.use((socket, next) => {
    const userId = socket.data.user?.userId;
    if (userId === undefined) {
      next();
      return;
    }
    withTimeout(bans.get(userId), BAN_CHECK_TIMEOUT_MS, "ban check").then(
      (ban) => {
        if (!ban) {
          next();
          return;
        }
        const data: ErrorInfo = {
          code: "E_BANNED",
          message: ban.reason || "banned by an operator",
          retryAfterMs: Math.max(0, ban.until - Date.now()),
        };
        next(Object.assign(new Error(data.message), { data }));
      },
      (err: unknown) => {
        log.warn("ban check failed; admitted", { userId, err: String(err) });
        next();
      },
    );
  });
}
