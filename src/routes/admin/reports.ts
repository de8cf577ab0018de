/**
 * For server admins (users.admin = 1): the content reports users made (src/routes/client/reports.ts), and
 * `whois`.
 *
 * - GET /_axon/admin/v1/reports?kind=event|room|user&from=&limit=: every kind, newest first.
 * - GET /_synapse/admin/v1/event_reports?from=&limit=&dir=&room_id=&user_id=: event reports in Synapse's admin
 *   API shape, so existing moderation tools can read them.
 * - GET /_matrix/client/v3/admin/whois/{userId} (the spec's, for admins and for oneself): a user's devices with
 *   the last IP and time each was seen (user agents are not recorded).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { forbidden, invalidParam, notFound } from "../../http/errors";
import { getUser } from "../../accounts/store";

export const reportsAdmin = new Hono<AppEnv>();

async function isAdmin(c: AppContext, userId: string): Promise<boolean> {
  const row = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(userId).first<{ admin: number }>();
  return row?.admin === 1;
}

async function requireAdmin(c: AppContext): Promise<void> {
  if (!(await isAdmin(c, c.get("requester").userId))) throw forbidden("You are not a server admin");
}

function intQuery(c: AppContext, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > max) throw invalidParam(`'${name}' must be an integer from 0 to ${max}`);
  return n;
}

interface ReportRow {
  report_id: number;
  kind: string;
  reporter: string;
  room_id: string | null;
  event_id: string | null;
  user_id: string | null;
  reason: string | null;
  score: number | null;
  received_ts: number;
}

reportsAdmin.get("/_axon/admin/v1/reports", requireAuth, async (c) => {
  await requireAdmin(c);
  const kind = c.req.query("kind");
  if (kind !== undefined && !["event", "room", "user"].includes(kind)) throw invalidParam("'kind' must be event, room or user");
  const limit = intQuery(c, "limit", 100, 1000);
  const before = intQuery(c, "from", Number.MAX_SAFE_INTEGER);
  const rows = await c.env.DB.prepare(
    `SELECT * FROM reports WHERE report_id < ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY report_id DESC LIMIT ?3`,
  )
    .bind(before, kind ?? null, limit + 1)
    .all<ReportRow>();
  const page = rows.results.slice(0, limit);
  return c.json({
    reports: page,
    ...(rows.results.length > limit ? { next_token: String(page[page.length - 1]!.report_id) } : {}),
  });
});

reportsAdmin.get("/_synapse/admin/v1/event_reports", requireAuth, async (c) => {
  await requireAdmin(c);
  const from = intQuery(c, "from", 0);
  const limit = intQuery(c, "limit", 100, 1000);
  const dir = c.req.query("dir") ?? "b";
  if (dir !== "b" && dir !== "f") throw invalidParam("'dir' must be b or f");
  const roomId = c.req.query("room_id") ?? null;
  const reporter = c.req.query("user_id") ?? null;
  const where = "kind = 'event' AND (?1 IS NULL OR room_id = ?1) AND (?2 IS NULL OR reporter = ?2)";
  const total = (await c.env.DB.prepare(`SELECT count(*) AS n FROM reports WHERE ${where}`).bind(roomId, reporter).first<{ n: number }>())!.n;
  const rows = await c.env.DB.prepare(
    `SELECT * FROM reports WHERE ${where} ORDER BY received_ts ${dir === "b" ? "DESC" : "ASC"}, report_id ${dir === "b" ? "DESC" : "ASC"} LIMIT ?3 OFFSET ?4`,
  )
    .bind(roomId, reporter, limit, from)
    .all<ReportRow>();
  return c.json({
    event_reports: rows.results.map((r) => ({
      id: r.report_id,
      received_ts: r.received_ts,
      room_id: r.room_id,
      event_id: r.event_id,
      user_id: r.reporter,
      reason: r.reason,
      score: r.score,
    })),
    total,
    ...(from + rows.results.length < total ? { next_token: from + rows.results.length } : {}),
  });
});

reportsAdmin.get("/_matrix/client/v3/admin/whois/:userId", requireAuth, async (c) => {
  const userId = c.req.param("userId");
  if (userId !== c.get("requester").userId) await requireAdmin(c);
  if (!(await getUser(c.env.DB, userId))) throw notFound(`Unknown user ${userId}`);
  const devices = await c.env.DB.prepare("SELECT device_id, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ?")
    .bind(userId)
    .all<{ device_id: string; last_seen_ts: number | null; last_seen_ip: string | null }>();
  return c.json({
    user_id: userId,
    devices: Object.fromEntries(
      devices.results.map((d) => [
        d.device_id,
        { sessions: [{ connections: d.last_seen_ts === null ? [] : [{ ip: d.last_seen_ip ?? undefined, last_seen: d.last_seen_ts }] }] },
      ]),
    ),
  });
});
