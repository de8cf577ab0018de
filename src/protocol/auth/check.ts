/**
 * `checkEventAuth`: the authorization rules of room versions 1–12, in the spec's order, against a given state
 * (the event's auth events, the state before it, or the current state — the caller chooses).
 *
 * Rule texts: https://spec.matrix.org/v1.19/rooms/v1/#authorization-rules (v1–v2), /rooms/v3/ (v3–v5),
 * /rooms/v6/, /rooms/v7/, /rooms/v8/ (v8–v9), /rooms/v10/, /rooms/v11/, /rooms/v12/.
 *
 * Not done here (the caller's part of "Checks performed on receipt of a PDU"):
 * - rule 2 / v12 rule 3 (the event's `auth_events` list) — see `checkAuthEventsSelection`, which needs the
 *   auth events themselves. This function only requires the create event to be present and in the same room.
 * - signature and hash checks of the PDU (except the v8+ `join_authorised_via_users_server` rule, which is
 *   an authorization rule: see {@link AuthCheckOptions.isSignedBy}).
 */
import { isStateEvent } from "../events";
import type { RoomVersion } from "../room-versions";
import { verifyJsonSignature } from "../signing";
import { authContext, type AuthContext } from "./context";
import { checkCreateEvent, roomIdOfCreateEvent } from "./create";
import { isValidEventId, isValidRoomId, isValidUserId, serverNameOf } from "./ids";
import { checkMemberEvent } from "./membership";
import { checkPowerLevelsChange, requiredPowerLevel } from "./power-levels";
import { allow, hasRedactionRule, reject, topRules } from "./rule-numbers";
import type { AuthCheckOptions, AuthEvent, AuthResult, AuthStateLookup } from "./types";

/**
 * Whether `event` is allowed by the authorization rules of `version`, judged against `state` (a lookup of the
 * state events the rules read: create, power levels, join rules, members, third-party invites).
 *
 * In room version 12 the lookup must answer `m.room.create` with the room's create event even though it is not
 * among the event's `auth_events`.
 */
export function checkEventAuth(
  event: AuthEvent,
  state: AuthStateLookup,
  version: RoomVersion,
  opts: AuthCheckOptions = {},
): AuthResult {
  const shape = checkAuthPreconditions(event, version);
  if (shape) return shape;
  const top = topRules(version);
  if (event.type === "m.room.create") return checkCreateEvent(event, version);

  const create = state("m.room.create", "");
  const roomCheck = checkSameRoomAsCreate(event, create, version);
  if (roomCheck || !create) return roomCheck ?? reject(`${top.authEvents}.4`, "no m.room.create event");

  const ctx = authContext(event, state, version, { verifyJsonSignature, ...opts }, create);
  // Rule 3 (v12: 4)
  if (create.content["m.federate"] === false && serverNameOf(event.sender) !== serverNameOf(create.sender)) {
    return reject(top.federate, "the room does not federate and the sender is from another server than the creator");
  }
  // Rule 4 (v1–v5)
  if (version.specialCaseAliasesAuth && event.type === "m.room.aliases") return checkAliases(event, top.aliases);
  // Rule 5 (v6–v11: 4)
  if (event.type === "m.room.member") return checkMemberEvent(ctx);
  // Rule 6 (v6–v11: 5)
  if (ctx.membershipOf(event.sender) !== "join") return reject(top.senderJoined, "sender is not joined to the room");
  const senderLevel = ctx.levelOf(event.sender);
  // Rule 7 (v6–v11: 6)
  if (event.type === "m.room.third_party_invite") {
    if (senderLevel >= ctx.powerLevels.invite) return allow();
    return reject(`${top.thirdPartyInvite}.1`, "sender's power level is below the invite level");
  }
  // Rule 8 (v6–v11: 7)
  const required = requiredPowerLevel(event.type, isStateEvent(event), ctx.powerLevels);
  if (required > senderLevel) {
    return reject(top.requiredLevel, `sending ${event.type} needs power level ${required}; sender has ${senderLevel}`);
  }
  // Rule 9 (v6–v11: 8)
  if (isStateEvent(event) && event.state_key.startsWith("@") && event.state_key !== event.sender) {
    return reject(top.userStateKey, "state_key starts with @ and is not the sender");
  }
  // Rule 10 (v6–v11: 9)
  if (event.type === "m.room.power_levels") return checkPowerLevelsEvent(ctx, senderLevel);
  // Rule 11 (v1–v2 only)
  if (hasRedactionRule(version) && event.type === "m.room.redaction") return checkRedaction(ctx, senderLevel, top.redaction);
  return allow();
}

