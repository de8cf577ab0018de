/** GET /sync: initial and incremental syncs, timelines, state, sections, long polls, read-your-writes. */
import { describe, expect, it } from "vitest";
import { testEnv } from "./helpers";
import { bodies, call, createUserDirect, member, newRoom, request, say, sync, type Ev, type SyncBody, type TestUser } from "./sync-helpers";
import { roomTokenForSyncToken } from "../../src/sync/tokens";

const filterParam = (f: unknown) => JSON.stringify(f);

/** Pages back through the room with GET /messages from a token until `n` messages (or `to`) are reached. */
async function paginateBack(roomId: string, user: TestUser, from: string, n: number, to?: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined = from;
  while (token && out.length < n) {
    const qs: URLSearchParams = new URLSearchParams({ dir: "b", from: token, limit: "7", ...(to ? { to } : {}) });
    const body: { chunk: Ev[]; end?: string } = await call<{ chunk: Ev[]; end?: string }>("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${qs}`, { user });
    for (const e of body.chunk) if (e.type === "m.room.message") out.push(String(e.content.body));
    token = body.end;
  }
  return out;
}

describe("/sync initial", () => {
  it("shows a new room with its state and timeline, without room_id on events", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await say(stub, alice, "hello");
    const s = await sync(alice);
    expect(s.next_batch).toMatch(/^u\d+$/);
    const room = s.rooms.join[roomId]!;
    expect(bodies(room)).toEqual(["hello"]);
    const all = [...room.state.events, ...room.timeline.events];
    expect(all.some((e) => e.type === "m.room.create")).toBe(true);
    expect(all.some((e) => e.type === "m.room.member" && e.state_key === alice.userId)).toBe(true);
    expect(all.every((e) => e.room_id === undefined)).toBe(true);
    expect(room.timeline.limited).toBe(false);
    expect(room.summary).toEqual({ "m.heroes": [], "m.joined_member_count": 1, "m.invited_member_count": 0 });
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    // (m.push_rules, server-managed, may be there; nothing else is.)
    expect(s.account_data.events.filter((e) => e.type !== "m.push_rules")).toEqual([]);
  });

  it("limits the timeline to the newest events, gives the rest as state, and prev_batch pages back to the start", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    for (let i = 0; i < 50; i++) await say(stub, alice, `m${i}`);
    const s = await sync(alice, { filter: filterParam({ room: { timeline: { limit: 10 } } }) });
    const room = s.rooms.join[roomId]!;
    expect(room.timeline.limited).toBe(true);
    expect(bodies(room)).toEqual(Array.from({ length: 10 }, (_, i) => `m${40 + i}`));
    // State at the start of the timeline: everything, since no state event is in the timeline.
    const types = room.state.events.map((e) => e.type).sort();
    expect(types).toEqual(["m.room.create", "m.room.history_visibility", "m.room.join_rules", "m.room.member", "m.room.power_levels"]);
    const earlier = await paginateBack(roomId, alice, room.timeline.prev_batch!, 40);
    expect(earlier).toEqual(Array.from({ length: 40 }, (_, i) => `m${39 - i}`));
  });

  it("leaves out rooms the user has left unless include_leave", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    await say(stub, alice, "before");
    await member(stub, bob, bob.userId, "leave");
    await say(stub, alice, "after");
    const plain = await sync(bob);
    expect(plain.rooms.leave[roomId]).toBeUndefined();
    expect(plain.rooms.join[roomId]).toBeUndefined();
    const withLeave = await sync(bob, { filter: filterParam({ room: { include_leave: true } }) });
    const left = withLeave.rooms.leave[roomId]!;
    const tl = left.timeline.events;
    expect(tl.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "leave" } });
    expect(bodies(left)).toEqual(["before"]);
  });
});

