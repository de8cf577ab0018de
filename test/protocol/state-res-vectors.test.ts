/**
 * Every case and unit vector of test/fixtures/vectors/state-res-v2-cases.json (encoding:
 * /work/shared/vectors/README-state-res.md), run against the real authorization rules.
 */
import { describe, expect, it } from "vitest";
import data from "../fixtures/vectors/state-res-v2-cases.json";
import type { AuthEvent } from "../../src/protocol/auth/types";
import { stateKey, type StateKey, type StateMap } from "../../src/protocol/events";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import {
  conflictedStateSubgraph,
  fullAuthChain,
  lexicographicalTopologicalSort,
  mainlineOrder,
  partitionStateSets,
  resolveState,
  reverseTopologicalPowerOrder,
  type StateResEventStore,
} from "../../src/protocol/state-res";

interface CompactEvent {
  id: string;
  t: string;
  sk?: string;
  s: string;
  c: Record<string, unknown>;
  prev: string[];
  auth: string[];
  ts: number;
  room?: string;
}
type WireState = Record<string, string>;
interface Check {
  at: string | null;
  state_sets?: WireState[];
  forward_extremities?: string[];
  state_sets_at_extremities?: WireState[];
  expected: WireState;
  expected_origin: string;
}
interface Case {
  name: string;
  room_version: string;
  algorithm: "v2.0" | "v2.1";
  events: CompactEvent[];
  checks: Check[];
}

const cases = data.cases as unknown as Case[];
const units = data.unit_vectors as unknown as Record<string, unknown>[];
const unit = (name: string): any => {
  const u = units.find((x) => x["name"] === name);
  if (!u) throw new Error(`no unit vector ${name}`);
  return u;
};

/** "type|state_key" (split on the first "|") → StateKey. */
function toKey(wire: string): StateKey {
  const i = wire.indexOf("|");
  return stateKey(wire.slice(0, i), wire.slice(i + 1));
}

/**
 * The authorization rules validate room version 12 room IDs (`!` + 43 characters of URL-safe base64, the create
 * event's ID). The fixture IDs are short names, so for v12 cases every event ID is renamed to such a string,
 * preserving the order of the IDs (the last tie-break of both orderings), and the room ID follows the create
 * event's new ID. Other versions keep the fixture IDs.
 */
