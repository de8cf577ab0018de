/**
 * Event classification and power levels as state resolution needs them: power events, the power level of an
 * event's sender "when looking at its auth_events" (for the reverse topological power ordering), the create event
 * of a room version 12 event, and the auth events selection (which state keys the auth rules read).
 */
import type { AuthEvent } from "../auth/types";
import { powerLevelOf, powerLevelsFromContent, roomCreators, type PowerLevels } from "../auth/power-levels";
import type { StateKey } from "../events";
import { stateKey } from "../events";
import type { RoomVersion } from "../room-versions";
import type { EventGraph } from "./graph";

export const CREATE = "m.room.create";
export const POWER_LEVELS = "m.room.power_levels";
export const JOIN_RULES = "m.room.join_rules";
export const MEMBER = "m.room.member";
export const THIRD_PARTY_INVITE = "m.room.third_party_invite";

export const POWER_LEVELS_KEY: StateKey = stateKey(POWER_LEVELS, "");

/**
 * A power event: a state event of type `m.room.power_levels` or `m.room.join_rules`, or an `m.room.member`
 * state event with membership `leave` or `ban` whose sender is not its state key (a kick or a ban).
 */
export function isPowerEvent(event: AuthEvent): boolean {
  if (typeof event.state_key !== "string") return false;
  switch (event.type) {
    case POWER_LEVELS:
    case JOIN_RULES:
      return true;
    case MEMBER: {
      const m = event.content["membership"];
      return (m === "leave" || m === "ban") && event.sender !== event.state_key;
    }
    default:
      return false;
  }
}

/**
 * The ID of the create event a room version 12 event belongs to: its room ID with `$` instead of `!`.
 * `undefined` for events without a room ID (the create event itself) or for earlier room versions.
 */
export function createEventIdFromRoomId(event: AuthEvent, version: RoomVersion): string | undefined {
  if (!version.roomIdFromCreateEvent) return undefined;
  const roomId = event.room_id;
  if (typeof roomId !== "string" || !roomId.startsWith("!")) return undefined;
  return "$" + roomId.slice(1);
}

/** Memo for {@link senderPowerLevel}, shared across the events of one resolution. */
export interface SenderPowerCache {
  /** Graph index → power level of that event's sender. */
  readonly byEvent: number[];
  /** Graph index of a power levels event → its parsed levels. */
  readonly levels: Map<number, PowerLevels>;
  /** Graph index of a create event → the room creators. */
  readonly creators: Map<number, ReadonlySet<string>>;
}

export function newSenderPowerCache(): SenderPowerCache {
  return { byEvent: [], levels: new Map(), creators: new Map() };
}

/**
 * The power level of the event's sender "when looking at its auth_events" (reverse topological power
 * ordering): the power levels and create events are the ones cited in `auth_events` (room version 12: the
 * create event named by the room ID), read with the authorization rules' own helpers (creators infinite in v12;
 * `users`, then `users_default`; without power levels the creator has 100, others 0). A missing event has 0.
 */
export function senderPowerLevel(
  g: EventGraph,
  i: number,
  version: RoomVersion,
  cache: SenderPowerCache = newSenderPowerCache(),
): number {
  const cached = cache.byEvent[i];
  if (cached !== undefined) return cached;
  const ev = g.event(i);
  let level = 0;
  if (ev !== undefined) {
    let pl = -1;
    let create = -1;
    const createId = createEventIdFromRoomId(ev, version);
    if (createId !== undefined) {
      const c = g.intern(createId);
      if (g.event(c) !== undefined) create = c;
    }
    const edges = g.authEdges(i);
    for (let k = 0; k < edges.length; k++) {
      const a = g.event(edges[k]!);
      if (a === undefined || a.state_key !== "") continue;
      if (a.type === POWER_LEVELS && pl < 0) pl = edges[k]!;
      else if (a.type === CREATE && createId === undefined && create < 0) create = edges[k]!;
    }
    let creators = cache.creators.get(create);
    if (creators === undefined) {
      creators = roomCreators(create < 0 ? undefined : g.event(create), version);
      cache.creators.set(create, creators);
    }
    let levels: PowerLevels | undefined;
    if (pl >= 0) {
      levels = cache.levels.get(pl);
      if (levels === undefined) {
        levels = powerLevelsFromContent(g.event(pl)!.content, version);
        cache.levels.set(pl, levels);
      }
    }
    level = powerLevelOf(ev.sender, creators, levels, version);
  }
  cache.byEvent[i] = level;
  return level;
}

/**
 * Whether (type, state_key) is one of the keys the auth events selection picks for `event`
 * (https://spec.matrix.org/v1.19/server-server-api/#auth-events-selection): create (before room version 12),
 * power levels, the sender's membership and, for membership events, the target's membership, the join rules
 * (join / invite / knock), the third-party invite (invite with `third_party_invite`) and the authorising user's
 * membership (restricted joins). Allocation-free: it runs for every lookup of the iterative auth checks.
 */
export function isAuthKeyFor(event: AuthEvent, type: string, key: string, version: RoomVersion): boolean {
  switch (type) {
    case CREATE:
      return key === "" && !version.roomIdFromCreateEvent;
    case POWER_LEVELS:
      return key === "";
    case MEMBER:
      if (key === event.sender) return true;
      if (event.type !== MEMBER) return false;
      if (key === event.state_key) return true;
      return (
        version.restrictedJoins &&
        event.content["membership"] === "join" &&
        event.content["join_authorised_via_users_server"] === key
      );
    case JOIN_RULES: {
      if (key !== "" || event.type !== MEMBER) return false;
      const m = event.content["membership"];
      return m === "join" || m === "invite" || m === "knock";
    }
    case THIRD_PARTY_INVITE:
      return event.type === MEMBER && event.content["membership"] === "invite" && thirdPartyToken(event) === key;
    default:
      return false;
  }
}

function thirdPartyToken(event: AuthEvent): string | undefined {
  const tpi = event.content["third_party_invite"];
  if (tpi === null || typeof tpi !== "object" || Array.isArray(tpi)) return undefined;
  const signed = tpi["signed"];
  if (signed === null || typeof signed !== "object" || Array.isArray(signed)) return undefined;
  const token = signed["token"];
  return typeof token === "string" ? token : undefined;
}
