import type { Config } from "../config/config.js";
import { redisTopology } from "./redis-clients.js";
import { CLUSTER_SLOT_GROUPS } from "./slot-groups.js";

/** How the Redis stores lay out their keys for the config's topology. */
export interface StoreLayout {
  /** Slot groups of the presence and history stores (0: the key names of one Redis). */
  slotGroups: number;
  /** Hash tag of the ban keys ("" on one Redis). */
  banTag: string;
  /** The Socket.IO adapter over Redis 7's sharded pub/sub. */
  sharded: boolean;
}

/**
 * One Redis and Sentinel (one master holds everything): the key names as they always were, so
 * that an upgrade keeps a running deployment's data. A cluster: every multi-key script keeps its
 * keys in one slot (slot-groups.ts); bans share the `{bans}` slot.
 */
export function storeLayout(config: Config): StoreLayout {
  if (redisTopology(config).kind !== "cluster")
    return { slotGroups: 0, banTag: "", sharded: false };
  return { slotGroups: CLUSTER_SLOT_GROUPS, banTag: "{bans}", sharded: true };
}
