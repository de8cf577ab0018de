/**
 * Event relationships (docs/relations.md): GET /relations (filters, pagination both ways, recurse, tokens from
 * /messages, history visibility, errors), bundled aggregations (m.replace per the validity rules, m.reference,
 * no annotations) on /event, /messages, /context and a limited /sync, and the send-side relation checks.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, createUserDirect, type TestUser } from "./helpers";
import { V3, enc, expectError, join, newRoom, putState, sendText, type ClientEventJson } from "./rooms-helpers";
import {
  bundled, edit, getEvent, reaction, redact, reference, relations, relationsPath, sendEvent, threadReply,
} from "./relations-helpers";

describe("m.replace aggregation follows the validity rules", () => {
  let alice: TestUser;
  let bob: TestUser;
  let roomId: string;

  beforeAll(async () => {
    alice = await createUserDirect();
    bob = await createUserDirect();
    roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
  });

  type Case = {
    name: string;
    /** Sends the edits of `original` (sent by alice); returns the event ID expected in m.replace, or null. */
    edits: (original: string) => Promise<string | null>;
  };
  const cases: Case[] = [
    { name: "a valid edit by the sender", edits: (o) => sendEvent(alice, roomId, "m.room.message", edit(o, "fixed")) },
    {
      name: "an edit by another user is ignored",
      edits: async (o) => {
        await sendEvent(bob, roomId, "m.room.message", edit(o, "bob's"));
        return null;
      },
    },
    {
      name: "an edit of another type is ignored",
      edits: async (o) => {
        await sendEvent(alice, roomId, "org.example.other", edit(o, "typed"));
        return null;
      },
    },
    {
      name: "an edit without m.new_content is ignored",
      edits: async (o) => {
        await sendEvent(alice, roomId, "m.room.message", { body: "* x", "m.relates_to": { rel_type: "m.replace", event_id: o } });
        return null;
      },
    },
    {
      name: "the most recent of several edits wins",
      edits: async (o) => {
        const ids = [];
        for (let i = 0; i < 3; i++) ids.push(await sendEvent(alice, roomId, "m.room.message", edit(o, `v${i}`)));
        const events = await Promise.all(ids.map((id) => getEvent(alice, roomId, id)));
        events.sort((a, b) => a.origin_server_ts - b.origin_server_ts || (a.event_id < b.event_id ? -1 : 1));
        return events.at(-1)!.event_id;
      },
    },
    {
      name: "a redacted latest edit falls back to the previous one",
      edits: async (o) => {
        const first = await sendEvent(alice, roomId, "m.room.message", edit(o, "first"));
        await new Promise((r) => setTimeout(r, 5));
        const second = await sendEvent(alice, roomId, "m.room.message", edit(o, "second"));
        await redact(alice, roomId, second);
        return first;
      },
    },
    {
      name: "edits of an edit do not reach the original",
      edits: async (o) => {
        const e1 = await sendEvent(alice, roomId, "m.room.message", edit(o, "one"));
        await new Promise((r) => setTimeout(r, 5));
        await sendEvent(alice, roomId, "m.room.message", edit(e1, "edit of edit"));
        return e1;
      },
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const original = await sendText(alice, roomId, c.name);
      const expected = await c.edits(original);
      const ev = await getEvent(bob, roomId, original);
      const replace = bundled(ev)?.["m.replace"];
      if (expected === null) expect(replace).toBeUndefined();
      else {
        expect(replace?.event_id).toBe(expected);
        // The whole replacement event is bundled, and the original content is left as it was.
        expect(replace?.content?.["m.new_content"]).toBeDefined();
        expect(ev.content.body).toBe(c.name);
      }
    });
  }

  it("a redacted original carries no m.replace; an edit itself carries no aggregations", async () => {
    const original = await sendText(alice, roomId, "to be redacted");
    const e1 = await sendEvent(alice, roomId, "m.room.message", edit(original, "edited"));
    await sendEvent(alice, roomId, "m.room.message", edit(e1, "nested"));
    await sendEvent(alice, roomId, "m.room.message", reference(e1));
    expect(bundled(await getEvent(alice, roomId, e1))).toBeUndefined();
    expect(bundled(await getEvent(alice, roomId, original))?.["m.replace"]?.event_id).toBe(e1);
    await redact(alice, roomId, original);
    expect(bundled(await getEvent(alice, roomId, original))?.["m.replace"]).toBeUndefined();
  });

  it("state events get no aggregations", async () => {
    const state = await putState(alice, roomId, "org.example.state", { v: 1 });
    await sendEvent(alice, roomId, "m.room.message", reference(state));
    const ev = await call<ClientEventJson>("GET", `${V3}/rooms/${enc(roomId)}/state/org.example.state/?format=event`, { user: alice });
    expect(ev.event_id).toBe(state);
    expect(bundled(await getEvent(alice, roomId, state))).toBeUndefined();
  });
});

