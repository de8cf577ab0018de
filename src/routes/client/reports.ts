/**
 * Reporting content: POST /rooms/{roomId}/report/{eventId}, POST /rooms/{roomId}/report, POST /users/{userId}/report.
 * https://spec.matrix.org/v1.19/client-server-api/#reporting-content
 *
 * Reports are stored in D1 (`reports`) for the server's administrators (GET /_synapse/admin/v1/event_reports,
 * src/routes/admin/reports.ts). As Synapse: an event report needs the reporter to be joined to the room and able
 * to see the event (404 `M_NOT_FOUND` otherwise, whether or not it exists); room and user reports answer 404 for
 * rooms and users this server does not know. `reason` is optional (at most 1,000 characters here); an event
 * report's `score` (deprecated) must be an integer from -100 to 0. Reports are rate limited per reporter.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { badJson, invalidParam, notFound } from "../../http/errors";
import { rateLimit } from "../../http/rate-limit";
import { requireEventId, requireRoomId, roomStub } from "../../rooms/common";
import { isValidUserId } from "../../protocol/identifiers";
import { getUser } from "../../accounts/store";

export const reportRoutes = new Hono<AppEnv>();

const MAX_REASON = 1000;

function reasonOf(body: Record<string, unknown>): string | null {
  const reason = body.reason;
  if (reason === undefined || reason === null) return null;
  if (typeof reason !== "string") throw badJson("'reason' must be a string");
  if (reason.length > MAX_REASON) throw invalidParam(`'reason' must be at most ${MAX_REASON} characters`);
  return reason;
}

interface Report {
  kind: "event" | "room" | "user";
  roomId?: string;
  eventId?: string;
  userId?: string;
  reason: string | null;
  score?: number | null;
}

async function store(c: AppContext, r: Report): Promise<void> {
  await c.env.DB.prepare(
    "INSERT INTO reports (kind, reporter, room_id, event_id, user_id, reason, score, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  )
    .bind(r.kind, c.get("requester").userId, r.roomId ?? null, r.eventId ?? null, r.userId ?? null, r.reason, r.score ?? null, Date.now())
    .run();
}

async function roomKnown(c: AppContext, roomId: string): Promise<boolean> {
  return (await c.env.DB.prepare("SELECT 1 FROM room_stats WHERE room_id = ?").bind(roomId).first()) !== null;
}

reportRoutes.post("/rooms/:roomId/report/:eventId", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = requireEventId(c.req.param("eventId"));
  const body = await readJsonObject(c);
  const reason = reasonOf(body);
  const score = body.score;
  if (score !== undefined && (typeof score !== "number" || !Number.isInteger(score) || score < -100 || score > 0)) {
    throw invalidParam("'score' must be an integer between -100 and 0");
  }
  const { userId } = c.get("requester");
  await rateLimit(c, "report", userId);
  const stub = roomStub(c.env, roomId);
  const seen = (await roomKnown(c, roomId)) && (await stub.fedIsJoined(userId)) && (await stub.clientRead({ userId }, { kind: "event", event_id: eventId })).status === 200;
  if (!seen) throw notFound("Unable to report event: it does not exist or you aren't able to see it");
  await store(c, { kind: "event", roomId, eventId, reason, score: (score as number | undefined) ?? null });
  return c.json({});
});

reportRoutes.post("/rooms/:roomId/report", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const reason = reasonOf(await readJsonObject(c));
  await rateLimit(c, "report", c.get("requester").userId);
  if (!(await roomKnown(c, roomId))) throw notFound(`Room ${roomId} not found`);
  await store(c, { kind: "room", roomId, reason });
  return c.json({});
});

reportRoutes.post("/users/:userId/report", requireAuth, async (c) => {
  const userId = c.req.param("userId");
  if (!isValidUserId(userId)) throw invalidParam("Invalid user ID");
  const reason = reasonOf(await readJsonObject(c));
  await rateLimit(c, "report", c.get("requester").userId);
  // Local users must exist; remote users are known if they share a room with anyone here.
  const known =
    (await getUser(c.env.DB, userId)) !== null ||
    (await c.env.DB.prepare("SELECT 1 FROM room_members WHERE user_id = ? LIMIT 1").bind(userId).first()) !== null;
  if (!known) throw notFound(`User ${userId} not found`);
  await store(c, { kind: "user", userId, reason });
  return c.json({});
});