describe("/sync incremental", () => {
  it("returns only what is new, and nothing when nothing happened", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await say(stub, alice, "one");
    const first = await sync(alice);
    await say(stub, alice, "two");
    await say(stub, alice, "three");
    const second = await sync(alice, { since: first.next_batch });
    const room = second.rooms.join[roomId]!;
    expect(bodies(room)).toEqual(["two", "three"]);
    expect(room.timeline.limited).toBe(false);
    expect(room.state.events).toEqual([]);
    expect(room.summary).toBeUndefined();
    const third = await sync(alice, { since: second.next_batch });
    expect(third.rooms.join).toEqual({});
    expect(third.next_batch).toBe(second.next_batch);
  });

  it("read-your-writes: the sender's next sync has its event as soon as the send returns", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const s0 = await sync(alice);
    for (let i = 0; i < 5; i++) {
      const eventId = await say(stub, alice, `rw${i}`);
      const s = await sync(alice, { since: s0.next_batch });
      expect(s.rooms.join[roomId]!.timeline.events.map((e) => e.event_id)).toContain(eventId);
    }
  });

  it("limited incremental timeline: the gap's state changes come as state, prev_batch closes the gap", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const f = filterParam({ room: { timeline: { limit: 5 } } });
    await say(stub, alice, "already seen");
    const s0 = await sync(alice, { filter: f });
    for (let i = 0; i < 10; i++) await say(stub, alice, `a${i}`);
    await stub.send({ type: "m.room.topic", state_key: "", sender: alice.userId, content: { topic: "gap topic" } });
    for (let i = 0; i < 10; i++) await say(stub, alice, `b${i}`);
    const s1 = await sync(alice, { since: s0.next_batch, filter: f });
    const room = s1.rooms.join[roomId]!;
    expect(room.timeline.limited).toBe(true);
    expect(bodies(room)).toEqual(["b5", "b6", "b7", "b8", "b9"]);
    expect(room.state.events.map((e) => [e.type, e.content])).toEqual([["m.room.topic", { topic: "gap topic" }]]);
    // Filling the gap as the spec says: /messages from prev_batch back to the since token (as a room token).
    const to = (await roomTokenForSyncToken(testEnv, alice.userId, roomId, s0.next_batch))!;
    const gap = await paginateBack(roomId, alice, room.timeline.prev_batch!, 100, to);
    expect(gap).toEqual([..."43210"].map((i) => `b${i}`).concat([..."9876543210"].map((i) => `a${i}`)));
  });

  it("full_state returns the whole state even without changes", async () => {
    const alice = await createUserDirect();
    const { roomId } = await newRoom(alice);
    const s0 = await sync(alice);
    const s1 = await sync(alice, { since: s0.next_batch, full_state: true, timeout: 10_000 });
    const room = s1.rooms.join[roomId]!;
    expect(room.timeline.events).toEqual([]);
    const types = new Set(room.state.events.map((e) => e.type));
    for (const t of ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules"]) expect(types).toContain(t);
  });

  it("a room joined since the token comes with its full state", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await say(stub, alice, "before bob");
    const s0 = await sync(bob);
    expect(s0.rooms.join[roomId]).toBeUndefined();
    await member(stub, bob, bob.userId, "join");
    const s1 = await sync(bob, { since: s0.next_batch });
    const room = s1.rooms.join[roomId]!;
    const all = [...room.state.events, ...room.timeline.events];
    expect(all.some((e) => e.type === "m.room.create")).toBe(true);
    expect(room.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId });
    // Shared history: what was said before the join is visible.
    expect(bodies(room)).toEqual(["before bob"]);
  });

  it("invites appear under invite with stripped state, then the join moves the room to join", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await stub.send({ type: "m.room.name", state_key: "", sender: alice.userId, content: { name: "Tea" } });
    const s0 = await sync(bob);
    await member(stub, alice, bob.userId, "invite");
    await expect.poll(async () => (await sync(bob, { since: s0.next_batch })).rooms.invite[roomId]).toBeDefined();
    const s1 = await sync(bob, { since: s0.next_batch });
    const events = s1.rooms.invite[roomId]!.invite_state.events;
    const byType = (t: string, k = "") => events.find((e) => e.type === t && (e.state_key ?? "") === k);
    expect(byType("m.room.create")).toBeDefined();
    expect(byType("m.room.join_rules")).toBeDefined();
    expect(byType("m.room.name")?.content).toEqual({ name: "Tea" });
    expect(byType("m.room.member", alice.userId)?.content.membership).toBe("join");
    const invite = byType("m.room.member", bob.userId)!;
    expect(invite).toMatchObject({ sender: alice.userId, content: { membership: "invite" } });
    expect(invite.event_id).toMatch(/^\$/);
    // Stripped events carry only sender, type, state_key and content.
    expect(Object.keys(byType("m.room.create")!).sort()).toEqual(["content", "sender", "state_key", "type"]);
    // Once seen, the invite is not repeated.
    const s2 = await sync(bob, { since: s1.next_batch });
    expect(s2.rooms.invite[roomId]).toBeUndefined();
    await member(stub, bob, bob.userId, "join");
    const s3 = await sync(bob, { since: s2.next_batch });
    expect(s3.rooms.join[roomId]).toBeDefined();
    expect(s3.rooms.invite[roomId]).toBeUndefined();
  });

  it("a leave is reported once, under leave, ending at the leave event", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    const s0 = await sync(bob);
    await say(stub, alice, "bye bob");
    await member(stub, alice, bob.userId, "leave", { reason: "kicked" });
    await say(stub, alice, "bob is gone");
    const s1 = await sync(bob, { since: s0.next_batch });
    const left = s1.rooms.leave[roomId]!;
    expect(s1.rooms.join[roomId]).toBeUndefined();
    expect(bodies(left)).toEqual(["bye bob"]);
    expect(left.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, sender: alice.userId });
    const s2 = await sync(bob, { since: s1.next_batch });
    expect(s2.rooms.leave[roomId]).toBeUndefined();
  });
});

