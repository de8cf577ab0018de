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
  /**
   * The event's `signatures` (server name → key ID → signature). Only read by the v8+ rule for
   * `join_authorised_via_users_server` when no {@link AuthCheckOptions.isSignedBy} is given: the authorising
   * server must then have an entry here (its validity is checked when the PDU's signatures are verified).
   */
  signatures?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** Looks up the state event for (type, state_key) in the state the event is checked against. */
export type AuthStateLookup = (type: string, stateKey: string) => AuthEvent | undefined;

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

/**
 * Verifies an ed25519 signature made by `serverName` with `keyId` over `obj` (signed JSON: `signatures` and
 * `unsigned` are ignored), against `publicKeyBase64`. Must not throw; returns false for malformed input.
 * Same shape as `verifyJsonSignature` in src/protocol/signing.ts.
 */
export type JsonSignatureVerifier = (
  obj: JsonObject,
  serverName: string,
  keyId: string,
  publicKeyBase64: string,
) => boolean;

/** Hooks for the parts of the rules that need cryptography or knowledge beyond the state. */
export interface AuthCheckOptions {
  /**
   * Checks the `signed` block of a third-party invite (membership rule "any signature in `signed` matches any
   * public key in the `m.room.third_party_invite` event"). Default: `verifyJsonSignature` from
   * src/protocol/signing (synchronous ed25519).
   */
  verifyJsonSignature?: JsonSignatureVerifier;
  /**
   * Whether `event` is validly signed by `serverName` (v8+ rule for `join_authorised_via_users_server`).
   * Default: `event.signatures` has an entry for `serverName`; an event without `signatures` is rejected.
   */
  isSignedBy?: (event: AuthEvent, serverName: string) => boolean;
}
