/**
 * Types shared by the authorization rules and state resolution.
 * https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules
 */
import type { JsonObject } from "../events";

/**
 * The fields of an event that the authorization rules and state resolution read. A stored PDU satisfies it;
 * tests build these directly. `prev_events` / `auth_events` are event IDs (already unpacked from v1 pairs).
 */
export interface AuthEvent {
  event_id: string;
  /** Absent on v12 create events. */
  room_id?: string;
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
  origin_server_ts: number;
  prev_events: readonly string[];
  auth_events: readonly string[];
  /** Top-level `redacts` (v1–v10); v11+ use `content.redacts`. */
  redacts?: string;
  depth?: number;
}

/** Looks up the state event for (type, state_key) in the state the event is checked against. */
export type AuthStateLookup = (type: string, stateKey: string) => AuthEvent | undefined;

export type AuthResult = { allowed: true } | { allowed: false; reason: string };
