/**
 * POST /rooms/{roomId}/upgrade (https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3roomsroomidupgrade).
 * The logic lives in src/rooms/upgrade.ts (docs/room-upgrades.md).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { requireRoomId } from "../../rooms/common";
import { upgradeRoom } from "../../rooms/upgrade";

export const upgradeRoutes = new Hono<AppEnv>();

upgradeRoutes.post("/rooms/:roomId/upgrade", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  return c.json(await upgradeRoom(c.env, c.get("requester"), roomId, await readJsonObject(c)));
});
