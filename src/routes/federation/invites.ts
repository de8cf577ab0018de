/**
 * Invites for our users from other servers: `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}` (and v1, for
 * room versions 1–2, whose body is the event itself and whose answer is `[200, {event}]`).
 * https://spec.matrix.org/v1.19/server-server-api/#inviting-to-a-room — see src/federation/invite.ts.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { MAX_FEDERATION_BODY_BYTES } from "./auth";
import { eventIdParam, roomIdParam } from "./common";
import { receiveInvite } from "../../federation/invite";

export const federationInvites = new Hono<AppEnv>();

federationInvites.put("/_matrix/federation/v2/invite/:roomId/:eventId", async (c) => {
  const roomId = roomIdParam(c);
  const eventId = eventIdParam(c);
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  const event = await receiveInvite(c.env, c.get("origin"), roomId, eventId, {
    room_version: body.room_version,
    event: body.event,
    invite_room_state: body.invite_room_state,
  });
  return c.json({ event });
});

federationInvites.put("/_matrix/federation/v1/invite/:roomId/:eventId", async (c) => {
  const roomId = roomIdParam(c);
  const eventId = eventIdParam(c);
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  // The v1 API predates room versions: the event is v1/v2-shaped, its stripped state in `unsigned`.
  const unsigned = body.unsigned as Record<string, unknown> | undefined;
  const event = await receiveInvite(c.env, c.get("origin"), roomId, eventId, {
    room_version: "1",
    event: body,
    invite_room_state: unsigned?.invite_room_state,
  });
  return c.json([200, { event }]);
});
