/**
 * Reading rooms: /messages pagination (120 events, both directions, tokens), filters, lazy-loaded members,
 * /context, /event, /state for departed users, /members with at/membership, /joined_members,
 * /timestamp_to_event, and history visibility over HTTP.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, createUserDirect, type TestUser } from "./helpers";
import { V3, enc, expectError, join, leave, newRoom, putState, sendText, type ClientEventJson } from "./rooms-helpers";

interface Page {
  chunk: ClientEventJson[];
  start: string;
  end?: string;
  state?: ClientEventJson[];
}

async function messages(user: TestUser, roomId: string, params: Record<string, string | number>): Promise<Page> {
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  return call<Page>("GET", `${V3}/rooms/${enc(roomId)}/messages?${qs}`, { user });
}

/** Follows `end` tokens until they stop; returns every page. */
async function paginateAll(user: TestUser, roomId: string, dir: "b" | "f", limit: number, extra: Record<string, string> = {}): Promise<Page[]> {
  const pages: Page[] = [];
  let from: string | undefined;
  for (let i = 0; i < 500; i++) {
    const page = await messages(user, roomId, { dir, limit, ...extra, ...(from ? { from } : {}) });
    if (from) expect(page.start).toBe(from);
    pages.push(page);
    if (!page.end) return pages;
    from = page.end;
  }
  throw new Error("pagination did not end");
}

