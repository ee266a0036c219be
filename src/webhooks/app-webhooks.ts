import { DEFAULT_APP, unscopeRoom } from "../apps/app-scope.js";
import type { Config } from "../config/config.js";
import type { Delivery } from "../history/history-store.js";
import type { PresenceEvent } from "../presence/presence-store.js";

/**
 * One app's webhooks: ClusterWebhooks is fed here (presence, delivery); RedisWebhooks reads its
 * app's queue, filled by the stores' scripts, and only needs starting and stopping.
 */
export interface AppWebhookSink {
  presence?(event: PresenceEvent): void;
  delivery?(d: Delivery): void;
  close(ms: number): Promise<void>;
}

/** How long a replaced or removed app's sender may take to send what it holds. */
const RETIRE_MS = 5000;

/**
 * Every app's webhooks (each its own URL, secret and queue): the stores' changes, whose rooms are
 * scoped (app-scope.ts), go to their app's sender with the plain room names. An apps reload
 * starts, replaces (URL, secret or messages changed) and retires senders; a retired one first
 * sends what it holds, for a while.
 */
export class AppWebhooks {
  private readonly sinks = new Map<string, { sink: AppWebhookSink; key: string }>();

  constructor(private readonly make: (app: string, config: Config) => AppWebhookSink | undefined) {}

  /** Brings the senders to the apps' configs (by app id; the default app's included). */
  apply(configs: Map<string, Config>): void {
    for (const [app, config] of configs) {
      const key = `${config.webhookUrl}\n${config.webhookSecret}\n${config.webhookMessages}\n${config.webhookQueueSize}`;
      const had = this.sinks.get(app);
      if (had?.key === key) continue;
      if (had) void had.sink.close(RETIRE_MS);
      this.sinks.delete(app);
      const sink = config.webhookUrl === "" ? undefined : this.make(app, config);
      if (sink) this.sinks.set(app, { sink, key });
    }
    for (const [app, had] of this.sinks) {
      if (configs.has(app)) continue;
      void had.sink.close(RETIRE_MS);
      this.sinks.delete(app);
    }
  }

  presence(event: PresenceEvent): void {
    const { app, room } = unscopeRoom(event.user.room);
    const sink = this.sinks.get(app)?.sink;
    if (!sink) return;
    sink.presence?.(app === DEFAULT_APP ? event : { ...event, user: { ...event.user, room } });
  }

  delivery(d: Delivery): void {
    const { app, room } = unscopeRoom(d.room);
    const sink = this.sinks.get(app)?.sink;
    if (!sink) return;
    sink.delivery?.(app === DEFAULT_APP ? d : { ...d, room });
  }

  async close(ms: number): Promise<void> {
    await Promise.all([...this.sinks.values()].map((s) => s.sink.close(ms)));
    this.sinks.clear();
  }
}
