/**
 * Room membership: POST /join/{roomIdOrAlias}, /knock/{roomIdOrAlias}, /rooms/{roomId}/join|invite|leave|
 * kick|ban|unban|forget, GET /joined_rooms.
 * https://spec.matrix.org/v1.19/client-server-api/#room-membership
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { invalidParam } from "../../http/errors";
import { isValidServerName } from "../../protocol/identifiers";
import { forgetRoom, inviteUser, joinRoom, knockRoom, leaveRoom, moderate } from "../../rooms/membership";
import { matrixError, optionalString, requireRoomId, requireUserId } from "../../rooms/common";

export const membershipRoutes = new Hono<AppEnv>();

/** `via` (v1.12+) and the older `server_name`, both repeatable. */
function viaServers(c: AppContext): string[] {
  const servers = [...(c.req.queries("via") ?? []), ...(c.req.queries("server_name") ?? [])];
  for (const s of servers) if (!isValidServerName(s)) throw invalidParam(`Invalid server name ${JSON.stringify(s)}`);
  return servers;
}

membershipRoutes.post("/join/:roomIdOrAlias", requireAuth, async (c) => {
  const body = await readJsonObject(c);
  if (body.third_party_signed !== undefined) {
    throw matrixError(400, "M_UNRECOGNIZED", "Joining with third_party_signed is not supported by this server");
  }
  return c.json(await joinRoom(c.env, c.get("requester"), c.req.param("roomIdOrAlias"), viaServers(c), optionalString(body, "reason")));
});

membershipRoutes.post("/rooms/:roomId/join", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c);
  if (body.third_party_signed !== undefined) {
    throw matrixError(400, "M_UNRECOGNIZED", "Joining with third_party_signed is not supported by this server");
  }
  return c.json(await joinRoom(c.env, c.get("requester"), roomId, [], optionalString(body, "reason")));
});

membershipRoutes.post("/knock/:roomIdOrAlias", requireAuth, async (c) => {
  const body = await readJsonObject(c);
  return c.json(await knockRoom(c.env, c.get("requester"), c.req.param("roomIdOrAlias"), viaServers(c), optionalString(body, "reason")));
});

membershipRoutes.post("/rooms/:roomId/invite", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c);
  if (body.user_id === undefined && (body.medium !== undefined || body.address !== undefined || body.id_server !== undefined)) {
    throw matrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server");
  }
  const invitee = requireUserId(body.user_id);
  await inviteUser(c.env, c.get("requester"), roomId, invitee, optionalString(body, "reason"));
  return c.json({});
});

membershipRoutes.post("/rooms/:roomId/leave", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c);
  await leaveRoom(c.env, c.get("requester"), roomId, optionalString(body, "reason"));
  return c.json({});
});

for (const action of ["kick", "ban", "unban"] as const) {
  membershipRoutes.post(`/rooms/:roomId/${action}`, requireAuth, async (c) => {
    const roomId = requireRoomId(c.req.param("roomId"));
    const body = await readJsonObject(c);
    const target = requireUserId(body.user_id);
    await moderate(c.env, c.get("requester"), roomId, action, target, optionalString(body, "reason"));
    return c.json({});
  });
}

membershipRoutes.post("/rooms/:roomId/forget", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  await forgetRoom(c.env, c.get("requester"), roomId);
  return c.json({});
});

membershipRoutes.get("/joined_rooms", requireAuth, async (c) => {
  const userId = c.get("requester").userId;
  const rooms = await c.env.USERS.get(c.env.USERS.idFromName(userId)).joinedRooms();
  return c.json({ joined_rooms: rooms });
});
