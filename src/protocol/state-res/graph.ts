/**
 * An integer-indexed view of the auth DAG, built lazily from a {@link StateResEventStore} for the duration of one
 * resolution, plus the DAG walks state resolution needs (full auth chain, auth difference, conflicted state
 * subgraph).
 *
 * Every event ID the algorithm touches is interned once; from then on the walks use numbers and plain arrays,
 * and each event is fetched from the store and its `auth_events` resolved to indices at most once.
 */
import type { AuthEvent } from "../auth/types";
import type { StateMap } from "../events";
import type { PartitionedState } from "./partition";
import type { StateResEventStore } from "./types";

const NOT_FETCHED = 0;
const PRESENT = 1;
const MISSING = 2;

const EMPTY: readonly number[] = Object.freeze([]) as readonly number[];

export class EventGraph {
  readonly store: StateResEventStore;
  private readonly ids: string[] = [];
  private readonly byId = new Map<string, number>();
  private readonly status: number[] = [];
  private readonly events: (AuthEvent | undefined)[] = [];
  private readonly auth: (readonly number[] | undefined)[] = [];
  private readonly rejected: (boolean | undefined)[] = [];

  constructor(store: StateResEventStore) {
    this.store = store;
  }

  /** Uses `source` as is if it already is a graph, otherwise wraps the store in a fresh graph. */
  static from(source: StateResEventStore | EventGraph): EventGraph {
    return source instanceof EventGraph ? source : new EventGraph(source);
  }

  /** Number of interned event IDs; indices are `0 .. size-1`. */
  get size(): number {
    return this.ids.length;
  }

  /** The index of an event ID, interning it if it is new. */
  intern(id: string): number {
    let i = this.byId.get(id);
    if (i === undefined) {
      i = this.ids.length;
      this.ids.push(id);
      this.byId.set(id, i);
      this.status.push(NOT_FETCHED);
      this.events.push(undefined);
      this.auth.push(undefined);
      this.rejected.push(undefined);
    }
    return i;
  }

  /** The index of an already interned ID, or `undefined`. */
  lookup(id: string): number | undefined {
    return this.byId.get(id);
  }

  id(i: number): string {
    return this.ids[i]!;
  }

  /** The event at index `i`, or `undefined` if the store does not have it. */
  event(i: number): AuthEvent | undefined {
    const s = this.status[i];
    if (s === PRESENT) return this.events[i];
    if (s === MISSING) return undefined;
    const ev = this.store.getEvent(this.ids[i]!);
    if (ev === undefined) {
      this.status[i] = MISSING;
      return undefined;
    }
    this.status[i] = PRESENT;
    this.events[i] = ev;
    return ev;
  }

  /** The event with this ID (interning it), or `undefined` if the store does not have it. */
  eventById(id: string): AuthEvent | undefined {
    return this.event(this.intern(id));
  }

  /** Indices of the event's `auth_events`; empty if the event is missing. */
  authEdges(i: number): readonly number[] {
    const cached = this.auth[i];
    if (cached !== undefined) return cached;
    const ev = this.event(i);
    let edges = EMPTY;
    if (ev !== undefined && ev.auth_events.length > 0) {
      const refs = ev.auth_events;
      const out: number[] = [];
      for (let k = 0; k < refs.length; k++) out.push(this.intern(refs[k]!));
      edges = out;
    }
    this.auth[i] = edges;
    return edges;
  }

  /** Whether the store reports the event as rejected. */
  isRejected(i: number): boolean {
    let r = this.rejected[i];
    if (r === undefined) {
      r = this.store.isRejected ? this.store.isRejected(this.ids[i]!) : false;
      this.rejected[i] = r;
    }
    return r;
  }
}

/**
 * The full auth chain of a set of events: the union of the auth chains of each of them (every event reachable
 * through one or more `auth_events` links). A start event is only in the result if it is in the auth chain of
 * another start event. Missing events end the walk.
 */
export function fullAuthChain(eventIds: Iterable<string>, source: StateResEventStore | EventGraph): Set<string> {
  const g = EventGraph.from(source);
  const seen: boolean[] = [];
  const stack: number[] = [];
  for (const id of eventIds) {
    const edges = g.authEdges(g.intern(id));
    for (let k = 0; k < edges.length; k++) stack.push(edges[k]!);
  }
  const out = new Set<string>();
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (seen[n]) continue;
    seen[n] = true;
    out.add(g.id(n));
    const edges = g.authEdges(n);
    for (let k = 0; k < edges.length; k++) if (!seen[edges[k]!]) stack.push(edges[k]!);
  }
  return out;
}

/**
 * The auth difference ∪Cᵢ − ∩Cᵢ of the state sets, computed by walking `auth_events`.
 *
 * `partition` (optional, {@link partitionStateSets} of these sets) enables a shortcut: an event present in every
 * set has its whole auth chain in every Cᵢ, so those chains are marked "common" in one walk, and the per-set
 * walks start only from each set's conflicted values and stop at common events. Without it, every event of every
 * set is walked once per set.
 */