/**
 * Event fields the rules interpret, checked before the numbered rules (the PDU format check does most of this
 * for received events; this keeps the rules total for any `AuthEvent`). Not numbered rules:
 * - `sender` is a user ID and `room_id` a room ID of the version's form (the v12 create event has none; other
 *   v12 room IDs are only checked for the `!` sigil, since v12 rule 2 compares them with the create event);
 * - `m.room.create` has the empty state key (the event schema's only value; without it there is no create
 *   state to speak of);
 * - `m.room.redaction` names the redacted event with an event ID (v1–v2: with a server name, which rule 11
 *   compares).
 */
export function checkAuthPreconditions(event: AuthEvent, version: RoomVersion): AuthResult | undefined {
  if (!isValidUserId(event.sender)) return rejectFormat("sender is not a valid user ID");
  const isV12Create = version.roomIdFromCreateEvent && event.type === "m.room.create";
  if (!isV12Create && !isRoomIdOfVersion(event.room_id, version)) {
    return rejectFormat("room_id is not a valid room ID");
  }
  if (event.type === "m.room.create" && event.state_key !== "") {
    return rejectFormat("m.room.create must have an empty state_key");
  }
  if (event.type === "m.room.redaction") {
    const target = version.redactsInContent ? (event.content.redacts ?? event.redacts) : event.redacts;
    const valid = hasRedactionRule(version) ? isValidEventId(target, version) : isEventIdLike(target);
    if (!valid) return rejectFormat("m.room.redaction does not name the redacted event by a valid event ID");
  }
  return undefined;
}

/** A rejection by a precondition rather than a numbered rule. */
function rejectFormat(why: string): AuthResult {
  return { allowed: false, reason: `format: ${why}` };
}

function isEventIdLike(id: unknown): boolean {
  return typeof id === "string" && id.length > 1 && id.startsWith("$");
}

function isRoomIdOfVersion(id: unknown, version: RoomVersion): boolean {
  if (!version.roomIdFromCreateEvent) return isValidRoomId(id, version);
  return typeof id === "string" && id.length > 1 && id.startsWith("!");
}

/** v1–v11 rule 2.4/2.5 for the create event; v12 rule 2 (the room ID is the create event's ID). */
function checkSameRoomAsCreate(event: AuthEvent, create: AuthEvent | undefined, version: RoomVersion): AuthResult | undefined {
  const top = topRules(version);
  if (version.roomIdFromCreateEvent) {
    if (!create || roomIdOfCreateEvent(create) !== event.room_id) {
      return reject(top.roomId, "room_id does not name the room's m.room.create event");
    }
    return undefined;
  }
  if (create && create.room_id !== event.room_id) {
    return reject(`${top.authEvents}.5`, "the m.room.create event belongs to another room");
  }
  return undefined;
}

/** Rule 4 (v1–v5): `m.room.aliases` may only be sent for the sender's own server. */
function checkAliases(event: AuthEvent, r: string): AuthResult {
  if (!isStateEvent(event)) return reject(`${r}.1`, "m.room.aliases without a state_key");
  if (serverNameOf(event.sender) !== event.state_key) return reject(`${r}.2`, "state_key is not the sender's server");
  return allow();
}

/** Rule 10 (v6–v11: 9): new power levels, compared with the current ones. */
function checkPowerLevelsEvent(ctx: AuthContext, senderLevel: number): AuthResult {
  return checkPowerLevelsChange({
    sender: ctx.event.sender,
    senderLevel,
    oldContent: ctx.powerLevelsEvent?.content,
    newContent: ctx.event.content,
    version: ctx.version,
    creators: ctx.creators,
  });
}

/** Rule 11 (v1–v2): redactions need the redact level unless the redacted event is from the same server. */
function checkRedaction(ctx: AuthContext, senderLevel: number, r: string): AuthResult {
  if (senderLevel >= ctx.powerLevels.redact) return allow();
  const redactedServer = serverNameOf(ctx.event.redacts);
  if (redactedServer !== undefined && redactedServer === serverNameOf(ctx.event.event_id)) return allow();
  return reject(`${r}.3`, "sender's power level is below the redact level and the redacted event is from another server");
}