function idRenaming(c: Case, version: RoomVersion): { to: (id: string) => string; from: (id: string) => string } {
  if (!version.roomIdFromCreateEvent) return { to: (id) => id, from: (id) => id };
  const sorted = [...new Set(c.events.map((e) => e.id))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const to = new Map<string, string>();
  const from = new Map<string, string>();
  sorted.forEach((id, rank) => {
    const renamed = "$" + "A".repeat(39) + String(rank).padStart(3, "0") + "A";
    to.set(id, renamed);
    from.set(renamed, id);
  });
  return { to: (id) => to.get(id) ?? id, from: (id) => from.get(id) ?? id };
}

const DEFAULT_ROOM_ID = "!room:example.com";

interface Loaded {
  version: RoomVersion;
  store: StateResEventStore;
  events: AuthEvent[];
  toMap(wire: WireState): StateMap;
  toWire(map: StateMap): WireState;
}

function load(c: Case): Loaded {
  const version = roomVersion(c.room_version);
  if (!version) throw new Error(`unknown room version ${c.room_version}`);
  expect(version.stateRes === "v2.1").toBe(c.algorithm === "v2.1");
  const rename = idRenaming(c, version);
  const byId = new Map<string, AuthEvent>();
  const events: AuthEvent[] = [];
  for (const e of c.events) {
    const ev: AuthEvent = {
      event_id: rename.to(e.id),
      type: e.t,
      sender: e.s,
      content: e.c as AuthEvent["content"],
      origin_server_ts: e.ts,
      prev_events: e.prev.map(rename.to),
      auth_events: e.auth.map(rename.to),
    };
    if (e.sk !== undefined) ev.state_key = e.sk;
    if (e.room !== undefined) {
      ev.room_id = version.roomIdFromCreateEvent ? "!" + rename.to("$" + e.room.slice(1)).slice(1) : e.room;
    } else if (!version.roomIdFromCreateEvent) {
      // synapse/simple_param_fork has no room IDs; the authorization rules require one (the same as the create
      // event's), so its events all get the same one.
      ev.room_id = DEFAULT_ROOM_ID;
    }
    byId.set(ev.event_id, ev);
    events.push(ev);
  }
  return {
    version,
    events,
    store: { getEvent: (id) => byId.get(id) },
    toMap: (wire) => new Map(Object.entries(wire).map(([k, v]) => [toKey(k), rename.to(v)])),
    toWire: (map) => {
      const out: WireState = {};
      for (const [k, v] of map) out[k.replace("\u0000", "|")] = rename.from(v);
      return out;
    },
  };
}

describe("state-res-v2-cases.json: cases", () => {
  it("has the documented number of cases and unit vectors", () => {
    expect(cases).toHaveLength(21);
    expect(units).toHaveLength(7);
  });

  for (const c of cases) {
    describe(c.name, () => {
      c.checks.forEach((check, n) => {
        const label = `check ${n} (at ${check.at ?? "-"}, ${check.expected_origin})`;
        if (check.state_sets) {
          it(`${label}: resolving the state sets gives the expected state`, () => {
            const l = load(c);
            const resolved = resolveState(check.state_sets!.map(l.toMap), l.version, l.store);
            expect(l.toWire(resolved)).toEqual(check.expected);
          });
        }
        if (check.state_sets_at_extremities) {
          it(`${label}: (a) resolving the states at the forward extremities`, () => {
            const l = load(c);
            const resolved = resolveState(check.state_sets_at_extremities!.map(l.toMap), l.version, l.store);
            expect(l.toWire(resolved)).toEqual(check.expected);
          });
          it(`${label}: (c) "atomic": one singleton state set per state event`, () => {
            const l = load(c);
            const sets: StateMap[] = l.events
              .filter((e) => typeof e.state_key === "string")
              .map((e) => new Map([[stateKey(e.type, e.state_key!), e.event_id]]));
            const resolved = resolveState(sets, l.version, l.store);
            expect(l.toWire(resolved)).toEqual(check.expected);
          });
        }
      });
    });
  }
});

/** Minimal events for the unit vectors: a state event per node with the given auth events. */
function graphStore(nodes: { id: string; auth: string[]; ts?: number; sender?: string; type?: string }[]): StateResEventStore {
  const byId = new Map<string, AuthEvent>();
  for (const n of nodes) {
    byId.set(n.id, {
      event_id: n.id,
      room_id: "!room:example.com",
      type: n.type ?? "m.test",
      state_key: n.id,
      sender: n.sender ?? "@u:example.com",
      content: {},
      origin_server_ts: n.ts ?? 0,
      prev_events: [],
      auth_events: n.auth,
    });
  }
  return { getEvent: (id) => byId.get(id) };
}

describe("state-res-v2-cases.json: unit vectors", () => {
  const v10 = roomVersion("10")!;

  it("gmsl/power_sort_tiebreak: sender power level desc, then ts asc, then event ID asc", () => {
    const u = unit("gmsl/power_sort_tiebreak");
    const input = u.input as { id: string; pl: number; ts: number }[];
    // One power levels event gives each event's sender the vector's level; no auth edges between the events.
    const users: Record<string, number> = {};
    for (const e of input) users[`@${e.id}:example.com`] = e.pl;
    const store = graphStore([
      { id: "$create", auth: [], type: "m.room.create", sender: "@creator:example.com" },
      ...input.map((e) => ({ id: e.id, auth: ["$create", "$pl"], ts: e.ts, sender: `@${e.id}:example.com` })),
    ]);
    const base = store.getEvent("$create")!;
    const pl: AuthEvent = { ...base, event_id: "$pl", type: "m.room.power_levels", state_key: "", content: { users }, auth_events: ["$create"] };
    const create: AuthEvent = { ...base, state_key: "", content: { creator: "@creator:example.com" } };
    const withPl: StateResEventStore = {
      getEvent: (id) => (id === "$pl" ? pl : id === "$create" ? create : store.getEvent(id)),
    };
    const shuffled = [...input].reverse().map((e) => e.id);
    expect(reverseTopologicalPowerOrder(shuffled, v10, withPl)).toEqual(u.expected_order);
  });

  it("synapse/lexicographical_topological_sort", () => {
    const u = unit("synapse/lexicographical_topological_sort");
    const graph = new Map(Object.entries(u.graph_node_to_prevs as Record<string, string[]>));
    expect(lexicographicalTopologicalSort(graph)).toEqual(u.expected_order);
    // The same graph as auth events, all senders at the same level and the same timestamp (ruma's variant).
    const store = graphStore([...graph].map(([id, auth]) => ({ id, auth })));
    expect(reverseTopologicalPowerOrder([...graph.keys()].reverse(), v10, store)).toEqual(u.expected_order);
  });

  it("gmsl/auth_chain: full auth chain of a set of events", () => {
    const u = unit("gmsl/auth_chain");
    const store = graphStore(Object.entries(u.auth_graph as Record<string, string[]>).map(([id, auth]) => ({ id, auth })));
    for (const k of u.cases as { start: string[]; full_auth_chain: string[] }[]) {
      expect([...fullAuthChain(k.start, store)].sort()).toEqual([...k.full_auth_chain].sort());
    }
  });

  it("gmsl/conflicted_subgraph_v2_1: conflicted state subgraph", () => {
    const u = unit("gmsl/conflicted_subgraph_v2_1");
    const graph = unit("gmsl/auth_chain").auth_graph as Record<string, string[]>;
    expect(u.auth_graph).toBe("same as gmsl/auth_chain");
    const store = graphStore(Object.entries(graph).map(([id, auth]) => ({ id, auth })));
    const ks = u.cases as { start: string[]; conflicted: string[]; full_auth_chain: string[]; conflicted_subgraph: string[] }[];
    for (const k of ks) {
      expect([...fullAuthChain(k.start, store)].sort()).toEqual([...k.full_auth_chain].sort());
      expect([...conflictedStateSubgraph(k.conflicted, store)].sort()).toEqual([...k.conflicted_subgraph].sort());
    }
  });

  it("gmsl/reverse_topological_auth_order", () => {
    const u = unit("gmsl/reverse_topological_auth_order");
    const store = graphStore(u.events as { id: string; ts: number; auth: string[] }[]);
    const ids = (u.events as { id: string }[]).map((e) => e.id);
    expect(reverseTopologicalPowerOrder([...ids].reverse(), v10, store)).toEqual(u.expected_order);
  });

  it("ruma/split_conflicted: a key missing from any set is conflicted", () => {
    const u = unit("ruma/split_conflicted");
    for (const k of u.cases as { sets: WireState[]; unconflicted: WireState; conflicted: Record<string, string[]> }[]) {
      const { unconflicted, conflicted } = partitionStateSets(k.sets.map((s) => new Map(Object.entries(s).map(([a, b]) => [toKey(a), b]))));
      expect(Object.fromEntries([...unconflicted].map(([a, b]) => [a.replace("\u0000", "|"), b]))).toEqual(k.unconflicted);
      expect(Object.fromEntries([...conflicted].map(([a, b]) => [a.replace("\u0000", "|"), [...b].sort()]))).toEqual(
        Object.fromEntries(Object.entries(k.conflicted).map(([a, b]) => [a, [...b].sort()])),
      );
    }
  });

  it("ruma/mainline_no_pl_ancestor_first: no mainline ancestor sorts first, then older anchors", () => {
    const u = unit("ruma/mainline_no_pl_ancestor_first");
    const pl = (id: string, auth: string[], ts: number) => ({ id, auth, ts, type: "m.room.power_levels" });
    // Timestamps deliberately in the opposite order, so only the mainline positions can explain the result.
    const store = graphStore([
      pl("$PL1", [], 1),
      pl("$PL2", ["$PL1"], 2),
      pl("$PL3", ["$PL2"], 3),
      { id: "$msg-old", auth: ["$PL1"], ts: 20 },
      { id: "$msg-new", auth: ["$PL3"], ts: 10 },
      { id: "$msg-no-pl", auth: [], ts: 30 },
    ]);
    // graphStore gives every node its own ID as state key; the PL events need "" to count as power levels.
    const fixed: StateResEventStore = {
      getEvent: (id) => {
        const e = store.getEvent(id);
        return e && e.type === "m.room.power_levels" ? { ...e, state_key: "" } : e;
      },
    };
    expect(mainlineOrder(["$msg-new", "$msg-old", "$msg-no-pl"], "$PL3", fixed)).toEqual(u.expected_order);
  });
});
