/**
 * Format checks for PDUs received over federation (step 1 of "Checks performed on receipt of a PDU": an event
 * that does not comply with its room version's event format is dropped), and the set of servers whose
 * signatures an event needs (step 2).
 *
 * Sources: the PDU schemas of https://spec.matrix.org/v1.19/rooms/ (v1, v3, v4/v6, v11, v12), the client-server
 * "Size limits" section, the identifier grammar appendix, and "Validating hashes and signatures on received
 * events" in the server-server API.
 *
 * Unknown extra top-level keys are allowed (the schemas do not forbid them; they are covered by the hashes).
 */

import { CanonicalJsonError, canonicalJson, utf8ByteLength } from "./canonical-json";
import { MatrixIdError, parseEventId, parseRoomId, parseUserId, serverNameOf } from "./identifiers";
import type { RoomVersion } from "./room-versions";

/** Largest canonical JSON encoding of a whole PDU, signatures included. */
export const MAX_PDU_BYTES = 65536;
/** Limit on `type` and `state_key`, in bytes. */
export const MAX_TYPE_BYTES = 255;
export const MAX_STATE_KEY_BYTES = 255;
/** Most `prev_events` an event may list. */
export const MAX_PREV_EVENTS = 20;
/** Most `auth_events` an event may list. */
export const MAX_AUTH_EVENTS = 10;
/** v6+: depth must stay within canonical JSON's integer range. */
export const MAX_DEPTH_V6 = Number.MAX_SAFE_INTEGER;

export type PduFormatResult = { ok: true } | { ok: false; reason: string };

const OK: PduFormatResult = Object.freeze({ ok: true });

function fail(reason: string): PduFormatResult {
  return { ok: false, reason };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A create event in the sense of v12's room ID rules: type `m.room.create` with an empty state key. */
function isCreateEvent(pdu: Record<string, unknown>): boolean {
  return pdu.type === "m.room.create" && pdu.state_key === "";
}

function idProblem(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (e instanceof MatrixIdError) return e.message;
    throw e;
  }
}

function checkRefs(
  name: "prev_events" | "auth_events",
  refs: unknown,
  max: number,
  roomVersion: RoomVersion,
): string | undefined {
  if (!Array.isArray(refs)) return `${name} must be an array`;
  if (refs.length > max) return `${name} lists ${refs.length} events; at most ${max} are allowed`;
  for (let i = 0; i < refs.length; i++) {
    const ref: unknown = refs[i];
    let id: unknown;
    if (roomVersion.eventFormat === "v1") {
      if (!Array.isArray(ref) || ref.length !== 2) return `${name}[${i}] must be an [event_id, hashes] pair`;
      if (!isObject(ref[1])) return `${name}[${i}][1] must be an object of hashes`;
      id = ref[0];
    } else {
      id = ref;
    }
    if (typeof id !== "string") return `${name}[${i}] must be an event ID string`;
    const p = idProblem(() => parseEventId(id as string, roomVersion));
    if (p) return `${name}[${i}]: ${p}`;
  }
  return undefined;
}

/**
 * Checks that `pdu` has the shape its room version requires. Returns `{ok: false, reason}` for the first
 * problem found; `{ok: true}` otherwise. Does not check hashes, signatures or authorisation.
 */
