/**
 * Presence endpoints (https://spec.matrix.org/v1.19/client-server-api/#presence), design in docs/presence.md.
 *
 * PUT /presence/{userId}/status — one's own presence only (403 otherwise): `presence` one of online, unavailable,
 *   offline; optional `status_msg` (a string; absent clears it). With presence disabled, a valid request is
 *   accepted and ignored, as the reference server does.
 * GET /presence/{userId}/status — oneself, or a user sharing a joined room (403 otherwise); an unknown local
 *   user is 404. `last_active_ago` is computed at read time. With presence disabled: `{"presence": "offline"}`.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, forbidden, invalidParam, notFound } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { getConfig } from "../../config";
import { isValidUserId, serverNameOf } from "../../protocol/identifiers";
import { isPresenceState, MAX_STATUS_MSG_LENGTH, presenceContent, type PresenceRecord } from "../../presence/model";
import { readPresence, shareRoom } from "../../presence/store";

export const presenceRoutes = new Hono<AppEnv>();

presenceRoutes.use("/presence/:userId/status", requireAuth);

presenceRoutes.put("/presence/:userId/status", async (c) => {
  const requester = c.get("requester");
  const userId = c.req.param("userId");
  if (userId !== requester.userId) throw forbidden("You cannot set the presence state of another user");
  const body = await readJsonObject(c);
  const { presence, status_msg } = body;
  if (presence === undefined) throw badJson("'presence' is required");
  if (typeof presence !== "string") throw badJson("'presence' must be a string");
  if (!isPresenceState(presence)) throw invalidParam("'presence' must be one of online, unavailable, offline");
  if (status_msg !== undefined && typeof status_msg !== "string") throw badJson("'status_msg' must be a string");
  if (typeof status_msg === "string" && status_msg.length > MAX_STATUS_MSG_LENGTH) {
    throw invalidParam(`'status_msg' is longer than ${MAX_STATUS_MSG_LENGTH} characters`);
  }
  if (!getConfig(c.env).presenceEnabled) return c.json({});
  await c.env.USERS.get(c.env.USERS.idFromName(userId)).presenceSet(presence, status_msg ?? null);
  return c.json({});
});

presenceRoutes.get("/presence/:userId/status", async (c) => {
  const requester = c.get("requester");
  const userId = c.req.param("userId");
  const config = getConfig(c.env);
  if (!isValidUserId(userId)) throw invalidParam("Invalid user ID");
  const local = serverNameOf(userId) === config.serverName;
  if (local && userId !== requester.userId) {
    const exists = await c.env.DB.prepare("SELECT 1 AS x FROM users WHERE user_id = ?").bind(userId).first<{ x: number }>();
    if (!exists) throw notFound("No such user");
  }
  if (!config.presenceEnabled) return c.json({ presence: "offline" });
  if (userId !== requester.userId && !(await shareRoom(c.env, requester.userId, userId))) {
    throw forbidden("You are not allowed to see their presence");
  }
  const now = Date.now();
  let record: PresenceRecord | undefined;
  if (local) {
    record = JSON.parse(await c.env.USERS.get(c.env.USERS.idFromName(userId)).presenceGet()) as PresenceRecord;
  } else {
    record = (await readPresence(c.env, config.serverName, [userId], now))[0];
  }
  record ??= { user_id: userId, state: "offline", status_msg: null, last_active_ts: 0, currently_active: false };
  return c.json(presenceContent(record, now));
});
