/**
 * `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` (src/routes/client/spaces.ts, src/rooms/spaces.ts): a space
 * with nested subspaces and rooms of each join rule, what each user may see, suggested_only, max_depth, limit and
 * `from` pagination, ordering, cycles, and the 400/401/403 answers.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { roomStub } from "../rooms/helpers";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { enc, expectError, invite, join, newRoom, putState } from "./rooms-helpers";

const V1 = "/_matrix/client/v1";

interface Chunk {
  room_id: string;
  name?: string;
  room_type?: string;
  join_rule?: string;
  world_readable: boolean;
  num_joined_members: number;
  allowed_room_ids?: string[];
  children_state: { type: string; state_key: string; sender: string; content: Record<string, unknown>; origin_server_ts: number; event_id?: string }[];
}
interface Page {
  rooms: Chunk[];
  next_batch?: string;
}

const hierarchy = (user: TestUser, roomId: string, query = "") => call<Page>("GET", `${V1}/rooms/${enc(roomId)}/hierarchy${query ? `?${query}` : ""}`, { user });

async function addChild(owner: TestUser, parent: string, child: string, content: Record<string, unknown> = {}): Promise<void> {
  await putState(owner, parent, "m.space.child", { via: ["test.local"], ...content }, child);
}

/** Every room of the walk, following `next_batch`, with the number of pages. */
async function allPages(user: TestUser, roomId: string, query: string): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let from: string | undefined;
  let pages = 0;
  do {
    const page = await hierarchy(user, roomId, `${query}${from ? `&from=${enc(from)}` : ""}`);
    ids.push(...page.rooms.map((r) => r.room_id));
    from = page.next_batch;
    pages++;
    expect(pages).toBeLessThan(50);
  } while (from);
  return { ids, pages };
}

