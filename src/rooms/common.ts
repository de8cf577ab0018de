/**
 * Shared plumbing for the room endpoints: RoomDO stubs, identifier checks with the client API's error codes,
 * and turning RoomDO results into Matrix errors.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { MatrixError, invalidParam, type ErrorCode } from "../http/errors";
import { isValidEventId, isValidRoomId, isValidUserId, serverNameOf } from "../protocol/identifiers";
import type { ClientWriteResult } from "../../durable-objects/room/RoomDO";
import type { QueryResponse } from "../../durable-objects/room/queries";

export function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

export function serverName(env: Env): string {
  return getConfig(env).serverName;
}

export function isLocal(env: Env, id: string): boolean {
  try {
    return serverNameOf(id) === serverName(env);
  } catch {
    return false;
  }
}

/** A MatrixError with an error code outside the shared union (M_BAD_STATE, M_BAD_ALIAS, M_PROFILE_TOO_LARGE …). */
export function matrixError(status: number, errcode: string, message: string): MatrixError {
  return new MatrixError(status, errcode as ErrorCode, message);
}

export function requireRoomId(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room ID ${JSON.stringify(roomId)}`);
  return roomId;
}

export function requireUserId(userId: unknown, field = "user_id"): string {
  if (typeof userId !== "string") throw matrixError(400, "M_MISSING_PARAM", `Missing ${field}`);
  if (!isValidUserId(userId)) throw invalidParam(`Invalid user ID ${JSON.stringify(userId)}`);
  return userId;
}

export function requireEventId(eventId: string): string {
  if (!isValidEventId(eventId)) throw invalidParam(`Invalid event ID ${JSON.stringify(eventId)}`);
  return eventId;
}

/** An optional string field of a request body (`reason` and friends). */
export function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw matrixError(400, "M_BAD_JSON", `'${key}' must be a string`);
  return v;
}

const AUTH_PREFIXES = /^(state before event|auth events): /;

/** The event ID of a successful write, or the Matrix error it failed with. */
export function writeOutcome(result: ClientWriteResult): string {
  if (result.ok) return result.event_id;
  // The event as built is over the PDU size limit (the format check names the byte counts).
  if (/bytes of canonical JSON/.test(result.error)) throw matrixError(413, "M_TOO_LARGE", "Event too large");
  if (/not valid canonical JSON/.test(result.error)) throw matrixError(400, "M_BAD_JSON", result.error);
  throw matrixError(result.status, result.errcode, result.error.replace(AUTH_PREFIXES, ""));
}

/** A RoomDO read answer as an HTTP response. */
export function queryResponse(r: QueryResponse): Response {
  return new Response(r.body, { status: r.status, headers: { "content-type": "application/json" } });
}
