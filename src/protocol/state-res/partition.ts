/**
 * Splitting state sets into the unconflicted state map and the conflicted state set
 * (https://spec.matrix.org/v1.19/rooms/v2/#definitions).
 */
import type { StateKey, StateMap } from "../events";

export interface PartitionedState {
  /** Keys present in every state set with the same event ID. */
  unconflicted: StateMap;
  /**
   * Every other key, with the distinct event IDs it has across the sets (in order of first appearance). A key
   * missing from some set is conflicted even if every set that has it agrees.
   */
  conflicted: Map<StateKey, string[]>;
}

export function partitionStateSets(stateSets: readonly StateMap[]): PartitionedState {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<StateKey, string[]>();
  const n = stateSets.length;
  if (n === 0) return { unconflicted, conflicted };
  const first = stateSets[0]!;
  if (n === 1) return { unconflicted: new Map(first), conflicted };

  // Keys of the first set: unconflicted iff every other set has the same value.
  for (const [key, id] of first) {
    let same = true;
    for (let s = 1; s < n; s++) {
      if (stateSets[s]!.get(key) !== id) {
        same = false;
        break;
      }
    }
    if (same) {
      unconflicted.set(key, id);
      continue;
    }
    const values = [id];
    for (let s = 1; s < n; s++) {
      const v = stateSets[s]!.get(key);
      if (v !== undefined && !values.includes(v)) values.push(v);
    }
    conflicted.set(key, values);
  }
  // Keys missing from the first set are conflicted.
  for (let s = 1; s < n; s++) {
    for (const [key, id] of stateSets[s]!) {
      if (first.has(key)) continue;
      const values = conflicted.get(key);
      if (values === undefined) conflicted.set(key, [id]);
      else if (!values.includes(id)) values.push(id);
    }
  }
  return { unconflicted, conflicted };
}
