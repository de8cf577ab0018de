/**
 * History for other servers: `GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=` and
 * `POST /get_missing_events/{roomId}`. https://spec.matrix.org/v1.19/server-server-api/#backfilling-and-retrieving-missing-events
 * Events the asking server may not see (history visibility from its users' point of view) are redacted; the
 * server must have a user joined and pass the room's server ACL.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { invalidParam, missingParam } from "../../http/errors";
import { isValidEventId } from "../../protocol/identifiers";
import { answer, intParam, roomIdParam, roomStub, stringList } from "./common";

export const federationBackfill = new Hono<AppEnv>();

federationBackfill.get("/_matrix/federation/v1/backfill/:roomId", async (c) => {
  const roomId = roomIdParam(c);
  const from = c.req.queries("v") ?? [];
  if (from.length === 0) throw missingParam("Missing 'v'");
  if (!from.every((id) => isValidEventId(id))) throw invalidParam("'v' must be event IDs");
  const limit = intParam(c.req.query("limit"), "limit");
  if (limit < 0) throw invalidParam("'limit' must not be negative");
  return answer(await roomStub(c.env, roomId).fedBackfill(c.get("origin"), from.slice(0, 100), limit));
});

federationBackfill.post("/_matrix/federation/v1/get_missing_events/:roomId", async (c) => {
  const roomId = roomIdParam(c);
  const body = await readJsonObject(c);
  const earliest = stringList(body.earliest_events ?? [], "earliest_events");
  const latest = stringList(body.latest_events, "latest_events");
  const limit = intParam(body.limit, "limit", 10);
  const minDepth = intParam(body.min_depth, "min_depth", 0);
  if (limit < 0) throw invalidParam("'limit' must not be negative");
  return answer(await roomStub(c.env, roomId).fedMissingEvents(c.get("origin"), earliest, latest, limit, minDepth));
});
