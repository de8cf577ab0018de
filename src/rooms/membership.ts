/**
 * Membership changes for the client API (https://spec.matrix.org/v1.19/client-server-api/#room-membership):
 * join, knock, invite, leave, kick, ban, unban, forget.
 *
 * Rooms this server is resident in (some local user joined, or no other server joined) are changed locally
 * through the RoomDO. Anything else needs another server and goes through `federationHooks`; `joinRoom` is
 * the one entry point the federation work extends for remote joins.
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { JsonObject } from "../protocol/events";
import { forbidden, notFound } from "../http/errors";
import type { ClientRoomInfo, ClientWriteRequest } from "../../durable-objects/room/queries";
import { resolveRoomIdOrAlias } from "./aliases";
import { federationHooks } from "./federation-hooks";
import { localUserExists, memberProfile } from "./profiles";
import { queryUserFromAppservices } from "../appservices/client";
import { isLocal, matrixError, roomStub, writeOutcome } from "./common";

type Action = Extract<ClientWriteRequest, { kind: "membership" }>["action"];

/** Whether this server can change the room by itself (it is resident, or nobody else is). */
export function isResident(info: ClientRoomInfo): boolean {
  return info.local_joined > 0 || info.remote_servers.length === 0;
}

function withReason(content: JsonObject, reason: string | undefined): JsonObject {
  return reason === undefined ? content : { ...content, reason };
}

/** Sends one membership change through the room's DO and refreshes its directory rows. */
async function change(
  env: Env,
  roomId: string,
  action: Action,
  sender: string,
  target: string,
  content: JsonObject,
  authorise = false,
): Promise<string> {
  const stub = roomStub(env, roomId);
  const req: ClientWriteRequest = { kind: "membership", action, sender, target, content };
  if (authorise) req.authorise = true;
  const eventId = writeOutcome(await stub.clientWrite(req));
  await stub.syncDirectory();
  return eventId;
}

async function infoOrNotFound(env: Env, roomId: string, userId: string): Promise<ClientRoomInfo> {
  const info = await roomStub(env, roomId).clientInfo(userId);
  if (!info) throw notFound(`Unknown room ${roomId}`);
  return info;
}

/** Whether the user is joined to one of the rooms a restricted join rule allows (local rooms only). */
async function meetsRestrictedAllow(env: Env, userId: string, allowRooms: string[]): Promise<boolean> {
  for (const roomId of allowRooms) {
    const info = await roomStub(env, roomId).clientInfo(userId).catch(() => null);
    if (info?.membership === "join") return true;
  }
  return false;
}

/**
 * Joins `roomIdOrAlias` (POST /join/{roomIdOrAlias} and /rooms/{roomId}/join). `via` are candidate servers for
 * a remote join. Restricted rooms are joined with a local authoriser when the user is in an allowed room.
 */
export async function joinRoom(
  env: Env,
  requester: Requester,
  roomIdOrAlias: string,
  via: string[],
  reason?: string,
): Promise<{ room_id: string }> {
  const { roomId, servers } = await resolveRoomIdOrAlias(env, roomIdOrAlias);
  const userId = requester.userId;
  const content = withReason({ membership: "join", ...(await memberProfile(env.DB, userId)) }, reason);
  const info = await roomStub(env, roomId).clientInfo(userId);
  // Faster joins: while the room is partially stated, a new member joins through a resident server, which can
  // check the join against the full state (docs/faster-joins.md).
  const partial = info !== null && isResident(info) && info.membership !== "join" && (await roomStub(env, roomId).federationInfo())?.partial_state === true;
  if (!info || !isResident(info) || partial) {
    return federationHooks.remoteJoin(env, { requester, roomId, servers: [...new Set([...via, ...servers])], content });
  }
  if (requester.isGuest && !info.guest_can_join && info.membership !== "join") throw forbidden("Guest access not allowed");
  const restricted = info.join_rule === "restricted" || info.join_rule === "knock_restricted";
  const authorise =
    restricted && info.membership !== "join" && info.membership !== "invite" && (await meetsRestrictedAllow(env, userId, info.allow_rooms));
  await change(env, roomId, "join", userId, userId, content, authorise);
  return { room_id: roomId };
}

/** POST /knock/{roomIdOrAlias} */
export async function knockRoom(
  env: Env,
  requester: Requester,
  roomIdOrAlias: string,
  via: string[],
  reason?: string,
): Promise<{ room_id: string }> {
  const { roomId, servers } = await resolveRoomIdOrAlias(env, roomIdOrAlias);
  const userId = requester.userId;
  const content = withReason({ membership: "knock", ...(await memberProfile(env.DB, userId)) }, reason);
  const info = await roomStub(env, roomId).clientInfo(userId);
  if (!info || !isResident(info)) {
    return federationHooks.remoteJoin(env, { requester, roomId, servers: [...new Set([...via, ...servers])], content });
  }
  await change(env, roomId, "knock", userId, userId, content);
  return { room_id: roomId };
}

