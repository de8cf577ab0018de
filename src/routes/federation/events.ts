/**
 * Single events and auth chains for other servers: `GET /_matrix/federation/v1/event/{eventId}`,
 * `GET /event_auth/{roomId}/{eventId}` and `GET /timestamp_to_event/{roomId}?ts=&dir=`.
 * https://spec.matrix.org/v1.19/server-server-api/#retrieving-events
 *
 * `/event/{eventId}` names no room, and Axon keeps no global event index: the event is looked for in the rooms
 * where the asking server has joined users (the D1 room directory, `room_members`) — the only rooms whose events
 * it may be served anyway.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import type { Env } from "../../env";
import { invalidParam, missingParam, notFound } from "../../http/errors";
import { answer, eventIdParam, intParam, roomIdParam, roomStub } from "./common";

export const federationEvents = new Hono<AppEnv>();

/** Rooms searched at most for one `/event` request. */
const MAX_ROOMS_SEARCHED = 100;

/** Rooms where `server` has joined users, per the D1 directory. */
export async function roomsSharedWith(env: Env, server: string): Promise<string[]> {
  const pattern = `%:${server.replace(/[\\%_]/g, (ch) => `\\${ch}`)}`;
  const { results } = await env.DB.prepare(
    "SELECT DISTINCT room_id FROM room_members WHERE user_id LIKE ? ESCAPE '\\' LIMIT ?",
  )
    .bind(pattern, MAX_ROOMS_SEARCHED)
    .all<{ room_id: string }>();
  return results.map((r) => r.room_id);
}

federationEvents.get("/_matrix/federation/v1/event/:eventId", async (c) => {
  const eventId = eventIdParam(c);
  const origin = c.get("origin");
  const answers = await Promise.all(
    (await roomsSharedWith(c.env, origin)).map((roomId) => roomStub(c.env, roomId).fedEvent(origin, eventId).catch(() => undefined)),
  );
  const found = answers.find((a) => a?.status === 200);
  if (!found) throw notFound(`Event ${eventId} not found`);
  return answer({ status: found.status, body: found.body });
});

federationEvents.get("/_matrix/federation/v1/event_auth/:roomId/:eventId", async (c) =>
  answer(await roomStub(c.env, roomIdParam(c)).fedEventAuth(c.get("origin"), eventIdParam(c))),
);

/** Also under MSC3030's unstable path, which servers from before its stabilisation (spec v1.6) call. */
async function timestampToEvent(c: AppContext): Promise<Response> {
  const roomId = roomIdParam(c);
  const ts = intParam(c.req.query("ts"), "ts");
  const dir = c.req.query("dir");
  if (dir === undefined) throw missingParam("Missing 'dir'");
  if (dir !== "f" && dir !== "b") throw invalidParam("'dir' must be 'f' or 'b'");
  return answer(await roomStub(c.env, roomId).fedTimestampToEvent(c.get("origin"), ts, dir));
}

federationEvents.get("/_matrix/federation/v1/timestamp_to_event/:roomId", timestampToEvent);
federationEvents.get("/_matrix/federation/unstable/org.matrix.msc3030/timestamp_to_event/:roomId", timestampToEvent);
