/**
 * PUT /rooms/{roomId}/typing/{userId} (https://spec.matrix.org/v1.19/client-server-api/#typing-notifications).
 * Only for oneself, only in a room one has joined. The RoomDO keeps who is typing until when (expiry by its
 * alarm) and tells members' sync streams.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, forbidden, MatrixError } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { DEFAULT_TYPING_TIMEOUT_MS } from "../../../durable-objects/room/ephemeral";
import { announceEphemeral } from "../../sync/ephemeral-hooks";

export const typingRoutes = new Hono<AppEnv>();

typingRoutes.use("/rooms/:roomId/typing/*", requireAuth);

typingRoutes.put("/rooms/:roomId/typing/:userId", async (c) => {
  const roomId = c.req.param("roomId");
  const userId = c.req.param("userId");
  if (userId !== c.get("requester").userId) throw forbidden("Cannot set typing state for other users");
  const body = await readJsonObject(c);
  if (typeof body.typing !== "boolean") throw badJson("'typing' must be a boolean");
  let timeoutMs = DEFAULT_TYPING_TIMEOUT_MS;
  if (body.timeout !== undefined) {
    if (typeof body.timeout !== "number" || !Number.isInteger(body.timeout) || body.timeout < 0) {
      throw badJson("'timeout' must be a non-negative integer");
    }
    timeoutMs = body.timeout;
  }
  const result = await c.env.ROOMS.get(c.env.ROOMS.idFromName(roomId)).setTyping(userId, body.typing, timeoutMs);
  // A room this server does not hold is one the user is not in.
  if (!result.ok) throw new MatrixError(403, "M_FORBIDDEN", result.errcode === "M_NOT_FOUND" ? `${userId} is not in the room` : result.error);
  announceEphemeral(c.env, { kind: "typing", roomId, userId, typing: body.typing, timeoutMs }, (p) => c.executionCtx.waitUntil(p));
  return c.json({});
});
