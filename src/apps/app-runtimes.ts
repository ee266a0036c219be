import { AdminActions } from "../admin/admin-actions.js";
import { refuseBanned } from "../admin/ban-guard.js";
import type { BanStore } from "../admin/ban-store.js";
import { Authenticator } from "../auth/authenticate.js";
import type { Backend, PresenceSink } from "../backend/backend.js";
import { ChatError } from "../chat/chat-error.js";
import type { ChatIo, ChatNamespace, ChatSocket } from "../chat/chat-io.js";
import { ChatServer } from "../chat/chat-server.js";
import { refuseBadHandshakes } from "../chat/guarded-parser.js";
import { appConfig, secretsOf } from "../config/apps.js";
import type { AppSpec, Config } from "../config/config.js";
import type { Delivery } from "../history/history-store.js";
import type { AdminApp } from "../http/admin-api.js";
import { type Admission, originAllowed, parseOrigins } from "../http/admission.js";
import type { PushApp } from "../http/push-api.js";
import { FloodGuard } from "../limits/flood-guard.js";
import type { Logger } from "../log/logger.js";
import { handshakes } from "../metrics/metrics.js";
import type { PresenceEvent } from "../presence/presence-store.js";
import { DEFAULT_APP, namespaceOf, unscopeRoom } from "./app-scope.js";
import { ScopedBanStore } from "./scoped-ban-store.js";
import { ScopedHistoryStore } from "./scoped-history-store.js";
import { ScopedPresenceStore } from "./scoped-presence-store.js";

/** One app running in this worker: its namespace, chat, limits and its view of the stores. */
export interface AppRuntime extends PushApp, AdminApp {
  name: string;
  /** What the app was built from (undefined: the default app), to skip unchanged apps on reload. */
  spec?: AppSpec;
  config: Config;
  nsp: ChatNamespace;
  chat: ChatServer;
  guard: FloodGuard;
  bans: BanStore;
  /** Removed by a reload: its namespace refuses handshakes with E_UNKNOWN_APP. */
  removed: boolean;
  origins: Set<string> | "*";
}

export interface AppRuntimesOptions {
  io: ChatIo;
  /** The service config: the default app's, and what every app starts from. */
  config: Config;
  backend: Backend;
  admission: Admission;
  /** Names this process in the presence store: `<nodeId>/<pid>`. */
  owner: string;
  logger: Logger;
  /** A connection dropped for flooding. */
  onFlood: (socket: ChatSocket, app: string, why: string) => void;
}

/**
 * The apps of this worker, by id: the default app (namespace `/`, the flags' settings) and
 * those of the apps file (`/<id>`). Presence events and stored messages of the whole service
 * arrive here and go to their app's chat by their scoped room (app-scope.ts). A reload adds,
 * changes and removes apps in place: no connection of an app that stays is touched.
 */
export class AppRuntimes implements PresenceSink {
  private readonly apps = new Map<string, AppRuntime>();
  private readonly log: Logger;

  constructor(
    private readonly opts: AppRuntimesOptions,
    specs: AppSpec[],
  ) {
    this.log = opts.logger.child({ component: "apps" });
    this.add(DEFAULT_APP, undefined);
    this.apply(specs);
  }

  get(id: string): AppRuntime | undefined {
    return this.apps.get(id);
  }

  /** The apps serving now (removed ones are not). */
  *live(): Iterable<AppRuntime> {
    for (const app of this.apps.values()) if (!app.removed) yield app;
  }

  *namespaces(): Iterable<[string, ChatNamespace]> {
    for (const app of this.apps.values()) yield [app.id, app.nsp];
  }

  /** Brings the apps to `specs`: new ones start, changed ones take their settings, others go. */
  apply(specs: AppSpec[]): void {
    const wanted = new Map(specs.map((s) => [s.id, s]));
    for (const [id, spec] of wanted) {
      const app = this.apps.get(id);
      if (!app) this.add(id, spec);
      else this.update(app, spec);
    }
    for (const app of this.apps.values()) {
      if (app.id === DEFAULT_APP || wanted.has(app.id) || app.removed) continue;
      app.removed = true;
      this.log.info("app removed: disconnecting its clients", { app: app.id });
      app.chat.closeApp(`app ${app.id} was removed from this service`);
    }
    this.opts.admission.setOrigins([...this.live()].map((a) => a.config.allowedOrigins));
  }

  private settingsOf(id: string, spec: AppSpec | undefined) {
    const { config: base, backend } = this.opts;
    const config = appConfig(base, spec);
    const guard = new FloodGuard({
      config,
      app: id,
      shared: backend.sharedLimits,
      onDisconnect: (socket, why) => this.opts.onFlood(socket as ChatSocket, id, why),
    });
    const auth = new Authenticator(secretsOf(base, spec), {
      audience: config.jwtAudience,
      issuer: config.jwtIssuer,
    });
    return { config, guard, auth };
  }