export function checkPduFormat(pdu: unknown, roomVersion: RoomVersion): PduFormatResult {
  if (!isObject(pdu)) return fail("a PDU must be a JSON object");

  // type
  if (typeof pdu.type !== "string") return fail("type must be a string");
  if (utf8ByteLength(pdu.type) > MAX_TYPE_BYTES) return fail(`type is longer than ${MAX_TYPE_BYTES} bytes`);

  // state_key
  if (Object.hasOwn(pdu, "state_key")) {
    if (typeof pdu.state_key !== "string") return fail("state_key must be a string when present");
    if (utf8ByteLength(pdu.state_key) > MAX_STATE_KEY_BYTES) {
      return fail(`state_key is longer than ${MAX_STATE_KEY_BYTES} bytes`);
    }
  }

  // sender (historical user IDs are allowed; 255 bytes)
  if (typeof pdu.sender !== "string") return fail("sender must be a string");
  const senderProblem = idProblem(() => parseUserId(pdu.sender as string));
  if (senderProblem) return fail(`sender: ${senderProblem}`);

  // room_id (v12: absent on the create event, domainless elsewhere)
  if (roomVersion.roomIdFromCreateEvent && isCreateEvent(pdu)) {
    if (Object.hasOwn(pdu, "room_id")) {
      return fail(`room version ${roomVersion.id} create events must not have a room_id`);
    }
  } else {
    if (typeof pdu.room_id !== "string") return fail("room_id must be a string");
    const p = idProblem(() => parseRoomId(pdu.room_id as string, roomVersion));
    if (p) return fail(`room_id: ${p}`);
  }

  // event_id (v1–v2 only; carried in the event)
  if (roomVersion.eventFormat === "v1") {
    if (typeof pdu.event_id !== "string") return fail("event_id must be a string in this room version");
    const p = idProblem(() => parseEventId(pdu.event_id as string, roomVersion));
    if (p) return fail(`event_id: ${p}`);
  }

  // content
  if (!isObject(pdu.content)) return fail("content must be an object");

  // origin_server_ts, depth
  if (typeof pdu.origin_server_ts !== "number" || !Number.isInteger(pdu.origin_server_ts)) {
    return fail("origin_server_ts must be an integer");
  }
  if (typeof pdu.depth !== "number" || !Number.isInteger(pdu.depth)) return fail("depth must be an integer");
  if (pdu.depth < 0) return fail("depth must not be negative");
  if (roomVersion.strictCanonicalJson && pdu.depth > MAX_DEPTH_V6) return fail("depth must not exceed 2^53 - 1");

  // hashes, signatures, unsigned
  if (!isObject(pdu.hashes)) return fail("hashes must be an object");
  if (typeof pdu.hashes.sha256 !== "string") return fail("hashes.sha256 must be a string");
  if (!isObject(pdu.signatures)) return fail("signatures must be an object");
  for (const [server, sigs] of Object.entries(pdu.signatures)) {
    if (!isObject(sigs)) return fail(`signatures[${JSON.stringify(server)}] must be an object`);
    for (const [keyId, sig] of Object.entries(sigs)) {
      if (typeof sig !== "string") {
        return fail(`signatures[${JSON.stringify(server)}][${JSON.stringify(keyId)}] must be a string`);
      }
    }
  }
  if (Object.hasOwn(pdu, "unsigned") && !isObject(pdu.unsigned)) return fail("unsigned must be an object");

  // prev_events, auth_events
  const prev = checkRefs("prev_events", pdu.prev_events, MAX_PREV_EVENTS, roomVersion);
  if (prev) return fail(prev);
  const auth = checkRefs("auth_events", pdu.auth_events, MAX_AUTH_EVENTS, roomVersion);
  if (auth) return fail(auth);

  // redacts: top level in v1–v10, in content from v11 (when present it must be a string)
  if (Object.hasOwn(pdu, "redacts") && typeof pdu.redacts !== "string") return fail("redacts must be a string");
  if (
    roomVersion.redactsInContent &&
    pdu.type === "m.room.redaction" &&
    Object.hasOwn(pdu.content, "redacts") &&
    typeof pdu.content.redacts !== "string"
  ) {
    return fail("content.redacts must be a string");
  }

  // Canonical JSON (strict from v6) and the total size.
  let json: string;
  try {
    json = canonicalJson(pdu, { strict: roomVersion.strictCanonicalJson });
  } catch (e) {
    if (e instanceof CanonicalJsonError) return fail(`not valid canonical JSON: ${e.message}`);
    throw e;
  }
  // A UTF-16 code unit takes at most 3 UTF-8 bytes, so short strings need no byte count.
  if (json.length * 3 > MAX_PDU_BYTES) {
    const size = utf8ByteLength(json);
    if (size > MAX_PDU_BYTES) {
      return fail(`the event is ${size} bytes of canonical JSON; at most ${MAX_PDU_BYTES} are allowed`);
    }
  }

  return OK;
}

/**
 * The servers whose signatures `pdu` must carry (step 2 of the receipt checks), sender's server first:
 * - the sender's server, except for invites made from a third-party invite (`m.room.member`, membership
 *   `invite`, `content.third_party_invite` present), which another server may send on the sender's behalf;
 * - v1–v2: also the server named in the `event_id`;
 * - restricted-join room versions (v8+): for `m.room.member` joins with
 *   `content.join_authorised_via_users_server`, also that user's server.
 *
 * Throws {@link MatrixIdError} if one of those IDs has no valid server name (the event must then be dropped).
 */
export function requiredSignatureServers(pdu: object, roomVersion: RoomVersion): string[] {
  const e = pdu as Record<string, unknown>;
  const content = isObject(e.content) ? e.content : {};
  const servers = new Set<string>();
  const isMember = e.type === "m.room.member";
  const thirdPartyInvite = isMember && content.membership === "invite" && Object.hasOwn(content, "third_party_invite");
  if (!thirdPartyInvite) servers.add(serverNameOf(String(e.sender)));
  if (roomVersion.eventIdFormat === "v1") servers.add(serverNameOf(String(e.event_id)));
  if (
    roomVersion.restrictedJoins &&
    isMember &&
    content.membership === "join" &&
    Object.hasOwn(content, "join_authorised_via_users_server")
  ) {
    const authoriser = content.join_authorised_via_users_server;
    if (typeof authoriser !== "string") {
      throw new MatrixIdError("user ID", String(authoriser), "join_authorised_via_users_server is not a string");
    }
    servers.add(parseUserId(authoriser).serverName);
  }
  return [...servers];
}
