/**
 * How apps share one set of stores: a room of an app other than the default one is kept as
 * `<appId>/<room>`. Room names cannot contain `/` (auth/authenticate.ts checkRoom), so a default
 * app's room can never look like another app's; the default app's rooms keep their names (and a
 * running deployment's Redis keys) unchanged. Stores see scoped rooms only through the scoped
 * wrappers, which give clients back the plain names.
 */
export const DEFAULT_APP = "default";

/** App ids: lower-case letters, digits, `_` and `-`, as they appear in a namespace (`/<id>`). */
export const APP_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export function scopeRoom(app: string, room: string): string {
  return app === DEFAULT_APP ? room : `${app}/${room}`;
}

/** The app and the plain room name of a room as the stores keep it. */
export function unscopeRoom(scoped: string): { app: string; room: string } {
  const slash = scoped.indexOf("/");
  return slash < 0
    ? { app: DEFAULT_APP, room: scoped }
    : { app: scoped.slice(0, slash), room: scoped.slice(slash + 1) };
}

/**
 * A key of one user of one app (bans, per-user rate limits and connection slots). The NUL cannot
 * appear in a userId (names.ts refuses control characters), so no default-app userId collides.
 */
export function scopeUser(app: string, userId: string): string {
  return app === DEFAULT_APP ? userId : `${app}\u0000${userId}`;
}

/** The app of a scoped user key, and the userId. */
export function unscopeUser(scoped: string): { app: string; userId: string } {
  const nul = scoped.indexOf("\u0000");
  return nul < 0
    ? { app: DEFAULT_APP, userId: scoped }
    : { app: scoped.slice(0, nul), userId: scoped.slice(nul + 1) };
}

/** The namespace clients of an app connect to. */
export const namespaceOf = (app: string): string => (app === DEFAULT_APP ? "/" : `/${app}`);
