/**
 * Telling others about a presence change (docs/presence.md, "Who hears of a change").
 *
 * - A local user's change (called by their UserDO after the change is committed): the D1 copy first (the
 *   source the others read), then every local user sharing a joined room with them gets a position in their
 *   own stream (`UserDO.presenceChanged`: positions, not payloads; their /sync reads D1), every other server
 *   with a member in those rooms gets an `m.presence` EDU, and every appservice that wants ephemeral data and
 *   is interested gets an `m.presence` ephemeral event.
 * - A remote user's change (an inbound EDU): stored only if some local user shares a room with them, then the
 *   same local and appservice fan-out.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { serverNameOf } from "../protocol/identifiers";
import { queueEduToServers } from "../federation/destinations";
import type { AppService } from "../appservices/registration";
import { presenceEduEntry, presenceEvent, presenceNews, recordFromEdu, remoteAsSeen, type PresenceRecord } from "./model";
import { membersOfRooms, readRemoteRow, roomsOf, writePresence } from "./store";

export interface PublishParts {
  /** Local users sharing a room (and the D1 copy). */
  local: boolean;
  /** Other servers (a change, or the periodic ping). */
  remote: boolean;
  /** Appservices with `receive_ephemeral`. */
  appservices: boolean;
}

function serverOf(userId: string): string | undefined {
  try {
    return serverNameOf(userId);
  } catch {
    return undefined;
  }
}

/** Publishes a local user's presence (see the file comment). Throws if a part failed; the caller retries. */
export async function publishLocalPresence(
  env: Env,
  record: PresenceRecord,
  serial: number,
  joinedRooms: readonly string[],
  parts: PublishParts,
): Promise<void> {
  const config = getConfig(env);
  if (!config.presenceEnabled) return;
  const ours = config.serverName;
  const now = Date.now();
  if (parts.local) await writePresence(env, record, serial, now);
  const members = joinedRooms.length ? await membersOfRooms(env, joinedRooms) : [];
  const locals = new Set<string>();
  const servers = new Set<string>();
  for (const m of members) {
    if (m.user_id === record.user_id) continue;
    const server = serverOf(m.user_id);
    if (server === ours) locals.add(m.user_id);
    else if (server) servers.add(server);
  }
  const work: Promise<unknown>[] = [];
  if (parts.local) work.push(notifyLocalUsers(env, [...locals], record.user_id));
  if (parts.remote && servers.size) {
    work.push(queueEduToServers(env, servers, "m.presence", { push: [presenceEduEntry(record, now)] }, `presence:${record.user_id}`));
  }
  if (parts.appservices) work.push(deliverToAppservices(env, record, joinedRooms, members.map((m) => m.user_id), now));
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function notifyLocalUsers(env: Env, userIds: string[], changed: string): Promise<void> {
  await Promise.all(userIds.map((u) => env.USERS.get(env.USERS.idFromName(u)).presenceChanged([changed])));
}

/**
 * An `m.presence` EDU entry from `origin` (its user checked to belong to `origin`): stored and announced only if
 * a local user shares a room with the user; a mere refresh (nothing new) only renews the row's age.
 */
export async function receiveRemotePresence(env: Env, userId: string, content: Record<string, unknown>): Promise<void> {
  const config = getConfig(env);
  if (!config.presenceEnabled) return;
  const now = Date.now();
  const record = recordFromEdu(userId, content, now);
  if (!record) return;
  const rooms = await roomsOf(env, userId);
  if (rooms.length === 0) return;
  const members = await membersOfRooms(env, rooms);
  const locals = [...new Set(members.map((m) => m.user_id).filter((u) => u !== userId && serverOf(u) === config.serverName))];
  if (locals.length === 0) return;
  const prev = await readRemoteRow(env, userId);
  await writePresence(env, record, now, now); // remote: the receipt time orders the writes
  const before = prev ? remoteAsSeen(prev.record, prev.updated_ts, now) : undefined;
  if (!presenceNews(before, record)) return;
  await Promise.all([
    notifyLocalUsers(env, locals, userId),
    deliverToAppservices(env, record, rooms, members.map((m) => m.user_id), now),
  ]);
}

/**
 * Appservices interested in a user's presence (MSC2409, the reference server's rule): those with
 * `receive_ephemeral` whose namespaces cover the user, one of the rooms the user is in, or a member of those rooms.
 */
export function presenceAppservices(env: Env, userId: string, rooms: readonly string[], members: readonly string[]): AppService[] {
  const registry = getConfig(env).appservices;
  if (registry.size === 0) return [];
  return registry.all.filter(
    (as) =>
      as.url !== null &&
      as.receiveEphemeral &&
      (registry.interestedInUser(as, userId) ||
        rooms.some((r) => registry.roomInNamespace(as, r)) ||
        members.some((m) => registry.interestedInUser(as, m))),
  );
}

async function deliverToAppservices(env: Env, record: PresenceRecord, rooms: readonly string[], members: readonly string[], now: number): Promise<void> {
  const targets = presenceAppservices(env, record.user_id, rooms, members);
  if (targets.length === 0) return;
  const json = JSON.stringify(presenceEvent(record, now));
  await Promise.all(targets.map((as) => env.APPSERVICES.get(env.APPSERVICES.idFromName(as.id)).presenceEvent(as.id, json)));
}
