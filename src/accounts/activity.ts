/**
 * Bookkeeping on authenticated requests, called by `requireAuth`: the device's `last_seen_ts` / `last_seen_ip`,
 * and the first use of a token pair created by /refresh (which retires the pair it replaced).
 *
 * Cheap by design: each isolate remembers when it last did this for a token and does nothing for
 * LAST_SEEN_INTERVAL_MS; when it does act, the update only writes if D1's own `last_seen_ts` is older than that
 * interval, and it runs after the response (`waitUntil`). So a busy device costs about one D1 write per few
 * minutes, not one per request.
 */
import type { AppContext, Requester } from "../http/app";
import type { Env } from "../env";
import { clientIp } from "../http/rate-limit";
import { tokenHash } from "./tokens";

export const LAST_SEEN_INTERVAL_MS = 5 * 60_000;
const MAX_REMEMBERED = 10_000;

/** token hash → when this isolate last recorded activity for it. */
const recent = new Map<string, number>();

/** Records that `token` (already validated for `requester`) was used; never delays or fails the request. */
export function noteTokenUse(c: AppContext, token: string, requester: Requester): void {
  if (requester.appserviceId) return;
  const hash = tokenHash(token);
  const now = Date.now();
  const last = recent.get(hash);
  if (last !== undefined && now - last < LAST_SEEN_INTERVAL_MS) return;
  if (recent.size >= MAX_REMEMBERED) recent.clear();
  recent.set(hash, now);
  const work = recordTokenUse(c.env, hash, requester, clientIp(c), now).catch((e) => {
    recent.delete(hash);
    console.error("recording token use failed", e);
  });
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    // No execution context (direct app.fetch without one): the promise still runs to completion on its own.
  }
}

/** The D1 side of {@link noteTokenUse}: conditional, idempotent writes in one batch. */
export async function recordTokenUse(env: Env, hash: string, requester: Requester, ip: string, now: number): Promise<void> {
  const db = env.DB;
  await db.batch([
    db
      .prepare(
        `UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?
         WHERE user_id = ? AND device_id = ? AND (last_seen_ts IS NULL OR last_seen_ts < ? OR last_seen_ip IS NOT ?)`,
      )
      .bind(now, ip, requester.userId, requester.deviceId, now - LAST_SEEN_INTERVAL_MS, ip),
    // A refreshed pair in use: the pair it replaced (kept so a lost /refresh response could be retried) goes.
    db
      .prepare("DELETE FROM access_tokens WHERE token_hash = (SELECT parent_hash FROM access_tokens WHERE token_hash = ?)")
      .bind(hash),
    db.prepare("UPDATE access_tokens SET parent_hash = NULL WHERE token_hash = ? AND parent_hash IS NOT NULL").bind(hash),
  ]);
}

/** Forgets this isolate's memory of recent activity (tests). */
export function forgetRecentActivity(): void {
  recent.clear();
}
