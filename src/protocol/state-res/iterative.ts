/**
 * The iterative auth checks algorithm (https://spec.matrix.org/v1.19/rooms/v2/#definitions): apply a sorted list
 * of state events to a room state, keeping each one only if the authorization rules allow it.
 */
import type { AuthEvent, AuthStateLookup } from "../auth/types";
import type { StateMap } from "../events";
import { stateKey } from "../events";
import type { RoomVersion } from "../room-versions";
import { EventGraph } from "./graph";
import { CREATE, createEventIdFromRoomId, isAuthKeyFor } from "./power";
import type { CheckEventAuth, StateResEventStore } from "./types";

/**
 * The state an event is checked against during the iterative auth checks: for a key the auth events selection
 * picks for the event, the event in the partially resolved `state`; for any key not answered that way, the
 * event's own `auth_events` entry. Rejected or missing events are never returned. In room version 12 the create
 * event is the one named by the event's room ID.
 */
export function iterativeAuthLookup(
  g: EventGraph,
  node: number,
  state: StateMap,
  version: RoomVersion,
): AuthStateLookup {
  const event = g.event(node);
  if (event === undefined) return () => undefined;
  const edges = g.authEdges(node);
  const createId = createEventIdFromRoomId(event, version);
  return (type: string, key: string): AuthEvent | undefined => {
    if (isAuthKeyFor(event, type, key, version)) {
      const id = state.get(stateKey(type, key));
      if (id !== undefined) {
        const j = g.intern(id);
        const ev = g.event(j);
        if (ev !== undefined && !g.isRejected(j)) return ev;
      }
    }
    if (createId !== undefined && type === CREATE && key === "") {
      const j = g.intern(createId);
      const ev = g.event(j);
      if (ev !== undefined) return ev;
    }
    // The event's own auth events (the last one wins should it cite two events for the same key).
    let found: AuthEvent | undefined;
    for (let k = 0; k < edges.length; k++) {
      const j = edges[k]!;
      const ev = g.event(j);
      if (ev !== undefined && ev.type === type && ev.state_key === key && !g.isRejected(j)) found = ev;
    }
    return found;
  };
}

/**
 * Applies the events at `nodes` (in order) to `state`, which is updated in place and returned. Events that are
 * missing from the store or are not state events are skipped; an event the auth rules reject (or whose check
 * throws, e.g. on malformed content) is ignored.
 */
export function applyIterativeAuthChecks(
  g: EventGraph,
  nodes: readonly number[],
  state: StateMap,
  version: RoomVersion,
  checkEventAuth: CheckEventAuth,
): StateMap {
  for (const node of nodes) {
    const event = g.event(node);
    if (event === undefined || typeof event.state_key !== "string") continue;
    let allowed: boolean;
    try {
      allowed = checkEventAuth(event, iterativeAuthLookup(g, node, state, version), version).allowed;
    } catch {
      allowed = false;
    }
    if (allowed) state.set(stateKey(event.type, event.state_key), g.id(node));
  }
  return state;
}

/** String-level iterative auth checks: returns a new state map, `initial` is not modified. */
export function iterativeAuthChecks(
  eventIds: Iterable<string>,
  initial: StateMap,
  version: RoomVersion,
  source: StateResEventStore | EventGraph,
  checkEventAuth: CheckEventAuth,
): StateMap {
  const g = EventGraph.from(source);
  const nodes = [...eventIds].map((id) => g.intern(id));
  return applyIterativeAuthChecks(g, nodes, new Map(initial), version, checkEventAuth);
}
