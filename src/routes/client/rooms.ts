/**
 * Room creation and sending: POST /createRoom, PUT /rooms/{roomId}/send/{eventType}/{txnId},
 * PUT /rooms/{roomId}/state/{eventType}[/{stateKey}], PUT /rooms/{roomId}/redact/{eventId}/{txnId}.
 * https://spec.matrix.org/v1.19/client-server-api/#creation and #sending-events-to-a-room
 *
 * The logic lives in src/rooms (create-room.ts, send.ts); handlers parse and answer. Application services'
 * `?ts=` reaches the events as `requester.timestamp` (src/appservices/auth.ts).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import type { JsonObject } from "../../protocol/events";
import { createRoom } from "../../rooms/create-room";
import { redactEvent, sendMessage, sendState } from "../../rooms/send";
import { optionalString, requireEventId, requireRoomId } from "../../rooms/common";

export const roomRoutes = new Hono<AppEnv>();

roomRoutes.post("/createRoom", requireAuth, async (c) => {
  return c.json(await createRoom(c.env, c.get("requester"), await readJsonObject(c)));
});

roomRoutes.put("/rooms/:roomId/send/:eventType/:txnId", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const content = (await readJsonObject(c)) as JsonObject;
  const eventId = await sendMessage(c.env, c.get("requester"), roomId, c.req.param("eventType"), c.req.param("txnId"), content);
  return c.json({ event_id: eventId });
});

async function putState(c: AppContext, stateKey: string) {
  const roomId = requireRoomId(c.req.param("roomId")!);
  const content = (await readJsonObject(c)) as JsonObject;
  const eventId = await sendState(c.env, c.get("requester"), roomId, c.req.param("eventType")!, stateKey, content);
  return c.json({ event_id: eventId });
}

// The state key may be empty, with or without the trailing slash.
roomRoutes.put("/rooms/:roomId/state/:eventType", requireAuth, (c) => putState(c, ""));
roomRoutes.put("/rooms/:roomId/state/:eventType/", requireAuth, (c) => putState(c, ""));
roomRoutes.put("/rooms/:roomId/state/:eventType/:stateKey{.+}", requireAuth, (c) => putState(c, c.req.param("stateKey")));

roomRoutes.put("/rooms/:roomId/redact/:eventId/:txnId", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = requireEventId(c.req.param("eventId"));
  const body = await readJsonObject(c);
  const reason = optionalString(body, "reason");
  const redactionId = await redactEvent(c.env, c.get("requester"), roomId, eventId, c.req.param("txnId"), reason);
  return c.json({ event_id: redactionId });
});