describe("/messages over 120 messages", () => {
  let alice: TestUser;
  let roomId: string;
  let sent: string[];
  let all: string[]; // every event of the room, oldest first

  beforeAll(async () => {
    alice = await createUserDirect();
    roomId = await newRoom(alice, { name: "long" });
    sent = [];
    for (let i = 0; i < 120; i++) sent.push(await sendText(alice, roomId, `m${i}`));
    all = (await paginateAll(alice, roomId, "f", 1000)).flatMap((p) => p.chunk.map((e) => e.event_id));
  }, 120_000);

  it("the whole history in order, create event first", async () => {
    expect(all.slice(-120)).toEqual(sent);
    expect(all.length).toBeGreaterThan(120);
    const first = await messages(alice, roomId, { dir: "f", limit: 1 });
    expect(first.chunk[0]!.type).toBe("m.room.create");
  });

  it.each([1, 7, 10, 50, 119, 120, 121, 500])("dir=b with limit %i returns every event exactly once, newest first", async (limit) => {
    const pages = await paginateAll(alice, roomId, "b", limit);
    const ids = pages.flatMap((p) => p.chunk.map((e) => e.event_id));
    expect(ids).toEqual([...all].reverse());
    for (const p of pages.slice(0, -1)) expect(p.chunk.length).toBe(limit);
    expect(pages.at(-1)!.end).toBeUndefined();
  });

  it.each([1, 9, 10, 64, 500])("dir=f with limit %i returns every event exactly once, oldest first", async (limit) => {
    const pages = await paginateAll(alice, roomId, "f", limit);
    expect(pages.flatMap((p) => p.chunk.map((e) => e.event_id))).toEqual(all);
  });

  it("tokens are cuts: b and f from the same token split the timeline there", async () => {
    const p1 = await messages(alice, roomId, { dir: "b", limit: 30 });
    const back = await messages(alice, roomId, { dir: "b", limit: 1000, from: p1.end! });
    const fwd = await messages(alice, roomId, { dir: "f", limit: 1000, from: p1.end! });
    const olderIds = back.chunk.map((e) => e.event_id).reverse();
    const newerIds = fwd.chunk.map((e) => e.event_id);
    expect([...olderIds, ...newerIds]).toEqual(all);
    expect(newerIds).toEqual(all.slice(-30));
    // Going forward from a backward page's `start` gives nothing (it is the live end).
    const tail = await messages(alice, roomId, { dir: "f", limit: 10, from: p1.start });
    expect(tail.chunk).toEqual([]);
    expect(tail.end).toBeUndefined();
  });

  it("`to` stops the page", async () => {
    const p1 = await messages(alice, roomId, { dir: "b", limit: 10 });
    const p2 = await messages(alice, roomId, { dir: "b", limit: 10, from: p1.end! });
    // From the live end down to p1.end: exactly p1's events, then nothing more.
    const bounded = await messages(alice, roomId, { dir: "b", limit: 50, to: p1.end! });
    expect(bounded.chunk.map((e) => e.event_id)).toEqual(p1.chunk.map((e) => e.event_id));
    expect(bounded.end).toBeUndefined();
    const fwd = await messages(alice, roomId, { dir: "f", limit: 50, from: p2.end!, to: p1.end! });
    // Forwards from p2.end up to p1.end: p2's events, oldest first.
    expect(fwd.chunk.map((e) => e.event_id)).toEqual(p2.chunk.map((e) => e.event_id).reverse());
  });

  it("stream tokens (s<N>) and bad tokens", async () => {
    const s = await messages(alice, roomId, { dir: "b", limit: 5, from: "s5" });
    expect(s.chunk.map((e) => e.event_id)).toEqual(all.slice(0, 5).reverse());
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&from=bogus`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?from=t1_1`, { user: alice }, 400, "M_MISSING_PARAM");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=x`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=-1`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&filter=${enc("{bad")}`, { user: alice }, 400, "M_INVALID_PARAM");
  });
});

describe("/messages filters", () => {
  it("types, not_types (with wildcards), senders, not_senders, contains_url, lazy_load_members", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await sendText(alice, roomId, "a1");
    await sendText(bob, roomId, "b1");
    await call("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/img`, { user: bob, body: { msgtype: "m.image", body: "pic", url: "mxc://test.local/abc" } });
    await call("PUT", `${V3}/rooms/${enc(roomId)}/send/org.example.custom/c1`, { user: alice, body: { x: 1 } });
    const get = async (filter: unknown) =>
      (await messages(alice, roomId, { dir: "b", limit: 100, filter: JSON.stringify(filter) })).chunk;

    expect((await get({ types: ["m.room.message"] })).map((e) => e.content.body)).toEqual(["pic", "b1", "a1"]);
    expect((await get({ types: ["m.room.*"], not_types: ["m.room.member", "m.room.message"] })).every((e) => e.type.startsWith("m.room.") && e.type !== "m.room.message")).toBe(true);
    expect((await get({ types: ["m.room.message"], senders: [bob.userId] })).map((e) => e.content.body)).toEqual(["pic", "b1"]);
    expect((await get({ types: ["m.room.message"], not_senders: [bob.userId] })).map((e) => e.content.body)).toEqual(["a1"]);
    expect((await get({ contains_url: true })).map((e) => e.content.body)).toEqual(["pic"]);
    expect((await get({ not_types: ["*"] }))).toEqual([]);
    expect((await get({ rooms: ["!other:test.local"] }))).toEqual([]);

    const lazy = await messages(alice, roomId, { dir: "b", limit: 2, filter: JSON.stringify({ lazy_load_members: true, types: ["m.room.message", "org.example.custom"] }) });
    expect(lazy.chunk.map((e) => e.sender)).toEqual([alice.userId, bob.userId]);
    expect(lazy.state!.map((e) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    expect(lazy.state!.every((e) => e.type === "m.room.member")).toBe(true);
  });
});