describe("/hierarchy", () => {
  let owner: TestUser;
  let member: TestUser; // joined the root space
  let stranger: TestUser; // joined nothing
  let space: string;
  const r = {} as Record<"pub" | "sub" | "subsub" | "deep" | "inviteOnly" | "restricted" | "knock" | "readable" | "invited" | "noVia" | "badVia", string>;

  // space (public m.space)
  // ├─ pub            public room, suggested, order "b"
  // ├─ sub            public subspace, order "a"
  // │  ├─ inviteOnly  invite-only: seen by nobody but its members (order "1")
  // │  ├─ restricted  restricted to members of `space` (order "2")
  // │  ├─ subsub      public subspace (order "3")
  // │  │  └─ deep     public room
  // │  └─ space       (a cycle back to the root)
  // ├─ knock         knock join rule, suggested, order "c"
  // ├─ readable      invite-only but world_readable, order "d"
  // ├─ invited       invite-only; `member` is invited; no order (comes last)
  // ├─ noVia         public room named by a child event without `via` (ignored)
  // └─ badVia        public room named by a child event whose `via` is empty (ignored)
  beforeAll(async () => {
    owner = await createUserDirect();
    member = await createUserDirect();
    stranger = await createUserDirect();
    const spaceBody = (name: string) => ({ preset: "public_chat", name, creation_content: { type: "m.space" } });
    space = await newRoom(owner, spaceBody("Root"));
    r.pub = await newRoom(owner, { preset: "public_chat", name: "Public", topic: "hello" });
    r.sub = await newRoom(owner, spaceBody("Sub"));
    r.subsub = await newRoom(owner, spaceBody("SubSub"));
    r.deep = await newRoom(owner, { preset: "public_chat", name: "Deep" });
    r.inviteOnly = await newRoom(owner, { preset: "private_chat", name: "Invite only" });
    r.restricted = await newRoom(owner, {
      preset: "private_chat",
      name: "Restricted",
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    r.knock = await newRoom(owner, { preset: "private_chat", name: "Knock", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    r.readable = await newRoom(owner, {
      preset: "private_chat",
      name: "Readable",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }],
    });
    r.invited = await newRoom(owner, { preset: "private_chat", name: "Invited" });
    r.noVia = await newRoom(owner, { preset: "public_chat", name: "No via" });
    r.badVia = await newRoom(owner, { preset: "public_chat", name: "Bad via" });

    await addChild(owner, space, r.pub, { suggested: true, order: "b" });
    await addChild(owner, space, r.sub, { order: "a" });
    await addChild(owner, space, r.knock, { suggested: true, order: "c" });
    await addChild(owner, space, r.readable, { order: "d" });
    await addChild(owner, space, r.invited);
    await putState(owner, space, "m.space.child", { suggested: true }, r.noVia);
    await putState(owner, space, "m.space.child", { via: [] }, r.badVia);
    await addChild(owner, r.sub, r.inviteOnly, { order: "1" });
    await addChild(owner, r.sub, r.restricted, { order: "2" });
    await addChild(owner, r.sub, r.subsub, { order: "3" });
    await addChild(owner, r.sub, space);
    await addChild(owner, r.subsub, r.deep);

    await join(member, space);
    await invite(owner, r.invited, member.userId);
  });

  it("walks the tree depth-first, each room once, showing what the member may see", async () => {
    const page = await hierarchy(member, space);
    expect(page.next_batch).toBeUndefined();
    const ids = page.rooms.map((x) => x.room_id);
    // Children by `order` (sub "a", pub "b", knock "c", readable "d"), those without one (invited) last; a
    // subspace's children are visited before its later siblings.
    expect(ids).toEqual([space, r.sub, r.restricted, r.subsub, r.deep, r.pub, r.knock, r.readable, r.invited]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).not.toContain(r.inviteOnly);
    expect(ids).not.toContain(r.noVia);
    expect(ids).not.toContain(r.badVia);

    const root = page.rooms[0]!;
    expect(root).toMatchObject({ room_id: space, name: "Root", room_type: "m.space", join_rule: "public", num_joined_members: 2, world_readable: false, guest_can_join: false });
    // children_state: stripped m.space.child events with origin_server_ts, only those with a usable via.
    expect(root.children_state.map((c) => c.state_key).sort()).toEqual([r.pub, r.sub, r.knock, r.readable, r.invited].sort());
    const pubChild = root.children_state.find((c) => c.state_key === r.pub)!;
    expect(pubChild).toEqual({
      type: "m.space.child", state_key: r.pub, sender: owner.userId, content: { via: ["test.local"], suggested: true, order: "b" },
      origin_server_ts: expect.any(Number),
    });
    const byId = new Map(page.rooms.map((x) => [x.room_id, x]));
    expect(byId.get(r.pub)).toMatchObject({ name: "Public", topic: "hello", join_rule: "public", children_state: [] });
    expect(byId.get(r.pub)!.room_type).toBeUndefined();
    expect(byId.get(r.restricted)).toMatchObject({ join_rule: "restricted", allowed_room_ids: [space] });
    expect(byId.get(r.knock)).toMatchObject({ join_rule: "knock" });
    expect(byId.get(r.readable)).toMatchObject({ join_rule: "invite", world_readable: true });
    expect(byId.get(r.invited)).toMatchObject({ join_rule: "invite", world_readable: false });
    // The cycle back to the root is listed among the subspace's children but not visited again.
    expect(byId.get(r.sub)!.children_state.map((c) => c.state_key)).toContain(space);
  });

  it("shows a stranger only what anyone may see; the owner sees everything", async () => {
    const ids = (await hierarchy(stranger, space)).rooms.map((x) => x.room_id);
    expect(ids).toEqual([space, r.sub, r.subsub, r.deep, r.pub, r.knock, r.readable]);
    const all = (await hierarchy(owner, space)).rooms.map((x) => x.room_id);
    expect(all).toEqual([space, r.sub, r.inviteOnly, r.restricted, r.subsub, r.deep, r.pub, r.knock, r.readable, r.invited]);
  });

  it("suggested_only keeps suggested children only", async () => {
    const page = await hierarchy(member, space, "suggested_only=true");
    expect(page.rooms.map((x) => x.room_id)).toEqual([space, r.pub, r.knock]);
    expect(page.rooms[0]!.children_state.map((c) => c.state_key)).toEqual([r.pub, r.knock]);
  });

  it("max_depth bounds how far the walk goes", async () => {
    expect((await hierarchy(member, space, "max_depth=0")).rooms.map((x) => x.room_id)).toEqual([space]);
    const one = await hierarchy(member, space, "max_depth=1");
    expect(one.rooms.map((x) => x.room_id)).toEqual([space, r.sub, r.pub, r.knock, r.readable, r.invited]);
    // Rooms at the limit still show their children_state.
    expect(one.rooms[1]!.children_state.length).toBe(4);
    expect((await hierarchy(member, space, "max_depth=2")).rooms.map((x) => x.room_id)).toEqual([
      space, r.sub, r.restricted, r.subsub, r.pub, r.knock, r.readable, r.invited,
    ]);
  });

  it("paginates with limit and from: every room exactly once, in the same order as one page", async () => {
    const whole = (await hierarchy(member, space)).rooms.map((x) => x.room_id);
    for (const limit of [1, 2, 4]) {
      const { ids, pages } = await allPages(member, space, `limit=${limit}`);
      expect(ids).toEqual(whole);
      expect(pages).toBe(Math.ceil(whole.length / limit));
    }
    // With suggested_only and max_depth fixed across pages.
    expect((await allPages(member, space, "limit=1&suggested_only=true")).ids).toEqual([space, r.pub, r.knock]);
    expect((await allPages(member, space, "limit=2&max_depth=1")).ids).toEqual([space, r.sub, r.pub, r.knock, r.readable, r.invited]);
  });

  it("a token can be used again (a retried page gives the same rooms) and is bound to its walk", async () => {
    const first = await hierarchy(member, space, "limit=3");
    expect(first.rooms).toHaveLength(3);
    const token = first.next_batch!;
    const a = await hierarchy(member, space, `limit=3&from=${enc(token)}`);
    const b = await hierarchy(member, space, `limit=3&from=${enc(token)}`);
    expect(a.rooms.map((x) => x.room_id)).toEqual(b.rooms.map((x) => x.room_id));
    expect(a.rooms.map((x) => x.room_id)).toEqual([r.subsub, r.deep, r.pub]);
    // The limit may change between pages.
    expect((await hierarchy(member, space, `limit=50&from=${enc(token)}`)).rooms.map((x) => x.room_id)).toEqual([
      r.subsub, r.deep, r.pub, r.knock, r.readable, r.invited,
    ]);
    const path = (q: string) => `${V1}/rooms/${enc(space)}/hierarchy?${q}`;
    await expectError("GET", path(`from=${enc(token)}&suggested_only=true`), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path(`from=${enc(token)}&max_depth=3`), { user: member }, 400, "M_INVALID_PARAM");
    // Another user's token, another root, and tokens that were never issued.
    await expectError("GET", path(`from=${enc(token)}`), { user: stranger }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V1}/rooms/${enc(r.sub)}/hierarchy?from=${enc(token)}`, { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path("from=bm90YXRva2Vu"), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path("from=%00%01"), { user: member }, 400, "M_INVALID_PARAM");
  });

  it("a token expires after five minutes (sessions live in the root's RoomDO)", async () => {
    const first = await hierarchy(member, space, "limit=2");
    const token = first.next_batch!;
    expect((await hierarchy(member, space, `limit=2&from=${enc(token)}`)).rooms).toHaveLength(2);
    const expires = await runInDurableObject(roomStub(space), (_i, state) =>
      state.storage.sql.exec<{ expires_ts: number }>("SELECT expires_ts FROM hierarchy_sessions WHERE token = ?", token).one().expires_ts,
    );
    expect(expires - Date.now()).toBeGreaterThan(4 * 60_000);
    expect(expires - Date.now()).toBeLessThanOrEqual(5 * 60_000);
    await runInDurableObject(roomStub(space), (_i, state) => {
      state.storage.sql.exec("UPDATE hierarchy_sessions SET expires_ts = ? WHERE token = ?", Date.now() - 1, token);
    });
    await expectError("GET", `${V1}/rooms/${enc(space)}/hierarchy?from=${enc(token)}`, { user: member }, 400, "M_INVALID_PARAM");
    // The next session stored for this root clears the expired one away.
    await hierarchy(member, space, "limit=2");
    const left = await runInDurableObject(roomStub(space), (_i, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM hierarchy_sessions WHERE token = ?", token).one().n,
    );
    expect(left).toBe(0);
  });

  it("refuses a root the user may not see (403), an unknown one (403, as the spec says), and bad parameters (400)", async () => {
    await expectError("GET", `${V1}/rooms/${enc(r.inviteOnly)}/hierarchy`, { user: member }, 403, "M_FORBIDDEN");
    await expectError("GET", `${V1}/rooms/${enc(r.restricted)}/hierarchy`, { user: stranger }, 403, "M_FORBIDDEN");
    await expectError("GET", `${V1}/rooms/${enc("!unknown:test.local")}/hierarchy`, { user: member }, 403, "M_FORBIDDEN");
    // The restricted room is visible to a member of its allowed room, as a root too.
    expect((await hierarchy(member, r.restricted)).rooms.map((x) => x.room_id)).toEqual([r.restricted]);
    const path = (q: string) => `${V1}/rooms/${enc(space)}/hierarchy?${q}`;
    await expectError("GET", path("limit=0"), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path("limit=many"), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path("max_depth=-1"), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", path("suggested_only=maybe"), { user: member }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V1}/rooms/${enc("not-a-room")}/hierarchy`, { user: member }, 400, "M_INVALID_PARAM");
    expect((await request("GET", `${V1}/rooms/${enc(space)}/hierarchy`)).status).toBe(401);
  });

  it("a user who leaves the allowed room loses sight of the restricted room", async () => {
    const leaver = await createUserDirect();
    await join(leaver, space);
    expect((await hierarchy(leaver, space)).rooms.map((x) => x.room_id)).toContain(r.restricted);
    await call("POST", `/_matrix/client/v3/rooms/${enc(space)}/leave`, { user: leaver, body: {} });
    expect((await hierarchy(leaver, space)).rooms.map((x) => x.room_id)).not.toContain(r.restricted);
  });
});