/** POST /rooms/{roomId}/invite (user ID form). */
export async function inviteUser(
  env: Env,
  requester: Requester,
  roomId: string,
  invitee: string,
  reason?: string,
  extra: JsonObject = {},
): Promise<string> {
  const info = await infoOrNotFound(env, roomId, requester.userId);
  if (info.membership !== "join") throw forbidden(`You are not in room ${roomId}`);
  if (!isLocal(env, invitee)) {
    const content = withReason({ ...extra, membership: "invite" }, reason);
    return (await federationHooks.remoteInvite(env, { roomId, inviter: requester.userId, invitee, content })).event_id;
  }
  // Application services are asked about unknown users in their namespaces (src/appservices/client.ts).
  if (!(await localUserExists(env.DB, invitee)) && !(await queryUserFromAppservices(env, invitee))) throw notFound(`Unknown user ${invitee}`);
  const content = withReason({ ...extra, membership: "invite", ...(await memberProfile(env.DB, invitee)) }, reason);
  return change(env, roomId, "invite", requester.userId, invitee, content);
}

/** POST /rooms/{roomId}/leave: leave, reject an invite or rescind a knock. */
export async function leaveRoom(env: Env, requester: Requester, roomId: string, reason?: string): Promise<void> {
  const content = withReason({ membership: "leave" }, reason);
  const info = await roomStub(env, roomId).clientInfo(requester.userId);
  if (!info || (!isResident(info) && info.membership !== "join")) {
    await federationHooks.remoteLeave(env, { requester, roomId, content });
    return;
  }
  await change(env, roomId, "leave", requester.userId, requester.userId, content);
}

/** POST /rooms/{roomId}/kick|ban|unban */
export async function moderate(
  env: Env,
  requester: Requester,
  roomId: string,
  action: "kick" | "ban" | "unban",
  target: string,
  reason?: string,
): Promise<void> {
  await infoOrNotFound(env, roomId, requester.userId);
  const membership = action === "ban" ? "ban" : "leave";
  await change(env, roomId, action, requester.userId, target, withReason({ membership }, reason));
}

/**
 * A membership change through `PUT /rooms/{roomId}/state/m.room.member/{userId}` with the client's own content,
 * mapped onto the action it amounts to.
 */
export async function memberStateEvent(
  env: Env,
  requester: Requester,
  roomId: string,
  target: string,
  content: JsonObject,
): Promise<string> {
  const membership = content.membership;
  if (typeof membership !== "string") throw matrixError(400, "M_BAD_JSON", "m.room.member content needs a membership");
  const self = target === requester.userId;
  let action: Action;
  switch (membership) {
    case "join":
    case "knock":
      if (!self) throw forbidden(`Cannot ${membership} on behalf of another user`);
      action = membership;
      break;
    case "invite":
      action = "invite";
      break;
    case "leave":
      action = self ? "leave" : "kick";
      break;
    case "ban":
      action = "ban";
      break;
    default:
      throw matrixError(400, "M_BAD_JSON", `Unknown membership ${JSON.stringify(membership)}`);
  }
  const info = await roomStub(env, roomId).clientInfo(requester.userId);
  if (!info) throw forbidden(`You are not in room ${roomId}`);
  if (action === "invite" && !isLocal(env, target)) {
    return (await federationHooks.remoteInvite(env, { roomId, inviter: requester.userId, invitee: target, content })).event_id;
  }
  return change(env, roomId, action, requester.userId, target, content);
}

/**
 * POST /rooms/{roomId}/forget: the user must not be joined, invited or knocking. The room stays forgotten
 * while the user's membership event is the one current now.
 */
export async function forgetRoom(env: Env, requester: Requester, roomId: string): Promise<void> {
  const info = await roomStub(env, roomId).clientInfo(requester.userId);
  if (!info || info.membership === null || info.membership_event_id === null) return;
  if (info.membership !== "leave" && info.membership !== "ban") {
    throw matrixError(400, "M_UNKNOWN", `User ${requester.userId} is in room ${roomId}`);
  }
  await env.DB.prepare(
    `INSERT INTO forgotten_rooms (user_id, room_id, membership_event_id, forgotten_ts) VALUES (?, ?, ?, ?)
     ON CONFLICT (user_id, room_id) DO UPDATE SET membership_event_id = excluded.membership_event_id, forgotten_ts = excluded.forgotten_ts`,
  )
    .bind(requester.userId, roomId, info.membership_event_id, Date.now())
    .run();
}

/**
 * For sync: whether the user has forgotten the room, given the event ID of their current membership in it.
 */
export async function isRoomForgotten(env: Env, userId: string, roomId: string, membershipEventId: string): Promise<boolean> {
  const row = await env.DB.prepare("SELECT membership_event_id FROM forgotten_rooms WHERE user_id = ? AND room_id = ?")
    .bind(userId, roomId)
    .first<{ membership_event_id: string }>();
  return row?.membership_event_id === membershipEventId;
}

/** For sync: every (room, membership event) pair the user has forgotten. */
export async function forgottenRooms(env: Env, userId: string): Promise<{ room_id: string; membership_event_id: string }[]> {
  const rows = await env.DB.prepare("SELECT room_id, membership_event_id FROM forgotten_rooms WHERE user_id = ?")
    .bind(userId)
    .all<{ room_id: string; membership_event_id: string }>();
  return rows.results;
}
