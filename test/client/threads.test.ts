/**
 * Threads (docs/relations.md): GET /threads (order by latest activity, include=participated, pagination with
 * every thread exactly once, visibility, errors) and the m.thread bundled aggregation (count, latest event with
 * its own edits, current_user_participated, redactions).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { expectError, join, newRoom, sendText } from "./rooms-helpers";
import { V1, bundled, edit, getEvent, redact, relations, sendEvent, threadReply, threads } from "./relations-helpers";
import { enc } from "./rooms-helpers";

describe("thread aggregation and /threads", () => {
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let roomId: string;
  let roots: string[]; // r0 (alice), r1 (bob), r2 (alice)
  const replies = new Map<string, string[]>();

  beforeAll(async () => {
    [alice, bob, carol] = await Promise.all([createUserDirect(), createUserDirect(), createUserDirect()]);
    roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(carol, roomId);
    roots = [await sendText(alice, roomId, "r0"), await sendText(bob, roomId, "r1"), await sendText(alice, roomId, "r2")];
    const reply = async (user: TestUser, root: string, body: string) => {
      const id = await sendEvent(user, roomId, "m.room.message", threadReply(root, body));
      replies.set(root, [...(replies.get(root) ?? []), id]);
      return id;
    };
    await reply(bob, roots[0]!, "r0.a");
    await reply(alice, roots[1]!, "r1.a");
    await reply(bob, roots[2]!, "r2.a");
    await reply(bob, roots[0]!, "r0.b"); // r0 is now the most recently active thread
  }, 60_000);

  type Expect = { root: number; count: number; latest: () => string; participated: Record<"alice" | "bob" | "carol", boolean> };
  const expectations: Expect[] = [
    { root: 0, count: 2, latest: () => replies.get(roots[0]!)![1]!, participated: { alice: true, bob: true, carol: false } },
    { root: 1, count: 1, latest: () => replies.get(roots[1]!)![0]!, participated: { alice: true, bob: true, carol: false } },
    { root: 2, count: 1, latest: () => replies.get(roots[2]!)![0]!, participated: { alice: true, bob: true, carol: false } },
  ];
  for (const x of expectations) {
    it(`root ${x.root}: count, latest event and participation per user`, async () => {
      for (const [name, user] of [["alice", alice], ["bob", bob], ["carol", carol]] as const) {
        const thread = bundled(await getEvent(user, roomId, roots[x.root]!))?.["m.thread"];
        expect(thread).toMatchObject({ count: x.count, current_user_participated: x.participated[name] });
        expect(thread.latest_event.event_id).toBe(x.latest());
        expect(thread.latest_event.content["m.relates_to"]).toEqual({ rel_type: "m.thread", event_id: roots[x.root] });
      }
    });
  }

  it("lists threads by latest activity; a new reply moves a thread to the front", async () => {
    expect((await threads(carol, roomId)).chunk.map((e) => e.event_id)).toEqual([roots[0], roots[2], roots[1]]);
    const r = await sendEvent(carol, roomId, "m.room.message", threadReply(roots[1]!, "r1.b"));
    replies.get(roots[1]!)!.push(r);
    const page = await threads(carol, roomId);
    expect(page.chunk.map((e) => e.event_id)).toEqual([roots[1], roots[0], roots[2]]);
    // Roots come with their aggregations.
    const first = page.chunk[0]!;
    expect(bundled(first)?.["m.thread"]).toMatchObject({ count: 2, current_user_participated: true, latest_event: { event_id: r } });
    expect(page.next_batch).toBeUndefined();
  });

  it("include=participated keeps the threads the user started or replied in", async () => {
    const carolsOwn = await sendText(carol, roomId, "carol's root");
    await sendEvent(alice, roomId, "m.room.message", threadReply(carolsOwn, "reply to carol"));
    const mine = await threads(carol, roomId, { include: "participated" });
    expect(mine.chunk.map((e) => e.event_id)).toEqual([carolsOwn, roots[1]]);
    const bobs = await threads(bob, roomId, { include: "participated" });
    expect(bobs.chunk.map((e) => e.event_id)).toEqual([roots[1], roots[0], roots[2]]);
  });

  it("paginates with limit=1: every thread exactly once, in order", async () => {
    const all = (await threads(alice, roomId, { limit: 100 })).chunk.map((e) => e.event_id);
    expect(all.length).toBe(4);
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await threads(alice, roomId, { limit: 1, ...(from ? { from } : {}) });
      seen.push(...page.chunk.map((e) => e.event_id));
      if (!page.next_batch) break;
      from = page.next_batch;
    }
    expect(seen).toEqual(all);
  });

  it("the latest event carries its own edit; redacting it falls back and lowers the count", async () => {
    const root = await sendText(alice, roomId, "edited thread");
    const first = await sendEvent(bob, roomId, "m.room.message", threadReply(root, "first"));
    const second = await sendEvent(bob, roomId, "m.room.message", threadReply(root, "second"));
    const fix = await sendEvent(bob, roomId, "m.room.message", edit(second, "second, fixed"));
    let thread = bundled(await getEvent(alice, roomId, root))?.["m.thread"];
    expect(thread.count).toBe(2);
    expect(thread.latest_event.event_id).toBe(second);
    expect(thread.latest_event.unsigned["m.relations"]["m.replace"].event_id).toBe(fix);
    // The edit itself (an m.replace of a thread event) is not a thread event.
    expect((await relations(alice, roomId, root, { relType: "m.thread", params: { limit: 10 } })).chunk.map((e) => e.event_id)).toEqual([second, first]);

    await redact(bob, roomId, second);
    thread = bundled(await getEvent(alice, roomId, root))?.["m.thread"];
    expect(thread.count).toBe(1);
    expect(thread.latest_event.event_id).toBe(first);
    // `first` is still the room's latest thread activity, so the thread stays at the front.
    expect((await threads(alice, roomId, { limit: 1 })).chunk[0]!.event_id).toBe(root);

    await redact(bob, roomId, first);
    expect(bundled(await getEvent(alice, roomId, root))?.["m.thread"]).toBeUndefined();
    expect((await threads(alice, roomId, { limit: 100 })).chunk.map((e) => e.event_id)).not.toContain(root);
  });

  const errors: { name: string; query: string; status: number; errcode: string }[] = [
    { name: "bad include", query: "include=mine", status: 400, errcode: "M_INVALID_PARAM" },
    { name: "limit 0", query: "limit=0", status: 400, errcode: "M_INVALID_PARAM" },
    { name: "negative limit", query: "limit=-3", status: 400, errcode: "M_INVALID_PARAM" },
    { name: "unknown from token", query: "from=garbage", status: 400, errcode: "M_INVALID_PARAM" },
  ];
  for (const e of errors) {
    it(`${e.name}: ${e.status} ${e.errcode}`, async () => {
      await expectError("GET", `${V1}/rooms/${enc(roomId)}/threads?${e.query}`, { user: alice }, e.status, e.errcode);
    });
  }

  it("needs authentication and membership (or world-readable history)", async () => {
    expect((await request("GET", `${V1}/rooms/${enc(roomId)}/threads`)).status).toBe(401);
    const stranger = await createUserDirect();
    const privateRoom = await newRoom(alice);
    await expectError("GET", `${V1}/rooms/${enc(privateRoom)}/threads`, { user: stranger }, 403, "M_FORBIDDEN");
  });
});

describe("thread visibility", () => {
  it("roots the user may not see are left out of /threads", async () => {
    const alice = await createUserDirect();
    const dave = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "public_chat",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }],
    });
    const early = await sendText(alice, roomId, "before dave");
    await join(dave, roomId);
    const late = await sendText(alice, roomId, "after dave");
    await sendEvent(alice, roomId, "m.room.message", threadReply(early, "reply to early"));
    await sendEvent(alice, roomId, "m.room.message", threadReply(late, "reply to late"));
    expect((await threads(alice, roomId)).chunk.map((e) => e.event_id)).toEqual([late, early]);
    expect((await threads(dave, roomId)).chunk.map((e) => e.event_id)).toEqual([late]);
  });

  it("world-readable rooms list threads for non-members", async () => {
    const alice = await createUserDirect();
    const stranger = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "public_chat",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }],
    });
    const root = await sendText(alice, roomId, "public root");
    await sendEvent(alice, roomId, "m.room.message", threadReply(root, "public reply"));
    const page = await threads(stranger, roomId);
    expect(page.chunk.map((e) => e.event_id)).toEqual([root]);
    expect(bundled(page.chunk[0]!)?.["m.thread"]?.current_user_participated).toBe(false);
  });
});

describe("thread order after a redaction", () => {
  it("redacting a thread's newest reply moves the thread back to its previous activity", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const a = await sendText(alice, roomId, "A");
    const b = await sendText(alice, roomId, "B");
    await sendEvent(alice, roomId, "m.room.message", threadReply(a, "A1"));
    await sendEvent(alice, roomId, "m.room.message", threadReply(b, "B1"));
    const a2 = await sendEvent(alice, roomId, "m.room.message", threadReply(a, "A2"));
    expect((await threads(alice, roomId)).chunk.map((e) => e.event_id)).toEqual([a, b]);
    await redact(alice, roomId, a2);
    expect((await threads(alice, roomId)).chunk.map((e) => e.event_id)).toEqual([b, a]);
  });
});

describe("ignored users in thread summaries", () => {
  it("replies by an ignored user are neither counted nor chosen as the latest event", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(carol, roomId);
    const root = await sendText(alice, roomId, "root");
    const fromAlice = await sendEvent(alice, roomId, "m.room.message", threadReply(root, "alice"));
    const fromCarol = await sendEvent(carol, roomId, "m.room.message", threadReply(root, "carol"));
    expect(bundled(await getEvent(bob, roomId, root))?.["m.thread"]).toMatchObject({ count: 2, latest_event: { event_id: fromCarol } });
    await call("PUT", `/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.ignored_user_list`, {
      user: bob,
      body: { ignored_users: { [carol.userId]: {} } },
    });
    expect(bundled(await getEvent(bob, roomId, root))?.["m.thread"]).toMatchObject({ count: 1, latest_event: { event_id: fromAlice } });
    expect(bundled((await threads(bob, roomId)).chunk[0]!)?.["m.thread"]?.count).toBe(1);
    // Others are unaffected.
    expect(bundled(await getEvent(alice, roomId, root))?.["m.thread"]?.count).toBe(2);
  });
});
