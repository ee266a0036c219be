/**
 * How long the users of a connection the server closed (reload, restart, stop, a worker crash)
 * stay online while their clients reconnect, so that a client that comes back within it causes no
 * 203/202. socket.io-client's default back-off retries after 0.5–1.5 s, then 1–3 s, then 2–5 s
 * (reconnectionDelay 1 s doubling, ±50 % jitter, at most 5 s). 10 s covers three attempts; the
 * reload, worker SIGKILL and restart cases of test/presence-storms.test.ts reconnect within it.
 */
export const RECONNECT_GRACE_MS = 10_000;

/**
 * The grace a Redis-mode node restarted with the same --node-id gives its previous run's users:
 * shorter, since its clients may have given up (two back-off attempts: at most 4.5 s), and the
 * promise is a prompt 203 for those that do not come back (test/node-failure.test.ts).
 */
export const STALE_NODE_GRACE_MS = 5000;
