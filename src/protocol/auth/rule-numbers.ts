/**
 * The spec numbers its authorization rules differently per room version: v1–v5 have the `m.room.aliases` rule
 * (rule 4), v6–v11 do not, v12 inserts a room-ID rule as rule 2; within the membership rules, v8+ insert the
 * `join_authorised_via_users_server` signature rule and the restricted join rule, and the power levels rule
 * grows validation steps in v10 and v12. Rejection reasons cite the number the room version's own text uses,
 * so they are computed here from the room version's flags.
 */
import type { RoomVersion } from "../room-versions";
import type { AuthResult } from "./types";

export function allow(): AuthResult {
  return { allowed: true };
}

/** A rejection citing `rule` (e.g. "5.3.2"). */
export function reject(rule: string, why: string): AuthResult {
  return { allowed: false, reason: `rule ${rule}: ${why}` };
}

/** Room versions 1–2 have a redaction rule of their own: event IDs still carry the origin's server name. */
export function hasRedactionRule(version: RoomVersion): boolean {
  return version.eventIdFormat === "v1";
}

export interface TopRules {
  create: string;
  /** v12 only: the room ID names the create event. */
  roomId: string;
  authEvents: string;
  federate: string;
  /** v1–v5 only. */
  aliases: string;
  member: string;
  senderJoined: string;
  thirdPartyInvite: string;
  requiredLevel: string;
  userStateKey: string;
  powerLevels: string;
  /** v1–v2 only. */
  redaction: string;
}

/** The top-level rule numbers of a room version. */
export function topRules(version: RoomVersion): TopRules {
  const roomIdRule = version.roomIdFromCreateEvent ? 1 : 0;
  const aliasesRule = version.specialCaseAliasesAuth ? 1 : 0;
  const member = 4 + roomIdRule + aliasesRule;
  return {
    create: "1",
    roomId: "2",
    authEvents: `${2 + roomIdRule}`,
    federate: `${3 + roomIdRule}`,
    aliases: "4",
    member: `${member}`,
    senderJoined: `${member + 1}`,
    thirdPartyInvite: `${member + 2}`,
    requiredLevel: `${member + 3}`,
    userStateKey: `${member + 4}`,
    powerLevels: `${member + 5}`,
    redaction: `${member + 6}`,
  };
}

export interface MemberRules {
  /** x.1: state_key and membership present. */
  shape: string;
  /** x.2 (v8+): signed by the `join_authorised_via_users_server` user's server. */
  authorisedSignature: string;
  join: string;
  /** Sub-rule numbers inside `join` that move when the restricted rule (v8+) is inserted. */
  joinRestricted: string;
  joinPublic: string;
  joinOtherwise: string;
  invite: string;
  leave: string;
  ban: string;
  /** v7+ only. */
  knock: string;
  unknown: string;
}

/** The membership rule numbers of a room version. */
export function memberRules(version: RoomVersion): MemberRules {
  const m = topRules(version).member;
  const restricted = version.restrictedJoins ? 1 : 0;
  const join = 2 + restricted;
  return {
    shape: `${m}.1`,
    authorisedSignature: `${m}.2`,
    join: `${m}.${join}`,
    joinRestricted: `${m}.${join}.5`,
    joinPublic: `${m}.${join}.${5 + restricted}`,
    joinOtherwise: `${m}.${join}.${6 + restricted}`,
    invite: `${m}.${join + 1}`,
    leave: `${m}.${join + 2}`,
    ban: `${m}.${join + 3}`,
    knock: `${m}.${join + 4}`,
    unknown: `${m}.${join + (version.knocking ? 5 : 4)}`,
  };
}

export interface PowerLevelsRules {
  /** Top-level properties must be integers (v10+ x.1; in v1–v9 the "values as strings" section). */
  fields: string;
  /** `events` / `notifications` must map to integers (v10+ x.2; v1–v9 as above). */
  maps: string;
  users: string;
  /** v12+: creators must not be in `users`. */
  creators: string;
  noPrevious: string;
  changedFields: string;
  mapRemoved: string;
  mapAdded: string;
  usersRemoved: string;
  usersAdded: string;
}

/** The `m.room.power_levels` rule numbers of a room version. */
export function powerLevelsRules(version: RoomVersion): PowerLevelsRules {
  const p = topRules(version).powerLevels;
  const integerRules = version.integerPowerLevels ? 2 : 0;
  const base = 2 + integerRules + (version.privilegedCreators ? 1 : 0);
  const legacyValues = `${p} (power level values as strings)`;
  return {
    fields: version.integerPowerLevels ? `${p}.1` : legacyValues,
    maps: version.integerPowerLevels ? `${p}.2` : legacyValues,
    users: `${p}.${1 + integerRules}`,
    creators: `${p}.4`,
    noPrevious: `${p}.${base}`,
    changedFields: `${p}.${base + 1}`,
    mapRemoved: `${p}.${base + 2}`,
    mapAdded: `${p}.${base + 3}`,
    usersRemoved: `${p}.${base + 4}`,
    usersAdded: `${p}.${base + 5}`,
  };
}
