/**
 * The top-level `presence` section of /sync (docs/presence.md). The UserDO's plan says whose presence changed
 * since the token (positions of the user's own stream) and carries the user's own presence; the events are
 * read here from D1, where every change is written before anyone is told of it.
 *
 * - initial sync: the user and every user sharing a joined room with them, except those offline (as the
 *   reference server does, to keep initial syncs small);
 * - incremental sync: the users whose presence changed since the token, and the members of rooms the user
 *   joined since (whose presence the user has never seen);
 * - the filter's `presence` EventFilter (`types`, `not_types`, `senders`, `not_senders`, `limit`) applies.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import type { EventFilter, RoomEventFilter } from "../sync/filter";
import { excludesAll, matchesEvent } from "../sync/filter";
import type { PlannedPresence } from "../../durable-objects/user/presence";
import { presenceEvent, type PresenceContent, type PresenceRecord } from "./model";
import { readPresence, readPresenceOfRoomPeers, readPresenceOfRooms } from "./store";

export interface PresenceSyncEvent {
  type: "m.presence";
  sender: string;
  content: PresenceContent;
}

/** The presence events of one sync; `newlyJoined`: rooms joined since the token (incremental syncs). */
export async function presenceSyncEvents(
  env: Env,
  userId: string,
  planned: PlannedPresence,
  newlyJoined: readonly string[],
  filter: EventFilter | undefined,
): Promise<PresenceSyncEvent[]> {
  if (excludesAll(filter)) return [];
  const ours = getConfig(env).serverName;
  const now = Date.now();
  const records = new Map<string, PresenceRecord>();
  if (planned.changed === null) {
    for (const r of await readPresenceOfRoomPeers(env, ours, userId, now)) if (r.state !== "offline") records.set(r.user_id, r);
  } else {
    if (newlyJoined.length) for (const r of await readPresenceOfRooms(env, ours, newlyJoined, now)) records.set(r.user_id, r);
    const changed = planned.changed.filter((u) => u !== userId);
    if (changed.length) {
      const found = new Map((await readPresence(env, ours, changed, now)).map((r) => [r.user_id, r]));
      // A user with no row was never seen online: report them offline.
      for (const u of changed) records.set(u, found.get(u) ?? { user_id: u, state: "offline", status_msg: null, last_active_ts: 0, currently_active: false });
    }
  }
  records.delete(userId);
  // The user's own presence comes from the plan (their UserDO is the source; the D1 copy may lag).
  if (planned.self && !(planned.changed === null && planned.self.state === "offline")) records.set(userId, planned.self);
  let events = [...records.values()]
    .map((r) => presenceEvent(r, now))
    .filter((ev) => matchesEvent(filter as RoomEventFilter | undefined, ev));
  if (filter?.limit !== undefined && filter.limit >= 0) events = events.slice(0, filter.limit);
  return events;
}
