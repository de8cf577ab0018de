/**
 * The resident's side of the membership handshakes (make_join/send_join, make_leave/send_leave,
 * make_knock/send_knock; https://spec.matrix.org/v1.19/server-server-api/#joining-rooms), the part that runs in
 * the Worker: checking what the remote server submits (shape, IDs, sender, signatures, hash) and restricted
 * joins (is the user in an allowed room here; sign as the authorising server). The RoomDO builds the
 * templates, accepts the events and writes the answers (durable-objects/room/federation-room.ts).
 */
import type { Env } from "../env";
import type { PDU } from "../protocol/events";
import { getConfig } from "../config";
import { getServerKeys } from "../server-keys";
import { MatrixError } from "../http/errors";
import { roomVersion as lookupRoomVersion, type RoomVersion } from "../protocol/room-versions";
import { checkPduFormat } from "../protocol/pdu-format";
import { computeEventId } from "../protocol/event-id";
import { checkContentHash, signEvent } from "../protocol/hashes";
import { serverNameOf } from "../protocol/identifiers";
import { KeyStore } from "./keys";
import { checkPdus } from "./pdu-checks";

export type Membership = "join" | "leave" | "knock" | "invite";

function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

const invalid = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);

/** The version of a room this server holds (404 when it does not). */
export async function heldRoomVersion(env: Env, roomId: string): Promise<RoomVersion> {
  const info = await roomStub(env, roomId).federationInfo();
  const version = info ? lookupRoomVersion(info.room_version) : undefined;
  if (!version) throw new MatrixError(404, "M_NOT_FOUND", `Unknown room ${roomId}`);
  return version;
}

/**
 * Checks the event of a send_join / send_leave / send_knock / invite: a well-formed PDU of this room version,
 * whose ID is the one in the path, of type `m.room.member` with the expected membership, sent by a user of
 * `origin` (for an invite: about one of our users; otherwise about the sender). Throws 400 `M_INVALID_PARAM`.
 */
export function checkMembershipShape(
  raw: unknown,
  opts: { origin: string; roomId: string; eventId: string; membership: Membership; version: RoomVersion; ours: string },
): PDU {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new MatrixError(400, "M_BAD_JSON", "The event must be a JSON object");
  const format = checkPduFormat(raw, opts.version);
  if (!format.ok) throw invalid(`Invalid event: ${format.reason}`);
  const pdu = raw as PDU;
  let eventId: string;
  try {
    eventId = computeEventId(pdu, opts.version);
  } catch (e) {
    throw invalid((e as Error).message);
  }
  if (eventId !== opts.eventId) throw invalid(`The event's ID is ${eventId}, not ${opts.eventId}`);
  if (pdu.room_id !== opts.roomId) throw invalid(`The event is for room ${String(pdu.room_id)}, not ${opts.roomId}`);
  if (pdu.type !== "m.room.member") throw invalid("The event must be an m.room.member event");
  if (pdu.content?.membership !== opts.membership) throw invalid(`The event's membership must be ${opts.membership}`);
  let senderServer: string;
  try {
    senderServer = serverNameOf(pdu.sender);
  } catch {
    throw invalid("The event's sender is not a user ID");
  }
  if (senderServer !== opts.origin) throw invalid(`The sender ${pdu.sender} is not a user of ${opts.origin}`);
  if (typeof pdu.state_key !== "string") throw invalid("The event must have a state_key");
  if (opts.membership === "invite") {
    let targetServer: string | undefined;
    try {
      targetServer = serverNameOf(pdu.state_key);
    } catch {
      targetServer = undefined;
    }
    if (targetServer !== opts.ours) throw invalid(`The invite is for ${pdu.state_key}, not a user of this server`);
  } else if (pdu.state_key !== pdu.sender) {
    throw invalid("The state_key must be the sender");
  }
  return pdu;
}

/** Checks an event's signatures (the servers it needs) and content hash. Throws 400 `M_INVALID_PARAM`. */
export async function checkSignaturesAndHash(env: Env, pdu: PDU, version: RoomVersion, roomId: string): Promise<void> {
  const [checked] = await checkPdus([pdu], version, roomId, new KeyStore(env));
  if (!checked?.ok) throw invalid(checked ? checked.error : "The event could not be checked");
  if (checked.redacted) throw invalid("The event's content hash does not match its content");
}

/** Adds our signature to an event (a restricted join we authorise, an invite for one of our users). */
export async function signAsUs(env: Env, pdu: PDU, version: RoomVersion): Promise<PDU> {
  if (!checkContentHash(pdu)) throw invalid("The event's content hash does not match its content");
  const key = (await getServerKeys(env)).current;
  return signEvent(pdu, getConfig(env).serverName, key, version) as unknown as PDU;
}

/**
 * Restricted joins: whether `userId` is joined to one of `allowRooms` as far as this server knows. Undefined
 * when none of those rooms is one this server is in (it cannot tell: `M_UNABLE_TO_AUTHORISE_JOIN`).
 */
export async function meetsAllowRule(env: Env, userId: string, allowRooms: readonly string[]): Promise<boolean | undefined> {
  let known = false;
  for (const roomId of allowRooms) {
    const stub = roomStub(env, roomId);
    const info = await stub.federationInfo().catch(() => null);
    if (!info || info.local_joined === 0) continue;
    known = true;
    if (await stub.fedIsJoined(userId)) return true;
  }
  return known ? false : undefined;
}

/**
 * The authorising user for a join into a restricted room (`join_authorised_via_users_server`), or null when
 * none is needed (not restricted, or the user is already invited or joined). Throws the spec's errors:
 * 400 `M_UNABLE_TO_AUTHORISE_JOIN` (none of the allowed rooms is known here), 403 `M_FORBIDDEN` (the user is in
 * none of them), 400 `M_UNABLE_TO_GRANT_JOIN` (no local user may invite).
 */
export async function restrictedJoinAuthoriser(
  env: Env,
  userId: string,
  info: { join_rule: string; allow_rooms: string[]; membership: string; authoriser: string | null },
  version: RoomVersion,
): Promise<string | null> {
  const restricted = info.join_rule === "restricted" || (info.join_rule === "knock_restricted" && version.knockRestrictedJoinRule);
  if (!restricted || !version.restrictedJoins || info.membership === "join" || info.membership === "invite") return null;
  const meets = await meetsAllowRule(env, userId, info.allow_rooms);
  if (meets === undefined) throw new MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server is in none of the rooms that allow joining");
  if (!meets) throw new MatrixError(403, "M_FORBIDDEN", "You do not belong to any of the rooms required to join this room");
  if (info.authoriser === null) throw new MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user of this server may invite you");
  return info.authoriser;
}
