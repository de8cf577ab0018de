/**
 * POST /search (src/search, durable-objects/room/search-index.ts): ranking and recency, keys, filters,
 * history visibility, pagination, redactions, context / state / groups, and bad input.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { V3, enc, expectError, join, leave, newRoom, putState, sendText } from "./rooms-helpers";

interface Result {
  rank: number;
  result: { event_id: string; room_id: string; sender: string; type: string; content: Record<string, unknown> };
  context: {
    events_before?: { event_id: string }[];
    events_after?: { event_id: string }[];
    start?: string;
    end?: string;
    profile_info?: Record<string, { displayname: string | null }>;
  };
}
interface RoomEvents {
  results: Result[];
  count: number;
  highlights: string[];
  next_batch?: string;
  state?: Record<string, { type: string }[]>;
  groups?: Record<string, Record<string, { results: string[]; order: number; next_batch?: string }>>;
}

async function search(user: TestUser, criteria: Record<string, unknown>, nextBatch?: string): Promise<RoomEvents> {
  const q = nextBatch === undefined ? "" : `?next_batch=${enc(nextBatch)}`;
  const r = await call<{ search_categories: { room_events: RoomEvents } }>("POST", `${V3}/search${q}`, {
    user,
    body: { search_categories: { room_events: criteria } },
  });
  return r.search_categories.room_events;
}

const ids = (r: RoomEvents) => r.results.map((x) => x.result.event_id);

describe("POST /search", () => {
  it("finds messages by word, with stemming, rank and highlights", async () => {
    const alice = await createUserDirect();
    const room = await newRoom(alice, { preset: "public_chat" });
    const hit = await sendText(alice, room, "We come in peace, said the Martians");
    await sendText(alice, room, "nothing to see here");
    const running = await sendText(alice, room, "she was running late");

    const r = await search(alice, { search_term: "martians" });
    expect(ids(r)).toEqual([hit]);
    expect(r.count).toBe(1);
    expect(r.results[0]!.rank).toBeGreaterThan(0);
    expect(r.results[0]!.result.room_id).toBe(room);
    expect(r.highlights.map((h) => h.toLowerCase())).toContain("martians");

    const stemmed = await search(alice, { search_term: "runs" });
    expect(ids(stemmed)).toEqual([running]);
    expect(stemmed.highlights).toContain("running");

    // Nothing searchable in the term: no results, no error.
    expect((await search(alice, { search_term: "!!! ..." })).results).toEqual([]);
    // Phrases and exclusions.
    expect(ids(await search(alice, { search_term: '"said the martians"' }))).toEqual([hit]);
    expect(ids(await search(alice, { search_term: "see -nothing" }))).toEqual([]);
    expect(ids(await search(alice, { search_term: "martians or running", order_by: "recent" }))).toEqual([running, hit]);
  });

  it("orders by rank or by recency", async () => {
    const alice = await createUserDirect();
    const room = await newRoom(alice);
    const dense = await sendText(alice, room, "banana banana banana split");
    const sparse = await sendText(alice, room, "I had a banana once, and then many other fruits, apples, pears and plums of all sorts");
    const rank = await search(alice, { search_term: "banana", order_by: "rank" });
    expect(ids(rank)).toEqual([dense, sparse]);
    expect(rank.results[0]!.rank).toBeGreaterThan(rank.results[1]!.rank);
    expect(ids(await search(alice, { search_term: "banana", order_by: "recent" }))).toEqual([sparse, dense]);
  });

  it("searches the keys asked for: body, name and topic", async () => {
    const alice = await createUserDirect();
    const room = await newRoom(alice, { name: "Project Zeta", topic: "all about zeta particles" });
    const msg = await sendText(alice, room, "zeta is great");
    const richTopic = await putState(alice, room, "m.room.topic", {
      topic: "plain words",
      "m.topic": { "m.text": [{ mimetype: "text/html", body: "<b>ignored</b>" }, { body: "quasar shown as text" }] },
    });

    const all = await search(alice, { search_term: "zeta", order_by: "recent" });
    expect(all.results.map((r) => r.result.type).sort()).toEqual(["m.room.message", "m.room.name", "m.room.topic"]);
    const names = await search(alice, { search_term: "zeta", keys: ["content.name"] });
    expect(names.results.map((r) => r.result.type)).toEqual(["m.room.name"]);
    const bodies = await search(alice, { search_term: "zeta", keys: ["content.body"] });
    expect(ids(bodies)).toEqual([msg]);
    // m.topic's text/plain body is searched; HTML is not.
    expect(ids(await search(alice, { search_term: "quasar", keys: ["content.topic"] }))).toEqual([richTopic]);
    expect(ids(await search(alice, { search_term: "ignored" }))).toEqual([]);
  });

  it("applies the filter: rooms, not_rooms, senders, not_senders, types, limit", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const r1 = await newRoom(alice, { preset: "public_chat" });
    const r2 = await newRoom(alice, { preset: "public_chat" });
    await join(bob, r1);
    const a1 = await sendText(alice, r1, "kiwi from alice");
    const b1 = await sendText(bob, r1, "kiwi from bob");
    const a2 = await sendText(alice, r2, "kiwi in room two");

    const recent = { search_term: "kiwi", order_by: "recent" };
    expect(ids(await search(alice, recent))).toEqual([a2, b1, a1]);
    expect(ids(await search(alice, { ...recent, filter: { rooms: [r1] } }))).toEqual([b1, a1]);
    expect(ids(await search(alice, { ...recent, filter: { not_rooms: [r1] } }))).toEqual([a2]);
    expect(ids(await search(alice, { ...recent, filter: { senders: [bob.userId] } }))).toEqual([b1]);
    expect(ids(await search(alice, { ...recent, filter: { not_senders: [bob.userId] } }))).toEqual([a2, a1]);
    expect(ids(await search(alice, { ...recent, filter: { types: ["m.room.name"] } }))).toEqual([]);
    expect(ids(await search(alice, { ...recent, filter: { limit: 1 } }))).toEqual([a2]);
    // Bob is only in r1.
    expect(ids(await search(bob, recent))).toEqual([b1, a1]);
  });

  it("returns only what the user may see: joined-only history, nothing after leaving, no foreign rooms", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const eve = await createUserDirect();
    const room = await newRoom(alice, { preset: "public_chat" });
    await putState(alice, room, "m.room.history_visibility", { history_visibility: "joined" });
    await sendText(alice, room, "secret before bob");
    await join(bob, room);
    const during = await sendText(alice, room, "secret while bob is here");
    await leave(bob, room);
    await sendText(alice, room, "secret after bob left");

    const r = await search(bob, { search_term: "secret", order_by: "recent" });
    expect(ids(r)).toEqual([during]);
    expect(r.count).toBe(1);
    expect((await search(alice, { search_term: "secret" })).count).toBe(3);
    // Eve was never in the room (even naming it in the filter does not help).
    expect((await search(eve, { search_term: "secret", filter: { rooms: [room] } })).results).toEqual([]);
  });

  it("paginates recent results exactly once, across rooms", async () => {
    const alice = await createUserDirect();
    const r1 = await newRoom(alice);
    const r2 = await newRoom(alice);
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) sent.push(await sendText(alice, i % 2 ? r1 : r2, `pagination word ${i}`));

    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await search(alice, { search_term: "pagination", order_by: "recent", filter: { limit: 3 } }, token);
      seen.push(...ids(page));
      token = page.next_batch;
      pages++;
      expect(pages).toBeLessThan(6);
    } while (token);
    expect(seen).toEqual([...sent].reverse());
    expect(new Set(seen).size).toBe(7);
  });

  it("searches an upgraded room's predecessors when the filter names the new room", async () => {
    const alice = await createUserDirect();
    const old = await newRoom(alice, { room_version: "10" });
    const before = await sendText(alice, old, "heirloom from the old days");
    const room = (await call<{ replacement_room: string }>("POST", `${V3}/rooms/${enc(old)}/upgrade`, { user: alice, body: { new_version: "11" } }))
      .replacement_room;
    const after = await sendText(alice, room, "heirloom in the new room");
    expect(ids(await search(alice, { search_term: "heirloom", order_by: "recent", filter: { rooms: [room] } }))).toEqual([after, before]);
  });

  it("does not find redacted events", async () => {
    const alice = await createUserDirect();
    const room = await newRoom(alice);
    const gone = await sendText(alice, room, "embarrassing typo");
    const kept = await sendText(alice, room, "another typo");
    expect(ids(await search(alice, { search_term: "typo", order_by: "recent" }))).toEqual([kept, gone]);
    await call("PUT", `${V3}/rooms/${enc(room)}/redact/${enc(gone)}/r1`, { user: alice, body: {} });
    const r = await search(alice, { search_term: "typo" });
    expect(ids(r)).toEqual([kept]);
    expect(r.count).toBe(1);
    expect(ids(await search(alice, { search_term: "embarrassing" }))).toEqual([]);
  });

  it("adds context, profiles, state and groups on request", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const room = await newRoom(alice, { preset: "public_chat" });
    await join(bob, room);
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Bobby" } });
    const before = await sendText(alice, room, "first line");
    const hit = await sendText(bob, room, "the plum is ripe");
    const after = await sendText(alice, room, "last line");
    const other = await sendText(alice, room, "plum pudding");

    const r = await search(alice, {
      search_term: "plum",
      order_by: "recent",
      event_context: { before_limit: 1, after_limit: 1, include_profile: true },
      include_state: true,
      groupings: { group_by: [{ key: "room_id" }, { key: "sender" }] },
    });
    expect(ids(r)).toEqual([other, hit]);
    const ctx = r.results[1]!.context;
    expect(ctx.events_before!.map((e) => e.event_id)).toEqual([before]);
    expect(ctx.events_after!.map((e) => e.event_id)).toEqual([after]);
    expect(typeof ctx.start).toBe("string");
    expect(typeof ctx.end).toBe("string");
    expect(ctx.profile_info![bob.userId]!.displayname).toBe("Bobby");
    expect(r.state![room]!.some((e) => e.type === "m.room.create")).toBe(true);
    expect(r.groups!.room_id![room]!.results).toEqual([other, hit]);
    expect(r.groups!.sender![bob.userId]!.results).toEqual([hit]);
    expect(r.groups!.sender![alice.userId]!.results).toEqual([other]);

    // Without event_context the context is empty, and no state or groups are given.
    const plain = await search(alice, { search_term: "plum" });
    expect(plain.results[0]!.context).toEqual({});
    expect(plain.state).toBeUndefined();
    expect(plain.groups).toBeUndefined();
  });

  it("continues within a group with the group's next_batch", async () => {
    const alice = await createUserDirect();
    const r1 = await newRoom(alice);
    const r2 = await newRoom(alice);
    const inR1: string[] = [];
    for (let i = 0; i < 3; i++) {
      inR1.push(await sendText(alice, r1, `grouped ${i}`));
      await sendText(alice, r2, `grouped other ${i}`);
    }
    const first = await search(alice, { search_term: "grouped", order_by: "recent", filter: { limit: 2 }, groupings: { group_by: [{ key: "room_id" }] } });
    const token = first.groups!.room_id![r2]?.next_batch ?? first.groups!.room_id![r1]!.next_batch!;
    const groupRoom = first.groups!.room_id![r2] ? r2 : r1;
    const rest = await search(alice, { search_term: "grouped", order_by: "recent", filter: { limit: 10 }, groupings: { group_by: [{ key: "room_id" }] } }, token);
    expect(rest.results.every((x) => x.result.room_id === groupRoom)).toBe(true);
    expect(rest.results.length).toBeGreaterThan(0);
    expect(inR1.length).toBe(3);
  });

  it("rejects bad input", async () => {
    const alice = await createUserDirect();
    const path = `${V3}/search`;
    expect((await request("POST", path, { body: { search_categories: {} } })).status).toBe(401);
    await expectError("POST", path, { user: alice, body: {} }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: { search_categories: { people: { search_term: "x" } } } }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: { search_categories: { room_events: {} } } }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: { search_categories: { room_events: { search_term: 5 } } } }, 400, "M_BAD_JSON");
    await expectError("POST", path, { user: alice, body: { search_categories: { room_events: { search_term: "x", order_by: "best" } } } }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: { search_categories: { room_events: { search_term: "x", keys: ["content.msgtype"] } } } }, 400, "M_BAD_JSON");
    await expectError("POST", path, {
      user: alice, body: { search_categories: { room_events: { search_term: "x", groupings: { group_by: [{ key: "type" }] } } } },
    }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: { search_categories: { room_events: { search_term: "x", filter: { limit: "ten" } } } } }, 400, "M_INVALID_PARAM");
    await expectError("POST", `${path}?next_batch=not-a-token`, { user: alice, body: { search_categories: { room_events: { search_term: "x" } } } }, 400, "M_UNKNOWN");
    await expectError("POST", path, { user: alice, body: "not json" }, 400, "M_NOT_JSON");
  });
});

describe("the room's index is written in batches", () => {
  const roomDO = (roomId: string) => testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
  const counts = (roomId: string) =>
    runInDurableObject(roomDO(roomId), (_: unknown, state: DurableObjectState) => ({
      pending: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM search_pending").one().n,
      indexed: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM search_index").one().n,
    }));

  /** Waits for the room's alarm to run the due `search_index` task (stepping the alarm until nothing is queued). */
  async function indexedByTheTask(roomId: string) {
    for (let i = 0; i < 40; i++) {
      const c = await counts(roomId);
      if (c.pending === 0) return c;
      await new Promise((r) => setTimeout(r, 200));
      await runDurableObjectAlarm(roomDO(roomId));
    }
    throw new Error("the search_index task never ran");
  }

  it("queues events on commit; the room's task (or the next search) indexes them; a redaction drops a queued event", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { name: "Batching" });
    const before = await indexedByTheTask(roomId); // what creating the room queued

    const kept = await sendText(alice, roomId, "walrus one");
    await sendText(alice, roomId, "walrus two");
    const redacted = await sendText(alice, roomId, "walrus three");
    await call("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(redacted)}/r${Date.now()}`, { user: alice, body: {} });
    expect(await counts(roomId)).toEqual({ pending: 2, indexed: before.indexed });

    // The room's task writes the batch when it is due (SEARCH_INDEX_DELAY_MS), by the alarm.
    expect(await indexedByTheTask(roomId)).toEqual({ pending: 0, indexed: before.indexed + 2 });

    // A search never misses queued events: it indexes them first.
    await sendText(alice, roomId, "walrus four");
    expect((await counts(roomId)).pending).toBe(1);
    const found = await search(alice, { search_term: "walrus", order_by: "recent" });
    expect(found.results.map((r) => r.result.content.body)).toEqual(["walrus four", "walrus two", "walrus one"]);
    expect(ids(found)).toContain(kept);
    expect((await counts(roomId)).pending).toBe(0);
  });
});
