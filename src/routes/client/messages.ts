/**
 * Reading rooms: GET /rooms/{roomId}/messages, /context/{eventId}, /event/{eventId}, /state,
 * /state/{eventType}[/{stateKey}], /members, /joined_members; v1 /rooms/{roomId}/timestamp_to_event.
 * https://spec.matrix.org/v1.19/client-server-api/#getting-events-for-a-room
 *
 * Every read runs in the room's DO (durable-objects/room/queries.ts), which applies history visibility and
 * answers with the HTTP status and body. Pagination tokens: src/rooms/tokens.ts.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam, missingParam } from "../../http/errors";
import { parseRoomEventFilter } from "../../rooms/filter";
import { queryResponse, requireEventId, requireRoomId, roomStub, serverName } from "../../rooms/common";
import type { ClientReadRequest, Viewer } from "../../../durable-objects/room/queries";
import { roomTokenForSyncToken } from "../../sync/tokens";
import { requesterViewer } from "../../rooms/ignored-users";
import { maybeBackfill } from "../../federation/backfill";
import { awaitFullStateForRead, readNeedsFullState } from "../../federation/partial-join"; // faster joins

export const messageRoutes = new Hono<AppEnv>();
/** Routes under /_matrix/client/v1. */
export const messageRoutesV1 = new Hono<AppEnv>();

/** The largest page `/messages` and `/context` return. */
export const MAX_PAGE = 1000;

/** The requester, with the users they ignore (whose events are not served: src/rooms/ignored-users.ts). */
function viewer(c: AppContext): Promise<Viewer> {
  return requesterViewer(c.env, c.get("requester"));
}

async function read(c: AppContext, req: ClientReadRequest): Promise<Response> {
  const roomId = requireRoomId(c.req.param("roomId")!);
  const who = await viewer(c);
  // Faster joins: reads that need every member wait while the room is partially stated (cancelled with the request).
  if (readNeedsFullState(req, serverName(c.env))) {
    const refused = await awaitFullStateForRead(c.env, roomId, () => roomStub(c.env, roomId).clientRead(who, req), c.req.raw.signal, (p) =>
      c.executionCtx.waitUntil(p),
    );
    if (refused) return queryResponse(refused);
  }
  return queryResponse(await roomStub(c.env, roomId).clientRead(who, req));
}

function limitParam(c: AppContext, fallback: number): number {
  const raw = c.req.query("limit");
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) throw invalidParam("'limit' must be a non-negative integer");
  return Math.min(Number(raw), MAX_PAGE);
}

function dirParam(c: AppContext, required: boolean): "b" | "f" {
  const dir = c.req.query("dir");
  if (dir === undefined) {
    if (required) throw missingParam("Missing 'dir' parameter");
    return "f";
  }
  if (dir !== "b" && dir !== "f") throw invalidParam("'dir' must be 'b' or 'f'");
  return dir;
}

/** A pagination token as the room reads it: sync tokens (`next_batch`) are translated through the UserDO. */
async function roomToken(c: AppContext, token: string | undefined): Promise<string | undefined> {
  if (token === undefined || token === "") return undefined;
  const roomId = requireRoomId(c.req.param("roomId")!);
  return (await roomTokenForSyncToken(c.env, c.get("requester").userId, roomId, token)) ?? token;
}

messageRoutes.get("/rooms/:roomId/messages", requireAuth, async (c) => {
  const req: ClientReadRequest = { kind: "messages", dir: dirParam(c, true), limit: limitParam(c, 10) };
  const from = await roomToken(c, c.req.query("from"));
  const to = await roomToken(c, c.req.query("to"));
  const filter = parseRoomEventFilter(c.req.query("filter"));
  if (from !== undefined) req.from = from;
  if (to !== undefined) req.to = to;
  if (filter) req.filter = filter;
  // Federation: paging back past the start of this server's copy of the room fetches older events first.
  if (req.dir === "b") {
    await maybeBackfill(c.env, requireRoomId(c.req.param("roomId")!), req.from ?? null, req.limit).catch((e: unknown) =>
      console.warn(`backfill before /messages failed: ${String((e as Error)?.message ?? e)}`),
    );
  }
  return read(c, req);
});

messageRoutes.get("/rooms/:roomId/context/:eventId", requireAuth, (c) => {
  const req: ClientReadRequest = { kind: "context", event_id: requireEventId(c.req.param("eventId")), limit: limitParam(c, 10) };
  const filter = parseRoomEventFilter(c.req.query("filter"));
  if (filter) req.filter = filter;
  return read(c, req);
});

messageRoutes.get("/rooms/:roomId/event/:eventId", requireAuth, (c) =>
  read(c, { kind: "event", event_id: requireEventId(c.req.param("eventId")) }),
);

messageRoutes.get("/rooms/:roomId/state", requireAuth, (c) => read(c, { kind: "state" }));

function stateEvent(c: AppContext, stateKey: string) {
  const format = c.req.query("format") ?? "content";
  if (format !== "content" && format !== "event") throw invalidParam("'format' must be 'content' or 'event'");
  return read(c, { kind: "state_event", type: c.req.param("eventType")!, state_key: stateKey, format });
}

messageRoutes.get("/rooms/:roomId/state/:eventType", requireAuth, (c) => stateEvent(c, ""));
messageRoutes.get("/rooms/:roomId/state/:eventType/", requireAuth, (c) => stateEvent(c, ""));
messageRoutes.get("/rooms/:roomId/state/:eventType/:stateKey{.+}", requireAuth, (c) => stateEvent(c, c.req.param("stateKey")));

const MEMBERSHIPS = new Set(["join", "invite", "knock", "leave", "ban"]);

messageRoutes.get("/rooms/:roomId/members", requireAuth, async (c) => {
  const req: ClientReadRequest = { kind: "members" };
  // Clients pass a /sync next_batch here (matrix-js-sdk's lazy member loading does), as well as prev_batch.
  const at = await roomToken(c, c.req.query("at"));
  const membership = c.req.query("membership");
  const notMembership = c.req.query("not_membership");
  if (membership !== undefined && !MEMBERSHIPS.has(membership)) throw invalidParam("Unknown 'membership'");
  if (notMembership !== undefined && !MEMBERSHIPS.has(notMembership)) throw invalidParam("Unknown 'not_membership'");
  if (at !== undefined) req.at = at;
  if (membership !== undefined) req.membership = membership;
  if (notMembership !== undefined) req.not_membership = notMembership;
  return read(c, req);
});

messageRoutes.get("/rooms/:roomId/joined_members", requireAuth, (c) => read(c, { kind: "joined_members" }));

messageRoutesV1.get("/rooms/:roomId/timestamp_to_event", requireAuth, (c) => {
  const ts = c.req.query("ts");
  if (ts === undefined) throw missingParam("Missing 'ts' parameter");
  if (!/^\d+$/.test(ts)) throw invalidParam("'ts' must be a timestamp in milliseconds");
  return read(c, { kind: "timestamp_to_event", ts: Number(ts), dir: dirParam(c, true) });
});
