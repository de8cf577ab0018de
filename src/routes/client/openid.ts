/**
 * POST /user/{userId}/openid/request_token: a token that proves to a third party (an integration manager, a
 * widget such as Element Call) which user holds it, and nothing else: it is good only for
 * GET /_matrix/federation/v1/openid/userinfo (src/routes/federation/openid.ts).
 * https://spec.matrix.org/v1.19/client-server-api/#openid
 *
 * Tokens live one hour (Synapse's default), D1 keeps only their hash (`openid_tokens`).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { forbidden } from "../../http/errors";
import { rateLimit } from "../../http/rate-limit";
import { getConfig } from "../../config";
import { newToken, tokenHash } from "../../accounts/tokens";

export const openIdRoutes = new Hono<AppEnv>();

export const OPENID_TOKEN_TTL_MS = 60 * 60_000;

openIdRoutes.post("/user/:userId/openid/request_token", requireAuth, async (c) => {
  const { userId } = c.get("requester");
  if (c.req.param("userId") !== userId) throw forbidden("Cannot request OpenID tokens for other users");
  await readJsonObject(c); // the spec's body is an empty object; anything but a JSON object is M_NOT_JSON / M_BAD_JSON
  await rateLimit(c, "openid_token", userId);
  const token = newToken("syo");
  const now = Date.now();
  await c.env.DB.batch([
    c.env.DB.prepare("DELETE FROM openid_tokens WHERE expires_ts <= ?").bind(now),
    c.env.DB.prepare("INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)").bind(tokenHash(token), userId, now + OPENID_TOKEN_TTL_MS),
  ]);
  return c.json({
    access_token: token,
    token_type: "Bearer",
    matrix_server_name: getConfig(c.env).serverName,
    expires_in: OPENID_TOKEN_TTL_MS / 1000,
  });
});
