/**
 * This server's published room directory for other servers: `GET|POST /_matrix/federation/v1/publicRooms`.
 * https://spec.matrix.org/v1.19/server-server-api/#published-room-directory — the same listing as the client
 * API's (src/rooms/directory-store.ts): largest rooms first, keyset pagination, optional search and room types.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { badJson, invalidParam } from "../../http/errors";
import { decodeCursor, listPublicRooms, type PublicRoomsQuery } from "../../rooms/directory-store";

export const federationPublicRooms = new Hono<AppEnv>();

function limitOf(v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw invalidParam("'limit' must be a non-negative integer");
  return n;
}

async function list(c: AppContext, q: PublicRoomsQuery): Promise<Response> {
  const since = q.since === undefined || q.since === "" ? undefined : decodeCursor(q.since);
  if (q.since && !since) throw invalidParam("Unknown 'since' token");
  return c.json(await listPublicRooms(c.env.DB, q, since));
}

federationPublicRooms.get("/_matrix/federation/v1/publicRooms", (c) =>
  list(c, { limit: limitOf(c.req.query("limit")), since: c.req.query("since"), searchTerm: undefined, roomTypes: undefined }),
);

federationPublicRooms.post("/_matrix/federation/v1/publicRooms", async (c) => {
  const body = await readJsonObject(c);
  if (body.since !== undefined && body.since !== null && typeof body.since !== "string") throw badJson("'since' must be a string");
  const filter = body.filter ?? {};
  if (typeof filter !== "object" || filter === null || Array.isArray(filter)) throw badJson("'filter' must be an object");
  const f = filter as Record<string, unknown>;
  const term = f.generic_search_term;
  if (term !== undefined && term !== null && typeof term !== "string") throw badJson("'generic_search_term' must be a string");
  const types = f.room_types;
  if (types !== undefined && types !== null && (!Array.isArray(types) || !types.every((t) => t === null || typeof t === "string"))) {
    throw badJson("'room_types' must be a list of strings or nulls");
  }
  return list(c, {
    limit: limitOf(body.limit),
    since: typeof body.since === "string" ? body.since : undefined,
    searchTerm: typeof term === "string" && term.trim() !== "" ? term.trim() : undefined,
    roomTypes: Array.isArray(types) ? (types as (string | null)[]) : undefined,
  });
});