export function authChainDifference(
  stateSets: readonly StateMap[],
  source: StateResEventStore | EventGraph,
  partition?: PartitionedState,
): Set<string> {
  const g = EventGraph.from(source);
  const n = stateSets.length;
  const out = new Set<string>();
  if (n <= 1) return out;

  // 1. Common: strict auth ancestors of events that are in every set.
  const common: boolean[] = [];
  const stack: number[] = [];
  if (partition !== undefined) {
    for (const id of partition.unconflicted.values()) {
      const edges = g.authEdges(g.intern(id));
      for (let k = 0; k < edges.length; k++) {
        const a = edges[k]!;
        if (!common[a]) {
          common[a] = true;
          stack.push(a);
        }
      }
    }
    while (stack.length > 0) {
      const edges = g.authEdges(stack.pop()!);
      for (let k = 0; k < edges.length; k++) {
        const a = edges[k]!;
        if (!common[a]) {
          common[a] = true;
          stack.push(a);
        }
      }
    }
  }

  // 2. For each set, walk the auth chains of its remaining events, counting in how many Cᵢ each event is.
  const count: number[] = [];
  const visitedBy: number[] = [];
  const touched: number[] = [];
  for (let s = 0; s < n; s++) {
    const pass = s + 1;
    const set = stateSets[s]!;
    const starts = partition === undefined ? set.values() : conflictedValuesOf(set, partition);
    for (const id of starts) {
      const edges = g.authEdges(g.intern(id));
      for (let k = 0; k < edges.length; k++) stack.push(edges[k]!);
    }
    while (stack.length > 0) {
      const x = stack.pop()!;
      if (visitedBy[x] === pass || common[x]) continue;
      visitedBy[x] = pass;
      const c = count[x];
      if (c === undefined) {
        count[x] = 1;
        touched.push(x);
      } else count[x] = c + 1;
      const edges = g.authEdges(x);
      for (let k = 0; k < edges.length; k++) {
        const a = edges[k]!;
        if (visitedBy[a] !== pass && !common[a]) stack.push(a);
      }
    }
  }
  for (const x of touched) if (count[x]! < n) out.add(g.id(x));
  return out;
}

/** The values `set` has for the conflicted keys of the partition. */
function* conflictedValuesOf(set: StateMap, partition: PartitionedState): Iterable<string> {
  for (const key of partition.conflicted.keys()) {
    const id = set.get(key);
    if (id !== undefined) yield id;
  }
}

/**
 * The conflicted state subgraph (state resolution v2.1, room version 12): every event lying on an
 * `auth_events` path from one event of `conflicted` to another, endpoints included. Equivalently, the events
 * that are reachable from a conflicted event and from which a conflicted event is reachable (a path of length
 * zero counts, so every conflicted event known to the store's DAG is included). Missing events end the walk.
 */
export function conflictedStateSubgraph(
  conflicted: Iterable<string>,
  source: StateResEventStore | EventGraph,
): Set<string> {
  const g = EventGraph.from(source);
  const isConflicted: boolean[] = [];
  const roots: number[] = [];
  for (const id of conflicted) {
    const i = g.intern(id);
    if (!isConflicted[i]) {
      isConflicted[i] = true;
      roots.push(i);
    }
  }
  // Iterative post-order DFS over everything reachable from the conflicted events:
  // leadsToConflicted(v) = v is conflicted, or one of its auth events leads to a conflicted event.
  const state: number[] = []; // undefined: unvisited, 1: on stack, 2: done
  const leads: boolean[] = [];
  const nodeStack: number[] = [];
  const edgeStack: number[] = [];
  const out = new Set<string>();
  for (const root of roots) {
    if (state[root] !== undefined) continue;
    state[root] = 1;
    nodeStack.push(root);
    edgeStack.push(0);
    while (nodeStack.length > 0) {
      const top = nodeStack.length - 1;
      const v = nodeStack[top]!;
      const edges = g.authEdges(v);
      const k = edgeStack[top]!;
      if (k < edges.length) {
        edgeStack[top] = k + 1;
        const a = edges[k]!;
        if (state[a] === undefined) {
          state[a] = 1;
          nodeStack.push(a);
          edgeStack.push(0);
        }
        continue;
      }
      nodeStack.pop();
      edgeStack.pop();
      state[v] = 2;
      let l = isConflicted[v] === true;
      if (!l) {
        for (let j = 0; j < edges.length; j++) {
          if (leads[edges[j]!]) {
            l = true;
            break;
          }
        }
      }
      if (l) {
        leads[v] = true;
        out.add(g.id(v));
      }
    }
  }
  return out;
}
