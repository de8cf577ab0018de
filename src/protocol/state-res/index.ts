/**
 * State resolution for room versions 2–12: v2 (room versions 2–11) and v2.1 (room version 12, MSC4297).
 * Room version 1's algorithm is not implemented: {@link resolveState} throws {@link UnsupportedStateResolution}.
 *
 * Everything here is synchronous and pure: events come from a {@link StateResEventStore}; missing events are
 * treated as absent (partial state), see there.
 */
import { checkEventAuth as defaultCheckEventAuth } from "../auth";
import type { StateMap } from "../events";
import type { RoomVersion } from "../room-versions";
import { resolveV2, type ResolveStateOptions } from "./resolve";
import type { StateResEventStore } from "./types";

/**
 * Resolves a set of room states into one (https://spec.matrix.org/v1.19/rooms/v2/#state-resolution; room version
 * 12 uses v2.1). With fewer than two state sets, or identical ones, the result is their common state.
 * @throws UnsupportedStateResolution for room version 1.
 */
export function resolveState(
  stateSets: readonly StateMap[],
  version: RoomVersion,
  store: StateResEventStore,
  options: ResolveStateOptions = {},
): StateMap {
  return resolveV2(stateSets, version, store, options.checkEventAuth ?? defaultCheckEventAuth, false).resolved;
}

export { resolveStateTrace, selectPowerEvents, type ResolveStateOptions, type StateResolutionTrace } from "./resolve";
export { partitionStateSets, type PartitionedState } from "./partition";
export { authChainDifference, conflictedStateSubgraph, EventGraph, fullAuthChain } from "./graph";
export {
  kahnSort,
  lexicographicalTopologicalSort,
  mainlineOrder,
  powerOrderLess,
  reverseTopologicalPowerOrder,
  sortByMainline,
  sortByReverseTopologicalPower,
  type Less,
} from "./ordering";
export { applyIterativeAuthChecks, iterativeAuthChecks, iterativeAuthLookup } from "./iterative";
export {
  createEventIdFromRoomId,
  isAuthKeyFor,
  isPowerEvent,
  newSenderPowerCache,
  senderPowerLevel,
  type SenderPowerCache,
} from "./power";
export { UnsupportedStateResolution, type CheckEventAuth, type StateResEventStore } from "./types";
