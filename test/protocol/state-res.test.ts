/**
 * Unit tests of the pieces of state resolution (src/protocol/state-res), v2 vs v2.1, partial state, store hooks,
 * and a sanity run on two forks of a 10 000-member room. The spec/implementation vectors are in
 * state-res-vectors.test.ts.
 */
import { describe, expect, it } from "vitest";
import { authEventTypesFor, checkEventAuth } from "../../src/protocol/auth";
import type { AuthEvent, AuthStateLookup } from "../../src/protocol/auth/types";
import { stateKey, type StateKey, type StateMap } from "../../src/protocol/events";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import {
  authChainDifference,
  conflictedStateSubgraph,
  EventGraph,
  fullAuthChain,
  isAuthKeyFor,
  isPowerEvent,
  iterativeAuthChecks,
  iterativeAuthLookup,
  kahnSort,
  mainlineOrder,
  partitionStateSets,
  resolveState,
  resolveStateTrace,
  reverseTopologicalPowerOrder,
  selectPowerEvents,
  senderPowerLevel,
  type CheckEventAuth,
  type StateResEventStore,
  UnsupportedStateResolution,
} from "../../src/protocol/state-res";
import { buildForkedRoom, RoomBuilder } from "../helpers/state-res-room";

const V = (id: string): RoomVersion => roomVersion(id)!;
const k = (type: string, key = ""): StateKey => stateKey(type, key);
const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bare state events with the given auth edges (state key = own ID). */
function dagStore(nodes: Record<string, string[]>, ts: Record<string, number> = {}): StateResEventStore {
  const byId = new Map<string, AuthEvent>();
  for (const [id, auth] of Object.entries(nodes)) {
    byId.set(id, {
      event_id: id,
      room_id: "!r:x",
      type: "m.test",
      state_key: id,
      sender: "@u:x",
      content: {},
      origin_server_ts: ts[id] ?? 0,
      prev_events: [],
      auth_events: auth,
    });
  }
  return { getEvent: (id) => byId.get(id) };
}

/** A random DAG: node i cites up to 3 earlier nodes. */
function randomDag(n: number, seed: number): Record<string, string[]> {
  const r = rng(seed);
  const nodes: Record<string, string[]> = {};
  for (let i = 0; i < n; i++) {
    const auth = new Set<string>();
    const c = i === 0 ? 0 : Math.floor(r() * 4);
    for (let j = 0; j < c; j++) auth.add(`n${Math.floor(r() * i)}`);
    nodes[`n${i}`] = [...auth];
  }
  return nodes;
}

describe("partitionStateSets", () => {
  it("splits keys equal in every set from the rest; values listed once each", () => {
    const a: StateMap = new Map([[k("a"), "1"], [k("b"), "2"], [k("c"), "3"]]);
    const b: StateMap = new Map([[k("a"), "1"], [k("b"), "9"], [k("d"), "4"]]);
    const c: StateMap = new Map([[k("a"), "1"], [k("b"), "2"], [k("c"), "3"]]);
    const { unconflicted, conflicted } = partitionStateSets([a, b, c]);
    expect([...unconflicted]).toEqual([[k("a"), "1"]]);
    expect(conflicted.get(k("b"))).toEqual(["2", "9"]);
    expect(conflicted.get(k("c"))).toEqual(["3"]); // missing from b
    expect(conflicted.get(k("d"))).toEqual(["4"]); // missing from a and c
    expect(conflicted.size).toBe(3);
  });

  it("zero sets give nothing; one set is entirely unconflicted", () => {
    expect(partitionStateSets([]).unconflicted.size).toBe(0);
    const one: StateMap = new Map([[k("a"), "1"]]);
    const p = partitionStateSets([one]);
    expect([...p.unconflicted]).toEqual([[k("a"), "1"]]);
    expect(p.conflicted.size).toBe(0);
  });
});

