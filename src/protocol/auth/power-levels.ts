/**
 * Power levels: reading `m.room.power_levels` content, a user's level, the level an event requires, and the
 * authorization rule for changing power levels.
 *
 * - Defaults: https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels
 * - Values as strings (v1–v9) and floats (v1–v5): https://spec.matrix.org/v1.19/rooms/v9/ (and v5)
 * - Integers only (v10+): https://spec.matrix.org/v1.19/rooms/v10/
 * - Creators have infinite power and may not be listed in `users` (v12): MSC4289, rooms/v12 rule 10.4
 */
import type { JsonObject, JsonValue } from "../events";
import type { RoomVersion } from "../room-versions";
import { isValidUserId } from "./ids";
import { allow, powerLevelsRules, reject } from "./rule-numbers";
import type { AuthEvent, AuthResult, AuthStateLookup } from "./types";

/** The level of a room creator in room versions with privileged creators (v12+): above any integer. */
export const CREATOR_POWER_LEVEL = Number.POSITIVE_INFINITY;

/** The integer-valued top-level properties of power levels content (rule "for the properties …"). */
export const POWER_LEVEL_FIELDS = [
  "users_default",
  "events_default",
  "state_default",
  "ban",
  "redact",
  "kick",
  "invite",
] as const;
export type PowerLevelField = (typeof POWER_LEVEL_FIELDS)[number];

/** Levels in effect, with spec defaults filled in. */
export interface PowerLevels {
  readonly users: ReadonlyMap<string, number>;
  readonly events: ReadonlyMap<string, number>;
  readonly notifications: ReadonlyMap<string, number>;
  readonly users_default: number;
  readonly events_default: number;
  readonly state_default: number;
  readonly ban: number;
  readonly redact: number;
  readonly kick: number;
  readonly invite: number;
}

/** The defaults for absent properties; also the levels when the room has no power levels event. */
const FIELD_DEFAULTS: Readonly<Record<PowerLevelField, number>> = {
  users_default: 0,
  events_default: 0,
  state_default: 50,
  ban: 50,
  redact: 50,
  kick: 50,
  invite: 0,
};

/** The levels of a room without an `m.room.power_levels` event (creator levels are handled separately). */
export const DEFAULT_POWER_LEVELS: PowerLevels = Object.freeze({
  ...FIELD_DEFAULTS,
  users: new Map<string, number>(),
  events: new Map<string, number>(),
  notifications: new Map<string, number>(),
});

/** v1–v9 integer strings: optional surrounding whitespace, optional sign, decimal digits (leading zeros ok). */
const INTEGER_STRING = /^\s*[+-]?[0-9]+\s*$/;

/**
 * One power level value as the room version reads it, or undefined if it is not a valid level:
 * integers always; integer strings in v1–v9; floats (truncated) in v1–v5, where canonical JSON is not enforced.
 * Results outside ±(2^53−1) are invalid except for legacy v1–v5 numbers.
 */
export function parsePowerLevelValue(value: unknown, version: RoomVersion): number | undefined {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return undefined;
    if (Number.isInteger(value)) return version.strictCanonicalJson && !Number.isSafeInteger(value) ? undefined : value;
    return version.strictCanonicalJson ? undefined : Math.trunc(value) || 0;
  }
  if (typeof value === "string" && !version.integerPowerLevels && INTEGER_STRING.test(value)) {
    const n = Number(value.trim());
    return Number.isSafeInteger(n) ? n || 0 : undefined;
  }
  return undefined;
}

/** Which check failed: a top-level property, `events`/`notifications`, or `users`. */
export type PowerLevelsContentError = "fields" | "maps" | "users";

export type PowerLevelsParseResult =
  | { ok: true; levels: PowerLevels }
  | { ok: false; error: PowerLevelsContentError; reason: string };

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses a `{key: level}` map; the error names the first invalid entry. */
function parseLevelMap(
  value: JsonValue | undefined,
  name: string,
  version: RoomVersion,
  validKey: (key: string) => boolean = () => true,
): { map: Map<string, number> } | { error: string } {
  const map = new Map<string, number>();
  if (value === undefined) return { map };
  if (!isObject(value)) return { error: `${name} is not an object` };
  for (const [key, raw] of Object.entries(value)) {
    if (!validKey(key)) return { error: `${name} key ${JSON.stringify(key)} is not a valid user ID` };
    const level = parsePowerLevelValue(raw, version);
    if (level === undefined) return { error: `${name}[${JSON.stringify(key)}] is not a valid power level` };
    map.set(key, level);
  }
  return { map };
}

