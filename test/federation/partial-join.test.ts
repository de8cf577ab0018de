/**
 * Faster joins across the three real homeservers of the harness (docs/faster-joins.md), after Complement's
 * TestSendJoinPartialStateResponse and TestPartialStateJoin (complement-assertions.md §5):
 * - resident side: send_join v2 with `omit_members` answers with the state minus the members (keeping the
 *   heroes, the joiner's own membership, the members the remaining state names), an auth chain without what
 *   `state` holds, `servers_in_room`, both spellings; refusals while we are partial ourselves;
 * - joining side: a partial join through the client API returns at once, the room is partial until the resync
 *   (held here at will) completes; eager sync omits it and wakes when it is done, lazy sync shows it with every
 *   timeline sender's membership; /members, /joined_members and /state wait (cancellably).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { api, clientRequest, createRoom, e, enc, newUser, sendText, V3, waitFor } from "./servers";
import {
  awaitFullyStated, FederationGate, LAZY, populatedRoom, rawJoin, room, syncWith, timelineFlags, users,
} from "./partial-join-helpers";
import { request } from "../client/helpers";

let gate: FederationGate | undefined;

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});
afterEach(() => {
  gate?.open();
  gate?.restore();
  gate = undefined;
});

type Ev = { type: string; state_key?: string; sender: string; content: Record<string, unknown>; event_id: string };

describe("resident side: send_join with omit_members", () => {
  it("answers with the state minus the members but the heroes, an auth chain without duplicates, servers_in_room (both spellings)", async () => {
    const alice = await newUser("hs2.test", "alice");
    const heroes = await users("hs2.test", 4, "hero");
    const others = await users("hs3.test", 3, "other");
    // Unnamed room: alice and the next four members are its heroes (five); the hs3 members come later.
    const roomId = await populatedRoom(alice, [...heroes, ...others]);
    const charlie = `@charlie${Date.now().toString(36)}:test.local`;

    const { answer } = await rawJoin("hs2.test", roomId, charlie, { omit_members: "true" });
    expect(answer.members_omitted).toBe(true);
    expect(answer["org.matrix.msc3706.partial_state"]).toBe(true);
    const state = answer.state as Ev[];
    const keys = state.map((ev) => `${ev.type}|${ev.state_key}`).sort();
    const full = await api<Ev[]>(alice, "GET", `${V3}/rooms/${enc(roomId)}/state`);
    const heroIds = [alice, ...heroes].map((u) => u.userId);
    const expected = full
      .filter((ev) => ev.type !== "m.room.member" || heroIds.includes(ev.state_key!))
      .map((ev) => `${ev.type}|${ev.state_key}`)
      .sort();
    expect(keys).toEqual(expected);
    expect(keys).toEqual(expect.arrayContaining(["m.room.create|", "m.room.power_levels|", "m.room.join_rules|", "m.room.history_visibility|"]));
    // Everything the state and the join need is in `state` already.
    expect(answer.auth_chain).toEqual([]);
    expect(answer.servers_in_room).toEqual(["hs2.test", "hs3.test"]);
    expect(answer["org.matrix.msc3706.servers_in_room"]).toEqual(["hs2.test", "hs3.test"]);
  });

  it("a named room has no heroes; the members who set the state and the power levels' users are kept; the unstable parameter works too", async () => {
    const alice = await newUser("hs2.test", "alice");
    const mods = await users("hs2.test", 2, "mod");
    const plain = await users("hs3.test", 3, "plain");
    const roomId = await populatedRoom(alice, [...mods, ...plain], { preset: "public_chat", name: "Lobby" });
    // mod0 gets power (listed in the power levels); mod1 sets the topic (the sender of a state event).
    const pl = await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/state/m.room.power_levels`);
    await api(alice, "PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.power_levels`, { ...pl, users: { ...(pl.users ?? {}), [mods[0]!.userId]: 50, [mods[1]!.userId]: 50 } });
    await api(mods[1]!, "PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.topic`, { topic: "set by a mod" });

    const { answer } = await rawJoin("hs2.test", roomId, `@dora${Date.now().toString(36)}:test.local`, { "org.matrix.msc3706.partial_state": "true" });
    expect(answer.members_omitted).toBe(true);
    const members = (answer.state as Ev[]).filter((ev) => ev.type === "m.room.member").map((ev) => ev.state_key).sort();
    // alice: sender of the name, power levels …; mod0/mod1: power levels users (mod1 also set the topic).
    expect(members).toEqual([alice.userId, mods[0]!.userId, mods[1]!.userId].sort());
    for (const p of plain) expect(members).not.toContain(p.userId);
    const stateIds = new Set((answer.state as Ev[]).map((ev) => JSON.stringify(ev)));
    for (const ev of answer.auth_chain as Ev[]) expect(stateIds.has(JSON.stringify(ev))).toBe(false);
  });

  it("keeps the joiner's own earlier membership (an invite) and puts the members the auth chain needs in auth_chain", async () => {
    const alice = await newUser("hs2.test", "alice");
    const others = await users("hs2.test", 7, "o");
    const roomId = await populatedRoom(alice, others);
    const dora = (await newUser("test.local", "dora")).userId;
    // The invite reaches test.local as an out-of-band invite; the template's auth events name it.
    await api(alice, "POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: dora });
    const { answer } = await rawJoin("hs2.test", roomId, dora, { omit_members: "true" });
    const state = answer.state as Ev[];
    const own = state.find((ev) => ev.type === "m.room.member" && ev.state_key === dora);
    expect(own?.content.membership).toBe("invite");
    // Heroes: the first five members (alice, o0..o3); o4..o6 are left out.
    const members = state.filter((ev) => ev.type === "m.room.member").map((ev) => ev.state_key);
    expect(members).toHaveLength(6);
    expect(members).toEqual(expect.arrayContaining([alice.userId, dora, ...others.slice(0, 4).map((o) => o.userId)]));
  });

  it("without the parameter (or with false) answers with the full state; a bad value is 400 M_INVALID_PARAM", async () => {
    const alice = await newUser("hs2.test", "alice");
    const others = await users("hs2.test", 6, "o");
    const roomId = await populatedRoom(alice, others);
    const full = await rawJoin("hs2.test", roomId, `@eve${Date.now().toString(36)}:test.local`, { omit_members: "false" });
    expect(full.answer.members_omitted).toBeUndefined();
    expect((full.answer.state as Ev[]).filter((ev) => ev.type === "m.room.member")).toHaveLength(7);
    await expect(rawJoin("hs2.test", roomId, `@fay${Date.now().toString(36)}:test.local`, { omit_members: "yes" })).rejects.toThrow(/400.*M_INVALID_PARAM|M_INVALID_PARAM/);
  });
});

describe("joining side: a partial join", () => {
  it("returns at once; eager sync omits the room, lazy sync shows it; the user can send and receive; /members waits; the resync completes", async () => {
    gate = new FederationGate();
    const alice = await newUser("hs2.test", "alice");
    const remote = [...(await users("hs2.test", 4, "h")), ...(await users("hs3.test", 3, "t"))];
    const roomId = await populatedRoom(alice, remote, { preset: "public_chat", name: "Big room" });
    await sendText(remote[5]!, roomId, "before bob");
    const bob = await newUser("test.local", "bob");
    const before = await syncWith(bob);

    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await gate.held1();
    const info = await room(roomId).partialStateInfo();
    expect(info).toMatchObject({ joined_via: "hs2.test", events_left: 1 });
    expect(info!.servers_in_room[0]).toBe("hs2.test");
    expect(info!.servers_in_room).toContain("hs3.test");

    // Eager sync: no room (initial or incremental). Lazy sync: the room, at once.
    expect((await syncWith(bob)).rooms?.join?.[roomId]).toBeUndefined();
    const eager = await syncWith(bob, { since: before.next_batch });
    expect(eager.rooms?.join?.[roomId]).toBeUndefined();
    const lazy = await api(bob, "GET", `${V3}/sync?timeout=0&filter=${enc(JSON.stringify(LAZY))}`);
    expect(lazy.rooms.join[roomId]).toBeDefined();

    // Bob can send; the resident has it. A remote member the partial state does not know sends; bob sees the
    // message in a lazy sync together with the sender's membership.
    await sendText(bob, roomId, "hello during the resync");
    await waitFor(async () => (await e.HS2_CONTROL.timeline(roomId)).some((ev) => ev.body === "hello during the resync"), "bob's message on hs2");
    await sendText(remote[6]!, roomId, "from hs3 during the resync");
    const seen = await waitFor(async () => {
      const s = await api(bob, "GET", `${V3}/sync?timeout=0&filter=${enc(JSON.stringify(LAZY))}`);
      const r = s.rooms?.join?.[roomId];
      return r?.timeline.events.some((ev: Ev) => ev.content.body === "from hs3 during the resync") ? r : undefined;
    }, "hs3's message at bob's");
    expect(seen.state.events.find((ev: Ev) => ev.type === "m.room.member" && ev.state_key === remote[6]!.userId)?.content.membership).toBe("join");

    // /members waits (its own waiter); an aborted request's waiter is removed.
    const aborted = new AbortController();
    const abortedReq = request("GET", `${V3}/rooms/${enc(roomId)}/members`, { user: bob, signal: aborted.signal }).catch(() => undefined);
    const membersReq = clientRequest(bob, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`);
    await waitFor(async () => (await room(roomId).fullStateWaiterCount()) === 2, "two /members waiters");
    aborted.abort();
    await abortedReq;
    await waitFor(async () => (await room(roomId).fullStateWaiterCount()) === 1, "the aborted waiter removed");

    // An eager long poll wakes when the resync completes, and then has the room with its full state.
    const longPoll = syncWith(bob, { since: eager.next_batch, timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 200));
    gate.open();
    const woken = await longPoll;
    const joined = woken.rooms?.join?.[roomId];
    expect(joined).toBeDefined();
    const memberKeys = joined.state.events.concat(joined.timeline.events).filter((ev: Ev) => ev.type === "m.room.member").map((ev: Ev) => ev.state_key);
    for (const u of [alice, ...remote, bob]) expect(memberKeys).toContain(u.userId);
    await awaitFullyStated(roomId);

    const members = await (await membersReq).json() as { joined: Record<string, unknown> };
    expect(Object.keys(members.joined).sort()).toEqual([alice, ...remote, bob].map((u) => u.userId).sort());
    expect((await timelineFlags(roomId)).every((f) => f.partial_state === 0)).toBe(true);
  });
});
