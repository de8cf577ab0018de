/**
 * Types shared by the state resolution modules.
 *
 * State resolution is synchronous on purpose: it runs inside a Durable Object transaction, so every event it may
 * need has to be answerable from memory (or from synchronous SQLite) through {@link StateResEventStore}.
 */
import type { StateMap } from "../events";
import type { AuthEvent, AuthResult, AuthStateLookup } from "../auth/types";
import type { RoomVersion } from "../room-versions";

/**
 * Where state resolution reads events from.
 *
 * Partial state: an event the store does not know (`getEvent` returns `undefined`) is treated as absent. It is
 * never selected by the conflicted part of the algorithm, its `auth_events` are unknown (so auth chain walks
 * stop at it), and it is never used as an auth event. Unconflicted entries of the state sets are kept by ID
 * whether or not the store has them (the algorithm never needs to look at them).
 */
export interface StateResEventStore {
  /** The event with this ID, or `undefined` if it is not known. Must be cheap: it is called many times. */
  getEvent(eventId: string): AuthEvent | undefined;

  /**
   * Whether the event was rejected (failed authorization against its own auth events or on receipt). Rejected
   * events are never used as auth events during the iterative auth checks. Default: nothing is rejected.
   */
  isRejected?(eventId: string): boolean;

  /**
   * Optional fast path for the *auth difference* ∪Cᵢ − ∩Cᵢ, where Cᵢ is the full auth chain of state set i
   * (the union of the auth chains of its events, which does not contain the events themselves unless one is an
   * auth ancestor of another). A store with an auth-chain index answers this without walking the DAG. The
   * default walks `auth_events` (see {@link authChainDifference}).
   */
  authChainDifference?(stateSets: readonly StateMap[]): Iterable<string>;

  /**
   * Optional fast path for the *conflicted state subgraph* (state resolution v2.1 only): every event on an
   * `auth_events` path from one event of `conflicted` to another, endpoints included. The default walks
   * `auth_events` (see {@link conflictedStateSubgraph}).
   */
  conflictedStateSubgraph?(conflicted: ReadonlySet<string>): Iterable<string>;
}

/** The signature of the authorization rules entry point (`checkEventAuth` in src/protocol/auth). */
export type CheckEventAuth = (event: AuthEvent, state: AuthStateLookup, version: RoomVersion) => AuthResult;

/** Thrown for room versions whose state resolution algorithm this module does not implement (room version 1). */
export class UnsupportedStateResolution extends Error {
  override readonly name = "UnsupportedStateResolution";
  constructor(
    readonly roomVersion: string,
    readonly algorithm: string,
  ) {
    super(`state resolution ${algorithm} (room version ${roomVersion}) is not supported`);
  }
}
