/**
 * Receipts and read markers (https://spec.matrix.org/v1.19/client-server-api/#receipts,
 * https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers):
 *   POST /rooms/{roomId}/receipt/{receiptType}/{eventId}   (m.read, m.read.private, m.fully_read; thread_id)
 *   POST /rooms/{roomId}/read_markers                      ({m.fully_read, m.read, m.read.private})
 * Receipts live in the RoomDO (shown to members in sync's ephemeral section; m.read.private only to its owner);
 * the fully-read marker is the user's `m.fully_read` room account data, in the UserDO.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, invalidParam, MatrixError } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import type { SyncWriteResult } from "../../../durable-objects/room/RoomDO";
import { announceEphemeral } from "../../sync/ephemeral-hooks";

export const receiptRoutes = new Hono<AppEnv>();

receiptRoutes.use("/rooms/:roomId/receipt/*", requireAuth);
receiptRoutes.use("/rooms/:roomId/read_markers", requireAuth);

const RECEIPT_TYPES = new Set(["m.read", "m.read.private", "m.fully_read"]);

function fail(result: SyncWriteResult & { ok: false }): never {
  throw new MatrixError(result.errcode === "M_NOT_FOUND" ? 404 : 403, result.errcode, result.error);
}

function room(c: AppContext) {
  return c.env.ROOMS.get(c.env.ROOMS.idFromName(c.req.param("roomId")!));
}

/** Stores one receipt (m.read / m.read.private) or the fully-read marker. */
async function mark(c: AppContext, receiptType: string, eventId: string, threadId: string | null): Promise<void> {
  const roomId = c.req.param("roomId")!;
  const userId = c.get("requester").userId;
  if (receiptType === "m.fully_read") {
    const check = await room(c).checkReadMarker(userId, eventId);
    if (!check.ok) fail(check);
    const user = c.env.USERS.get(c.env.USERS.idFromName(userId));
    await user.setAccountData(roomId, "m.fully_read", JSON.stringify({ event_id: eventId }));
    return;
  }
  const ts = Date.now();
  const result = await room(c).putReceipt(userId, receiptType, eventId, threadId, ts);
  if (!result.ok) fail(result);
  announceEphemeral(c.env, { kind: "receipt", roomId, userId, receiptType, eventId, threadId, ts }, (p) => c.executionCtx.waitUntil(p));
}

function eventIdOf(v: unknown, where: string, error = badJson): string {
  if (typeof v !== "string" || !v.startsWith("$")) throw error(`'${where}' must be an event ID`);
  return v;
}

receiptRoutes.post("/rooms/:roomId/receipt/:receiptType/:eventId", async (c) => {
  const receiptType = c.req.param("receiptType");
  if (!RECEIPT_TYPES.has(receiptType)) throw invalidParam(`Receipt type must be one of ${[...RECEIPT_TYPES].join(", ")}`);
  const eventId = eventIdOf(c.req.param("eventId"), "eventId", invalidParam);
  const body = await readJsonObject(c);
  let threadId: string | null = null;
  if (body.thread_id !== undefined) {
    if (typeof body.thread_id !== "string" || body.thread_id === "") throw invalidParam("thread_id field must be a non-empty string");
    if (receiptType === "m.fully_read") throw invalidParam("thread_id is not allowed for m.fully_read");
    threadId = body.thread_id;
  }
  await mark(c, receiptType, eventId, threadId);
  return c.json({});
});

receiptRoutes.post("/rooms/:roomId/read_markers", async (c) => {
  const body = await readJsonObject(c);
  const marks: [string, string][] = [];
  for (const type of ["m.fully_read", "m.read", "m.read.private"]) {
    if (body[type] !== undefined && body[type] !== null) marks.push([type, eventIdOf(body[type], type)]);
  }
  for (const [type, eventId] of marks) await mark(c, type, eventId, null);
  return c.json({});
});
