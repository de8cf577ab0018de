/**
 * Shared plumbing of the federation endpoints that serve room data: path parameters, RoomDO answers as HTTP
 * responses, and integer query parameters. Every route here sits behind the X-Matrix middleware (auth.ts), so
 * `c.get("origin")` is the authenticated server.
 */
import type { AppContext } from "../../http/app";
import type { Env } from "../../env";
import { invalidParam, missingParam } from "../../http/errors";
import { isValidEventId, isValidRoomId, isValidUserId } from "../../protocol/identifiers";
import type { FedAnswer } from "../../../durable-objects/room/federation-room";

export function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

/** A RoomDO answer (`{status, body}`) as the HTTP response. */
export function answer(a: FedAnswer): Response {
  return new Response(a.body, { status: a.status, headers: { "content-type": "application/json" } });
}

export function roomIdParam(c: AppContext): string {
  const roomId = c.req.param("roomId") ?? "";
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room ID ${JSON.stringify(roomId)}`);
  return roomId;
}

export function eventIdParam(c: AppContext, name = "eventId"): string {
  const eventId = c.req.param(name) ?? "";
  if (!isValidEventId(eventId)) throw invalidParam(`Invalid event ID ${JSON.stringify(eventId)}`);
  return eventId;
}

export function userIdParam(c: AppContext): string {
  const userId = c.req.param("userId") ?? "";
  if (!isValidUserId(userId)) throw invalidParam(`Invalid user ID ${JSON.stringify(userId)}`);
  return userId;
}

/** A required query parameter that must be an event ID. */
export function eventIdQuery(c: AppContext, name = "event_id"): string {
  const v = c.req.query(name);
  if (v === undefined || v === "") throw missingParam(`Missing '${name}'`);
  if (!isValidEventId(v)) throw invalidParam(`Invalid event ID in '${name}'`);
  return v;
}

/** An integer query or body parameter (`fallback` when absent). */
export function intParam(v: unknown, name: string, fallback?: number): number {
  if (v === undefined || v === null || v === "") {
    if (fallback === undefined) throw missingParam(`Missing '${name}'`);
    return fallback;
  }
  const n = typeof v === "string" && /^-?\d{1,16}$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw invalidParam(`'${name}' must be an integer`);
  return n;
}

/** A list of strings in a request body, or a 400. */
export function stringList(v: unknown, name: string, max = 1000): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw invalidParam(`'${name}' must be a list of strings`);
  if (v.length > max) throw invalidParam(`'${name}' has more than ${max} entries`);
  return v as string[];
}