describe("references and annotations", () => {
  it("m.reference is bundled as a chunk of event IDs; annotations are not aggregated", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const parent = await sendText(alice, roomId, "parent");
    const r1 = await sendEvent(alice, roomId, "m.room.message", reference(parent));
    const r2 = await sendEvent(alice, roomId, "m.key.verification.done", reference(parent));
    await sendEvent(alice, roomId, "m.reaction", reaction(parent, "👍"));
    const rel = bundled(await getEvent(alice, roomId, parent));
    expect(rel).toEqual({ "m.reference": { chunk: [{ event_id: r1 }, { event_id: r2 }] } });
    await redact(alice, roomId, r1);
    expect(bundled(await getEvent(alice, roomId, parent))).toEqual({ "m.reference": { chunk: [{ event_id: r2 }] } });
  });

  it("a second identical annotation is refused (M_DUPLICATE_ANNOTATION) until the first is redacted", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const parent = await sendText(alice, roomId, "react to me");
    const first = await sendEvent(alice, roomId, "m.reaction", reaction(parent, "👍"));
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.reaction/dup1`, { user: alice, body: reaction(parent, "👍") }, 400, "M_DUPLICATE_ANNOTATION");
    // Another key, another user: fine.
    await sendEvent(alice, roomId, "m.reaction", reaction(parent, "🎉"));
    await sendEvent(bob, roomId, "m.reaction", reaction(parent, "👍"));
    await redact(alice, roomId, first);
    await sendEvent(alice, roomId, "m.reaction", reaction(parent, "👍"));
  });

  it("a thread cannot start from an event that has a relation", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const root = await sendText(alice, roomId, "root");
    const reply = await sendEvent(alice, roomId, "m.room.message", threadReply(root, "in thread"));
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/nested1`, { user: alice, body: threadReply(reply, "nested") }, 400, "M_UNKNOWN");
  });
});