describe("history visibility over HTTP", () => {
  it("joined: a later joiner sees only events from their join on; shared: everything; world_readable: anyone", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    const secret = await sendText(alice, roomId, "before bob");
    await join(bob, roomId);
    const visible = await sendText(alice, roomId, "after bob");
    const bobView = (await messages(bob, roomId, { dir: "b", limit: 100 })).chunk;
    expect(bobView.map((e) => e.event_id)).toContain(visible);
    expect(bobView.map((e) => e.event_id)).not.toContain(secret);
    // Events before the visibility was set (the create event …) fell under the default, `shared`.
    expect(bobView.some((e) => e.type === "m.room.create")).toBe(true);
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(secret)}`, { user: bob }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/context/${enc(secret)}`, { user: bob }, 404, "M_NOT_FOUND");
    // Pagination ends (no `end`) once nothing more is visible.
    const pages = await paginateAll(bob, roomId, "b", 3);
    expect(pages.flatMap((p) => p.chunk.map((e) => e.event_id))).toEqual(bobView.map((e) => e.event_id));

    await putState(alice, roomId, "m.room.history_visibility", { history_visibility: "shared" });
    const sharedMsg = await sendText(alice, roomId, "shared");
    await join(carol, roomId);
    const carolIds = (await messages(carol, roomId, { dir: "b", limit: 100 })).chunk.map((e) => e.event_id);
    expect(carolIds).toContain(sharedMsg);
    expect(carolIds).not.toContain(visible); // sent under `joined`, before carol joined
    expect(carolIds).not.toContain(secret);

    // Eve never joined: 403 while history is not world-readable.
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b`, { user: eve }, 403, "M_FORBIDDEN");
    await putState(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    const open = await sendText(alice, roomId, "open");
    const eveIds = (await messages(eve, roomId, { dir: "b", limit: 100 })).chunk.map((e) => e.event_id);
    expect(eveIds[0]).toBe(open);
    expect(eveIds).not.toContain(sharedMsg);
    expect((await call<ClientEventJson>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(open)}`, { user: eve })).content.body).toBe("open");
  });

  it("a user who left sees history up to their leave, and the state as it was then", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat", name: "old name" });
    await join(bob, roomId);
    const seen = await sendText(alice, roomId, "seen");
    await leave(bob, roomId);
    const unseen = await sendText(alice, roomId, "unseen");
    await putState(alice, roomId, "m.room.name", { name: "new name" });
    const ids = (await messages(bob, roomId, { dir: "b", limit: 100 })).chunk.map((e) => e.event_id);
    expect(ids).toContain(seen);
    expect(ids).not.toContain(unseen);
    expect(await call("GET", `${V3}/rooms/${enc(roomId)}/state/m.room.name`, { user: bob })).toEqual({ name: "old name" });
    const state = await call<ClientEventJson[]>("GET", `${V3}/rooms/${enc(roomId)}/state`, { user: bob });
    expect(state.find((e) => e.type === "m.room.name")!.content).toEqual({ name: "old name" });
    expect(state.find((e) => e.state_key === bob.userId)!.content.membership).toBe("leave");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/joined_members`, { user: bob }, 403, "M_FORBIDDEN");
  });

  it("forward pagination of a departed user ends at their leave", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const last = await sendText(alice, roomId, "last one bob sees");
    await leave(bob, roomId);
    for (let i = 0; i < 5; i++) await sendText(alice, roomId, `later ${i}`);
    const pages = await paginateAll(bob, roomId, "f", 2);
    const ids = pages.flatMap((p) => p.chunk.map((e) => e.event_id));
    expect(ids.at(-2)).toBe(last);
    expect(pages.flatMap((p) => p.chunk).at(-1)!.content.membership).toBe("leave");
  });

  it("accepts a /sync next_batch token as `from`", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const a = await sendText(alice, roomId, "before the sync");
    const sync = await call<{ next_batch: string }>("GET", `${V3}/sync?timeout=0`, { user: alice });
    const b = await sendText(alice, roomId, "after the sync");
    const back = await messages(alice, roomId, { dir: "b", limit: 1, from: sync.next_batch });
    expect(back.chunk.map((e) => e.event_id)).toEqual([a]);
    const fwd = await messages(alice, roomId, { dir: "f", limit: 10, from: sync.next_batch });
    expect(fwd.chunk.map((e) => e.event_id)).toEqual([b]);
  });
});

describe("/context, /event, /members, /timestamp_to_event", () => {
  it("context splits the limit around the event and gives usable tokens and the state", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await sendText(alice, roomId, `c${i}`));
    const ctx = await call<{ event: ClientEventJson; events_before: ClientEventJson[]; events_after: ClientEventJson[]; start: string; end: string; state: ClientEventJson[] }>(
      "GET", `${V3}/rooms/${enc(roomId)}/context/${enc(ids[6]!)}?limit=4`, { user: alice },
    );
    expect(ctx.event.event_id).toBe(ids[6]);
    expect(ctx.events_before.map((e) => e.event_id)).toEqual([ids[5], ids[4]]);
    expect(ctx.events_after.map((e) => e.event_id)).toEqual([ids[7], ids[8]]);
    expect(ctx.state.some((e) => e.type === "m.room.create")).toBe(true);
    const back = await messages(alice, roomId, { dir: "b", limit: 1, from: ctx.start });
    expect(back.chunk[0]!.event_id).toBe(ids[3]);
    const fwd = await messages(alice, roomId, { dir: "f", limit: 1, from: ctx.end });
    expect(fwd.chunk[0]!.event_id).toBe(ids[9]);
    const lazy = await call<{ state: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/context/${enc(ids[6]!)}?limit=2&filter=${enc(JSON.stringify({ lazy_load_members: true }))}`, { user: alice });
    expect(lazy.state.map((e) => e.type)).toEqual(["m.room.member"]);
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/context/${enc("$" + "b".repeat(43))}`, { user: alice }, 404, "M_NOT_FOUND");
  });

  it("/event: unknown events and strangers get 404/403", async () => {
    const alice = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice);
    const id = await sendText(alice, roomId, "x");
    expect((await call<ClientEventJson>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(id)}`, { user: alice })).content.body).toBe("x");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(id)}`, { user: eve }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/event/${enc("$" + "c".repeat(43))}`, { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/event/nope`, { user: alice }, 400, "M_INVALID_PARAM");
  });

  it("/members: membership and not_membership, and `at` a past token", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const before = (await messages(alice, roomId, { dir: "b", limit: 1 })).start;
    await call("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: carol.userId } });
    await leave(bob, roomId);
    const members = async (q: string) =>
      (await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/members${q}`, { user: alice })).chunk
        .map((e) => `${e.state_key === alice.userId ? "alice" : e.state_key === bob.userId ? "bob" : "carol"}:${e.content.membership}`)
        .sort();
    expect(await members("")).toEqual(["alice:join", "bob:leave", "carol:invite"]);
    expect(await members("?membership=join")).toEqual(["alice:join"]);
    expect(await members("?not_membership=leave")).toEqual(["alice:join", "carol:invite"]);
    expect(await members(`?at=${enc(before)}`)).toEqual(["alice:join", "bob:join"]);
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/members?membership=dancing`, { user: alice }, 400, "M_INVALID_PARAM");
    const eve = await createUserDirect();
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/members`, { user: eve }, 403, "M_FORBIDDEN");
  });

  it("/joined_members carries display names and avatars", async () => {
    const alice = await createUserDirect();
    await call("PUT", `${V3}/profile/${enc(alice.userId)}/displayname`, { user: alice, body: { displayname: "Alice" } });
    await call("PUT", `${V3}/profile/${enc(alice.userId)}/avatar_url`, { user: alice, body: { avatar_url: "mxc://test.local/a" } });
    const roomId = await newRoom(alice);
    expect(await call("GET", `${V3}/rooms/${enc(roomId)}/joined_members`, { user: alice })).toEqual({
      joined: { [alice.userId]: { display_name: "Alice", avatar_url: "mxc://test.local/a" } },
    });
  });

  it("timestamp_to_event finds the closest event in each direction", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const a = await sendText(alice, roomId, "a");
    await new Promise((r) => setTimeout(r, 20));
    const mid = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    const b = await sendText(alice, roomId, "b");
    const path = (ts: number, dir: string) => `/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?ts=${ts}&dir=${dir}`;
    expect((await call<{ event_id: string }>("GET", path(mid, "f"), { user: alice })).event_id).toBe(b);
    expect((await call<{ event_id: string }>("GET", path(mid, "b"), { user: alice })).event_id).toBe(a);
    await expectError("GET", path(Date.now() + 100_000, "f"), { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?dir=f`, { user: alice }, 400, "M_MISSING_PARAM");
  });
});
