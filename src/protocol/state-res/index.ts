/**
 * State resolution for room versions 2–12: v2 (room versions 2–11) and v2.1 (room version 12, MSC4297).
 * Room version 1's algorithm is not implemented: {@link resolveState} throws {@link UnsupportedStateResolution}
 * (its spec text is ambiguous and the deployed implementations do not follow it; v1 rooms are legacy).
 *
 * Everything here is synchronous and pure: events come from a {@link StateResEventStore}; missing events are
 * treated as absent (partial state), see there. A store with an auth-chain index can answer the two DAG walks
 * (auth difference, conflicted state subgraph) itself through the optional hooks.
 *
 * Where the spec's wording and the common implementations (Synapse, ruma) differ, this follows the spec:
 * - Step 1 enlarges the power events with every full-conflicted-set event in their auth chain, also one reached
 *   only through events outside the full conflicted set, and the topological order respects such paths
 *   (Synapse and ruma only follow `auth_events` links that stay inside the full conflicted set).
 * - Power events are `m.room.power_levels` / `m.room.join_rules` state events (any state key) and kicks/bans;
 *   `m.room.create` is not one (Synapse and ruma also count the create event and require an empty state key).
 * Both differences only show on unusual DAGs; every vector in test/fixtures/vectors/state-res-v2-cases.json
 * passes.
 *
 * Pieces, each usable on its own: {@link partitionStateSets}, {@link authChainDifference},
 * {@link conflictedStateSubgraph}, {@link selectPowerEvents}, {@link sortByReverseTopologicalPower} /
 * {@link reverseTopologicalPowerOrder}, {@link sortByMainline} / {@link mainlineOrder},
 * {@link applyIterativeAuthChecks} / {@link iterativeAuthChecks}; {@link resolveStateTrace} returns every
 * intermediate result.
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
