/**
 * History visibility: the spec's rules as pure functions, and the RoomDO helper that filters events for a user
 * (`filterVisibleEvents`), on a real room whose visibility and memberships change over time.
 */
import { describe, expect, it } from "vitest";
import { isEventVisible, parseHistoryVisibility, visibleUnder, type HistoryVisibility } from "../../src/rooms/visibility";
import { alice, bob, createRoom } from "../rooms/helpers";

describe("visibility rules (pure)", () => {
  it("defaults to shared for absent or unknown values", () => {
    expect(parseHistoryVisibility(undefined)).toBe("shared");
    expect(parseHistoryVisibility({ history_visibility: "nonsense" })).toBe("shared");
    expect(parseHistoryVisibility({ history_visibility: "joined" })).toBe("joined");
  });

  const table: [HistoryVisibility, string | null, boolean, boolean][] = [
    ["world_readable", null, false, true],
    ["world_readable", "leave", false, true],
    ["shared", "join", false, true],
    ["shared", null, true, true], // joined later
    ["shared", null, false, false],
    ["shared", "invite", false, false],
    ["invited", "invite", false, true],
    ["invited", "join", false, true],
    ["invited", null, true, false],
    ["invited", "leave", false, false],
    ["joined", "join", false, true],
    ["joined", "invite", false, false],
    ["joined", null, true, false],
    ["joined", "ban", false, false],
  ];
  it.each(table)("%s with membership %s (joined since: %s) → %s", (v, m, since, expected) => {
    expect(visibleUnder(v, m, since)).toBe(expected);
  });

  it("history visibility events are visible if either side allows", () => {
    expect(isEventVisible({ visibility: "joined", visibilityBefore: "world_readable", membership: null, joinedSince: false })).toBe(true);
    expect(isEventVisible({ visibility: "world_readable", visibilityBefore: "joined", membership: null, joinedSince: false })).toBe(true);
    expect(isEventVisible({ visibility: "joined", visibilityBefore: "invited", membership: null, joinedSince: false })).toBe(false);
  });

  it("a user's own membership events are visible if either side allows", () => {
    // Their join under `joined`: after = join.
    expect(isEventVisible({ visibility: "joined", membership: "join", membershipBefore: "invite", joinedSince: false })).toBe(true);
    // Their leave under `joined`: before = join.
    expect(isEventVisible({ visibility: "joined", membership: "leave", membershipBefore: "join", joinedSince: false })).toBe(true);
    // Being kicked after an invite under `joined`: neither side is join.
    expect(isEventVisible({ visibility: "joined", membership: "leave", membershipBefore: "invite", joinedSince: false })).toBe(false);
  });
});

describe("RoomDO.filterVisibleEvents", () => {
  const msg = (body: string) => ({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body } });

  it("joined: a later joiner sees nothing from before their join, then everything until they leave", async () => {
    const { stub } = await createRoom({ joinRule: "public" });
    const hv = await stub.send({ type: "m.room.history_visibility", state_key: "", sender: alice, content: { history_visibility: "joined" } });
    const before = await stub.send(msg("before"));
    const join = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "join" } });
    const during = await stub.send(msg("during"));
    const leave = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "leave" } });
    const after = await stub.send(msg("after"));
    const ids = [hv, before, join, during, leave, after].map((r) => (r.ok ? r.event_id : ""));
    // The switch to `joined` itself is judged by the visibility before it too (shared, and bob joined later).
    expect(await stub.filterVisibleEvents(bob, ids)).toEqual([ids[0], ids[2], ids[3], ids[4]]);
    expect(await stub.filterVisibleEvents(alice, ids)).toEqual(ids);
  });

  it("shared: the joiner sees earlier history, but nothing after leaving", async () => {
    const { stub } = await createRoom({ joinRule: "public" }); // helpers create rooms with `shared`
    const before = await stub.send(msg("before"));
    const join = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "join" } });
    const leave = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "leave" } });
    const after = await stub.send(msg("after"));
    const ids = [before, join, leave, after].map((r) => (r.ok ? r.event_id : ""));
    expect(await stub.filterVisibleEvents(bob, ids)).toEqual([ids[0], ids[1], ids[2]]);
    // Someone who never joined sees nothing of a shared room.
    expect(await stub.filterVisibleEvents("@stranger:test.local", ids)).toEqual([]);
  });

  it("invited: visible from the invite on; world_readable: visible to anyone", async () => {
    const { stub } = await createRoom({ joinRule: "invite" });
    await stub.send({ type: "m.room.history_visibility", state_key: "", sender: alice, content: { history_visibility: "invited" } });
    const early = await stub.send(msg("early"));
    const invite = await stub.send({ type: "m.room.member", state_key: bob, sender: alice, content: { membership: "invite" } });
    const whileInvited = await stub.send(msg("while invited"));
    const wr = await stub.send({ type: "m.room.history_visibility", state_key: "", sender: alice, content: { history_visibility: "world_readable" } });
    const open = await stub.send(msg("open"));
    const ids = [early, invite, whileInvited, wr, open].map((r) => (r.ok ? r.event_id : ""));
    expect(await stub.filterVisibleEvents(bob, ids)).toEqual([ids[1], ids[2], ids[3], ids[4]]);
    // The change to world_readable and what follows are visible to strangers; what came before is not.
    expect(await stub.filterVisibleEvents("@stranger:test.local", ids)).toEqual([ids[3], ids[4]]);
  });
});