describe("/sync filters", () => {
  it("applies timeline types / not_types and not_rooms, inline or by filter ID", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const other = await newRoom(alice);
    await say(stub, alice, "text");
    await stub.send({ type: "org.example.custom", sender: alice.userId, content: { x: 1 } });
    const onlyMessages = await sync(alice, { filter: filterParam({ room: { timeline: { types: ["m.room.mess*"] } } }) });
    expect(onlyMessages.rooms.join[roomId]!.timeline.events.map((e) => e.type)).toEqual(["m.room.message"]);
    const { filter_id } = await call<{ filter_id: string }>("POST", `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/filter`, {
      user: alice,
      body: { room: { not_rooms: [other.roomId], timeline: { not_types: ["m.room.message"] } } },
    });
    const s = await sync(alice, { filter: filter_id });
    expect(s.rooms.join[other.roomId]).toBeUndefined();
    const types = s.rooms.join[roomId]!.timeline.events.map((e) => e.type);
    expect(types).toContain("org.example.custom");
    expect(types).not.toContain("m.room.message");
  });

  it("applies event_fields and event_format", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await say(stub, alice, "fields");
    const f = { event_fields: ["type", "content.body"], room: { timeline: { types: ["m.room.message"] } } };
    const s = await sync(alice, { filter: filterParam(f) });
    expect(s.rooms.join[roomId]!.timeline.events).toEqual([{ type: "m.room.message", content: { body: "fields" } }]);
    const fed = await sync(alice, { filter: filterParam({ event_format: "federation", room: { timeline: { types: ["m.room.message"] } } }) });
    const pdu = fed.rooms.join[roomId]!.timeline.events[0] as unknown as Record<string, unknown>;
    expect(pdu).toMatchObject({ type: "m.room.message", room_id: roomId, depth: expect.any(Number) });
    expect(pdu.signatures).toBeDefined();
  });

  it("rejects an unknown filter ID and malformed inline filters", async () => {
    const alice = await createUserDirect();
    const unknown = await request("GET", "/_matrix/client/v3/sync?filter=999", { user: alice });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ errcode: "M_INVALID_PARAM" });
    const notJson = await request("GET", `/_matrix/client/v3/sync?filter=${encodeURIComponent("{nope")}`, { user: alice });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ errcode: "M_INVALID_PARAM" });
    const bad = await request("GET", `/_matrix/client/v3/sync?filter=${encodeURIComponent('{"room":{"timeline":{"limit":"ten"}}}')}`, { user: alice });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ errcode: "M_BAD_JSON" });
  });

  it("rejects bad query parameters and unauthenticated requests", async () => {
    const alice = await createUserDirect();
    for (const q of ["since=garbage", "timeout=-5", "full_state=maybe", "set_presence=busy"]) {
      const res = await request("GET", `/_matrix/client/v3/sync?${q}`, { user: alice });
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode, q).toBe("M_INVALID_PARAM");
    }
    const ok = await request("GET", "/_matrix/client/v3/sync?set_presence=offline", { user: alice });
    expect(ok.status).toBe(200);
    const anon = await request("GET", "/_matrix/client/v3/sync");
    expect(anon.status).toBe(401);
  });

  it("lazy-loads members: the senders' and the user's own, not everyone's", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    // A named room has no heroes, so only senders (and oneself) need member events.
    await stub.send({ type: "m.room.name", state_key: "", sender: alice.userId, content: { name: "Busy" } });
    const others = await Promise.all(Array.from({ length: 6 }, () => createUserDirect()));
    for (const u of others) await member(stub, u, u.userId, "join");
    for (let i = 0; i < 12; i++) await say(stub, alice, `pad${i}`);
    await say(stub, others[2]!, "only this one talks");
    const lazy = { room: { timeline: { limit: 3 }, state: { lazy_load_members: true } } };
    const s = await sync(alice, { filter: filterParam(lazy) });
    const room = s.rooms.join[roomId]!;
    const members = room.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key).sort();
    expect(members).toEqual([alice.userId, others[2]!.userId].sort());
    expect(room.summary).toMatchObject({ "m.joined_member_count": 7 });
    expect(room.summary!["m.heroes"]).toBeUndefined();
    // Without lazy loading, every member is there.
    const full = await sync(alice, { filter: filterParam({ room: { timeline: { limit: 3 } } }) });
    expect(full.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member")).toHaveLength(7);
    // Incremental: a new sender's member event comes along, a membership change in the gap too.
    const newcomer = await createUserDirect();
    for (let i = 0; i < 5; i++) await say(stub, alice, `more${i}`);
    await member(stub, newcomer, newcomer.userId, "join");
    for (let i = 0; i < 5; i++) await say(stub, alice, `again${i}`);
    await say(stub, others[4]!, "me too");
    const inc = await sync(alice, { since: s.next_batch, filter: filterParam(lazy) });
    const incRoom = inc.rooms.join[roomId]!;
    expect(incRoom.timeline.limited).toBe(true);
    const incMembers = incRoom.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key).sort();
    // alice sent too (the timeline is again3, again4, "me too"): her member event is redundant but allowed.
    expect(incMembers).toEqual([alice.userId, newcomer.userId, others[4]!.userId].sort());
  });
});