describe("GET /relations", () => {
  let alice: TestUser;
  let bob: TestUser;
  let roomId: string;
  let parent: string;
  /** Children of `parent`, oldest first, with their rel_type and type. */
  const children: { id: string; rel: string; type: string }[] = [];
  let grandchild: string;

  beforeAll(async () => {
    alice = await createUserDirect();
    bob = await createUserDirect();
    roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    parent = await sendText(alice, roomId, "parent");
    for (let i = 0; i < 13; i++) {
      const kind = i % 3;
      if (kind === 0) children.push({ id: await sendEvent(bob, roomId, "m.room.message", threadReply(parent, `t${i}`)), rel: "m.thread", type: "m.room.message" });
      if (kind === 1) children.push({ id: await sendEvent(alice, roomId, "org.example.ref", reference(parent)), rel: "m.reference", type: "org.example.ref" });
      if (kind === 2) children.push({ id: await sendEvent(bob, roomId, "m.reaction", reaction(parent, `k${i}`)), rel: "m.annotation", type: "m.reaction" });
      if (i === 5) await sendText(alice, roomId, "unrelated");
    }
    // An event related to a child (not to the parent itself): only `recurse` finds it.
    grandchild = await sendEvent(alice, roomId, "org.example.ref", reference(children[0]!.id));
  }, 60_000);

  async function all(dir: "b" | "f", limit: number, opts: { relType?: string; eventType?: string; params?: Record<string, string | number | boolean> } = {}) {
    const ids: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 100; i++) {
      const page = await relations(bob, roomId, parent, { ...opts, params: { ...opts.params, dir, limit, ...(from ? { from } : {}) } });
      expect(page.chunk.length).toBeLessThanOrEqual(limit);
      if (from) expect(page.prev_batch).toBe(from);
      ids.push(...page.chunk.map((e) => e.event_id));
      if (!page.next_batch) return ids;
      from = page.next_batch;
    }
    throw new Error("pagination did not end");
  }

  const filters: { name: string; relType?: string; eventType?: string; pick: (c: (typeof children)[number]) => boolean }[] = [
    { name: "all children", pick: () => true },
    { name: "by rel_type", relType: "m.thread", pick: (c) => c.rel === "m.thread" },
    { name: "by rel_type and event type", relType: "m.reference", eventType: "org.example.ref", pick: (c) => c.rel === "m.reference" },
    { name: "by a type nothing has", relType: "m.thread", eventType: "m.reaction", pick: () => false },
  ];
  for (const f of filters) {
    for (const [dir, limit] of [["b", 4], ["f", 3], ["b", 1000]] as const) {
      it(`${f.name}: dir=${dir} limit=${limit} returns every child exactly once, in order`, async () => {
        const expected = children.filter(f.pick).map((c) => c.id);
        const got = await all(dir, limit, { relType: f.relType, eventType: f.eventType });
        expect(got).toEqual(dir === "b" ? [...expected].reverse() : expected);
      });
    }
  }

  it("defaults: dir=b, five per page, no prev_batch on the first page, no recursion_depth without recurse", async () => {
    const page = await relations(bob, roomId, parent);
    expect(page.chunk.map((e) => e.event_id)).toEqual(children.slice(-5).map((c) => c.id).reverse());
    expect(page.next_batch).toBeDefined();
    expect(page.prev_batch).toBeUndefined();
    expect(page.recursion_depth).toBeUndefined();
  });

  it("recurse=true adds indirect relations (filters apply at every hop) and reports the depth", async () => {
    const flat = await relations(bob, roomId, parent, { params: { limit: 100, recurse: false } });
    expect(flat.recursion_depth).toBe(1);
    expect(flat.chunk.map((e) => e.event_id)).not.toContain(grandchild);
    const deep = await relations(bob, roomId, parent, { params: { limit: 100, recurse: true } });
    expect(deep.recursion_depth).toBe(3);
    expect(deep.chunk.map((e) => e.event_id)).toEqual([grandchild, ...children.map((c) => c.id).reverse()]);
    // The grandchild hangs off an m.thread child: filtering on m.reference drops the path to it.
    const refs = await relations(bob, roomId, parent, { relType: "m.reference", params: { limit: 100, recurse: true } });
    expect(refs.chunk.map((e) => e.event_id)).not.toContain(grandchild);
  });

  it("`to` bounds the range; /messages tokens work as `from`", async () => {
    const first = await relations(bob, roomId, parent, { params: { limit: 2 } });
    const second = await relations(bob, roomId, parent, { params: { limit: 2, from: first.next_batch! } });
    // From page 1's start to page 2's end: exactly pages 1 and 2 (the spec's example) — via a /messages token.
    const msgs = await call<{ start: string; end?: string }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=1`, { user: bob });
    const range = await relations(bob, roomId, parent, { params: { limit: 100, from: msgs.start, to: second.next_batch! } });
    expect(range.chunk.map((e) => e.event_id)).toEqual([...first.chunk, ...second.chunk].map((e) => e.event_id));
    // from page 2, to page 1: nothing.
    const none = await relations(bob, roomId, parent, { params: { limit: 100, from: second.next_batch!, to: first.next_batch! } });
    expect(none.chunk).toEqual([]);
  });

  it("children carry their own bundled aggregations", async () => {
    const page = await relations(bob, roomId, parent, { params: { limit: 100, dir: "f" } });
    const firstThreadChild = page.chunk.find((e) => e.event_id === children[0]!.id)!;
    expect(bundled(firstThreadChild)?.["m.reference"]).toEqual({ chunk: [{ event_id: grandchild }] });
  });

  type ErrorCase = { name: string; user: () => TestUser; path: () => string; status: number; errcode: string };
  const errors: ErrorCase[] = [
    { name: "unknown parent", user: () => bob, path: () => relationsPath(roomId, "$NotAnEventThatExistsAAAAAAAAAAAAAAAAAAAAAAA"), status: 404, errcode: "M_NOT_FOUND" },
    { name: "invalid event ID", user: () => bob, path: () => relationsPath(roomId, "nope"), status: 400, errcode: "M_INVALID_PARAM" },
    { name: "bad dir", user: () => bob, path: () => relationsPath(roomId, parent, undefined, undefined, { dir: "x" }), status: 400, errcode: "M_INVALID_PARAM" },
    { name: "bad limit", user: () => bob, path: () => relationsPath(roomId, parent, undefined, undefined, { limit: "-1" }), status: 400, errcode: "M_INVALID_PARAM" },
    { name: "bad recurse", user: () => bob, path: () => relationsPath(roomId, parent, undefined, undefined, { recurse: "yes" }), status: 400, errcode: "M_INVALID_PARAM" },
    { name: "unknown from token", user: () => bob, path: () => relationsPath(roomId, parent, undefined, undefined, { from: "zzz" }), status: 400, errcode: "M_INVALID_PARAM" },
    { name: "unknown to token", user: () => bob, path: () => relationsPath(roomId, parent, undefined, undefined, { to: "zzz" }), status: 400, errcode: "M_INVALID_PARAM" },
  ];
  for (const e of errors) {
    it(`${e.name}: ${e.status} ${e.errcode}`, async () => {
      await expectError("GET", e.path(), { user: e.user() }, e.status, e.errcode);
    });
  }

  it("needs authentication; a stranger to a private room gets 403; an unknown room 403", async () => {
    const res = await fetchNoAuth(relationsPath(roomId, parent));
    expect(res).toBe(401);
    const stranger = await createUserDirect();
    const privateRoom = await newRoom(alice);
    const msg = await sendText(alice, privateRoom, "secret");
    await expectError("GET", relationsPath(privateRoom, msg), { user: stranger }, 403, "M_FORBIDDEN");
    await expectError("GET", relationsPath("!unknown:test.local", msg), { user: stranger }, 403, "M_FORBIDDEN");
  });
});

async function fetchNoAuth(path: string): Promise<number> {
  const { request } = await import("./helpers");
  return (await request("GET", path)).status;
}

describe("history visibility", () => {
  it("a parent the user may not see is 404; children from before the user joined are left out", async () => {
    const alice = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "public_chat",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }],
    });
    const hidden = await sendText(alice, roomId, "before carol");
    const parent = await sendText(alice, roomId, "parent");
    const early = await sendEvent(alice, roomId, "m.room.message", threadReply(parent, "early"));
    await join(carol, roomId);
    const late = await sendEvent(alice, roomId, "m.room.message", threadReply(parent, "late"));
    await expectError("GET", relationsPath(roomId, hidden), { user: carol }, 404, "M_NOT_FOUND");
    // The parent itself predates carol: not visible either.
    await expectError("GET", relationsPath(roomId, parent), { user: carol }, 404, "M_NOT_FOUND");
    // Alice sees both children.
    const page = await relations(alice, roomId, parent, { params: { limit: 10 } });
    expect(page.chunk.map((e) => e.event_id)).toEqual([late, early]);
    // A parent carol can see, with a child before... not possible under `joined`; use a post-join parent instead.
    const parent2 = await sendText(alice, roomId, "parent2");
    const child2 = await sendEvent(alice, roomId, "m.room.message", reference(parent2));
    const page2 = await relations(carol, roomId, parent2);
    expect(page2.chunk.map((e) => e.event_id)).toEqual([child2]);
  });

  it("a departed user sees nothing sent after they left", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, {
      preset: "public_chat",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }],
    });
    await join(bob, roomId);
    const parent = await sendText(alice, roomId, "parent");
    const before = await sendEvent(alice, roomId, "m.room.message", threadReply(parent, "before"));
    await call("POST", `${V3}/rooms/${enc(roomId)}/leave`, { user: bob, body: {} });
    await sendEvent(alice, roomId, "m.room.message", threadReply(parent, "after"));
    const page = await relations(bob, roomId, parent, { params: { limit: 10 } });
    expect(page.chunk.map((e) => e.event_id)).toEqual([before]);
    // The thread summary shows the latest event bob may see.
    const ev = await getEvent(bob, roomId, parent);
    expect(bundled(ev)?.["m.thread"]?.latest_event?.event_id).toBe(before);
  });
});

describe("aggregations on /messages, /context and a limited /sync", () => {
  it("bundles on every endpoint the spec lists", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const root = await sendText(alice, roomId, "root");
    const fix = await sendEvent(alice, roomId, "m.room.message", edit(root, "root!"));
    const reply = await sendEvent(alice, roomId, "m.room.message", threadReply(root, "reply"));
    for (let i = 0; i < 5; i++) await sendText(alice, roomId, `filler ${i}`);

    const msgs = await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { user: alice });
    const inMessages = msgs.chunk.find((e) => e.event_id === root)!;
    expect(bundled(inMessages)?.["m.replace"]?.event_id).toBe(fix);
    expect(bundled(inMessages)?.["m.thread"]).toMatchObject({ count: 1, current_user_participated: true, latest_event: { event_id: reply } });

    const ctx = await call<{ event: ClientEventJson }>("GET", `${V3}/rooms/${enc(roomId)}/context/${enc(root)}?limit=2`, { user: alice });
    expect(bundled(ctx.event)?.["m.thread"]?.count).toBe(1);

    // A limited sync timeline holding the root: aggregations included.
    const sync = await call<{ rooms: { join: Record<string, { timeline: { events: ClientEventJson[]; limited: boolean } }> } }>(
      "GET",
      `${V3}/sync?filter=${enc(JSON.stringify({ room: { timeline: { limit: 9 } } }))}`,
      { user: alice },
    );
    const timeline = sync.rooms.join[roomId]!.timeline;
    expect(timeline.limited).toBe(true);
    const inSync = timeline.events.find((e) => e.event_id === root)!;
    expect(bundled(inSync)?.["m.thread"]?.latest_event?.event_id).toBe(reply);
    expect(bundled(inSync)?.["m.replace"]?.event_id).toBe(fix);
  });
});
