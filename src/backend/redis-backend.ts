import type { Config } from "../config/config.js";
import type { Backend } from "./backend.js";

/** Placeholder until the Redis store lands. */
export const RedisBackend = {
  async connect(_config: Config): Promise<Backend> {
    throw new Error("redis adapter not available yet");
  },
};
