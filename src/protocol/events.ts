/**
 * Wire formats of room events, named as the spec names them.
 * https://spec.matrix.org/v1.19/rooms/v4/#event-format (v3+) and /rooms/v1/#event-format (v1–v2).
 */

/** Any JSON value as it appears in an event (canonical JSON allows no floats in v6+). */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** `{"sha256": "<unpadded base64>"}` */
export interface EventHashes {
  sha256: string;
  [algorithm: string]: string;
}

/** `{"example.org": {"ed25519:key1": "<signature>"}}` */
export type Signatures = Record<string, Record<string, string>>;

/** v1–v2 reference to another event: `[event_id, {"sha256": ...}]`. */
export type EventReferenceV1 = [string, EventHashes | Record<string, string>];

/**
 * A Persistent Data Unit as sent over federation. Fields common to every room version; `prev_events` and
 * `auth_events` are ID arrays from v3 on and `[id, hashes]` pairs in v1–v2 (see `eventRefIds`).
 */
export interface PDU {
  /** Present in v1–v2 only; for v3+ it is computed from the reference hash and never sent. */
  event_id?: string;
  /** Absent on v12 create events (the room ID is derived from the create event). */
  room_id?: string;
  sender: string;
  type: string;
  state_key?: string;
  content: JsonObject;
  origin_server_ts: number;
  depth: number;
  prev_events: string[] | EventReferenceV1[];
  auth_events: string[] | EventReferenceV1[];
  /** v1–v10 redactions carry the target here; v11+ carry it in `content.redacts`. */
  redacts?: string;
  hashes: EventHashes;
  signatures: Signatures;
  unsigned?: JsonObject;
  /** Legacy top-level fields still seen from old servers; dropped by v11 redaction. */
  origin?: string;
  membership?: string;
  prev_state?: unknown;
  [extra: string]: unknown;
}

/** A PDU together with its ID and room ID, as the server holds it after checking its format. */
export interface StoredEvent extends PDU {
  event_id: string;
  room_id: string;
}

/** The event IDs in `prev_events` / `auth_events`, whatever the event format. */
export function eventRefIds(refs: readonly (string | EventReferenceV1)[] | undefined): string[] {
  if (!refs) return [];
  return refs.map((r) => (typeof r === "string" ? r : r[0]));
}

/** Whether the event is a state event (has a `state_key`, even an empty one). */
export function isStateEvent(event: { state_key?: unknown }): event is { state_key: string } {
  return typeof event.state_key === "string";
}

/** The key of a state event in a state map: type and state key. */
export type StateKey = `${string}\u0000${string}`;

/** Builds the state-map key for (type, state_key). NUL separates them since neither can contain it. */
export function stateKey(type: string, state_key: string): StateKey {
  return `${type}\u0000${state_key}`;
}

/** Splits a state-map key back into (type, state_key). */
export function splitStateKey(key: StateKey): [type: string, state_key: string] {
  const i = key.indexOf("\u0000");
  return [key.slice(0, i), key.slice(i + 1)];
}

/** A room's state: state key → event ID. */
export type StateMap = Map<StateKey, string>;

/** The client-facing event format (https://spec.matrix.org/v1.19/client-server-api/#room-event-format). */
export interface ClientEvent {
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  state_key?: string;
  content: JsonObject;
  origin_server_ts: number;
  redacts?: string;
  unsigned?: JsonObject;
}
