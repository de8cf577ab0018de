/**
 * This server's published room directory for other servers: `GET|POST /_matrix/federation/v1/publicRooms`.
 * https://spec.matrix.org/v1.19/server-server-api/#published-room-directory — the same listing as the client
 * API's (src/rooms/directory-store.ts): largest rooms first, keyset pagination, optional search and room types.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { invalidParam } from "../../http/errors";
import { decodeCursor, listPublicRooms, publicRoomsQueryFromBody, type PublicRoomsQuery } from "../../rooms/directory-store";

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
  return list(c, publicRoomsQueryFromBody(await readJsonObject(c), limitOf));
});
