/**
 * Client authentication: the access token from `Authorization: Bearer …` or, for older clients such as
 * matrix-nio, the `access_token` query parameter.
 * https://spec.matrix.org/v1.19/client-server-api/#using-access-tokens
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, AppContext, Requester } from "./app";
import { missingToken, unknownToken } from "./errors";
import { tokenHash } from "../accounts/tokens";
import { noteTokenUse } from "../accounts/activity";

/** The access token of a request, if it carries one. */
export function accessTokenOf(c: AppContext): string | undefined {
  const header = c.req.header("authorization");
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) return m[1];
  }
  return c.req.query("access_token") || undefined;
}

interface TokenRow {
  user_id: string;
  device_id: string;
  expires_ts: number | null;
  is_guest: number;
  deactivated: number;
}

/** Resolves an access token to its user and device, or undefined (unknown, expired or deactivated). */
export async function lookupAccessToken(db: D1Database, token: string): Promise<Requester | { expired: true } | undefined> {
  const row = await db
    .prepare(
      `SELECT t.user_id, t.device_id, t.expires_ts, u.is_guest, u.deactivated
       FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?`,
    )
    .bind(tokenHash(token))
    .first<TokenRow>();
  if (!row || row.deactivated) return undefined;
  if (row.expires_ts !== null && row.expires_ts <= Date.now()) return { expired: true };
  return { userId: row.user_id, deviceId: row.device_id, isGuest: row.is_guest === 1 };
}

/**
 * Rejects requests without a valid access token (401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`) and sets
 * `c.var.requester` otherwise. Authenticators for other kinds of token (application services) run first and
 * set the requester themselves.
 */
export const requireAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (!c.get("requester")) {
    const token = accessTokenOf(c);
    if (!token) throw missingToken();
    const found = await lookupAccessToken(c.env.DB, token);
    if (!found) throw unknownToken();
    // An expired token is "soft logged out": the client may refresh it.
    if ("expired" in found) throw unknownToken(true);
    c.set("requester", found);
    // Device last-seen and refresh-token rotation bookkeeping; throttled, after the response (src/accounts/activity.ts).
    noteTokenUse(c, token, found);
  }
  await next();
};