describe("auth chains", () => {
  it("fullAuthChain excludes the start events unless one is an ancestor of another", () => {
    const store = dagStore({ a: [], b: ["a"], c: ["b"], d: ["a"] });
    expect(sorted(fullAuthChain(["c"], store))).toEqual(["a", "b"]);
    expect(sorted(fullAuthChain(["c", "b", "d"], store))).toEqual(["a", "b"]);
    expect(sorted(fullAuthChain(["a"], store))).toEqual([]);
  });

  it("authChainDifference matches ∪Cᵢ − ∩Cᵢ on random DAGs, with and without the unconflicted shortcut", () => {
    for (let seed = 1; seed <= 25; seed++) {
      const nodes = randomDag(80, seed);
      const store = dagStore(nodes);
      const r = rng(seed * 7919);
      const ids = Object.keys(nodes);
      const setCount = 2 + Math.floor(r() * 3);
      const common = ids.filter(() => r() < 0.2);
      const sets: StateMap[] = [];
      for (let s = 0; s < setCount; s++) {
        const m: StateMap = new Map(common.map((id) => [k("t", id), id]));
        for (const id of ids) if (r() < 0.1) m.set(k("t", id), id);
        // Same key, different values across sets.
        m.set(k("shared"), ids[Math.floor(r() * ids.length)]!);
        sets.push(m);
      }
      const chains = sets.map((s) => fullAuthChain(s.values(), store));
      const union = new Set(chains.flatMap((c) => [...c]));
      const expected = [...union].filter((id) => !chains.every((c) => c.has(id)));
      expect(sorted(authChainDifference(sets, store)), `seed ${seed}`).toEqual(sorted(expected));
      expect(sorted(authChainDifference(sets, store, partitionStateSets(sets))), `seed ${seed} (shortcut)`).toEqual(sorted(expected));
    }
  });

  it("authChainDifference of fewer than two sets is empty", () => {
    const store = dagStore({ a: [], b: ["a"] });
    expect(authChainDifference([new Map([[k("b"), "b"]])], store).size).toBe(0);
  });
});

describe("conflictedStateSubgraph (v2.1)", () => {
  it("matches the path definition on random DAGs", () => {
    for (let seed = 1; seed <= 25; seed++) {
      const nodes = randomDag(60, seed);
      const store = dagStore(nodes);
      const r = rng(seed * 31);
      const ids = Object.keys(nodes);
      const conflicted = ids.filter(() => r() < 0.12);
      const ancestorsOf = new Map(ids.map((id) => [id, fullAuthChain([id], store)]));
      const expected = ids.filter(
        (v) =>
          conflicted.includes(v) ||
          (conflicted.some((c1) => ancestorsOf.get(c1)!.has(v)) && conflicted.some((c2) => ancestorsOf.get(v)!.has(c2))),
      );
      expect(sorted(conflictedStateSubgraph(conflicted, store)), `seed ${seed}`).toEqual(sorted(expected));
    }
  });

  it("a missing event ends the walk without failing", () => {
    const store = dagStore({ a: [], c: ["b"] }); // b is unknown
    expect(sorted(conflictedStateSubgraph(["a", "c"], store))).toEqual(["a", "c"]);
  });
});