/**
 * Strictly parses the content of a new `m.room.power_levels` event (rules 10.1–10.3 of v12, 9.1–9.3 of
 * v10/v11, 10.1/9.1 of v1–v9).
 *
 * Interpretation for v1–v9: the rules only name `users`, but every level must be readable as an integer (the
 * "values as strings" section gives the accepted forms); content with an unreadable level is rejected, as
 * ruma does (Synapse fails on it later when comparing). `notifications` is only read from v6 on, the first
 * version whose rules look at it.
 */
export function parsePowerLevelsContent(content: JsonObject, version: RoomVersion): PowerLevelsParseResult {
  const levels: Record<string, number> = { ...FIELD_DEFAULTS };
  for (const field of POWER_LEVEL_FIELDS) {
    if (content[field] === undefined) continue;
    const level = parsePowerLevelValue(content[field], version);
    if (level === undefined) return { ok: false, error: "fields", reason: `${field} is not ${integerKind(version)}` };
    levels[field] = level;
  }
  const events = parseLevelMap(content.events, "events", version);
  if ("error" in events) return { ok: false, error: "maps", reason: `${events.error} (${valuesKind(version)})` };
  const notifications = version.limitNotificationsPowerLevels
    ? parseLevelMap(content.notifications, "notifications", version)
    : { map: new Map<string, number>() };
  if ("error" in notifications) {
    return { ok: false, error: "maps", reason: `${notifications.error} (${valuesKind(version)})` };
  }
  const users = parseLevelMap(content.users, "users", version, isValidUserId);
  if ("error" in users) return { ok: false, error: "users", reason: users.error };
  return {
    ok: true,
    levels: { ...(levels as Record<PowerLevelField, number>), events: events.map, notifications: notifications.map, users: users.map },
  };
}

function integerKind(version: RoomVersion): string {
  return version.integerPowerLevels ? "an integer" : "an integer (or a string that is an integer)";
}

function valuesKind(version: RoomVersion): string {
  return version.integerPowerLevels ? "values must be integers" : "values must be integers or integer strings";
}

/**
 * The levels in effect for an accepted power levels event (or the defaults when there is none). Accepted events
 * passed {@link parsePowerLevelsContent}; should one not have (e.g. an outlier), unreadable values fall back to
 * their defaults rather than failing.
 */
export function powerLevelsFromContent(content: JsonObject | undefined, version: RoomVersion): PowerLevels {
  if (!content) return DEFAULT_POWER_LEVELS;
  const strict = parsePowerLevelsContent(content, version);
  if (strict.ok) return strict.levels;
  const lenientMap = (value: JsonValue | undefined): Map<string, number> => {
    const map = new Map<string, number>();
    if (!isObject(value)) return map;
    for (const [key, raw] of Object.entries(value)) {
      const level = parsePowerLevelValue(raw, version);
      if (level !== undefined) map.set(key, level);
    }
    return map;
  };
  const fields = {} as Record<PowerLevelField, number>;
  for (const field of POWER_LEVEL_FIELDS) fields[field] = parsePowerLevelValue(content[field], version) ?? FIELD_DEFAULTS[field];
  const notifications = version.limitNotificationsPowerLevels ? lenientMap(content.notifications) : new Map<string, number>();
  return { ...fields, users: lenientMap(content.users), events: lenientMap(content.events), notifications };
}

/**
 * The room creators: `content.creator` of the create event in v1–v10, its `sender` from v11 on, plus
 * `content.additional_creators` in v12+ (MSC4289). Empty without a create event.
 */
export function roomCreators(create: AuthEvent | undefined, version: RoomVersion): ReadonlySet<string> {
  const creators = new Set<string>();
  if (!create) return creators;
  if (!version.implicitRoomCreator) {
    if (typeof create.content.creator === "string") creators.add(create.content.creator);
    return creators;
  }
  creators.add(create.sender);
  const additional = create.content.additional_creators;
  if (version.privilegedCreators && Array.isArray(additional)) {
    for (const id of additional) if (typeof id === "string") creators.add(id);
  }
  return creators;
}

/**
 * A user's level given the room's creators and power levels event (if any):
 * v12+ creators → infinite; otherwise `users[user]`, else `users_default`; with no power levels event the
 * creator has 100 (v1–v11) and everyone else 0.
 */
export function powerLevelOf(
  userId: string,
  creators: ReadonlySet<string>,
  powerLevels: PowerLevels | undefined,
  version: RoomVersion,
): number {
  if (version.privilegedCreators && creators.has(userId)) return CREATOR_POWER_LEVEL;
  if (!powerLevels) return creators.has(userId) ? 100 : 0;
  return powerLevels.users.get(userId) ?? powerLevels.users_default;
}

