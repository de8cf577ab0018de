/** Membership endpoints: join, invite, leave, kick, ban, unban, forget, knock, restricted joins, /joined_rooms. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect } from "./helpers";
import { V3, enc, expectError, invite, join, leave, newRoom, putState, stateList, type ClientEventJson } from "./rooms-helpers";
import { isRoomForgotten } from "../../src/rooms/membership";
import { testEnv } from "./helpers";

async function memberOf(user: Parameters<typeof stateList>[0], roomId: string, userId: string): Promise<ClientEventJson | undefined> {
  return (await stateList(user, roomId)).find((e) => e.type === "m.room.member" && e.state_key === userId);
}

async function memberEvents(user: Parameters<typeof stateList>[0], roomId: string, userId: string): Promise<ClientEventJson[]> {
  const r = await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=f&limit=100`, { user });
  return r.chunk.filter((e) => e.type === "m.room.member" && e.state_key === userId);
}

describe("join", () => {
  it("joins a public room by ID (both endpoints) and by alias; a repeated join sends nothing new", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const local = `joinme${Date.now()}`;
    const roomId = await newRoom(alice, { preset: "public_chat", room_alias_name: local });
    expect(await call("POST", `${V3}/rooms/${enc(roomId)}/join`, { user: bob, body: { reason: "hello" } })).toEqual({ room_id: roomId });
    expect(await call("POST", `${V3}/join/${enc(`#${local}:test.local`)}`, { user: carol, body: {} })).toEqual({ room_id: roomId });
    expect((await memberOf(alice, roomId, bob.userId))!.content).toMatchObject({ membership: "join", reason: "hello" });
    await join(carol, roomId);
    expect(await memberEvents(alice, roomId, carol.userId)).toHaveLength(1);
    const joined = await call<{ joined: Record<string, unknown> }>("GET", `${V3}/rooms/${enc(roomId)}/joined_members`, { user: bob });
    expect(Object.keys(joined.joined).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
  });

  it("refuses invite-only rooms without an invite, unknown rooms and aliases, bad identifiers", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "private_chat" });
    await expectError("POST", `${V3}/join/${enc(roomId)}`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/join`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/join/${enc("!nowhere:test.local")}`, { user: bob, body: {} }, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/join/${enc("#nowhere:test.local")}`, { user: bob, body: {} }, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/join/nonsense`, { user: bob, body: {} }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/join/${enc(roomId)}?via=${enc("bad server!")}`, { user: bob, body: {} }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/join/${enc(roomId)}`, { user: bob, body: { reason: 5 } }, 400, "M_BAD_JSON");
    expect(await memberOf(alice, roomId, bob.userId)).toBeUndefined();
  });

  it("guests join only rooms with guest access", async () => {
    const alice = await createUserDirect();
    const guest = await createUserDirect();
    await testEnv.DB.prepare("UPDATE users SET is_guest = 1 WHERE user_id = ?").bind(guest.userId).run();
    const noGuests = await newRoom(alice, { preset: "public_chat" });
    await expectError("POST", `${V3}/join/${enc(noGuests)}`, { user: guest, body: {} }, 403, "M_FORBIDDEN");
    const guestsWelcome = await newRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "can_join" } }] });
    await join(guest, guestsWelcome);
    expect((await memberOf(alice, guestsWelcome, guest.userId))!.content.membership).toBe("join");
  });

  it("a room this server is not in is joined over federation (an unreachable server: 502)", async () => {
    // Federation (test/federation/joins.test.ts covers remote joins that work).
    const bob = await createUserDirect();
    const res = await expectError("POST", `${V3}/join/${enc("!elsewhere:remote.example")}?via=remote.example`, { user: bob, body: {} }, 502, "M_UNKNOWN");
    expect(String(res.error)).toMatch(/remote\.example/);
  });
});

describe("invite", () => {
  it("invites carry the invitee's profile and the reason; the invitee can then join", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Bob B" } });
    const roomId = await newRoom(alice);
    await call("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: bob.userId, reason: "come" } });
    const ev = (await memberOf(alice, roomId, bob.userId))!;
    expect(ev.content).toEqual({ membership: "invite", displayname: "Bob B", reason: "come" });
    expect(ev.sender).toBe(alice.userId);
    await join(bob, roomId);
    expect((await memberOf(alice, roomId, bob.userId))!.content.membership).toBe("join");
  });

  it("refuses: inviter not in the room, invitee unknown or malformed, remote invitees (federation), already joined", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: eve, body: { user_id: bob.userId } }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: "@ghost:test.local" } }, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: "bob" } }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: {} }, 400, "M_MISSING_PARAM");
    // Remote invitees go over federation (test/federation/invites.test.ts); this server cannot be reached.
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: "@x:remote.example" } }, 502, "M_UNKNOWN");
    await expectError("POST", `${V3}/rooms/${enc("!none:test.local")}/invite`, { user: alice, body: { user_id: bob.userId } }, 404, "M_NOT_FOUND");
    await invite(alice, roomId, bob.userId);
    await join(bob, roomId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: bob.userId } }, 403, "M_FORBIDDEN");
  });

  it("needs the invite level", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" }); // invite level 50
    await join(bob, roomId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: bob, body: { user_id: carol.userId } }, 403, "M_FORBIDDEN");
  });
});

describe("leave, kick, ban, unban", () => {
  it("leave; leaving again is refused; rejecting an invite is a leave", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await call("POST", `${V3}/rooms/${enc(roomId)}/leave`, { user: bob, body: { reason: "bye" } });
    expect((await memberOf(alice, roomId, bob.userId))!.content).toEqual({ membership: "leave", reason: "bye" });
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/leave`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    await invite(alice, roomId, carol.userId);
    await leave(carol, roomId);
    expect((await memberOf(alice, roomId, carol.userId))!.content.membership).toBe("leave");
    await expectError("POST", `${V3}/rooms/${enc("!none:test.local")}/leave`, { user: bob, body: {} }, 404, "M_NOT_FOUND");
  });

  it("kick needs the kick level and a member target", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(carol, roomId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/kick`, { user: bob, body: { user_id: carol.userId } }, 403, "M_FORBIDDEN");
    await call("POST", `${V3}/rooms/${enc(roomId)}/kick`, { user: alice, body: { user_id: bob.userId, reason: "spam" } });
    const ev = (await memberOf(alice, roomId, bob.userId))!;
    expect(ev.content).toEqual({ membership: "leave", reason: "spam" });
    expect(ev.sender).toBe(alice.userId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/kick`, { user: alice, body: { user_id: bob.userId } }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/kick`, { user: alice, body: { user_id: "@never:test.local" } }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/kick`, { user: alice, body: {} }, 400, "M_MISSING_PARAM");
  });

  it("ban keeps a user out until unbanned; unban of someone not banned is refused", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(carol, roomId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/ban`, { user: carol, body: { user_id: bob.userId } }, 403, "M_FORBIDDEN");
    await call("POST", `${V3}/rooms/${enc(roomId)}/ban`, { user: alice, body: { user_id: bob.userId, reason: "rude" } });
    expect((await memberOf(alice, roomId, bob.userId))!.content).toEqual({ membership: "ban", reason: "rude" });
    await expectError("POST", `${V3}/join/${enc(roomId)}`, { user: bob, body: {} }, 403, "M_BAD_STATE");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: bob.userId } }, 403, "M_BAD_STATE");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/unban`, { user: alice, body: { user_id: carol.userId } }, 403, "M_BAD_STATE");
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/unban`, { user: carol, body: { user_id: bob.userId } }, 403, "M_FORBIDDEN");
    await call("POST", `${V3}/rooms/${enc(roomId)}/unban`, { user: alice, body: { user_id: bob.userId } });
    expect((await memberOf(alice, roomId, bob.userId))!.content.membership).toBe("leave");
    await join(bob, roomId);
    // Banning someone who never joined works too.
    const dave = await createUserDirect();
    await call("POST", `${V3}/rooms/${enc(roomId)}/ban`, { user: alice, body: { user_id: dave.userId } });
    await expectError("POST", `${V3}/join/${enc(roomId)}`, { user: dave, body: {} }, 403, "M_BAD_STATE");
  });
});

describe("forget", () => {
  it("only after leaving; a later membership change ends it", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await expectError("POST", `${V3}/rooms/${enc(roomId)}/forget`, { user: bob, body: {} }, 400, "M_UNKNOWN");
    await leave(bob, roomId);
    await call("POST", `${V3}/rooms/${enc(roomId)}/forget`, { user: bob, body: {} });
    const leaveEvent = (await memberOf(alice, roomId, bob.userId))!;
    expect(await isRoomForgotten(testEnv, bob.userId, roomId, leaveEvent.event_id)).toBe(true);
    await join(bob, roomId);
    const joinEvent = (await memberOf(alice, roomId, bob.userId))!;
    expect(await isRoomForgotten(testEnv, bob.userId, roomId, joinEvent.event_id)).toBe(false);
    // Never a member: nothing to forget, and that is fine.
    const carol = await createUserDirect();
    await call("POST", `${V3}/rooms/${enc(roomId)}/forget`, { user: carol, body: {} });
  });
});

describe("knock", () => {
  it("knocks on knock rooms (v7+), not on others; the knocker can be invited in", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    expect(await call("POST", `${V3}/knock/${enc(roomId)}`, { user: bob, body: { reason: "let me in" } })).toEqual({ room_id: roomId });
    expect((await memberOf(alice, roomId, bob.userId))!.content).toMatchObject({ membership: "knock", reason: "let me in" });
    await invite(alice, roomId, bob.userId);
    await join(bob, roomId);

    const open = await newRoom(alice, { preset: "public_chat" });
    await expectError("POST", `${V3}/knock/${enc(open)}`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    const old = await newRoom(alice, { room_version: "6", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    await expectError("POST", `${V3}/knock/${enc(old)}`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
  });
});

describe("restricted rooms", () => {
  it("members of an allowed room join through a local authoriser; others are refused", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const space = await newRoom(alice, { preset: "public_chat" });
    await join(bob, space);
    const roomId = await newRoom(alice, {
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    await join(bob, roomId);
    expect((await memberOf(alice, roomId, bob.userId))!.content).toMatchObject({ membership: "join", join_authorised_via_users_server: alice.userId });
    await expectError("POST", `${V3}/join/${enc(roomId)}`, { user: carol, body: {} }, 403, "M_FORBIDDEN");
  });
});

describe("GET /joined_rooms and m.room.member through the state API", () => {
  it("lists joined rooms only", async () => {
    const alice = await createUserDirect();
    const a = await newRoom(alice);
    const b = await newRoom(alice);
    expect((await call<{ joined_rooms: string[] }>("GET", `${V3}/joined_rooms`, { user: alice })).joined_rooms.sort()).toEqual([a, b].sort());
    await leave(alice, b);
    expect((await call<{ joined_rooms: string[] }>("GET", `${V3}/joined_rooms`, { user: alice })).joined_rooms).toEqual([a]);
  });

  it("PUT /state/m.room.member/{userId} maps onto the membership actions", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice);
    await putState(alice, roomId, "m.room.member", { membership: "invite" }, bob.userId);
    await putState(bob, roomId, "m.room.member", { membership: "join", displayname: "custom" }, bob.userId);
    expect((await memberOf(alice, roomId, bob.userId))!.content).toEqual({ membership: "join", displayname: "custom" });
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(alice.userId)}`, { user: bob, body: { membership: "join" } }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { user: bob, body: { membership: "dance" } }, 400, "M_BAD_JSON");
  });
});