  private add(id: string, spec: AppSpec | undefined): void {
    const { io, backend, admission, owner, logger } = this.opts;
    // The cluster adapter listens on the IPC channel once per namespace: one listener per app.
    process.setMaxListeners(Math.max(process.getMaxListeners(), 16 + 2 * (this.apps.size + 1)));
    const nsp: ChatNamespace = id === DEFAULT_APP ? io.of("/") : io.of(namespaceOf(id));
    const { config, guard, auth } = this.settingsOf(id, spec);
    const presence = new ScopedPresenceStore(backend.presence, id);
    const history = new ScopedHistoryStore(backend.history, id);
    const bans = new ScopedBanStore(backend.bans, id);
    // First: a handshake the frame guard refused gets its E_BAD_FRAME.
    refuseBadHandshakes(nsp);
    // Then a removed app, or a page of an origin the app does not allow, goes no further.
    nsp.use((socket, next) => {
      const app = this.apps.get(id);
      const refusal =
        !app || app.removed
          ? new ChatError("E_UNKNOWN_APP", `no app ${id} on this service`)
          : !originAllowed(app.origins, socket.handshake.headers.origin)
            ? new ChatError("E_ORIGIN_FORBIDDEN", "this page's origin may not connect to this app")
            : undefined;
      if (!refusal) {
        next();
        return;
      }
      handshakes.inc({ result: refusal.code, app: id });
      next(
        Object.assign(new Error(refusal.message), {
          data: { code: refusal.code, message: refusal.message },
        }),
      );
    });
    const chat = new ChatServer({
      nsp,
      app: id,
      presence,
      auth,
      owner,
      logger: logger.child({ app: id }),
      maxMessageLength: config.maxMessageLength,
      maxImageBytes: config.maxImageBytes,
      presenceLimit: config.presenceLimit,
      maxRoomSize: config.maxRoomSize,
      listPageSize: config.listPageSize,
      history,
      historySize: config.historySize,
      historyOnJoin: config.historyOnJoin,
      guard,
    });
    // After the ChatServer's own middleware (the user is known), before the per-user slots.
    refuseBanned(nsp, bans, this.log);
    // Last: nothing else refuses after it.
    admission.limitUsers(nsp, () => {
      const c = this.apps.get(id)?.config ?? config;
      return {
        app: id,
        perApp: id === DEFAULT_APP ? 0 : c.maxConnections,
        perUser: c.maxConnectionsPerUser,
      };
    });
    this.apps.set(id, {
      id,
      name: spec?.name ?? "default",
      spec,
      config,
      nsp,
      chat,
      guard,
      presence,
      history,
      bans,
      actions: new AdminActions(nsp, this.log),
      apiKey: config.apiKey,
      adminKey: config.adminKey,
      maxMessageLength: config.maxMessageLength,
      maxImageBytes: config.maxImageBytes,
      removed: false,
      origins: parseOrigins(config.allowedOrigins),
    });
  }

  private update(app: AppRuntime, spec: AppSpec): void {
    // An app the reload did not change keeps its guard (and its refusal counts) and authenticator.
    if (!app.removed && JSON.stringify(app.spec) === JSON.stringify(spec)) return;
    const { config, guard, auth } = this.settingsOf(app.id, spec);
    if (app.removed) this.log.info("app added back", { app: app.id });
    Object.assign(app, {
      name: spec.name,
      spec,
      config,
      guard,
      apiKey: config.apiKey,
      adminKey: config.adminKey,
      maxMessageLength: config.maxMessageLength,
      maxImageBytes: config.maxImageBytes,
      removed: false,
      origins: parseOrigins(config.allowedOrigins),
    });
    app.chat.reconfigure({
      auth,
      guard,
      maxMessageLength: config.maxMessageLength,
      maxImageBytes: config.maxImageBytes,
      presenceLimit: config.presenceLimit,
      maxRoomSize: config.maxRoomSize,
      listPageSize: config.listPageSize,
      historySize: config.historySize,
      historyOnJoin: config.historyOnJoin,
    });
  }

  /** A presence change of the whole service, for the clients of its app in this worker. */
  deliverPresence(event: PresenceEvent): void {
    const { app, room } = unscopeRoom(event.user.room);
    const runtime = this.apps.get(app);
    if (!runtime) return;
    runtime.chat.deliverPresence(
      app === DEFAULT_APP ? event : { ...event, user: { ...event.user, room } },
    );
  }

  /** A stored message of the whole service, for the clients of its app in this worker. */
  deliverMessage(delivery: Delivery): void {
    const { app, room } = unscopeRoom(delivery.room);
    const runtime = this.apps.get(app);
    if (!runtime) return;
    runtime.chat.deliverMessage(app === DEFAULT_APP ? delivery : { ...delivery, room });
  }

  async refreshLists(): Promise<void> {
    await Promise.all([...this.apps.values()].map((a) => a.chat.refreshLists()));
  }

  async catchUpMessages(): Promise<void> {
    await Promise.all([...this.apps.values()].map((a) => a.chat.catchUpMessages()));
  }

  async drain(notice: string, graceMs: number): Promise<void> {
    await Promise.all([...this.apps.values()].map((a) => a.chat.drain(notice, graceMs)));
  }

  /** Connected chat sockets of every app in this worker. */
  get connections(): number {
    let n = 0;
    for (const app of this.apps.values()) n += app.nsp.sockets.size;
    return n;
  }

  /** Refusal counts of every app's guard, summed. */
  get counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const app of this.apps.values()) {
      for (const [k, v] of Object.entries(app.guard.counts)) out[k] = (out[k] ?? 0) + v;
    }
    return out;
  }
}
