/**
 * Event relationships (docs/relations.md):
 *   GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
 *       (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidrelationseventid)
 *   GET /_matrix/client/v1/rooms/{roomId}/threads
 *       (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidthreads)
 * Both run in the room's DO (durable-objects/room/relations.ts), which applies history visibility and bundles
 * aggregations. `from`/`to` of /relations take this endpoint's tokens, /messages tokens and /sync `next_batch`.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam } from "../../http/errors";
import { queryResponse, requireEventId, requireRoomId, roomStub } from "../../rooms/common";
import type { ClientReadRequest } from "../../../durable-objects/room/queries";
import { roomTokenForSyncToken } from "../../sync/tokens";
import { requesterViewer } from "../../rooms/ignored-users";

export const relationRoutesV1 = new Hono<AppEnv>();

/** Page sizes: the reference server's defaults, and our ceiling. */
const DEFAULT_RELATIONS_LIMIT = 5;
const DEFAULT_THREADS_LIMIT = 5;
const MAX_LIMIT = 1000;

function limitParam(c: AppContext, fallback: number, positive: boolean): number {
  const raw = c.req.query("limit");
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d{1,10}$/.test(raw)) throw invalidParam("'limit' must be a non-negative integer");
  const n = Number(raw);
  if (positive && n === 0) throw invalidParam("'limit' must be greater than zero");
  return Math.min(n, MAX_LIMIT);
}

async function read(c: AppContext, roomId: string, req: ClientReadRequest): Promise<Response> {
  // The requester with the users they ignore (src/rooms/ignored-users.ts).
  const viewer = await requesterViewer(c.env, c.get("requester"));
  return queryResponse(await roomStub(c.env, roomId).clientRead(viewer, req));
}

/** A room token for the DO: /sync `next_batch` tokens are translated through the user's UserDO. */
async function roomToken(c: AppContext, roomId: string, token: string | undefined): Promise<string | undefined> {
  if (token === undefined || token === "") return undefined;
  return (await roomTokenForSyncToken(c.env, c.get("requester").userId, roomId, token)) ?? token;
}

async function relations(c: AppContext): Promise<Response> {
  const roomId = requireRoomId(c.req.param("roomId")!);
  const eventId = requireEventId(c.req.param("eventId")!);
  const dir = c.req.query("dir") ?? "b";
  if (dir !== "b" && dir !== "f") throw invalidParam("'dir' must be 'b' or 'f'");
  const req: ClientReadRequest = { kind: "relations", event_id: eventId, dir, limit: limitParam(c, DEFAULT_RELATIONS_LIMIT, false) };
  const relType = c.req.param("relType");
  const eventType = c.req.param("eventType");
  if (relType !== undefined) req.rel_type = relType;
  if (eventType !== undefined) req.event_type = eventType;
  const recurse = c.req.query("recurse") ?? c.req.query("org.matrix.msc3981.recurse");
  if (recurse !== undefined) {
    if (recurse !== "true" && recurse !== "false") throw invalidParam("'recurse' must be 'true' or 'false'");
    req.recurse = recurse === "true";
  }
  const from = await roomToken(c, roomId, c.req.query("from"));
  const to = await roomToken(c, roomId, c.req.query("to"));
  if (from !== undefined) req.from = from;
  if (to !== undefined) req.to = to;
  return read(c, roomId, req);
}

relationRoutesV1.get("/rooms/:roomId/relations/:eventId", requireAuth, relations);
relationRoutesV1.get("/rooms/:roomId/relations/:eventId/:relType", requireAuth, relations);
relationRoutesV1.get("/rooms/:roomId/relations/:eventId/:relType/:eventType", requireAuth, relations);

relationRoutesV1.get("/rooms/:roomId/threads", requireAuth, (c) => {
  const roomId = requireRoomId(c.req.param("roomId")!);
  const include = c.req.query("include") ?? "all";
  if (include !== "all" && include !== "participated") throw invalidParam("'include' must be 'all' or 'participated'");
  const req: ClientReadRequest = { kind: "threads", include, limit: limitParam(c, DEFAULT_THREADS_LIMIT, true) };
  const from = c.req.query("from");
  if (from !== undefined && from !== "") req.from = from;
  return read(c, roomId, req);
});
