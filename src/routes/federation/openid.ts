/**
 * GET /_matrix/federation/v1/openid/userinfo?access_token=…: who holds an OpenID token issued by
 * POST /user/{userId}/openid/request_token (src/routes/client/openid.ts).
 * https://spec.matrix.org/v1.19/server-server-api/#openid
 *
 * The one federation endpoint without X-Matrix authentication: the caller is an integration, not a homeserver
 * (listed in src/routes/federation/auth.ts). Unknown or expired tokens: 401 `M_UNKNOWN_TOKEN`.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { MatrixError } from "../../http/errors";
import { tokenHash } from "../../accounts/tokens";

export const federationOpenId = new Hono<AppEnv>();

federationOpenId.get("/_matrix/federation/v1/openid/userinfo", async (c) => {
  const token = c.req.query("access_token");
  if (!token) throw new MatrixError(401, "M_MISSING_TOKEN", "Missing access_token");
  const row = await c.env.DB.prepare("SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?")
    .bind(tokenHash(token), Date.now())
    .first<{ user_id: string }>();
  if (!row) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired");
  return c.json({ sub: row.user_id });
});