describe("power events and sender power levels", () => {
  const ev = (type: string, state_key: string | undefined, sender: string, content: AuthEvent["content"]): AuthEvent => ({
    event_id: "$x",
    room_id: "!r:x",
    type,
    ...(state_key === undefined ? {} : { state_key }),
    sender,
    content,
    origin_server_ts: 0,
    prev_events: [],
    auth_events: [],
  });

  it("isPowerEvent: power levels, join rules, kicks and bans", () => {
    expect(isPowerEvent(ev("m.room.power_levels", "", "@a:x", {}))).toBe(true);
    expect(isPowerEvent(ev("m.room.join_rules", "", "@a:x", {}))).toBe(true);
    expect(isPowerEvent(ev("m.room.member", "@b:x", "@a:x", { membership: "leave" }))).toBe(true);
    expect(isPowerEvent(ev("m.room.member", "@b:x", "@a:x", { membership: "ban" }))).toBe(true);
    expect(isPowerEvent(ev("m.room.member", "@a:x", "@a:x", { membership: "leave" }))).toBe(false);
    expect(isPowerEvent(ev("m.room.member", "@a:x", "@a:x", { membership: "ban" }))).toBe(false);
    expect(isPowerEvent(ev("m.room.member", "@b:x", "@a:x", { membership: "invite" }))).toBe(false);
    expect(isPowerEvent(ev("m.room.topic", "", "@a:x", {}))).toBe(false);
    expect(isPowerEvent(ev("m.room.create", "", "@a:x", {}))).toBe(false);
    expect(isPowerEvent(ev("m.room.power_levels", undefined, "@a:x", {}))).toBe(false);
  });

  function levelOf(b: RoomBuilder, id: string): number {
    const g = new EventGraph(b.store());
    return senderPowerLevel(g, g.intern(id), b.version);
  }

  it("reads the power levels event among the event's own auth events", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x", { "@bob:x": 40 });
    b.join(s, "@bob:x", "$bob");
    b.join(s, "@carol:x", "$carol");
    const before = new Map(s);
    b.send(s, { id: "$pl1", type: "m.room.power_levels", state_key: "", sender: "@alice:x", content: { users: { "@alice:x": 100, "@bob:x": 70 }, users_default: 5 } });
    const t1 = b.send(before, { id: "$t1", type: "m.room.topic", state_key: "", sender: "@bob:x", content: {} });
    const t2 = b.send(s, { id: "$t2", type: "m.room.topic", state_key: "", sender: "@bob:x", content: {} });
    const t3 = b.send(s, { id: "$t3", type: "m.room.topic", state_key: "", sender: "@carol:x", content: {} });
    expect([t1, t2, t3].map((e) => levelOf(b, e.event_id))).toEqual([40, 70, 5]);
    expect(levelOf(b, "$pl0")).toBe(100); // no power levels yet: the creator has 100
    expect(levelOf(b, "$unknown")).toBe(0);
  });

  it("v12: creators are infinitely powerful; pre-v10 string levels count", () => {
    const b12 = new RoomBuilder("12");
    const s12 = b12.bootstrap("@alice:x", { "@bob:x": 50 });
    b12.join(s12, "@bob:x");
    const byAlice = b12.send(s12, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const byBob = b12.send(s12, { type: "m.room.topic", state_key: "", sender: "@bob:x", content: {} });
    expect(levelOf(b12, byAlice.event_id)).toBe(Infinity);
    expect(levelOf(b12, byBob.event_id)).toBe(50);

    const b5 = new RoomBuilder("5");
    const s5 = b5.bootstrap("@alice:x");
    b5.join(s5, "@bob:x");
    b5.send(s5, { type: "m.room.power_levels", state_key: "", sender: "@alice:x", content: { users: { "@alice:x": 100, "@bob:x": "30" } } });
    const t = b5.send(s5, { type: "m.room.topic", state_key: "", sender: "@bob:x", content: {} });
    expect(levelOf(b5, t.event_id)).toBe(30);
  });
});

