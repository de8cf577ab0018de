/**
 * Auth events: which state an event must cite ("Auth events selection",
 * https://spec.matrix.org/v1.19/server-server-api/#auth-events-selection) and the authorization rule about the
 * `auth_events` an event does cite (rule 2 in v1–v11, rule 3 in v12).
 */
import type { JsonObject, JsonValue } from "../events";
import { stateKey, type StateKey } from "../events";
import type { RoomVersion } from "../room-versions";
import { roomIdOfCreateEvent } from "./create";
import { allow, reject, topRules } from "./rule-numbers";
import type { AuthEvent, AuthResult, AuthStateLookup } from "./types";

/** The fields of a (possibly not yet built) event that decide its auth events. */
export interface AuthEventLike {
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The (type, state_key) pairs of the state events an event's `auth_events` should cite, in this order: the
 * create event (not in v12, where the room ID names it), the power levels, the sender's membership, and for
 * `m.room.member` events the target's membership, the join rules (join/invite/knock), the third-party invite
 * named by `signed.token` (invites carrying one), and the authorising user's membership (restricted joins, v8+).
 * Duplicates are listed once; the create event itself has no auth events.
 */
export function authEventTypesFor(event: AuthEventLike, version: RoomVersion): [type: string, stateKey: string][] {
  if (event.type === "m.room.create") return [];
  const selected: [string, string][] = [];
  const add = (type: string, key: string): void => {
    if (!selected.some(([t, k]) => t === type && k === key)) selected.push([type, key]);
  };
  if (!version.roomIdFromCreateEvent) add("m.room.create", "");
  add("m.room.power_levels", "");
  add("m.room.member", event.sender);
  if (event.type === "m.room.member" && typeof event.state_key === "string") {
    const { membership, third_party_invite, join_authorised_via_users_server } = event.content;
    add("m.room.member", event.state_key);
    if (membership === "join" || membership === "invite" || membership === "knock") add("m.room.join_rules", "");
    if (membership === "invite" && isObject(third_party_invite)) {
      const signed = third_party_invite.signed;
      if (isObject(signed) && typeof signed.token === "string") add("m.room.third_party_invite", signed.token);
    }
    if (membership === "join" && version.restrictedJoins && typeof join_authorised_via_users_server === "string") {
      add("m.room.member", join_authorised_via_users_server);
    }
  }
  return selected;
}

/** Options of {@link checkAuthEventsSelection}. */
export interface AuthEventsSelectionOptions {
  /** Whether an auth event was itself rejected (rule 2.3 / v12 3.3). Without it, the caller has checked. */
  isRejected?: (eventId: string) => boolean;
}

/**
 * The rule about the event's own `auth_events` (rule 2 in v1–v11, rule 3 in v12), given those events:
 * every listed event is provided and listed once; no two share a (type, state_key) (.1); each is one the auth
 * events selection picks for this event (.2 — in v12 that excludes the create event); none was rejected (.3,
 * via `opts.isRejected`); v1–v11: the create event is among them (.4); all are in the event's room (.5).
 *
 * In v12, pass the room's `create` event to also apply rule 2 (the room ID is the create event's ID).
 * The create event itself is decided by rule 1 alone (its `auth_events` are empty by construction).
 */
export function checkAuthEventsSelection(
  event: AuthEvent,
  authEvents: readonly AuthEvent[],
  version: RoomVersion,
  create?: AuthEvent,
  opts: AuthEventsSelectionOptions = {},
): AuthResult {
  if (event.type === "m.room.create") return allow();
  const top = topRules(version);
  const r = top.authEvents;
  if (version.roomIdFromCreateEvent && create && roomIdOfCreateEvent(create) !== event.room_id) {
    return reject(top.roomId, "room_id does not name the room's m.room.create event");
  }
  const listed = new Set(event.auth_events);
  const provided = new Set(authEvents.map((e) => e.event_id));
  for (const id of listed) if (!provided.has(id)) return reject(r, `auth event ${id} was not provided`);
  for (const e of authEvents) if (!listed.has(e.event_id)) return reject(r, `${e.event_id} is not in auth_events`);

  const allowed = new Set(authEventTypesFor(event, version).map(([t, k]) => stateKey(t, k)));
  const seen = new Set<StateKey>();
  for (const authEvent of authEvents) {
    if (typeof authEvent.state_key !== "string") {
      return reject(`${r}.2`, `auth event ${authEvent.event_id} is not a state event`);
    }
    const key = stateKey(authEvent.type, authEvent.state_key);
    if (seen.has(key)) return reject(`${r}.1`, `more than one auth event for (${authEvent.type}, ${JSON.stringify(authEvent.state_key)})`);
    seen.add(key);
    if (!allowed.has(key)) {
      const why =
        authEvent.type === "m.room.create" && version.roomIdFromCreateEvent
          ? "the m.room.create event must not be listed in this room version"
          : `(${authEvent.type}, ${JSON.stringify(authEvent.state_key)}) is not selected for this event`;
      return reject(`${r}.2`, `auth event ${authEvent.event_id}: ${why}`);
    }
    if (opts.isRejected?.(authEvent.event_id)) return reject(`${r}.3`, `auth event ${authEvent.event_id} was rejected`);
  }
  if (!version.roomIdFromCreateEvent && !seen.has(stateKey("m.room.create", ""))) {
    return reject(`${r}.4`, "no m.room.create event among the auth events");
  }
  for (const authEvent of authEvents) {
    if (authEvent.room_id !== event.room_id) {
      return reject(`${r}.5`, `auth event ${authEvent.event_id} belongs to another room`);
    }
  }
  return allow();
}

/** A state lookup over a list of state events (e.g. an event's auth events); a later event wins a key. */
export function stateLookupFromEvents(events: Iterable<AuthEvent>): AuthStateLookup {
  const byKey = new Map<StateKey, AuthEvent>();
  for (const event of events) {
    if (typeof event.state_key === "string") byKey.set(stateKey(event.type, event.state_key), event);
  }
  return (type, key) => byKey.get(stateKey(type, key));
}
