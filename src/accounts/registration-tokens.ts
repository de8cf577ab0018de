/**
 * Registration tokens (https://spec.matrix.org/v1.19/client-server-api/#token-authenticated-registration): with
 * REGISTRATION_REQUIRES_TOKEN, /register asks for an `m.login.registration_token` stage whose token an admin
 * created (Synapse's admin API, src/routes/admin/registration-tokens.ts).
 *
 * A token may be limited in uses and time. A use is *pending* from the moment a UIA session passes the token
 * stage until that session registers an account (then the token's `completed` count goes up) or expires. Pending
 * uses are counted from the sessions themselves (`uia_sessions.data.registration_token`) instead of a counter, so
 * an abandoned session gives its use back by expiring, and the check-and-claim is one D1 statement: two sessions
 * racing for a token's last use cannot both get it.
 */
import type { Env } from "../env";
import { UIA_SESSION_TTL_MS } from "../http/uia";

export interface RegistrationToken {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

/** The characters Synapse allows in a token (the spec's "unreserved" set), at most 64 of them. */
export const TOKEN_PATTERN = /^[A-Za-z0-9._~-]{1,64}$/;

/** Live sessions holding a pending use of token ?1 (sessions created after ?2). */
const PENDING = `(SELECT count(*) FROM uia_sessions s
   WHERE json_extract(s.data, '$.registration_token') = t.token
     AND json_extract(s.data, '$.registered_user_id') IS NULL
     AND s.created_ts > ?2)`;

const SELECT_TOKEN = `SELECT t.token, t.uses_allowed, t.completed, t.expiry_time, ${PENDING} AS pending FROM registration_tokens t`;

function liveSince(now: number): number {
  return now - UIA_SESSION_TTL_MS;
}

export async function getRegistrationToken(env: Env, token: string, now = Date.now()): Promise<RegistrationToken | null> {
  return env.DB.prepare(`${SELECT_TOKEN} WHERE t.token = ?1`).bind(token, liveSince(now)).first<RegistrationToken>();
}

export async function listRegistrationTokens(env: Env, valid: boolean | undefined, now = Date.now()): Promise<RegistrationToken[]> {
  const rows = await env.DB.prepare(`${SELECT_TOKEN} ORDER BY t.created_ts`).bind(null, liveSince(now)).all<RegistrationToken>();
  if (valid === undefined) return rows.results;
  return rows.results.filter((t) => isUsable(t, now) === valid);
}

/** Whether a token may still be used: not expired, and uses left counting the pending ones. */
export function isUsable(t: RegistrationToken, now = Date.now()): boolean {
  if (t.expiry_time !== null && t.expiry_time <= now) return false;
  return t.uses_allowed === null || t.pending + t.completed < t.uses_allowed;
}

/**
 * The token stage: claims a pending use of `token` for UIA session `sessionId`, if the token is usable. A session
 * that already holds this token keeps it (retries of the stage cost nothing).
 */
export async function claimRegistrationToken(env: Env, sessionId: string, token: string, now = Date.now()): Promise<boolean> {
  const claimed = await env.DB.prepare(
    `UPDATE uia_sessions SET data = json_set(data, '$.registration_token', ?1)
     WHERE session_id = ?3 AND (
       json_extract(data, '$.registration_token') = ?1 OR EXISTS (
         SELECT 1 FROM registration_tokens t WHERE t.token = ?1
           AND (t.expiry_time IS NULL OR t.expiry_time > ?4)
           AND (t.uses_allowed IS NULL OR t.completed + ${PENDING} < t.uses_allowed)))
     RETURNING session_id`,
  )
    .bind(token, liveSince(now), sessionId, now)
    .first();
  return claimed !== null;
}

/** Registration done: the session's pending use becomes a completed one (call before marking the session registered). */
export async function completeRegistrationToken(env: Env, token: string): Promise<void> {
  await env.DB.prepare("UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?").bind(token).run();
}
