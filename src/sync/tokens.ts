/**
 * /sync tokens (`since`, `next_batch`).
 *
 * A sync token names a position in the syncing user's own stream (the UserDO's stream_head, see
 * durable-objects/user/stream.ts): `u<position>`. It is opaque to clients and meaningful only for the user
 * it was issued to. Room pagination tokens (`prev_batch`, /messages) are a different family, defined in
 * src/rooms/tokens.ts (`t<depth>_<stream>`, `s<stream>`); the leading letter keeps the two apart.
 *
 * The spec lets a client close a gap with `/messages?from=<since token>&to=<prev_batch>`. A sync token means
 * nothing to a room by itself; `roomTokenForSyncToken` translates it for one room through the user's UserDO.
 */
import type { Env } from "../env";

const SYNC_TOKEN = /^u(\d{1,15})$/;

export function formatSyncToken(position: number): string {
  return `u${position}`;
}

/** The stream position of a sync token; undefined if it is not one. */
export function parseSyncToken(token: string): number | undefined {
  const m = SYNC_TOKEN.exec(token);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function isSyncToken(token: string): boolean {
  return parseSyncToken(token) !== undefined;
}

/**
 * For /messages (and other room-token readers): the room token (`s<stream>`) naming where `roomId` stood for
 * `userId` at the sync token, or undefined when the token is not a sync token. A room the user had no
 * relationship with at that point maps to the start of the room (`s0`).
 */
export async function roomTokenForSyncToken(env: Env, userId: string, roomId: string, token: string): Promise<string | undefined> {
  const position = parseSyncToken(token);
  if (position === undefined) return undefined;
  const at = await env.USERS.get(env.USERS.idFromName(userId)).roomPositionAt(roomId, position);
  return `s${at ?? 0}`;
}
