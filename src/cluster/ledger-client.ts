import type { Refusal } from "../http/refusal.js";
import type { AdmitKind, PrimaryToWorker, WorkerToPrimary } from "./ipc-messages.js";
import { isOurs } from "./ipc-messages.js";
import { sendToPrimary } from "./primary-link.js";

/** A granted slot (release it exactly when the connection ends; extra calls do nothing). */
export type Reservation = { ok: true; release: () => void } | { ok: false; refusal: Refusal };

const NOOP = () => {};
const GONE: Refusal = { code: "E_SERVER_BUSY", message: "the server is not ready, retry later" };

/**
 * A worker's side of the primary's connection ledger (see ConnectionLedger): one IPC round
 * trip per reservation. A reply that comes after its caller gave up is released at once, so no
 * slot is held for a connection that does not exist. A primary that does not answer within the
 * timeout admits the connection (fails open, counted in `timeouts`), as the rate limits do.
 */
export class LedgerClient {
  private nextId = 1;
  /** Reservations let through uncounted because the primary did not answer in time. */
  timeouts = 0;
  private readonly waiting = new Map<
    number,
    (reply: { token?: number; refusal?: Refusal }) => void
  >();
  private readonly onMessage = (msg: unknown) => {
    if (!isOurs<PrimaryToWorker>(msg) || msg.type !== "wws:admit-reply") return;
    const done = this.waiting.get(msg.id);
    if (done) {
      this.waiting.delete(msg.id);
      done(msg);
    } else if (msg.token !== undefined) {
      this.send({ type: "wws:admit-release", token: msg.token });
    }
  };

  constructor(
    private readonly channel: NodeJS.Process = process,
    private readonly timeoutMs = 5000,
  ) {
    channel.on("message", this.onMessage);
  }

  reserve(kind: AdmitKind, key: string, limit?: number): Promise<Reservation> {
    return new Promise((resolve) => {
      if (!this.channel.connected) {
        resolve({ ok: false, refusal: GONE });
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        // The primary is slow (its channel also carries presence calls, queued on a busy node):
        // let the connection in uncounted rather than refuse real clients with E_SERVER_BUSY.
        // The late reply's slot is released when it comes (see onMessage).
        this.timeouts++;
        resolve({ ok: true, release: NOOP });
      }, this.timeoutMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.token === undefined) {
          resolve({ ok: false, refusal: reply.refusal ?? GONE });
          return;
        }
        resolve({ ok: true, release: releaser(this, reply.token) });
      });
      this.send({ type: "wws:admit", id, kind, key, limit });
    });
  }

  /** Tells the primary about a refusal decided here, for its counters. */
  refused(refusal: Refusal): void {
    this.send({ type: "wws:refused", code: refusal.code });
  }

  /** Gives a granted slot back (see `releaser`). */
  release(token: number): void {
    this.send({ type: "wws:admit-release", token });
  }

  private send(msg: WorkerToPrimary): void {
    if (this.channel === process) sendToPrimary(msg);
    else if (this.channel.connected) this.channel.send?.(msg);
  }
}

/**
 * A slot's release, made outside `reserve` so that it closes over the token only: a closure made
 * there would keep the call's whole scope (its timer, its promise and resolvers) alive for as
 * long as the connection lives, ~0.5 KB per reservation, two per connection.
 */
function releaser(client: LedgerClient, token: number): () => void {
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    client.release(token);
  };
}
