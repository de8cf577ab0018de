/**
 * After a display name or avatar change, every room the user is joined to gets a new `m.room.member` join event
 * carrying the new profile (as Synapse does). Rooms come from the user's UserDO (`joinedRooms`). A room that
 * refuses (or fails) does not stop the others; an unchanged profile sends nothing (the membership precheck
 * returns the existing event).
 */
import type { Env } from "../env";
import { memberProfile } from "./profiles";
import { roomStub } from "./common";

export async function propagateProfile(env: Env, userId: string): Promise<{ updated: string[]; failed: string[] }> {
  const rooms = await env.USERS.get(env.USERS.idFromName(userId)).joinedRooms();
  const profile = await memberProfile(env.DB, userId);
  const updated: string[] = [];
  const failed: string[] = [];
  await Promise.all(
    rooms.map(async (roomId) => {
      try {
        const stub = roomStub(env, roomId);
        const r = await stub.clientWrite({
          kind: "membership",
          action: "join",
          sender: userId,
          target: userId,
          content: { membership: "join", ...profile },
        });
        if (!r.ok) throw new Error(`${r.errcode}: ${r.error}`);
        await stub.syncDirectory();
        updated.push(roomId);
      } catch (e) {
        console.warn(`profile: could not update ${userId} in ${roomId}: ${String((e as Error)?.message ?? e)}`);
        failed.push(roomId);
      }
    }),
  );
  return { updated, failed };
}
