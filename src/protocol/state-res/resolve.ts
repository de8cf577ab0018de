/**
 * State resolution v2 (room versions 2–11) and v2.1 (room version 12, MSC4297).
 * https://spec.matrix.org/v1.19/rooms/v2/#state-resolution and https://spec.matrix.org/v1.19/rooms/v12/#state-resolution
 *
 * v2.1 differs from v2 in two places: the full conflicted set also contains the conflicted state subgraph, and
 * the iterative auth checks of the power events (step 2) start from an empty state map instead of the
 * unconflicted state map.
 */
import type { StateMap } from "../events";
import type { RoomVersion } from "../room-versions";
import { authChainDifference, conflictedStateSubgraph, EventGraph } from "./graph";
import { applyIterativeAuthChecks } from "./iterative";
import { sortByMainline, sortByReverseTopologicalPower } from "./ordering";
import { partitionStateSets, type PartitionedState } from "./partition";
import { isPowerEvent, POWER_LEVELS_KEY } from "./power";
import { type CheckEventAuth, type StateResEventStore, UnsupportedStateResolution } from "./types";

export interface ResolveStateOptions {
  /** The authorization rules; defaults to `checkEventAuth` from src/protocol/auth. */
  checkEventAuth?: CheckEventAuth;
}

/** Every intermediate result of one resolution, for tests and diagnostics. */
export interface StateResolutionTrace extends PartitionedState {
  algorithm: "v2" | "v2.1";
  /** ∪Cᵢ − ∩Cᵢ (as returned by the store hook or the default walk; may include events the store lacks). */
  authDifference: Set<string>;
  /** v2.1 only (empty for v2). */
  conflictedSubgraph: Set<string>;
  /** The full conflicted set, restricted to events the store has. */
  fullConflictedSet: Set<string>;
  /** Step 1: power events of the full conflicted set plus their conflicted auth ancestors, sorted. */
  powerEvents: string[];
  /** Step 2 result. */
  partialState: StateMap;
  /** Step 3: the other events of the full conflicted set in mainline order. */
  otherEvents: string[];
  /** The final resolved state. */
  resolved: StateMap;
}

/**
 * The full conflicted set: the conflicted state set, the auth difference and (v2.1) the conflicted state
 * subgraph. The auth difference and subgraph come from the store's hooks when it has them.
 */
function computeConflictedSets(
  g: EventGraph,
  stateSets: readonly StateMap[],
  partition: PartitionedState,
  v21: boolean,
): { conflictedIds: Set<string>; authDifference: Set<string>; conflictedSubgraph: Set<string> } {
  const conflictedIds = new Set<string>();
  for (const ids of partition.conflicted.values()) for (const id of ids) conflictedIds.add(id);
  const store = g.store;
  const authDifference = store.authChainDifference
    ? new Set(store.authChainDifference(stateSets))
    : authChainDifference(stateSets, g, partition);
  let conflictedSubgraph = new Set<string>();
  if (v21) {
    conflictedSubgraph = store.conflictedStateSubgraph
      ? new Set(store.conflictedStateSubgraph(conflictedIds))
      : conflictedStateSubgraph(conflictedIds, g);
  }
  return { conflictedIds, authDifference, conflictedSubgraph };
}

/**
 * Step 1's set X: the power events of the full conflicted set, plus every event of the full conflicted set in
 * the auth chain of one of them (one shared walk over the union of their auth chains).
 */
export function selectPowerEvents(g: EventGraph, fullConflicted: readonly number[]): number[] {
  const inFull: boolean[] = [];
  for (const i of fullConflicted) inFull[i] = true;
  const selected: boolean[] = [];
  const out: number[] = [];
  const seen: boolean[] = [];
  const stack: number[] = [];
  for (const i of fullConflicted) {
    const ev = g.event(i);
    if (ev === undefined || !isPowerEvent(ev)) continue;
    if (!selected[i]) {
      selected[i] = true;
      out.push(i);
    }
    stack.push(i);
  }
  while (stack.length > 0) {
    const edges = g.authEdges(stack.pop()!);
    for (let k = 0; k < edges.length; k++) {
      const a = edges[k]!;
      if (seen[a]) continue;
      seen[a] = true;
      if (inFull[a] && !selected[a]) {
        selected[a] = true;
        out.push(a);
      }
      stack.push(a);
    }
  }
  return out;
}

