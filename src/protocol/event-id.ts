/**
 * Event IDs per room version and v12 room IDs.
 *
 * - v1–v2: `$<opaque>:<server>`, chosen by the sending server and carried in the event's `event_id`.
 * - v3: `$` + standard unpadded base64 of the reference hash.
 * - v4+: `$` + URL-safe unpadded base64 of the reference hash.
 * - v12 (MSC4291): the room ID is the create event's event ID with `!` as the sigil — `!` + URL-safe unpadded
 *   base64 of its reference hash, with no server part. The create event itself carries no `room_id`.
 */

import { encodeBase64, encodeBase64Url } from "./base64";
import { computeReferenceHash } from "./hashes";
import { ROOM_VERSIONS, type RoomVersion } from "./room-versions";

/** Thrown when an event's ID cannot be determined (e.g. a v1 event without a usable `event_id`). */
export class EventIdError extends Error {
  override readonly name = "EventIdError";
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A random string of `length` characters from `[A-Za-z0-9]` (uniform: rejection sampling). */
export function randomAlphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    const bytes = crypto.getRandomValues(new Uint8Array(length * 2));
    for (let i = 0; i < bytes.length && out.length < length; i++) {
      const b = bytes[i]! & 63; // 0–63; keep 0–61
      if (b < 62) out += ALNUM[b];
    }
  }
  return out;
}

/** A fresh v1–v2 style event ID, `$<24 random alphanumerics>:<serverName>`. */
export function generateEventIdV1(serverName: string): string {
  return `$${randomAlphanumeric(24)}:${serverName}`;
}

/** A fresh room ID for room versions 1–11, `!<18 random alphanumerics>:<serverName>`. */
export function generateRoomIdLegacy(serverName: string): string {
  return `!${randomAlphanumeric(18)}:${serverName}`;
}

/** The event ID derived from the reference hash, in the room version's alphabet (v3+ only). */
export function referenceHashEventId(pdu: object, roomVersion: RoomVersion): string {
  const hash = computeReferenceHash(pdu, roomVersion);
  switch (roomVersion.eventIdFormat) {
    case "v3":
      return "$" + encodeBase64(hash);
    case "v4":
      return "$" + encodeBase64Url(hash);
    case "v1":
      throw new EventIdError(`room version ${roomVersion.id} event IDs are not derived from hashes`);
  }
}

/**
 * The ID of `pdu` (as sent over federation) in `roomVersion`: for v1–v2 the `event_id` it carries (throws
 * {@link EventIdError} if missing), for v3+ the hash-derived ID.
 */
export function computeEventId(pdu: object, roomVersion: RoomVersion): string {
  if (roomVersion.eventIdFormat === "v1") {
    const id = (pdu as { event_id?: unknown }).event_id;
    if (typeof id !== "string" || !id.startsWith("$")) {
      throw new EventIdError(`room version ${roomVersion.id} events must carry an event_id`);
    }
    return id;
  }
  return referenceHashEventId(pdu, roomVersion);
}

/**
 * The v12 room ID for a create event: `!` + URL-safe unpadded base64 of its reference hash (its event ID with
 * `!` instead of `$`). `roomVersion` defaults to v12 and must derive room IDs from create events.
 */
export function roomIdFromCreateEvent(createEvent: object, roomVersion: RoomVersion = ROOM_VERSIONS["12"]!): string {
  if (!roomVersion.roomIdFromCreateEvent) {
    throw new EventIdError(`room version ${roomVersion.id} does not derive room IDs from the create event`);
  }
  return "!" + referenceHashEventId(createEvent, roomVersion).slice(1);
}

/** The create event's event ID for a v12 room ID (`!x` → `$x`), or undefined if `roomId` has a server part. */
export function createEventIdFromRoomId(roomId: string): string | undefined {
  if (!roomId.startsWith("!") || roomId.includes(":")) return undefined;
  return "$" + roomId.slice(1);
}

/**
 * Strips the fields a server adds locally but that are not part of the federation format, so the result can
 * be hashed, signed or sent: `event_id` in v3+ rooms, and `room_id` on the create event (type `m.room.create`,
 * state key `""`) in rooms whose ID derives from it (v12). Returns the input unchanged when there is nothing to strip.
 */
export function toFederationPdu<T extends object>(event: T, roomVersion: RoomVersion): T {
  const e = event as Record<string, unknown>;
  const dropEventId = roomVersion.eventIdFormat !== "v1" && Object.hasOwn(e, "event_id");
  const dropRoomId =
    roomVersion.roomIdFromCreateEvent && e.type === "m.room.create" && e.state_key === "" && Object.hasOwn(e, "room_id");
  if (!dropEventId && !dropRoomId) return event;
  const copy = { ...e };
  if (dropEventId) delete copy.event_id;
  if (dropRoomId) delete copy.room_id;
  return copy as T;
}
