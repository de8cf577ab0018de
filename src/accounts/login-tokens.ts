/**
 * Login tokens (`m.login.token`): a logged-in user asks for one (POST /_matrix/client/v1/login/get_token, after
 * re-authenticating) and a new device logs in with it — the "sign in with an existing session" flow.
 * https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv1loginget_token
 *
 * A token is random, lives LOGIN_TOKEN_TTL_MS and is consumed by exactly one login: the conditional UPDATE is a
 * single D1 statement, so two logins racing with the same token cannot both succeed. D1 keeps only the hash.
 */
import type { Env } from "../env";
import { newToken, tokenHash } from "./tokens";

/** Two minutes, as Synapse (`login_via_existing_session.token_timeout`). */
export const LOGIN_TOKEN_TTL_MS = 2 * 60_000;

export interface IssuedLoginToken {
  loginToken: string;
  expiresInMs: number;
}

export async function issueLoginToken(env: Env, userId: string, now = Date.now()): Promise<IssuedLoginToken> {
  const loginToken = newToken("syl");
  await env.DB.batch([
    // Expired tokens are useless; drop them as new ones are made so the table stays small.
    env.DB.prepare("DELETE FROM login_tokens WHERE expires_ts <= ?").bind(now),
    env.DB.prepare("INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)").bind(
      tokenHash(loginToken),
      userId,
      now + LOGIN_TOKEN_TTL_MS,
    ),
  ]);
  return { loginToken, expiresInMs: LOGIN_TOKEN_TTL_MS };
}

/** Marks the token used and returns its user, or null when it is unknown, expired or already used. */
export async function consumeLoginToken(env: Env, loginToken: string, now = Date.now()): Promise<string | null> {
  const row = await env.DB.prepare(
    "UPDATE login_tokens SET used_ts = ?1 WHERE token_hash = ?2 AND used_ts IS NULL AND expires_ts > ?1 RETURNING user_id",
  )
    .bind(now, tokenHash(loginToken))
    .first<{ user_id: string }>();
  return row?.user_id ?? null;
}