describe("/sync summary", () => {
  it("names heroes (not oneself) and counts joined and invited members", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    await member(stub, alice, carol.userId, "invite");
    const s = await sync(alice);
    expect(s.rooms.join[roomId]!.summary).toEqual({
      "m.heroes": [bob.userId, carol.userId],
      "m.joined_member_count": 2,
      "m.invited_member_count": 1,
    });
  });
});

describe("/sync long polling", () => {
  it("returns promptly when someone else sends", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    const s0 = await sync(bob);
    const started = Date.now();
    const polling = sync(bob, { since: s0.next_batch, timeout: 20_000 });
    const user = testEnv.USERS.get(testEnv.USERS.idFromName(bob.userId));
    await expect.poll(() => user.waiterCount()).toBe(1);
    await say(stub, alice, "wake up");
    const s1 = await polling;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(bodies(s1.rooms.join[roomId])).toEqual(["wake up"]);
    expect(await user.waiterCount()).toBe(0);
  });

  it("times out with an empty response and the same token", async () => {
    const alice = await createUserDirect();
    await newRoom(alice);
    const s0 = await sync(alice);
    const started = Date.now();
    const s1 = await sync(alice, { since: s0.next_batch, timeout: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(s1.next_batch).toBe(s0.next_batch);
    expect(s1.rooms.join).toEqual({});
  });

  it("keeps waiting when everything new is filtered out", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const f = filterParam({ room: { timeline: { types: ["m.room.message"] } } });
    const s0 = await sync(alice, { filter: f });
    const polling = sync(alice, { since: s0.next_batch, timeout: 20_000, filter: f });
    const user = testEnv.USERS.get(testEnv.USERS.idFromName(alice.userId));
    await expect.poll(() => user.waiterCount()).toBe(1);
    await stub.send({ type: "org.example.noise", sender: alice.userId, content: {} });
    // The noise wakes the waiter, finds nothing to show, and waits again.
    await expect.poll(() => user.waiterCount()).toBe(1);
    await say(stub, alice, "signal");
    const s1 = await polling;
    expect(bodies(s1.rooms.join[roomId])).toEqual(["signal"]);
  });

  it("a client that goes away cancels its own waiter and no other", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const s0 = await sync(alice);
    const user = testEnv.USERS.get(testEnv.USERS.idFromName(alice.userId));
    const abort = new AbortController();
    const doomed = sync(alice, { since: s0.next_batch, timeout: 20_000 }, abort.signal).catch((e: unknown) => e);
    const survivor = sync(alice, { since: s0.next_batch, timeout: 20_000 });
    await expect.poll(() => user.waiterCount()).toBe(2);
    abort.abort();
    await doomed;
    await expect.poll(() => user.waiterCount()).toBe(1);
    await say(stub, alice, "still here");
    const s1 = await survivor;
    expect(bodies(s1.rooms.join[roomId])).toEqual(["still here"]);
    expect(await user.waiterCount()).toBe(0);
  });
});

