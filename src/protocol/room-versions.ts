/**
 * The one description of Matrix room versions 1–12. Every piece of code that behaves
 * differently per room version asks this table instead of comparing version strings.
 *
 * Source: https://spec.matrix.org/v1.19/rooms/ and MSC4289 / MSC4291 / MSC4297 for v12.
 */

/** How event IDs are formed. */
export type EventIdFormat =
  /** v1–v2: `$opaque:server`, chosen by the origin and carried in the event. */
  | "v1"
  /** v3: `$` + standard unpadded base64 of the reference hash. */
  | "v3"
  /** v4+: `$` + URL-safe unpadded base64 of the reference hash. */
  | "v4";

/** Which redaction algorithm applies (the algorithm changed in v6, v8, v9, v11). */
export type RedactionRules = "v1" | "v6" | "v8" | "v9" | "v11";

/** Which state resolution algorithm applies. */
export type StateResAlgorithm = "v1" | "v2" | "v2.1";

export interface RoomVersion {
  readonly id: string;
  readonly stability: "stable" | "unstable";
  /** Event format: v1–v2 carry `event_id` and `[id, hashes]` pairs in prev/auth events. */
  readonly eventFormat: "v1" | "v3";
  readonly eventIdFormat: EventIdFormat;
  readonly redaction: RedactionRules;
  readonly stateRes: StateResAlgorithm;
  /** v5+: a signature only counts if made while the key was valid (`valid_until_ts`). */
  readonly enforceKeyValidity: boolean;
  /** v1–v5: `m.room.aliases` has its own auth rule (sender's server must match state key). */
  readonly specialCaseAliasesAuth: boolean;
  /** v6+: floats and out-of-range integers are invalid; v1–v5 tolerate them ("legacy" JSON). */
  readonly strictCanonicalJson: boolean;
  /** v6+: `notifications` power levels are checked when power levels change. */
  readonly limitNotificationsPowerLevels: boolean;
  /** v7+: `knock` membership and join rule. */
  readonly knocking: boolean;
  /** v8+: `restricted` join rule with `join_authorised_via_users_server`. */
  readonly restrictedJoins: boolean;
  /** v10+: `knock_restricted` join rule. */
  readonly knockRestrictedJoinRule: boolean;
  /** v10+: power level values must be integers (strings are rejected). */
  readonly integerPowerLevels: boolean;
  /** v11+: the creator is the create event's sender; `content.creator` is no longer special. */
  readonly implicitRoomCreator: boolean;
  /** v11+: `redacts` lives in `content` rather than at the top level. */
  readonly redactsInContent: boolean;
  /** v12 (MSC4291): the room ID is derived from the create event's reference hash; create event has no room_id
   * and is not listed in `auth_events`. */
  readonly roomIdFromCreateEvent: boolean;
  /** v12 (MSC4289): creators (sender + `additional_creators`) have infinite power and cannot be demoted. */
  readonly privilegedCreators: boolean;
}

const base = {
  stability: "stable",
  eventFormat: "v3",
  eventIdFormat: "v4",
  redaction: "v11",
  stateRes: "v2",
  enforceKeyValidity: true,
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
  knocking: true,
  restrictedJoins: true,
  knockRestrictedJoinRule: true,
  integerPowerLevels: true,
  implicitRoomCreator: true,
  redactsInContent: true,
  roomIdFromCreateEvent: false,
  privilegedCreators: false,
} as const satisfies Omit<RoomVersion, "id">;

function version(id: string, overrides: Partial<Omit<RoomVersion, "id">>): RoomVersion {
  return Object.freeze({ ...base, ...overrides, id });
}

const v1Legacy = {
  eventFormat: "v1",
  eventIdFormat: "v1",
  redaction: "v1",
  stateRes: "v1",
  enforceKeyValidity: false,
  specialCaseAliasesAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  knocking: false,
  restrictedJoins: false,
  knockRestrictedJoinRule: false,
  integerPowerLevels: false,
  implicitRoomCreator: false,
  redactsInContent: false,
} as const satisfies Partial<RoomVersion>;

export const ROOM_VERSIONS: Readonly<Record<string, RoomVersion>> = Object.freeze({
  "1": version("1", v1Legacy),
  "2": version("2", { ...v1Legacy, stateRes: "v2" }),
  "3": version("3", { ...v1Legacy, stateRes: "v2", eventFormat: "v3", eventIdFormat: "v3" }),
  "4": version("4", { ...v1Legacy, stateRes: "v2", eventFormat: "v3", eventIdFormat: "v4" }),
  "5": version("5", { ...v1Legacy, stateRes: "v2", eventFormat: "v3", eventIdFormat: "v4", enforceKeyValidity: true }),
  "6": version("6", {
    ...v1Legacy,
    stateRes: "v2",
    eventFormat: "v3",
    eventIdFormat: "v4",
    enforceKeyValidity: true,
    redaction: "v6",
    specialCaseAliasesAuth: false,
    strictCanonicalJson: true,
    limitNotificationsPowerLevels: true,
  }),
  "7": version("7", {
    redaction: "v6",
    restrictedJoins: false,
    knockRestrictedJoinRule: false,
    integerPowerLevels: false,
    implicitRoomCreator: false,
    redactsInContent: false,
  }),
  "8": version("8", {
    redaction: "v8",
    knockRestrictedJoinRule: false,
    integerPowerLevels: false,
    implicitRoomCreator: false,
    redactsInContent: false,
  }),
  "9": version("9", {
    redaction: "v9",
    knockRestrictedJoinRule: false,
    integerPowerLevels: false,
    implicitRoomCreator: false,
    redactsInContent: false,
  }),
  "10": version("10", { redaction: "v9", implicitRoomCreator: false, redactsInContent: false }),
  "11": version("11", {}),
  "12": version("12", { stateRes: "v2.1", roomIdFromCreateEvent: true, privilegedCreators: true }),
});

/** The version `createRoom` uses when the client does not ask for one. */
export const DEFAULT_ROOM_VERSION = "12";

/** Looks up a room version; `undefined` for versions this server does not know. */
export function roomVersion(id: string): RoomVersion | undefined {
  return Object.hasOwn(ROOM_VERSIONS, id) ? ROOM_VERSIONS[id] : undefined;
}

/** The `m.room_versions` capability / federation `ver` list. */
export function supportedRoomVersions(): string[] {
  return Object.keys(ROOM_VERSIONS);
}
