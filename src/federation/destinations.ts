/**
 * Sending to other servers: the DestinationDO of a server, and queueing EDUs for it. PDUs need nothing from
 * callers: the RoomDO outbox notifies DestinationDOs of the events we originate.
 *
 * EDUs (what other code calls):
 *   await queueEdu(env, "remote.example", "m.typing", { room_id, user_id, typing: true }, `typing:${room}:${user}`);
 *   await queueEduToServers(env, servers, "m.device_list_update", content);
 * Both return once the EDU is stored in each DestinationDO; sending happens in the background.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import type { DestinationStatus } from "../../durable-objects/destination/DestinationDO";

export function destinationStub(env: Env, server: string) {
  return env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));
}

/** Queues an EDU for one server. `coalesceKey`: a newer EDU with the same key replaces an unsent older one. */
export async function queueEdu(
  env: Env,
  destination: string,
  eduType: string,
  content: object,
  coalesceKey?: string,
): Promise<void> {
  if (destination === getConfig(env).serverName) return;
  const edu = { edu_type: eduType, content: JSON.stringify(content), ...(coalesceKey !== undefined ? { coalesce_key: coalesceKey } : {}) };
  await destinationStub(env, destination).queueEdu(destination, edu);
}

/** Queues the same EDU for several servers (ours is skipped). */
export async function queueEduToServers(
  env: Env,
  destinations: Iterable<string>,
  eduType: string,
  content: object,
  coalesceKey?: string,
): Promise<void> {
  const ours = getConfig(env).serverName;
  await Promise.all(
    [...new Set(destinations)].filter((d) => d !== ours).map((d) => queueEdu(env, d, eduType, content, coalesceKey)),
  );
}

/** Delivery state of a destination (admin API and tests). */
export async function destinationStatus(env: Env, destination: string): Promise<DestinationStatus> {
  return destinationStub(env, destination).status();
}
