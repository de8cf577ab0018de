/**
 * Room aliases and the published room directory: PUT/GET/DELETE /directory/room/{roomAlias},
 * GET /rooms/{roomId}/aliases, GET/PUT /directory/list/room/{roomId}, GET/POST /publicRooms.
 * https://spec.matrix.org/v1.19/client-server-api/#room-aliases and #published-room-directory
 *
 * Permissions follow Synapse: an alias is created by a member of the room; it may be deleted by its creator,
 * by a room admin (a member allowed to send m.room.canonical_alias) or by a server admin, and deleting it
 * also drops it from the room's canonical alias event when the deleter may change that. Publishing needs the
 * same room-admin power.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { forbidden, invalidParam, notFound } from "../../http/errors";
import type { JsonObject } from "../../protocol/events";
import { requireAlias, resolveAlias } from "../../rooms/aliases";
import {
  aliasesOfRoom, decodeCursor, deleteAlias, getAlias, insertAlias, isPublished, listPublicRooms, setPublished,
  type PublicRoomsQuery,
  publicRoomsQueryFromBody,
} from "../../rooms/directory-store";
import { isLocal, matrixError, requireRoomId, roomStub, serverName } from "../../rooms/common";
import { checkAliasCreation } from "../../appservices/client";

export const directoryRoutes = new Hono<AppEnv>();

async function isServerAdmin(db: D1Database, userId: string): Promise<boolean> {
  const row = await db.prepare("SELECT admin FROM users WHERE user_id = ?").bind(userId).first<{ admin: number }>();
  return row?.admin === 1;
}

function aliasParam(c: AppContext): string {
  return requireAlias(c.req.param("roomAlias")!);
}

directoryRoutes.put("/directory/room/:roomAlias", requireAuth, async (c) => {
  const alias = aliasParam(c);
  const body = await readJsonObject(c);
  if (typeof body.room_id !== "string") throw matrixError(400, "M_MISSING_PARAM", "Missing room_id");
  const roomId = requireRoomId(body.room_id);
  if (!isLocal(c.env, alias)) throw invalidParam("Room alias must be on this server");
  checkAliasCreation(c.env, c.get("requester"), alias); // application services' alias namespaces: M_EXCLUSIVE
  const userId = c.get("requester").userId;
  const info = await roomStub(c.env, roomId).clientInfo(userId);
  if (!info) throw notFound(`Unknown room ${roomId}`);
  if (info.membership !== "join" && !(await isServerAdmin(c.env.DB, userId))) throw forbidden(`You are not in room ${roomId}`);
  if (!(await insertAlias(c.env.DB, alias, roomId, userId))) {
    throw matrixError(409, "M_UNKNOWN", `Room alias ${alias} already exists`);
  }
  return c.json({});
});

directoryRoutes.get("/directory/room/:roomAlias", async (c) => {
  return c.json(await resolveAlias(c.env, aliasParam(c)));
});

directoryRoutes.delete("/directory/room/:roomAlias", requireAuth, async (c) => {
  const alias = aliasParam(c);
  if (!isLocal(c.env, alias)) throw invalidParam("Room alias must be on this server");
  const userId = c.get("requester").userId;
  const row = await getAlias(c.env.DB, alias);
  if (!row) throw notFound(`Room alias ${alias} not found`);
  const stub = roomStub(c.env, row.room_id);
  const info = await stub.clientInfo(userId);
  const allowed = row.creator === userId || info?.can_edit_aliases === true || (await isServerAdmin(c.env.DB, userId));
  if (!allowed) throw forbidden("You don't have permission to delete the alias.");
  await deleteAlias(c.env.DB, alias);
  await dropFromCanonicalAlias(c, row.room_id, alias, userId);
  return c.json({});
});

/** Removes a deleted alias from the room's m.room.canonical_alias event, if the user may change it. */
async function dropFromCanonicalAlias(c: AppContext, roomId: string, alias: string, userId: string): Promise<void> {
  const stub = roomStub(c.env, roomId);
  const current = await stub.clientRead({ userId }, { kind: "state_event", type: "m.room.canonical_alias", state_key: "", format: "content" });
  if (current.status !== 200) return;
  const content = JSON.parse(current.body) as JsonObject;
  const alt = Array.isArray(content.alt_aliases) ? content.alt_aliases : undefined;
  if (content.alias !== alias && !alt?.includes(alias)) return;
  const next: JsonObject = { ...content };
  if (next.alias === alias) delete next.alias;
  if (alt) next.alt_aliases = alt.filter((a) => a !== alias);
  const r = await stub.clientWrite({ kind: "state", sender: userId, type: "m.room.canonical_alias", state_key: "", content: next });
  if (r.ok) await stub.syncDirectory();
}

directoryRoutes.get("/rooms/:roomId/aliases", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const info = await roomStub(c.env, roomId).clientInfo(c.get("requester").userId);
  if (!info || (info.membership !== "join" && info.history_visibility !== "world_readable")) {
    throw forbidden("You are not in the room and its history is not world-readable");
  }
  return c.json({ aliases: await aliasesOfRoom(c.env.DB, roomId) });
});

directoryRoutes.get("/directory/list/room/:roomId", async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const info = await roomStub(c.env, roomId).clientInfo("");
  if (!info) throw notFound(`Unknown room ${roomId}`);
  return c.json({ visibility: (await isPublished(c.env.DB, roomId)) ? "public" : "private" });
});

directoryRoutes.put("/directory/list/room/:roomId", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c);
  const visibility = body.visibility ?? "public";
  if (visibility !== "public" && visibility !== "private") throw invalidParam("'visibility' must be 'public' or 'private'");
  const userId = c.get("requester").userId;
  const info = await roomStub(c.env, roomId).clientInfo(userId);
  if (!info) throw notFound(`Unknown room ${roomId}`);
  if (!info.can_edit_aliases && !(await isServerAdmin(c.env.DB, userId))) {
    throw forbidden("You don't have permission to change the room's directory visibility");
  }
  await setPublished(c.env.DB, roomId, visibility === "public");
  return c.json({});
});

/** The `server` parameter: this server (or absent) only; other servers' directories need federation. */
function checkServer(c: AppContext): void {
  const server = c.req.query("server");
  if (server !== undefined && server !== "" && server !== serverName(c.env)) {
    throw matrixError(501, "M_UNRECOGNIZED", "Listing other servers' room directories is not supported yet");
  }
}

function parseLimit(v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw invalidParam("'limit' must be a non-negative integer");
  return n;
}

async function publicRooms(c: AppContext, q: PublicRoomsQuery) {
  checkServer(c);
  const since = q.since === undefined || q.since === "" ? undefined : decodeCursor(q.since);
  if (q.since && !since) throw invalidParam("Unknown 'since' token");
  return c.json(await listPublicRooms(c.env.DB, q, since));
}

directoryRoutes.get("/publicRooms", (c) =>
  publicRooms(c, { limit: parseLimit(c.req.query("limit")), since: c.req.query("since"), searchTerm: undefined, roomTypes: undefined }),
);

directoryRoutes.post("/publicRooms", requireAuth, async (c) => {
  return publicRooms(c, publicRoomsQueryFromBody(await readJsonObject(c), parseLimit));
});
