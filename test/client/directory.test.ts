/** Aliases (PUT/GET/DELETE /directory/room, GET /rooms/{roomId}/aliases), directory visibility, /publicRooms. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, testEnv } from "./helpers";
import { V3, enc, expectError, join, leave, newRoom, putState, stateList } from "./rooms-helpers";

const uniq = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

describe("room aliases", () => {
  it("create, resolve, list, delete; conflicts and bad aliases", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const alias = `#a${uniq()}:test.local`;
    await call("PUT", `${V3}/directory/room/${enc(alias)}`, { user: alice, body: { room_id: roomId } });
    expect(await call("GET", `${V3}/directory/room/${enc(alias)}`)).toEqual({ room_id: roomId, servers: ["test.local"] });
    expect(await call("GET", `${V3}/rooms/${enc(roomId)}/aliases`, { user: alice })).toEqual({ aliases: [alias] });
    await expectError("PUT", `${V3}/directory/room/${enc(alias)}`, { user: alice, body: { room_id: roomId } }, 409, "M_UNKNOWN");
    await expectError("PUT", `${V3}/directory/room/${enc("#x:elsewhere.example")}`, { user: alice, body: { room_id: roomId } }, 400, "M_INVALID_PARAM");
    await expectError("PUT", `${V3}/directory/room/notanalias`, { user: alice, body: { room_id: roomId } }, 400, "M_INVALID_PARAM");
    await expectError("PUT", `${V3}/directory/room/${enc(`#b${uniq()}:test.local`)}`, { user: alice, body: {} }, 400, "M_MISSING_PARAM");
    await expectError("PUT", `${V3}/directory/room/${enc(`#b${uniq()}:test.local`)}`, { user: alice, body: { room_id: "!nope:test.local" } }, 404, "M_NOT_FOUND");
    await call("DELETE", `${V3}/directory/room/${enc(alias)}`, { user: alice });
    await expectError("GET", `${V3}/directory/room/${enc(alias)}`, {}, 404, "M_NOT_FOUND");
    await expectError("DELETE", `${V3}/directory/room/${enc(alias)}`, { user: alice }, 404, "M_NOT_FOUND");
  });

  it("only members create aliases; the creator or a room admin deletes them", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await expectError("PUT", `${V3}/directory/room/${enc(`#c${uniq()}:test.local`)}`, { user: bob, body: { room_id: roomId } }, 403, "M_FORBIDDEN");
    await join(bob, roomId);
    await join(carol, roomId);
    const bobs = `#bob${uniq()}:test.local`;
    const alices = `#alice${uniq()}:test.local`;
    await call("PUT", `${V3}/directory/room/${enc(bobs)}`, { user: bob, body: { room_id: roomId } });
    await call("PUT", `${V3}/directory/room/${enc(alices)}`, { user: alice, body: { room_id: roomId } });
    await expectError("DELETE", `${V3}/directory/room/${enc(bobs)}`, { user: carol }, 403, "M_FORBIDDEN");
    await expectError("DELETE", `${V3}/directory/room/${enc(alices)}`, { user: bob }, 403, "M_FORBIDDEN");
    await call("DELETE", `${V3}/directory/room/${enc(bobs)}`, { user: alice }); // room admin
    await call("DELETE", `${V3}/directory/room/${enc(alices)}`, { user: alice }); // creator
    expect(await call("GET", `${V3}/rooms/${enc(roomId)}/aliases`, { user: bob })).toEqual({ aliases: [] });
  });

  it("deleting the canonical alias removes it from m.room.canonical_alias", async () => {
    const alice = await createUserDirect();
    const local = `canon${uniq()}`;
    const roomId = await newRoom(alice, { room_alias_name: local });
    const alt = `#alt${uniq()}:test.local`;
    await call("PUT", `${V3}/directory/room/${enc(alt)}`, { user: alice, body: { room_id: roomId } });
    await putState(alice, roomId, "m.room.canonical_alias", { alias: `#${local}:test.local`, alt_aliases: [alt] });
    await call("DELETE", `${V3}/directory/room/${enc(`#${local}:test.local`)}`, { user: alice });
    const canon = (await stateList(alice, roomId)).find((e) => e.type === "m.room.canonical_alias")!;
    expect(canon.content).toEqual({ alt_aliases: [alt] });
  });

  it("/rooms/{roomId}/aliases needs membership or world-readable history", async () => {
    const alice = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice);
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/aliases`, { user: eve }, 403, "M_FORBIDDEN");
    await putState(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    expect(await call("GET", `${V3}/rooms/${enc(roomId)}/aliases`, { user: eve })).toEqual({ aliases: [] });
  });
});

describe("published room directory", () => {
  it("GET/PUT /directory/list/room: needs room-admin power; unknown rooms are 404", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    expect(await call("GET", `${V3}/directory/list/room/${enc(roomId)}`)).toEqual({ visibility: "private" });
    await expectError("PUT", `${V3}/directory/list/room/${enc(roomId)}`, { user: bob, body: { visibility: "public" } }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${V3}/directory/list/room/${enc(roomId)}`, { user: alice, body: { visibility: "open" } }, 400, "M_INVALID_PARAM");
    await call("PUT", `${V3}/directory/list/room/${enc(roomId)}`, { user: alice, body: { visibility: "public" } });
    expect(await call("GET", `${V3}/directory/list/room/${enc(roomId)}`)).toEqual({ visibility: "public" });
    await call("PUT", `${V3}/directory/list/room/${enc(roomId)}`, { user: alice, body: { visibility: "private" } });
    expect(await call("GET", `${V3}/directory/list/room/${enc(roomId)}`)).toEqual({ visibility: "private" });
    await expectError("GET", `${V3}/directory/list/room/${enc("!nope:test.local")}`, {}, 404, "M_NOT_FOUND");
  });

  it("/publicRooms: room details, member counts kept up to date, search, room types, pagination both ways", async () => {
    // Each test file has its own D1, but earlier tests in this file published rooms too: start clean.
    await testEnv.DB.prepare("DELETE FROM room_directory").run();
    const alice = await createUserDirect();
    const users = await Promise.all([1, 2, 3, 4].map(() => createUserDirect()));
    const tag = uniq();
    const rooms: string[] = [];
    for (let i = 0; i < 5; i++) {
      rooms.push(await newRoom(alice, { visibility: "public", name: `Room ${i} ${tag}`, topic: i === 2 ? `about cheese ${tag}` : undefined, room_alias_name: `pub${i}${tag}` }));
    }
    // Members: room i gets i extra joiners, so the order by size is 4, 3, 2, 1, 0.
    for (let i = 0; i < 5; i++) for (let j = 0; j < i; j++) await join(users[j]!, rooms[i]!);
    const space = await newRoom(alice, { visibility: "public", name: `Space ${tag}`, creation_content: { type: "m.space" } });
    const invitedOnly = await newRoom(alice, { visibility: "public", preset: "private_chat", name: `Hidden ${tag}` });

    const all = await call<{ chunk: any[]; total_room_count_estimate: number }>("GET", `${V3}/publicRooms`);
    const ids = all.chunk.map((r) => r.room_id);
    expect(ids).toEqual([rooms[4], rooms[3], rooms[2], rooms[1], ...[rooms[0], space].sort()]);
    expect(ids).not.toContain(invitedOnly); // invite-only rooms are not listed even when published
    expect(all.total_room_count_estimate).toBe(6);
    const r2 = all.chunk.find((r) => r.room_id === rooms[2]);
    expect(r2).toEqual({
      room_id: rooms[2], name: `Room 2 ${tag}`, topic: `about cheese ${tag}`, canonical_alias: `#pub2${tag}:test.local`,
      num_joined_members: 3, world_readable: false, guest_can_join: false, join_rule: "public",
    });
    expect(all.chunk.find((r) => r.room_id === space).room_type).toBe("m.space");

    // Counts follow joins and leaves.
    await leave(users[0]!, rooms[4]!);
    const after = await call<{ chunk: any[] }>("GET", `${V3}/publicRooms`);
    expect(after.chunk.find((r) => r.room_id === rooms[4]).num_joined_members).toBe(4);

    const search = await call<{ chunk: any[] }>("POST", `${V3}/publicRooms`, { user: alice, body: { filter: { generic_search_term: "CHEESE" } } });
    expect(search.chunk.map((r) => r.room_id)).toEqual([rooms[2]]);
    const byAlias = await call<{ chunk: any[] }>("POST", `${V3}/publicRooms`, { user: alice, body: { filter: { generic_search_term: `pub3${tag}` } } });
    expect(byAlias.chunk.map((r) => r.room_id)).toEqual([rooms[3]]);
    const spaces = await call<{ chunk: any[] }>("POST", `${V3}/publicRooms`, { user: alice, body: { filter: { room_types: ["m.space"] } } });
    expect(spaces.chunk.map((r) => r.room_id)).toEqual([space]);
    const plain = await call<{ chunk: any[] }>("POST", `${V3}/publicRooms`, { user: alice, body: { filter: { room_types: [null] } } });
    expect(plain.chunk).toHaveLength(5);

    // Pages of 2 forwards, then back again with prev_batch.
    const seen: string[] = [];
    const pages: any[] = [];
    let since: string | undefined;
    do {
      const page = await call<any>("GET", `${V3}/publicRooms?limit=2${since ? `&since=${enc(since)}` : ""}`);
      pages.push(page);
      seen.push(...page.chunk.map((r: any) => r.room_id));
      since = page.next_batch;
    } while (since);
    const order = (await call<{ chunk: any[] }>("GET", `${V3}/publicRooms`)).chunk.map((r) => r.room_id);
    expect(seen).toEqual(order);
    expect(pages[0].prev_batch).toBeUndefined();
    const back = await call<any>("GET", `${V3}/publicRooms?limit=2&since=${enc(pages.at(-1).prev_batch)}`);
    expect(back.chunk.map((r: any) => r.room_id)).toEqual(pages.at(-2).chunk.map((r: any) => r.room_id));
    const posted = await call<any>("POST", `${V3}/publicRooms`, { user: alice, body: { limit: 2, since: pages[0].next_batch } });
    expect(posted.chunk.map((r: any) => r.room_id)).toEqual(pages[1].chunk.map((r: any) => r.room_id));

    await expectError("GET", `${V3}/publicRooms?since=garbage`, {}, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V3}/publicRooms?limit=x`, {}, 400, "M_INVALID_PARAM");
    await expectError("POST", `${V3}/publicRooms`, { user: alice, body: { filter: { room_types: [1] } } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/publicRooms`, { body: {} }, 401, "M_MISSING_TOKEN");
    await expectError("GET", `${V3}/publicRooms?server=elsewhere.example`, {}, 501, "M_UNRECOGNIZED");
  });
});