describe("reverse topological power ordering", () => {
  it("kahnSort picks the smallest available node at each step", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const nodes = randomDag(40, seed);
      const ids = Object.keys(nodes);
      const index = new Map(ids.map((id, i) => [id, i]));
      const pre = ids.map((id) => nodes[id]!.map((a) => index.get(a)!));
      const r = rng(seed);
      const weight = ids.map(() => Math.floor(r() * 5));
      const less = (a: number, b: number) => (weight[a] !== weight[b] ? weight[a]! < weight[b]! : a < b);
      // Naive reference: repeatedly take the smallest node whose prerequisites are all placed.
      const placed = new Set<number>();
      const expected: number[] = [];
      while (expected.length < ids.length) {
        let best = -1;
        for (let i = 0; i < ids.length; i++) {
          if (placed.has(i) || !pre[i]!.every((p) => placed.has(p))) continue;
          if (best < 0 || less(i, best)) best = i;
        }
        placed.add(best);
        expected.push(best);
      }
      expect(kahnSort(ids.length, (i) => pre[i]!, less)).toEqual(expected);
    }
  });

  it("orders by auth ancestry also through events outside the sorted set", () => {
    // x cites n, n cites y; only x and y are sorted. x would win every tie-break, but y is its ancestor.
    const store = dagStore({ y: [], n: ["y"], x: ["n"] }, { y: 50, n: 10, x: 1 });
    expect(reverseTopologicalPowerOrder(["x", "y"], V("10"), store)).toEqual(["y", "x"]);
    // Without the path the tie-break decides.
    const loose = dagStore({ y: [], x: [] }, { y: 50, x: 1 });
    expect(reverseTopologicalPowerOrder(["x", "y"], V("10"), loose)).toEqual(["x", "y"]);
  });

  it("higher sender power level comes first among unrelated events", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x", { "@bob:x": 50 });
    b.join(s, "@bob:x");
    const late = b.send(s, { type: "m.room.join_rules", state_key: "", sender: "@alice:x", content: { join_rule: "invite" }, ts: 1000 });
    const early = b.send(new Map(s), { type: "m.room.join_rules", state_key: "", sender: "@bob:x", content: { join_rule: "public" }, ts: 10 });
    expect(reverseTopologicalPowerOrder([early.event_id, late.event_id], b.version, b.store())).toEqual([late.event_id, early.event_id]);
  });

  it("selectPowerEvents adds the conflicted auth ancestors of power events only", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const bob = b.join(s, "@bob:x");
    const kick = b.member(s, "@alice:x", "@bob:x", "leave");
    const topic = b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const g = new EventGraph(b.store());
    const full = [bob.event_id, kick.event_id, topic.event_id].map((id) => g.intern(id));
    expect(sorted(selectPowerEvents(g, full).map((i) => g.id(i)))).toEqual(sorted([bob.event_id, kick.event_id]));
  });

  it("selectPowerEvents follows the whole auth chain, also through events outside the full conflicted set", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const bob = b.join(s, "@bob:x");
    const bobAgain = b.send(s, { type: "m.room.member", state_key: "@bob:x", sender: "@bob:x", content: { membership: "join", displayname: "B" } });
    const kick = b.member(s, "@alice:x", "@bob:x", "leave"); // cites bobAgain, which cites bob
    expect(kick.auth_events).toContain(bobAgain.event_id);
    const g = new EventGraph(b.store());
    const full = [kick.event_id, bob.event_id].map((id) => g.intern(id));
    expect(sorted(selectPowerEvents(g, full).map((i) => g.id(i)))).toEqual(sorted([bob.event_id, kick.event_id]));
  });
});

describe("mainline ordering", () => {
  const pl = (id: string, auth: string[]) => [id, auth] as const;
  function store(): StateResEventStore {
    const base = dagStore(
      Object.fromEntries([pl("P0", []), pl("P1", ["P0"]), pl("P2", ["P1"]), pl("Q", ["P1"]), ["a", ["P2"]], ["b", ["P0"]], ["c", ["Q"]], ["d", ["X"]], ["e", []]]),
      { a: 1, b: 2, c: 3, d: 4, e: 5 },
    );
    return {
      getEvent: (id) => {
        const e = base.getEvent(id);
        return e && /^(P\d|Q)$/.test(id) ? { ...e, type: "m.room.power_levels", state_key: "" } : e;
      },
    };
  }

  it("sorts by mainline position (further first, none first of all), then ts, then ID", () => {
    // Mainline of P2: P2 (0), P1 (1), P0 (2). a→P2: 0; b→P0: 2; c→Q→P1: 1; d cites an unknown event, e nothing: ∞.
    expect(mainlineOrder(["a", "b", "c", "d", "e"], "P2", store())).toEqual(["d", "e", "b", "c", "a"]);
  });

  it("without a power levels event every position is ∞ (ts, then ID)", () => {
    expect(mainlineOrder(["c", "a", "b"], undefined, store())).toEqual(["a", "b", "c"]);
  });

  it("ties on position and ts fall back to the event ID; missing events are dropped", () => {
    const s = store();
    const twin: StateResEventStore = {
      getEvent: (id) => (id === "a2" ? { ...s.getEvent("a")!, event_id: "a2" } : s.getEvent(id)),
    };
    expect(mainlineOrder(["a2", "a", "zz"], "P2", twin)).toEqual(["a", "a2"]);
  });
});

