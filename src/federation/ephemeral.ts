/**
 * Outbound typing notifications and read receipts (https://spec.matrix.org/v1.19/server-server-api/#typing-notifications,
 * #receipts): local changes announced through `onLocalEphemeral` (src/sync/ephemeral-hooks.ts) become `m.typing`
 * and `m.receipt` EDUs for every other server with users joined to the room. A newer EDU replaces an unsent older
 * one of the same user in the same room (and thread), so a burst of typing changes sends only the last.
 */
import type { Env } from "../env";
import type { LocalEphemeral } from "../sync/ephemeral-hooks";
import { getConfig } from "../config";
import { queueEduToServers } from "./destinations";

export async function sendEphemeralEdus(env: Env, change: LocalEphemeral): Promise<void> {
  const ours = getConfig(env).serverName;
  const servers = (await env.ROOMS.get(env.ROOMS.idFromName(change.roomId)).joinedServers()).filter((s) => s !== ours);
  if (servers.length === 0) return;
  if (change.kind === "typing") {
    await queueEduToServers(env, servers, "m.typing", { room_id: change.roomId, user_id: change.userId, typing: change.typing }, `typing:${change.roomId}:${change.userId}`);
    return;
  }
  // Only public read receipts travel (m.read.private is never announced; m.fully_read is account data).
  if (change.receiptType !== "m.read") return;
  const data: Record<string, unknown> = { ts: change.ts };
  if (change.threadId !== null) data.thread_id = change.threadId;
  await queueEduToServers(
    env,
    servers,
    "m.receipt",
    { [change.roomId]: { "m.read": { [change.userId]: { event_ids: [change.eventId], data } } } },
    `receipt:${change.roomId}:${change.userId}:${change.threadId ?? ""}`,
  );
}