/** A user's power level in the given state (see {@link powerLevelOf}). */
export function userPowerLevel(userId: string, state: AuthStateLookup, version: RoomVersion): number {
  const plEvent = state("m.room.power_levels", "");
  const levels = plEvent ? powerLevelsFromContent(plEvent.content, version) : undefined;
  return powerLevelOf(userId, roomCreators(state("m.room.create", ""), version), levels, version);
}

/** The level for a notification key (`room` defaults to 50); undefined for other keys not listed. */
export function notificationPowerLevel(key: string, powerLevels: PowerLevels): number | undefined {
  return powerLevels.notifications.get(key) ?? (key === "room" ? 50 : undefined);
}

/** The level needed to send an event of `eventType`: `events[type]`, else `state_default` / `events_default`. */
export function requiredPowerLevel(eventType: string, isState: boolean, powerLevels: PowerLevels): number {
  return powerLevels.events.get(eventType) ?? (isState ? powerLevels.state_default : powerLevels.events_default);
}

/** Input of {@link checkPowerLevelsChange}. */
export interface PowerLevelsChange {
  /** Sender of the new power levels event. */
  sender: string;
  /** The sender's level in the current state (may be {@link CREATOR_POWER_LEVEL}). */
  senderLevel: number;
  /** Content of the current power levels event; undefined if the room has none. */
  oldContent: JsonObject | undefined;
  newContent: JsonObject;
  version: RoomVersion;
  /** v12+: the room creators, who must not appear in `users` (rule 10.4). */
  creators?: ReadonlySet<string>;
}

/**
 * The authorization rule for `m.room.power_levels` events (rule 10 in v1–v5 and v12, rule 9 in v6–v11), from
 * content validation to the per-property comparisons against the sender's level.
 */
export function checkPowerLevelsChange(change: PowerLevelsChange): AuthResult {
  const { sender, senderLevel, oldContent, newContent, version } = change;
  const rule = powerLevelsRules(version);
  const parsed = parsePowerLevelsContent(newContent, version);
  if (!parsed.ok) return reject(rule[parsed.error], parsed.reason);
  const next = parsed.levels;
  if (version.privilegedCreators) {
    for (const creator of change.creators ?? []) {
      if (next.users.has(creator)) return reject(rule.creators, `room creator ${creator} must not be listed in users`);
    }
  }
  if (!oldContent) return allow(); // "no previous m.room.power_levels event in the room"
  const prev = powerLevelsFromContent(oldContent, version);

  for (const field of POWER_LEVEL_FIELDS) {
    const before = levelIfPresent(oldContent[field], prev[field]);
    const after = levelIfPresent(newContent[field], next[field]);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) {
      return reject(rule.changedFields, `${field} is currently ${before}, above the sender's level ${senderLevel}`);
    }
    if (after !== undefined && after > senderLevel) {
      return reject(rule.changedFields, `${field} would be ${after}, above the sender's level ${senderLevel}`);
    }
  }

  const maps: ["events" | "notifications", ReadonlyMap<string, number>, ReadonlyMap<string, number>][] = [
    ["events", prev.events, next.events],
  ];
  if (version.limitNotificationsPowerLevels) {
    maps.push(["notifications", prev.notifications, next.notifications]);
  }
  for (const [name, before, after] of maps) {
    for (const [key, level] of before) {
      if (after.get(key) !== level && level > senderLevel) {
        return reject(rule.mapRemoved, `${name}[${key}] is currently ${level}, above the sender's level ${senderLevel}`);
      }
    }
    for (const [key, level] of after) {
      if (before.get(key) !== level && level > senderLevel) {
        return reject(rule.mapAdded, `${name}[${key}] would be ${level}, above the sender's level ${senderLevel}`);
      }
    }
  }

  for (const [user, level] of prev.users) {
    if (user !== sender && next.users.get(user) !== level && level >= senderLevel) {
      return reject(rule.usersRemoved, `cannot change ${user}'s level ${level}: not below the sender's level ${senderLevel}`);
    }
  }
  for (const [user, level] of next.users) {
    if (prev.users.get(user) !== level && level > senderLevel) {
      return reject(rule.usersAdded, `cannot set ${user}'s level to ${level}, above the sender's level ${senderLevel}`);
    }
  }
  return allow();
}

/** A top-level level if the content has the property ("added, changed or removed" compares presence too). */
function levelIfPresent(raw: JsonValue | undefined, parsed: number): number | undefined {
  return raw === undefined ? undefined : parsed;
}