describe("iterative auth checks", () => {
  it("the lookup prefers the partial state for selected keys and falls back to the event's auth events", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const oldState = new Map(s);
    b.join(s, "@bob:x");
    const topic = b.send(oldState, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const newPl = b.send(s, { id: "$pl1", type: "m.room.power_levels", state_key: "", sender: "@alice:x", content: { users: { "@alice:x": 100 } } });
    const g = new EventGraph(b.store());
    const partial: StateMap = new Map([[k("m.room.power_levels"), newPl.event_id]]);
    const lookup = iterativeAuthLookup(g, g.intern(topic.event_id), partial, b.version);
    expect(lookup("m.room.power_levels", "")?.event_id).toBe("$pl1"); // from the partial state
    expect(lookup("m.room.create", "")?.event_id).toBe("$create"); // from auth_events
    expect(lookup("m.room.member", "@alice:x")?.event_id).toBe(s.get(k("m.room.member", "@alice:x")));
    expect(lookup("m.room.member", "@bob:x")).toBeUndefined(); // not selected, not cited
  });

  it("a key the auth events selection does not pick is never read from the partial state", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const jr = s.get(k("m.room.join_rules"))!;
    const topic = b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const g = new EventGraph(b.store());
    const lookup = iterativeAuthLookup(g, g.intern(topic.event_id), new Map([[k("m.room.join_rules"), jr]]), b.version);
    expect(lookup("m.room.join_rules", "")).toBeUndefined();
  });

  it("isAuthKeyFor agrees with the auth events selection", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const events = [
      b.join(s, "@bob:x"),
      b.member(s, "@alice:x", "@carol:x", "invite"),
      b.member(s, "@alice:x", "@bob:x", "ban"),
      b.send(s, { type: "m.room.member", state_key: "@dan:x", sender: "@dan:x", content: { membership: "join", join_authorised_via_users_server: "@alice:x" } }),
      b.send(s, { type: "m.room.member", state_key: "@eve:x", sender: "@alice:x", content: { membership: "invite", third_party_invite: { signed: { token: "tok" } } } }),
      b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} }),
    ];
    const candidates: [string, string][] = [
      ["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""], ["m.room.topic", ""],
      ["m.room.member", "@alice:x"], ["m.room.member", "@bob:x"], ["m.room.member", "@carol:x"], ["m.room.member", "@dan:x"],
      ["m.room.member", "@eve:x"], ["m.room.third_party_invite", "tok"], ["m.room.third_party_invite", "other"],
    ];
    for (const version of [V("7"), V("10"), V("12")]) {
      for (const e of events) {
        const selected = new Set(authEventTypesFor(e, version).map(([t, sk]) => `${t}|${sk}`));
        for (const [t, sk] of candidates) {
          expect(isAuthKeyFor(e, t, sk, version), `${version.id} ${e.type} ${e.state_key} ${t}|${sk}`).toBe(selected.has(`${t}|${sk}`));
        }
      }
    }
  });

  it("rejected events are never used as auth events", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const topic = b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const plId = s.get(k("m.room.power_levels"))!;
    const store: StateResEventStore = { ...b.store(), isRejected: (id) => id === plId };
    const g = new EventGraph(store);
    const lookup = iterativeAuthLookup(g, g.intern(topic.event_id), new Map([[k("m.room.power_levels"), plId]]), b.version);
    expect(lookup("m.room.power_levels", "")).toBeUndefined();
    expect(lookup("m.room.create", "")).toBeDefined();
  });

  it("v12: the create event comes from the room ID", () => {
    const b = new RoomBuilder("12");
    const s = b.bootstrap("@alice:x");
    const topic = b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    expect(topic.auth_events).not.toContain(s.get(k("m.room.create")));
    const g = new EventGraph(b.store());
    expect(iterativeAuthLookup(g, g.intern(topic.event_id), new Map(), b.version)("m.room.create", "")?.event_id).toBe(
      s.get(k("m.room.create")),
    );
  });

  it("applies allowed events in order, skips rejected, missing and non-state events", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const start = new Map(s);
    const t1 = b.send(s, { type: "m.room.topic", state_key: "", sender: "@alice:x", content: { topic: "1" } });
    const t2 = b.send(s, { type: "m.room.topic", state_key: "", sender: "@stranger:x", content: { topic: "2" } });
    const msg = b.send(s, { type: "m.room.message", sender: "@alice:x", content: {} });
    const seen: string[] = [];
    const spy: CheckEventAuth = (e, st, v) => {
      seen.push(e.event_id);
      return checkEventAuth(e, st, v);
    };
    const out = iterativeAuthChecks([t1.event_id, "$missing", msg.event_id, t2.event_id], start, b.version, b.store(), spy);
    expect(out.get(k("m.room.topic"))).toBe(t1.event_id); // the stranger is not joined
    expect(seen).toEqual([t1.event_id, t2.event_id]);
    expect(start.has(k("m.room.topic"))).toBe(false); // input not modified
  });

  it("a throwing auth check counts as a rejection", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const t1 = b.send(new Map(s), { type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const out = iterativeAuthChecks([t1.event_id], s, b.version, b.store(), () => {
      throw new Error("boom");
    });
    expect(out.has(k("m.room.topic"))).toBe(false);
  });
});