function algorithmOf(version: RoomVersion): "v2" | "v2.1" {
  if (version.stateRes === "v1") throw new UnsupportedStateResolution(version.id, "v1");
  return version.stateRes;
}

/**
 * Resolves the state sets with the given authorization rules and returns every intermediate result.
 * `resolveState` (index.ts) is the same with the real rules and only the result.
 */
export function resolveStateTrace(
  stateSets: readonly StateMap[],
  version: RoomVersion,
  store: StateResEventStore,
  checkEventAuth: CheckEventAuth,
): StateResolutionTrace {
  return resolveV2(stateSets, version, store, checkEventAuth, true);
}

/** The algorithm; with `trace` false the intermediate maps are not copied and the trace's sets stay empty. */
export function resolveV2(
  stateSets: readonly StateMap[],
  version: RoomVersion,
  store: StateResEventStore,
  checkEventAuth: CheckEventAuth,
  trace: boolean,
): StateResolutionTrace {
  const algorithm = algorithmOf(version);
  const v21 = algorithm === "v2.1";
  const partition = partitionStateSets(stateSets);
  if (partition.conflicted.size === 0) {
    return {
      ...partition,
      algorithm,
      authDifference: new Set(),
      conflictedSubgraph: new Set(),
      fullConflictedSet: new Set(),
      powerEvents: [],
      partialState: trace ? new Map(partition.unconflicted) : partition.unconflicted,
      otherEvents: [],
      resolved: trace ? new Map(partition.unconflicted) : partition.unconflicted,
    };
  }

  const g = new EventGraph(store);
  const { conflictedIds, authDifference, conflictedSubgraph } = computeConflictedSets(g, stateSets, partition, v21);

  // The full conflicted set, without events the store does not have (partial state: treated as absent).
  const full: number[] = [];
  const inFull: boolean[] = [];
  const add = (id: string): void => {
    const i = g.intern(id);
    if (!inFull[i] && g.event(i) !== undefined) {
      inFull[i] = true;
      full.push(i);
    }
  };
  for (const id of conflictedIds) add(id);
  for (const id of authDifference) add(id);
  for (const id of conflictedSubgraph) add(id);

  // 1. Power events and their conflicted auth ancestors, in reverse topological power ordering.
  const power = sortByReverseTopologicalPower(g, selectPowerEvents(g, full), version);

  // 2. Iterative auth checks from the unconflicted state map (v2) or the empty map (v2.1).
  const partialState = applyIterativeAuthChecks(
    g,
    power,
    v21 ? new Map() : new Map(partition.unconflicted),
    version,
    checkEventAuth,
  );

  // 3. Everything else, in mainline order based on the resolved power levels event.
  const inPower: boolean[] = [];
  for (const i of power) inPower[i] = true;
  const rest = full.filter((i) => !inPower[i]);
  const plId = partialState.get(POWER_LEVELS_KEY);
  const others = sortByMainline(g, rest, plId === undefined ? undefined : g.intern(plId));

  // 4. Iterative auth checks of those on top of the partially resolved state.
  const resolved = applyIterativeAuthChecks(g, others, trace ? new Map(partialState) : partialState, version, checkEventAuth);

  // 5. The unconflicted state map wins.
  for (const [key, id] of partition.unconflicted) resolved.set(key, id);

  return {
    ...partition,
    algorithm,
    authDifference,
    conflictedSubgraph,
    fullConflictedSet: trace ? new Set(full.map((i) => g.id(i))) : new Set(),
    powerEvents: trace ? power.map((i) => g.id(i)) : [],
    partialState,
    otherEvents: trace ? others.map((i) => g.id(i)) : [],
    resolved,
  };
}
