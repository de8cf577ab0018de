/**
 * POST /rooms/{roomId}/upgrade (src/rooms/upgrade.ts, durable-objects/room/upgrade.ts): copied state, bans,
 * aliases and directory listing moved, tombstone, old power levels restricted, v12 creators, one replacement
 * room per upgrade, permission failures and bad input; members follow by joining the new room.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, SERVER, type TestUser } from "./helpers";
import { V3, enc, expectError, join, newRoom, putState, sendText, stateList, type ClientEventJson } from "./rooms-helpers";

async function upgrade(user: TestUser, roomId: string, body: Record<string, unknown>): Promise<string> {
  return (await call<{ replacement_room: string }>("POST", `${V3}/rooms/${enc(roomId)}/upgrade`, { user, body })).replacement_room;
}

async function stateOf(user: TestUser, roomId: string, type: string, stateKey = ""): Promise<Record<string, unknown>> {
  return call("GET", `${V3}/rooms/${enc(roomId)}/state/${type}/${enc(stateKey)}`, { user });
}

function find(state: ClientEventJson[], type: string, stateKey = ""): ClientEventJson | undefined {
  return state.find((e) => e.type === type && e.state_key === stateKey);
}

let aliasSeq = 0;

describe("POST /rooms/{roomId}/upgrade", () => {
  it("replaces a room: state copied, bans carried over, aliases and listing moved, tombstone, old room restricted", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const aliasName = `upg${++aliasSeq}_${Date.now().toString(36)}`;
    const alias = `#${aliasName}:${SERVER}`;
    const alt = `#${aliasName}_alt:${SERVER}`;
    const old = await newRoom(alice, {
      room_version: "10", preset: "public_chat", visibility: "public", name: "Old Room", topic: "things", room_alias_name: aliasName,
    });
    await call("PUT", `${V3}/directory/room/${enc(alt)}`, { user: alice, body: { room_id: old } });
    await putState(alice, old, "m.room.canonical_alias", { alias, alt_aliases: [alt] });
    await putState(alice, old, "m.room.avatar", { url: "mxc://test.local/avatar" });
    await putState(alice, old, "m.room.server_acl", { allow: ["*"], deny: ["evil.example"], allow_ip_literals: false });
    await putState(alice, old, "m.room.history_visibility", { history_visibility: "joined" });
    await putState(alice, old, "m.room.guest_access", { guest_access: "forbidden" });
    await putState(alice, old, "org.example.custom", { not: "copied" });
    await join(bob, old);
    await call("POST", `${V3}/rooms/${enc(old)}/ban`, { user: alice, body: { user_id: carol.userId, reason: "spam" } });
    const oldState = await stateList(alice, old);

    const room = await upgrade(alice, old, { new_version: "11" });
    expect(room).not.toBe(old);

    // The tombstone, and the predecessor naming it.
    const tombstone = find(await stateList(alice, old), "m.room.tombstone")!;
    expect(tombstone.content).toEqual({ body: "This room has been replaced", replacement_room: room });
    const state = await stateList(alice, room);
    const create = find(state, "m.room.create")!;
    expect(create.content.room_version).toBe("11");
    expect(create.content.predecessor).toEqual({ room_id: old, event_id: tombstone.event_id });

    // Copied state.
    for (const type of ["m.room.name", "m.room.topic", "m.room.avatar", "m.room.server_acl", "m.room.history_visibility", "m.room.guest_access", "m.room.join_rules"]) {
      expect(find(state, type)?.content, type).toEqual(find(oldState, type)!.content);
    }
    expect(find(state, "org.example.custom")).toBeUndefined();
    expect(find(state, "m.room.power_levels")!.content).toEqual(find(oldState, "m.room.power_levels")!.content);
    // Bans, not other memberships.
    expect(find(state, "m.room.member", carol.userId)!.content).toMatchObject({ membership: "ban", reason: "spam" });
    expect(find(state, "m.room.member", bob.userId)).toBeUndefined();

    // Aliases follow; the canonical alias moves; the directory lists the new room instead of the old one.
    expect((await call<{ room_id: string }>("GET", `${V3}/directory/room/${enc(alias)}`)).room_id).toBe(room);
    expect((await call<{ room_id: string }>("GET", `${V3}/directory/room/${enc(alt)}`)).room_id).toBe(room);
    expect(await stateOf(alice, room, "m.room.canonical_alias")).toEqual({ alias, alt_aliases: [alt] });
    expect(await stateOf(alice, old, "m.room.canonical_alias")).toEqual({});
    const listed = await call<{ chunk: { room_id: string }[] }>("GET", `${V3}/publicRooms?limit=500`);
    expect(listed.chunk.map((r) => r.room_id)).toContain(room);
    expect(listed.chunk.map((r) => r.room_id)).not.toContain(old);
    expect((await call<{ visibility: string }>("GET", `${V3}/directory/list/room/${enc(old)}`)).visibility).toBe("private");

    // People stop talking in the old room.
    const oldPl = await stateOf(alice, old, "m.room.power_levels");
    expect(oldPl.events_default).toBe(50);
    expect(oldPl.invite).toBe(50);
    await expectError("PUT", `${V3}/rooms/${enc(old)}/send/m.room.message/t1`, { user: bob, body: { msgtype: "m.text", body: "hi" } }, 403, "M_FORBIDDEN");

    // Members follow by joining the new room, where the predecessor shows.
    await join(bob, room);
    expect((await call<{ joined_rooms: string[] }>("GET", `${V3}/joined_rooms`, { user: bob })).joined_rooms.sort()).toEqual([old, room].sort());
    expect((await stateOf(bob, room, "m.room.create")).predecessor).toEqual({ room_id: old, event_id: tombstone.event_id });
    await sendText(bob, room, "hello in the new room");
    // Carol stays banned.
    await expectError("POST", `${V3}/join/${enc(room)}`, { user: carol, body: {} }, 403, "M_BAD_STATE");

    // Bob's sync shows the tombstone in the old room.
    const sync = await call<{ rooms: { join: Record<string, { timeline: { events: { type: string }[] }; state: { events: { type: string }[] } }> } }>(
      "GET", `${V3}/sync`, { user: bob },
    );
    const oldSync = sync.rooms.join[old]!;
    expect([...oldSync.timeline.events, ...oldSync.state.events].some((e) => e.type === "m.room.tombstone")).toBe(true);
  });

  it("v12: the upgrader and additional_creators are creators, never listed in power levels", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const dave = await createUserDirect();
    const old = await newRoom(alice, { room_version: "11", preset: "public_chat" });
    await join(bob, old);
    await join(dave, old);
    const pl = await stateOf(alice, old, "m.room.power_levels");
    await putState(alice, old, "m.room.power_levels", { ...pl, users: { ...(pl.users as object), [bob.userId]: 100, [dave.userId]: 50 } });

    const room = await upgrade(alice, old, { new_version: "12", additional_creators: [bob.userId] });
    expect(room.includes(":")).toBe(false); // v12 room IDs are the create event's hash
    const create = await stateOf(alice, room, "m.room.create");
    expect(create.predecessor).toEqual({ room_id: old });
    expect(create.additional_creators).toEqual([bob.userId]);
    expect(create.room_version).toBe("12");
    const newPl = await stateOf(alice, room, "m.room.power_levels");
    expect(newPl.users).toEqual({ [dave.userId]: 50 });
    // Creators have unlimited power: bob (never joined yet) joins and changes the power levels.
    await join(bob, room);
    await putState(bob, room, "m.room.power_levels", { ...newPl, users: { [dave.userId]: 75 } });
    await expectError("GET", `${V3}/rooms/${enc(room)}/state/m.room.tombstone/`, { user: alice }, 404, "M_NOT_FOUND");
    expect((await stateOf(alice, old, "m.room.tombstone")).replacement_room).toBe(room);
  });

  it("copies a space's children (removed ones excepted)", async () => {
    const alice = await createUserDirect();
    const space = await newRoom(alice, { room_version: "11", creation_content: { type: "m.space" } });
    const child = `!child${Date.now()}:${SERVER}`;
    const removed = `!removed${Date.now()}:${SERVER}`;
    await putState(alice, space, "m.space.child", { via: [SERVER] }, child);
    await putState(alice, space, "m.space.child", {}, removed);
    const room = await upgrade(alice, space, { new_version: "11" });
    const state = await stateList(alice, room);
    expect(find(state, "m.room.create")!.content.type).toBe("m.space");
    expect(find(state, "m.space.child", child)!.content).toEqual({ via: [SERVER] });
    expect(find(state, "m.space.child", removed)).toBeUndefined();
  });

  it("creates one replacement room per upgrade, even for concurrent requests", async () => {
    const alice = await createUserDirect();
    const old = await newRoom(alice, { room_version: "10" });
    const [a, b] = await Promise.all([upgrade(alice, old, { new_version: "11" }), upgrade(alice, old, { new_version: "11" })]);
    expect(a).toBe(b);
    expect(await upgrade(alice, old, { new_version: "11" })).toBe(a);
    const joined = (await call<{ joined_rooms: string[] }>("GET", `${V3}/joined_rooms`, { user: alice })).joined_rooms;
    expect(joined.filter((r) => r !== old)).toEqual([a]);
  });

  it("refuses users without the power to send m.room.tombstone, non-members and unknown rooms", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const eve = await createUserDirect();
    const old = await newRoom(alice, { preset: "public_chat" });
    await join(bob, old);
    await expectError("POST", `${V3}/rooms/${enc(old)}/upgrade`, { user: bob, body: { new_version: "11" } }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(old)}/upgrade`, { user: eve, body: { new_version: "11" } }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(`!nowhere:${SERVER}`)}/upgrade`, { user: alice, body: { new_version: "11" } }, 404, "M_NOT_FOUND");
    expect((await request("POST", `${V3}/rooms/${enc(old)}/upgrade`, { body: { new_version: "11" } })).status).toBe(401);
    // Nothing happened: no tombstone, and the failed attempts left no claim behind.
    await expectError("GET", `${V3}/rooms/${enc(old)}/state/m.room.tombstone/`, { user: alice }, 404, "M_NOT_FOUND");
    expect(await upgrade(alice, old, { new_version: "11" })).toMatch(/^!/);
  });

  it("rejects bad input", async () => {
    const alice = await createUserDirect();
    const old = await newRoom(alice);
    const path = `${V3}/rooms/${enc(old)}/upgrade`;
    await expectError("POST", path, { user: alice, body: { new_version: "999" } }, 400, "M_UNSUPPORTED_ROOM_VERSION");
    await expectError("POST", path, { user: alice, body: { new_version: "1" } }, 400, "M_UNSUPPORTED_ROOM_VERSION");
    await expectError("POST", path, { user: alice, body: {} }, 400, "M_MISSING_PARAM");
    await expectError("POST", path, { user: alice, body: { new_version: 11 } }, 400, "M_BAD_JSON");
    await expectError("POST", path, { user: alice, body: { new_version: "12", additional_creators: ["not a user"] } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/rooms/not-a-room/upgrade`, { user: alice, body: { new_version: "11" } }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V3}/rooms/${enc(old)}/state/m.room.tombstone/`, { user: alice }, 404, "M_NOT_FOUND");
  });
});
