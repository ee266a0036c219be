/**
 * Redis Cluster layout: a multi-key script must keep its keys in one hash slot. Rooms are hashed
 * into a fixed number of slot groups, and every key of a group carries the group's hash tag right
 * after the store's prefix (`<prefix>{7}:presence:…`): a group is laid out exactly like one Redis
 * (its own owner index, liveness keys, webhook queue), so each script runs on one node unchanged,
 * and the groups spread over the shards. Without groups (one Redis, Sentinel) keys carry no tag
 * and keep the names they always had.
 */

/**
 * Slot groups of the cluster layout: every node of a deployment must use the same number (it
 * decides where each room's keys are). 16 spreads over up to 16 shards.
 */
export const CLUSTER_SLOT_GROUPS = 16;

/** The group of a room: FNV-1a (32 bit) of its UTF-8 bytes, modulo `groups`. */
export function slotGroup(room: string, groups: number): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(room, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % groups;
}

/** `<prefix>` (no groups) or `<prefix>{<group>}`: what every key of the group starts with. */
export function groupPrefix(prefix: string, group: number | undefined): string {
  return group === undefined ? prefix : `${prefix}{${group}}`;
}

/** The groups to visit for what spans rooms: [undefined] without groups, else 0…groups-1. */
export function allGroups(groups: number): (number | undefined)[] {
  return groups > 0 ? Array.from({ length: groups }, (_, g) => g) : [undefined];
}
