/** POST /createRoom: presets, versions, initial state, aliases, invites, power levels, event order, errors. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect } from "./helpers";
import { V3, enc, expectError, newRoom, stateList, type ClientEventJson } from "./rooms-helpers";

async function timeline(user: Parameters<typeof stateList>[0], roomId: string): Promise<ClientEventJson[]> {
  const r = await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=f&limit=100`, { user });
  return r.chunk;
}

function stateOf(state: ClientEventJson[], type: string, sk = ""): ClientEventJson | undefined {
  return state.find((e) => e.type === type && e.state_key === sk);
}

describe("POST /createRoom", () => {
  it("private_chat by default: invite-only, shared history, guests can join, creator joined; v12 power levels", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/); // v12: the create event's hash, no server name
    const state = await stateList(alice, roomId);
    expect(stateOf(state, "m.room.create")!.content).toMatchObject({ room_version: "12" });
    expect(stateOf(state, "m.room.create")!.content.creator).toBeUndefined();
    expect(stateOf(state, "m.room.member", alice.userId)!.content.membership).toBe("join");
    expect(stateOf(state, "m.room.join_rules")!.content).toEqual({ join_rule: "invite" });
    expect(stateOf(state, "m.room.history_visibility")!.content).toEqual({ history_visibility: "shared" });
    expect(stateOf(state, "m.room.guest_access")!.content).toEqual({ guest_access: "can_join" });
    const pl = stateOf(state, "m.room.power_levels")!.content as Record<string, any>;
    expect(pl.users).toEqual({}); // v12: the creator is not listed
    expect(pl.invite).toBe(0);
    expect(pl.events["m.room.tombstone"]).toBe(150);
    expect(pl.state_default).toBe(50);
  });

  it("applies the events in the spec's order", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "public_chat",
      room_alias_name: `order${Date.now()}`,
      initial_state: [{ type: "m.custom", state_key: "k", content: { a: 1 } }],
      name: "N",
      topic: "T",
      invite: [bob.userId],
    });
    const types = (await timeline(alice, roomId)).map((e) => e.type + (e.state_key ? `/${e.state_key === bob.userId ? "bob" : e.state_key === alice.userId ? "alice" : e.state_key}` : ""));
    expect(types).toEqual([
      "m.room.create",
      "m.room.member/alice",
      "m.room.power_levels",
      "m.room.canonical_alias",
      "m.room.join_rules",
      "m.room.history_visibility",
      "m.room.custom/k".replace("m.room.custom", "m.custom"),
      "m.room.name",
      "m.room.topic",
      "m.room.member/bob",
    ]);
  });

  it("public_chat: public join rule, no guest access, published when visibility is public", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { visibility: "public" });
    const state = await stateList(alice, roomId);
    expect(stateOf(state, "m.room.join_rules")!.content).toEqual({ join_rule: "public" });
    expect(stateOf(state, "m.room.guest_access")).toBeUndefined();
    expect((stateOf(state, "m.room.power_levels")!.content as any).invite).toBe(50);
    const vis = await call<{ visibility: string }>("GET", `${V3}/directory/list/room/${enc(roomId)}`);
    expect(vis.visibility).toBe("public");
  });

  it("room versions: older versions list the creator; unknown and v1 are refused", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { room_version: "10" });
    expect(roomId).toMatch(/^!.+:test\.local$/);
    const state = await stateList(alice, roomId);
    expect(stateOf(state, "m.room.create")!.content).toMatchObject({ room_version: "10", creator: alice.userId });
    expect((stateOf(state, "m.room.power_levels")!.content as any).users).toEqual({ [alice.userId]: 100 });
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_version: "99" } }, 400, "M_UNSUPPORTED_ROOM_VERSION");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_version: "1" } }, 400, "M_UNSUPPORTED_ROOM_VERSION");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_version: 11 } }, 400, "M_BAD_JSON");
  });

  it("trusted_private_chat: invitees are creators in v12 and get PL 100 before", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const v12 = await newRoom(alice, { preset: "trusted_private_chat", invite: [bob.userId], is_direct: true });
    const s12 = await stateList(alice, v12);
    expect(stateOf(s12, "m.room.create")!.content.additional_creators).toEqual([bob.userId]);
    expect((stateOf(s12, "m.room.power_levels")!.content as any).users).toEqual({});
    expect(stateOf(s12, "m.room.member", bob.userId)!.content).toMatchObject({ membership: "invite", is_direct: true });

    const v11 = await newRoom(alice, { preset: "trusted_private_chat", invite: [bob.userId], room_version: "11" });
    const s11 = await stateList(alice, v11);
    expect((stateOf(s11, "m.room.power_levels")!.content as any).users).toEqual({ [alice.userId]: 100, [bob.userId]: 100 });
    expect(stateOf(s11, "m.room.create")!.content.additional_creators).toBeUndefined();
  });

  it("creation_content (incl. additional_creators) and power_level_content_override", async () => {
    const alice = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, {
      creation_content: { "m.federate": false, additional_creators: [carol.userId], room_version: "3", creator: "@x:y" },
      power_level_content_override: { events_default: 20, users: { [alice.userId]: 100, "@dave:test.local": 40 } },
    });
    const state = await stateList(alice, roomId);
    const create = stateOf(state, "m.room.create")!.content;
    expect(create).toMatchObject({ "m.federate": false, additional_creators: [carol.userId], room_version: "12" });
    expect(create.creator).toBeUndefined();
    const pl = stateOf(state, "m.room.power_levels")!.content as any;
    expect(pl.events_default).toBe(20);
    // Creators are dropped from `users` in v12 (they cannot be listed there).
    expect(pl.users).toEqual({ "@dave:test.local": 40 });

    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { creation_content: { additional_creators: ["nope"] } } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_version: "11", power_level_content_override: { users: { "@x:test.local": 10 } } } }, 400, "M_BAD_JSON");
  });

  it("initial_state replaces preset events; name and topic win over initial_state", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "private_chat",
      initial_state: [
        { type: "m.room.history_visibility", content: { history_visibility: "joined" } },
        { type: "m.room.name", content: { name: "from initial_state" } },
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
      name: "from name",
      topic: "plain topic",
    });
    const state = await stateList(alice, roomId);
    expect(stateOf(state, "m.room.history_visibility")!.content).toEqual({ history_visibility: "joined" });
    expect(stateOf(state, "m.room.name")!.content).toEqual({ name: "from name" });
    expect(stateOf(state, "m.room.topic")!.content).toMatchObject({ topic: "plain topic", "m.topic": { "m.text": [{ body: "plain topic" }] } });
    expect(stateOf(state, "m.room.encryption")!.content).toEqual({ algorithm: "m.megolm.v1.aes-sha2" });
    const hv = (await timeline(alice, roomId)).filter((e) => e.type === "m.room.history_visibility");
    expect(hv).toHaveLength(1); // not sent twice
  });

  it("room_alias_name creates the alias and canonical alias; a taken alias is refused", async () => {
    const alice = await createUserDirect();
    const local = `pub${Date.now()}`;
    const roomId = await newRoom(alice, { room_alias_name: local });
    const alias = `#${local}:test.local`;
    expect(await call("GET", `${V3}/directory/room/${enc(alias)}`)).toEqual({ room_id: roomId, servers: ["test.local"] });
    const state = await stateList(alice, roomId);
    expect(stateOf(state, "m.room.canonical_alias")!.content).toEqual({ alias });
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_alias_name: local } }, 400, "M_ROOM_IN_USE");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_alias_name: "#a:b" } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_alias_name: "has space" } }, 400, "M_BAD_JSON");
  });

  it("bad input and failures create nothing", async () => {
    const alice = await createUserDirect();
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: "not json" }, 400, "M_NOT_JSON");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { preset: "party" } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { visibility: "secret" } }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { invite: ["not-a-user"] } }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { invite: ["@nobody:test.local"] } }, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { initial_state: [{ type: "x" }] } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { invite_3pid: [{ medium: "email" }] } }, 400, "M_INVALID_PARAM");
    // Power levels that leave the creator unable to send the name: the whole room is refused, alias freed.
    const local = `fail${Date.now()}`;
    await expectError(
      "POST",
      `${V3}/createRoom`,
      { user: alice, body: { room_version: "11", room_alias_name: local, name: "x", power_level_content_override: { users: { [alice.userId]: 10 } } } },
      400,
      "M_INVALID_ROOM_STATE",
    );
    await expectError("GET", `${V3}/directory/room/${enc(`#${local}:test.local`)}`, {}, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/createRoom`, { body: {} }, 401, "M_MISSING_TOKEN");
  });
});
