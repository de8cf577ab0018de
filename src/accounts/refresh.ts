/**
 * Refresh-token rotation (POST /refresh). https://spec.matrix.org/v1.19/client-server-api/#refreshing-access-tokens
 *
 * Each access-token row may carry a refresh token. Refreshing pair A creates pair B (B.parent_hash = A) and, in
 * the same transaction, expires A's access token and marks A's refresh token used. A's refresh token stays
 * valid until B is used — its access token authenticates a request (src/accounts/activity.ts) or its refresh
 * token is refreshed — because the client may never have received B; replaying A then replaces B. Once B is
 * used, A is deleted and replaying it is 401 `M_UNKNOWN_TOKEN`.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { MatrixError } from "../http/errors";
import { newToken, tokenHash } from "./tokens";

interface PairRow {
  token_hash: string;
  user_id: string;
  device_id: string;
  refresh_used: number;
  parent_hash: string | null;
  deactivated: number;
}

export interface RefreshedTokens {
  access_token: string;
  refresh_token: string;
  expires_in_ms: number;
}

const invalidRefreshToken = () =>
  new MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown or already used refresh token", { soft_logout: false });

export async function refreshTokens(env: Env, refreshToken: string): Promise<RefreshedTokens> {
  const db = env.DB;
  const hash = tokenHash(refreshToken);
  const pair = await db
    .prepare(
      `SELECT t.token_hash, t.user_id, t.device_id, t.refresh_used, t.parent_hash, u.deactivated
       FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.refresh_hash = ?`,
    )
    .bind(hash)
    .first<PairRow>();
  if (!pair || pair.deactivated) throw invalidRefreshToken();

  const now = Date.now();
  const lifetime = getConfig(env).refreshableAccessTokenLifetimeMs;
  const access = newToken("syt");
  const refresh = newToken("syr");
  const issued: RefreshedTokens = { access_token: access, refresh_token: refresh, expires_in_ms: lifetime };
  const insertChild = (condition: string, ...conditionArgs: unknown[]) =>
    db
      .prepare(
        `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_hash, parent_hash)
         SELECT ?, ?, ?, ?, ?, ?, ? WHERE ${condition}`,
      )
      .bind(tokenHash(access), pair.user_id, pair.device_id, now, now + lifetime, tokenHash(refresh), pair.token_hash, ...conditionArgs);

  if (!pair.refresh_used) {
    // First use of this refresh token. The INSERT only happens if nobody refreshed it concurrently.
    const [inserted] = await db.batch([
      insertChild(
        "EXISTS (SELECT 1 FROM access_tokens WHERE token_hash = ? AND refresh_used = 0)",
        pair.token_hash,
      ),
      db
        .prepare("UPDATE access_tokens SET refresh_used = 1, expires_ts = MIN(COALESCE(expires_ts, ?), ?) WHERE token_hash = ?")
        .bind(now, now, pair.token_hash),
      // This pair is now in use, so the pair it replaced (if still kept) goes.
      db.prepare("DELETE FROM access_tokens WHERE token_hash = ?").bind(pair.parent_hash),
      db.prepare("UPDATE access_tokens SET parent_hash = NULL WHERE token_hash = ?").bind(pair.token_hash),
    ]);
    if (inserted!.meta.changes === 1) return issued;
    // Lost a race with another refresh of the same token: fall through to the replay rules.
  }

  // Replay of a used refresh token: allowed only while its successor is unused (still points back at it).
  const [, inserted] = await db.batch([
    db
      .prepare("DELETE FROM access_tokens WHERE parent_hash = ? AND refresh_used = 0")
      .bind(pair.token_hash),
    insertChild(
      "EXISTS (SELECT 1 FROM access_tokens WHERE token_hash = ? AND refresh_used = 1)",
      pair.token_hash,
    ),
  ]);
  if (inserted!.meta.changes !== 1) throw invalidRefreshToken();
  return issued;
}