describe("resolveState", () => {
  it("room version 1 is not supported", () => {
    const b = new RoomBuilder("10");
    const s = b.bootstrap("@alice:x");
    const err = (() => {
      try {
        resolveState([s, new Map()], V("1"), b.store());
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UnsupportedStateResolution);
    expect(err).toMatchObject({ roomVersion: "1", algorithm: "v1" });
  });

  it("no conflict: the common state, without reading any event", () => {
    const s: StateMap = new Map([[k("m.room.create"), "$c"], [k("m.room.topic"), "$t"]]);
    const store: StateResEventStore = {
      getEvent: () => {
        throw new Error("should not be called");
      },
    };
    expect(resolveState([s, new Map(s)], V("10"), store)).toEqual(s);
    expect(resolveState([s], V("12"), store)).toEqual(s);
    expect(resolveState([], V("10"), store)).toEqual(new Map());
  });

  it("the result does not depend on the order of the state sets", () => {
    for (const version of ["10", "12"]) {
      const room = buildForkedRoom({ members: 60, version, forkJoins: 5, forkLeaves: 5 });
      const [a, b] = room.forks;
      const ab = resolveState([a, b], room.version, room.store);
      const ba = resolveState([b, a], room.version, room.store);
      const aab = resolveState([a, room.base, b], room.version, room.store);
      const bba = resolveState([b, room.base, a], room.version, room.store);
      expect(ba).toEqual(ab);
      expect(bba).toEqual(aab);
    }
  });

  it("a power levels change wins over events it no longer allows (ban vs power levels)", () => {
    for (const version of ["10", "12"]) {
      const b = new RoomBuilder(version);
      const base = b.bootstrap("@alice:x", { "@mod:x": 50 });
      b.join(base, "@mod:x");
      b.join(base, "@bob:x");
      const a = new Map(base);
      const demote = b.send(a, {
        type: "m.room.power_levels", state_key: "", sender: "@alice:x",
        content: { users: b.version.privilegedCreators ? {} : { "@alice:x": 100 } },
      });
      const m = new Map(base);
      const ban = b.member(m, "@mod:x", "@bob:x", "ban");
      const out = resolveState([a, m], b.version, b.store());
      expect(out.get(k("m.room.power_levels")), version).toBe(demote.event_id);
      // The ban was sent by a moderator the resolved power levels no longer allow to ban.
      expect(out.get(k("m.room.member", "@bob:x")), version).not.toBe(ban.event_id);
      expect(out.get(k("m.room.member", "@bob:x")), version).toBe(base.get(k("m.room.member", "@bob:x")));
    }
  });
});

describe("v2 vs v2.1", () => {
  it("v2.1 adds the conflicted state subgraph and starts the power event checks from an empty map", () => {
    const v11 = buildForkedRoom({ members: 30, version: "11", forkJoins: 3, forkLeaves: 3 });
    const v12 = buildForkedRoom({ members: 30, version: "12", forkJoins: 3, forkLeaves: 3 });
    const t11 = resolveStateTrace(v11.forks, v11.version, v11.store, checkEventAuth);
    const t12 = resolveStateTrace(v12.forks, v12.version, v12.store, checkEventAuth);
    expect(t11.algorithm).toBe("v2");
    expect(t12.algorithm).toBe("v2.1");
    expect(t11.conflictedSubgraph.size).toBe(0);
    expect(t12.conflictedSubgraph.size).toBeGreaterThan(0);
    for (const id of t12.conflictedSubgraph) expect(t12.fullConflictedSet.has(id)).toBe(true);
    // v2: the partially resolved state contains the unconflicted state (e.g. the create event and joined members).
    const createKey = k("m.room.create");
    expect(t11.partialState.get(createKey)).toBe(t11.unconflicted.get(createKey));
    // v2.1: it only contains what the power events put there.
    expect(t12.partialState.has(createKey)).toBe(false);
    for (const id of t12.partialState.values()) expect(t12.powerEvents).toContain(id);
  });

  it("the conflicted state subgraph pulls in events between conflicted ones (not in the auth difference)", () => {
    // P0 ← P1 ← P2 (power levels, P2 current in both sets) and T (topic, cites P2). T and P0 are the conflicted
    // values of one key. P1 is in the auth chain of P2, which both sets hold, so it is in neither the conflicted
    // state set nor the auth difference; but it lies on the path T → P2 → P1 → P0 between conflicted events.
    const b = new RoomBuilder("12");
    const s = b.bootstrap("@alice:x");
    const p0 = s.get(k("m.room.power_levels"))!;
    const pl = (id: string) => b.send(s, { id, type: "m.room.power_levels", state_key: "", sender: "@alice:x", content: { users: {} } });
    pl("$p1");
    pl("$p2");
    const t = b.send(new Map(s), { id: "$t", type: "m.room.topic", state_key: "", sender: "@alice:x", content: {} });
    const one = new Map(s);
    const two = new Map(s);
    two.set(k("m.room.topic", "x"), p0); // P0 as a conflicted value under another key
    one.set(k("m.room.topic", "x"), t.event_id);
    const trace = resolveStateTrace([one, two], b.version, b.store(), checkEventAuth);
    expect(sorted(trace.conflictedSubgraph)).toEqual(sorted(["$t", "$p2", "$p1", p0]));
    expect(trace.authDifference.has("$p1")).toBe(false);
  });
});

describe("partial state (events missing from the store)", () => {
  const room = () => buildForkedRoom({ members: 40, version: "11", forkJoins: 4, forkLeaves: 4 });

  it("a missing conflicted event is treated as absent", () => {
    const r = room();
    const [a, b] = r.forks;
    const topicA = a.get(k("m.room.topic"))!;
    const topicB = b.get(k("m.room.topic"))!;
    expect(resolveState([a, b], r.version, r.store).get(k("m.room.topic"))).toBe(topicA);
    const partial = r.builder.store(new Set([topicA]));
    expect(resolveState([a, b], r.version, partial).get(k("m.room.topic"))).toBe(topicB);
  });

  it("unconflicted entries are kept even when the store lacks them", () => {
    const r = room();
    const key = k("m.room.member", "@u20:example.org");
    const id = r.base.get(key)!;
    expect(resolveState(r.forks, r.version, r.builder.store(new Set([id]))).get(key)).toBe(id);
  });

  it("missing auth events (even the create and power levels events) do not crash", () => {
    const r = room();
    const hidden = new Set([r.base.get(k("m.room.create"))!, r.base.get(k("m.room.power_levels"))!]);
    const out = resolveState(r.forks, r.version, r.builder.store(hidden));
    for (const [key, id] of partitionStateSets(r.forks).unconflicted) expect(out.get(key)).toBe(id);
  });

  it("an empty store yields the unconflicted state map", () => {
    const r = room();
    const out = resolveState(r.forks, r.version, { getEvent: () => undefined });
    expect(out).toEqual(partitionStateSets(r.forks).unconflicted);
  });
});

describe("store hooks", () => {
  it("authChainDifference / conflictedStateSubgraph hooks replace the walks and give the same result", () => {
    for (const version of ["11", "12"]) {
      const r = buildForkedRoom({ members: 50, version, forkJoins: 5, forkLeaves: 5 });
      const plain = resolveState(r.forks, r.version, r.store);
      const calls = { diff: 0, sub: 0 };
      const hooked: StateResEventStore = {
        getEvent: r.store.getEvent,
        authChainDifference: (sets) => {
          calls.diff++;
          return authChainDifference(sets, r.store);
        },
        conflictedStateSubgraph: (conflicted) => {
          calls.sub++;
          return conflictedStateSubgraph(conflicted, r.store);
        },
      };
      expect(resolveState(r.forks, r.version, hooked)).toEqual(plain);
      expect(calls).toEqual({ diff: 1, sub: version === "12" ? 1 : 0 });
    }
  });

  it("the checkEventAuth option replaces the authorization rules", () => {
    const r = buildForkedRoom({ members: 20, version: "11", forkJoins: 2, forkLeaves: 2 });
    const denyAll: CheckEventAuth = () => ({ allowed: false, reason: "no" });
    const out = resolveState(r.forks, r.version, r.store, { checkEventAuth: denyAll });
    expect(out).toEqual(partitionStateSets(r.forks).unconflicted);
  });
});

describe("two forks of a 10 000-member room (sanity, not timed)", () => {
  for (const version of ["11", "12"]) {
    it(`room version ${version}`, () => {
      const r = buildForkedRoom({ members: 10_000, version });
      const [a, b] = r.forks;
      const out = resolveState([a, b], r.version, r.store);
      const member = (u: string) => r.builder.events.get(out.get(k("m.room.member", u))!)!;
      // Fork A's power levels (sent by the creator) and topic (its power levels anchor is newer) win; B's name stays.
      expect(out.get(k("m.room.power_levels"))).toBe(a.get(k("m.room.power_levels")));
      expect(out.get(k("m.room.topic"))).toBe(a.get(k("m.room.topic")));
      expect(out.get(k("m.room.name"))).toBe(b.get(k("m.room.name")));
      // Joins of both forks, leaves of A, kicks of B.
      expect(member("@a0:example.org").content["membership"]).toBe("join");
      expect(member("@b49:example.org").content["membership"]).toBe("join");
      expect(member("@u1:example.org").content["membership"]).toBe("leave");
      expect(member("@u51:example.org")).toMatchObject({ sender: r.moderator, content: { membership: "leave" } });
      expect(member("@u9000:example.org").content["membership"]).toBe("join");
      expect(out.size).toBe(a.size + 50 + 1); // + B's joins + B's name
      expect(resolveState([b, a], r.version, r.store)).toEqual(out);
    });
  }
});

// Keep the AuthStateLookup type referenced for readers of the iterative-checks tests.
export type { AuthStateLookup };
