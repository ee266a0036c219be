/**
 * The chat protocol against the built CLI (2 workers, port 0), over WebSocket, over HTTP
 * long-polling, and with both kinds of clients mixed in one room.
 */
import type { ClientOptions } from "./support/chat-client.js";
import { type ChatTarget, chatSuite } from "./support/chat-suite.js";
import { SCRIPTED_RATES, startService } from "./support/service.js";

function local(
  clientOptions: (i: number) => ClientOptions,
  transport?: string,
): () => Promise<ChatTarget> {
  return async () => {
    const service = await startService(SCRIPTED_RATES);
    return { urls: [service.url], clientOptions, transport, stop: () => service.stop() };
  };
}

chatSuite(
  "chat protocol over websocket",
  local(() => ({ transports: ["websocket"] }), "websocket"),
);
chatSuite(
  "chat protocol over polling",
  local(() => ({ transports: ["polling"] }), "polling"),
);
// Even clients: the default (polling, upgraded to websocket); odd clients: polling only.
chatSuite(
  "chat protocol with mixed transports",
  local((i) => (i % 2 === 0 ? {} : { transports: ["polling"] })),
);
