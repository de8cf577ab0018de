/**
 * What rooms and profiles do when an account is created or deactivated (called from src/accounts/lifecycle.ts).
 *
 * - Registration: the initial profile, with the requested display name or, as Synapse does, the localpart.
 * - Deactivation: leave every joined room and reject every invite / rescind every knock (as Synapse's
 *   deactivation does), then clear the profile. Each room is handled on its own: one failure (say, a remote
 *   room while federation cannot leave yet) does not stop the others.
 */
import type { Env } from "../env";
import { parseUserId } from "../protocol/identifiers";
import { createInitialProfile, putProfile } from "./profiles";
import { leaveRoom } from "./membership";

export async function onRoomsUserRegistered(env: Env, userId: string, displayname?: string): Promise<void> {
  await createInitialProfile(env.DB, userId, displayname ?? parseUserId(userId).localpart);
}

export async function onRoomsUserDeactivated(env: Env, userId: string): Promise<{ left: string[]; failed: string[] }> {
  const memberships = await env.USERS.get(env.USERS.idFromName(userId)).memberships();
  const left: string[] = [];
  const failed: string[] = [];
  const requester = { userId, deviceId: "", isGuest: false };
  for (const { room_id, membership } of memberships) {
    if (membership !== "join" && membership !== "invite" && membership !== "knock") continue;
    try {
      await leaveRoom(env, requester, room_id);
      left.push(room_id);
    } catch (e) {
      console.warn(`deactivation: ${userId} could not leave ${room_id}: ${String((e as Error)?.message ?? e)}`);
      failed.push(room_id);
    }
  }
  await putProfile(env.DB, userId, {});
  return { left, failed };
}