describe("/sync and account data", () => {
  it("shows global and room account data, then only changes", async () => {
    const alice = await createUserDirect();
    const { roomId } = await newRoom(alice);
    const base = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}`;
    await call("PUT", `${base}/account_data/org.example.global`, { user: alice, body: { a: 1 } });
    await call("PUT", `${base}/rooms/${encodeURIComponent(roomId)}/account_data/org.example.room`, { user: alice, body: { b: 2 } });
    const s0: SyncBody = await sync(alice);
    expect(s0.account_data.events.filter((e) => e.type !== "m.push_rules")).toEqual([{ type: "org.example.global", content: { a: 1 } }]);
    expect(s0.rooms.join[roomId]!.account_data!.events).toEqual([{ type: "org.example.room", content: { b: 2 } }]);
    await call("PUT", `${base}/rooms/${encodeURIComponent(roomId)}/tags/u.work`, { user: alice, body: { order: 0.5 } });
    const s1 = await sync(alice, { since: s0.next_batch, timeout: 10_000 });
    expect(s1.account_data.events).toEqual([]);
    expect(s1.rooms.join[roomId]!.account_data!.events).toEqual([{ type: "m.tag", content: { tags: { "u.work": { order: 0.5 } } } }]);
    expect(s1.rooms.join[roomId]!.timeline.events).toEqual([]);
    // account_data filters
    const filtered = await sync(alice, { filter: filterParam({ account_data: { not_types: ["org.example.*"] } }) });
    expect(filtered.account_data.events.map((e) => e.type).filter((t) => t.startsWith("org.example."))).toEqual([]);
    const none = await sync(alice, { filter: filterParam({ account_data: { types: [] } }) });
    expect(none.account_data.events).toEqual([]);
  });
});

describe("/sync notification counts", () => {
  it("counts what the user's push rules notify for after their read receipt", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    await say(stub, alice, "mine do not count");
    await say(stub, bob, "one");
    await say(stub, bob, "two");
    const mention = await stub.send({
      type: "m.room.message",
      sender: bob.userId,
      content: { msgtype: "m.text", body: "hey alice", "m.mentions": { user_ids: [alice.userId] } },
    });
    if (!mention.ok) throw new Error(mention.error);
    const s0 = await sync(alice);
    expect(s0.rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 3, highlight_count: 1 });
    await call("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(mention.event_id)}`, {
      user: alice,
      body: {},
    });
    const s1 = await sync(alice, { since: s0.next_batch });
    expect(s1.rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    await say(stub, bob, "three");
    const s2 = await sync(alice, { since: s1.next_batch, timeout: 10_000 });
    expect(s2.rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 1, highlight_count: 0 });
  });
});
