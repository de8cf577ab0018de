/**
 * The two orderings of state resolution v2: the reverse topological power ordering (for the power events and
 * their conflicted auth ancestors) and the mainline ordering (for everything else).
 * https://spec.matrix.org/v1.19/rooms/v2/#definitions
 */
import type { RoomVersion } from "../room-versions";
import { EventGraph } from "./graph";
import { newSenderPowerCache, POWER_LEVELS, senderPowerLevel, type SenderPowerCache } from "./power";
import type { StateResEventStore } from "./types";

/** `a < b` for a strict total order on node numbers. */
export type Less = (a: number, b: number) => boolean;

/** A binary min-heap of node numbers under `less`. */
class MinHeap {
  private readonly items: number[] = [];
  constructor(private readonly less: Less) {}

  get size(): number {
    return this.items.length;
  }

  push(x: number): void {
    const a = this.items;
    let i = a.length;
    a.push(x);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(x, a[p]!)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = x;
  }

  pop(): number {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && this.less(a[r]!, a[l]!) ? r : l;
        if (!this.less(a[c]!, last)) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/**
 * The lexicographically smallest topological ordering of nodes `0 .. count-1` (Kahn's algorithm, taking the
 * smallest available node under `less` at each step). `prerequisites(i)` lists the nodes that must come before
 * `i` (its auth events, for state resolution); entries outside `0 .. count-1` are ignored. Nodes on a cycle
 * (impossible in a well-formed auth DAG) are left out.
 */
export function kahnSort(
  count: number,
  prerequisites: (node: number) => ArrayLike<number>,
  less: Less,
): number[] {
  const pending = new Int32Array(count);
  const dependents: number[][] = [];
  for (let i = 0; i < count; i++) {
    const pre = prerequisites(i);
    let c = 0;
    for (let k = 0; k < pre.length; k++) {
      const p = pre[k]!;
      if (p < 0 || p >= count || p === i) continue;
      (dependents[p] ??= []).push(i);
      c++;
    }
    pending[i] = c;
  }
  const heap = new MinHeap(less);
  for (let i = 0; i < count; i++) if (pending[i] === 0) heap.push(i);
  const order: number[] = [];
  while (heap.size > 0) {
    const x = heap.pop();
    order.push(x);
    const deps = dependents[x];
    if (deps === undefined) continue;
    for (const d of deps) if (--pending[d]! === 0) heap.push(d);
  }
  return order;
}

/**
 * String-level form of {@link kahnSort}: `graph` maps each node to the nodes that must come before it (nodes
 * only mentioned as prerequisites are ignored unless they are keys too); ties are broken by `compare`
 * (negative: first argument first), by default plain string order.
 */
export function lexicographicalTopologicalSort(
  graph: ReadonlyMap<string, Iterable<string>>,
  compare: (a: string, b: string) => number = (a, b) => (a < b ? -1 : a > b ? 1 : 0),
): string[] {
  const nodes = [...graph.keys()];
  const index = new Map<string, number>();
  nodes.forEach((id, i) => index.set(id, i));
  const pre = nodes.map((id) => {
    const out: number[] = [];
    for (const p of graph.get(id)!) {
      const j = index.get(p);
      if (j !== undefined) out.push(j);
    }
    return out;
  });
  return kahnSort(nodes.length, (i) => pre[i]!, (a, b) => compare(nodes[a]!, nodes[b]!) < 0).map((i) => nodes[i]!);
}

/** The tie-break of the reverse topological power ordering: higher sender power level, then older, then ID. */
export function powerOrderLess(
  a: { powerLevel: number; ts: number; id: string },
  b: { powerLevel: number; ts: number; id: string },
): boolean {
  if (a.powerLevel !== b.powerLevel) return a.powerLevel > b.powerLevel;
  if (a.ts !== b.ts) return a.ts < b.ts;
  return a.id < b.id;
}

/**
 * Sorts a set of graph nodes by the reverse topological power ordering: auth ancestors first; among the
 * candidates, higher sender power level (looking at the event's own auth_events), then smaller
 * `origin_server_ts`, then smaller event ID. Nodes whose event is missing are dropped.
 *
 * The DAG is the auth DAG restricted to `nodes`: x must come after y whenever y is in x's auth chain, also when
 * the path from x to y runs through events outside `nodes`. Those paths are collapsed with one memoized walk of
 * the auth chains of `nodes`.
 */
export function sortByReverseTopologicalPower(
  g: EventGraph,
  nodes: readonly number[],
  version: RoomVersion,
  powerCache: SenderPowerCache = newSenderPowerCache(),
): number[] {
  const members = nodes.filter((i) => g.event(i) !== undefined);
  const local: number[] = []; // graph index -> position in members (+1)
  members.forEach((x, pos) => (local[x] = pos + 1));

  // nearest(v): the members reachable from non-member v through non-member events only (memoized).
  const nearest: (number[] | undefined)[] = [];
  const NONE: number[] = [];
  const nearestOf = (start: number): number[] => {
    const done = nearest[start];
    if (done !== undefined) return done;
    // Iterative post-order over non-member nodes.
    const nodeStack = [start];
    const edgeStack = [0];
    const onStack: boolean[] = [];
    onStack[start] = true;
    while (nodeStack.length > 0) {
      const top = nodeStack.length - 1;
      const v = nodeStack[top]!;
      const edges = g.authEdges(v);
      const k = edgeStack[top]!;
      if (k < edges.length) {
        edgeStack[top] = k + 1;
        const a = edges[k]!;
        if (local[a] === undefined && nearest[a] === undefined && !onStack[a]) {
          onStack[a] = true;
          nodeStack.push(a);
          edgeStack.push(0);
        }
        continue;
      }
      nodeStack.pop();
      edgeStack.pop();
      let acc: number[] | Set<number> = NONE;
      for (let j = 0; j < edges.length; j++) {
        const a = edges[j]!;
        const part = local[a] !== undefined ? [a] : (nearest[a] ?? NONE);
        if (part.length === 0) continue;
        if (acc === NONE) acc = part;
        else {
          if (Array.isArray(acc)) acc = new Set(acc);
          for (const p of part) acc.add(p);
        }
      }
      nearest[v] = Array.isArray(acc) ? acc : [...acc];
    }
    return nearest[start]!;
  };

  const prerequisites = (pos: number): number[] => {
    const edges = g.authEdges(members[pos]!);
    const out: number[] = [];
    for (let k = 0; k < edges.length; k++) {
      const a = edges[k]!;
      if (local[a] !== undefined) out.push(local[a]! - 1);
      else for (const m of nearestOf(a)) out.push(local[m]! - 1);
    }
    return out;
  };

  const pl = members.map((i) => senderPowerLevel(g, i, version, powerCache));
  const ts = members.map((i) => timestamp(g, i));
  const ids = members.map((i) => g.id(i));
  const less: Less = (a, b) => {
    if (pl[a] !== pl[b]) return pl[a]! > pl[b]!;
    if (ts[a] !== ts[b]) return ts[a]! < ts[b]!;
    return ids[a]! < ids[b]!;
  };
  return kahnSort(members.length, prerequisites, less).map((pos) => members[pos]!);
}

/**
 * String-level reverse topological power ordering of `eventIds` (see {@link sortByReverseTopologicalPower}).
 */
export function reverseTopologicalPowerOrder(
  eventIds: Iterable<string>,
  version: RoomVersion,
  source: StateResEventStore | EventGraph,
): string[] {
  const g = EventGraph.from(source);
  const nodes = [...new Set([...eventIds].map((id) => g.intern(id)))];
  return sortByReverseTopologicalPower(g, nodes, version).map((i) => g.id(i));
}

/** `origin_server_ts`, or 0 if it is not a number (so a malformed event cannot break the sort). */
function timestamp(g: EventGraph, i: number): number {
  const ts = g.event(i)?.origin_server_ts;
  return typeof ts === "number" && !Number.isNaN(ts) ? ts : 0;
}

/** The `m.room.power_levels` event among the event's auth events, or -1. */
function powerLevelsAuthEvent(g: EventGraph, i: number): number {
  const edges = g.authEdges(i);
  for (let k = 0; k < edges.length; k++) {
    const a = g.event(edges[k]!);
    if (a !== undefined && a.type === POWER_LEVELS && a.state_key === "") return edges[k]!;
  }
  return -1;
}

/**
 * Sorts graph nodes by the mainline ordering based on the power levels event `powerLevels` (-1 / undefined
 * for none): events whose power-level ancestry meets the mainline further from `powerLevels` (or never: position
 * ∞) first, then smaller `origin_server_ts`, then smaller event ID. Nodes whose event is missing are dropped.
 */
export function sortByMainline(g: EventGraph, nodes: readonly number[], powerLevels: number | undefined): number[] {
  // Mainline positions: P0 = powerLevels has position 0, its power-levels auth event 1, and so on.
  const position = new Map<number, number>();
  for (let p = powerLevels ?? -1, i = 0; p >= 0 && !position.has(p); p = powerLevelsAuthEvent(g, p), i++) {
    position.set(p, i);
  }
  // Memoized position of a power levels event e_j (the first mainline event on its power-levels ancestry).
  const memo = new Map<number, number>();
  const positionFrom = (start: number): number => {
    const path: number[] = [];
    let p = start;
    let result = Infinity;
    while (p >= 0) {
      const onMainline = position.get(p);
      if (onMainline !== undefined) {
        result = onMainline;
        break;
      }
      const known = memo.get(p);
      if (known !== undefined) {
        result = known;
        break;
      }
      if (path.length > g.size) break; // only possible on a cycle (malformed DAG)
      path.push(p);
      p = powerLevelsAuthEvent(g, p);
    }
    for (const q of path) memo.set(q, result);
    return result;
  };

  const members = nodes.filter((i) => g.event(i) !== undefined);
  const keyPos = members.map((i) => {
    const first = powerLevelsAuthEvent(g, i);
    return first < 0 ? Infinity : positionFrom(first);
  });
  const ts = members.map((i) => timestamp(g, i));
  const ids = members.map((i) => g.id(i));
  const order = members.map((_, k) => k);
  order.sort((a, b) => {
    if (keyPos[a] !== keyPos[b]) return keyPos[a]! > keyPos[b]! ? -1 : 1;
    if (ts[a] !== ts[b]) return ts[a]! - ts[b]!;
    return ids[a]! < ids[b]! ? -1 : ids[a]! > ids[b]! ? 1 : 0;
  });
  return order.map((k) => members[k]!);
}

/** String-level mainline ordering of `eventIds` based on the power levels event `powerLevelsId` (if any). */
export function mainlineOrder(
  eventIds: Iterable<string>,
  powerLevelsId: string | undefined,
  source: StateResEventStore | EventGraph,
): string[] {
  const g = EventGraph.from(source);
  const nodes = [...new Set([...eventIds].map((id) => g.intern(id)))];
  const pl = powerLevelsId === undefined ? undefined : g.intern(powerLevelsId);
  return sortByMainline(g, nodes, pl).map((i) => g.id(i));
}
