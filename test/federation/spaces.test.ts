/**
 * Spaces across homeservers (src/rooms/spaces.ts): a space on test.local whose children live on hs2.test and
 * hs3.test, walked by a test.local user through the client `/hierarchy` (remote rooms summarised by asking a
 * server from their `via` over federation `/hierarchy`), a remote root, and `/room_summary` of remote rooms by
 * ID (with `via`) and by remote alias.
 */
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { api, createRoom, e, enc, newUser, V3, type ScenarioUser } from "./servers";
import { request } from "../client/helpers";

const V1 = "/_matrix/client/v1";

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

interface Page {
  rooms: { room_id: string; name?: string; room_type?: string; join_rule?: string; num_joined_members: number; children_state: { state_key: string }[] }[];
  next_batch?: string;
}

async function addChild(owner: ScenarioUser, parent: string, child: string, via: string, order: string, suggested = false): Promise<void> {
  await api(owner, "PUT", `${V3}/rooms/${enc(parent)}/state/m.space.child/${enc(child)}`, { via: [via], order, suggested });
}

describe("spaces over federation", () => {
  let alice: ScenarioUser; // test.local
  let bob: ScenarioUser; // hs2.test
  let carol: ScenarioUser; // hs3.test
  let space: string; // test.local
  const r = {} as Record<"local" | "remotePub" | "remoteSecret" | "remoteSub" | "c" | "d", string>;

  // space (test.local)
  // ├─ remotePub   public room on hs2 (suggested)
  // ├─ remoteSecret invite-only room on hs2: hs2 will not describe it to test.local
  // ├─ remoteSub   public subspace on hs2
  // │  ├─ c        public room on hs2 (summarised from remoteSub's answer)
  // │  ├─ d        public room on hs3 (asked of hs3)
  // │  └─ remoteSecret (listed by hs2 as inaccessible)
  // └─ local       public room on test.local
  beforeAll(async () => {
    alice = await newUser("test.local", "alice");
    bob = await newUser("hs2.test", "bob");
    carol = await newUser("hs3.test", "carol");
    const spaceBody = (name: string) => ({ preset: "public_chat", name, creation_content: { type: "m.space" } });
    space = await createRoom(alice, spaceBody("Home space"));
    r.local = await createRoom(alice, { preset: "public_chat", name: "Local room" });
    r.remotePub = await createRoom(bob, { preset: "public_chat", name: "On hs2", topic: "far away" });
    r.remoteSecret = await createRoom(bob, { preset: "private_chat", name: "Secret on hs2" });
    r.remoteSub = await createRoom(bob, spaceBody("Sub on hs2"));
    r.c = await createRoom(bob, { preset: "public_chat", name: "C on hs2" });
    r.d = await createRoom(carol, { preset: "public_chat", name: "D on hs3" });
    await addChild(alice, space, r.remotePub, "hs2.test", "a", true);
    await addChild(alice, space, r.remoteSecret, "hs2.test", "b");
    await addChild(alice, space, r.remoteSub, "hs2.test", "c");
    await addChild(alice, space, r.local, "test.local", "d");
    await addChild(bob, r.remoteSub, r.c, "hs2.test", "1");
    await addChild(bob, r.remoteSub, r.d, "hs3.test", "2");
    await addChild(bob, r.remoteSub, r.remoteSecret, "hs2.test", "3");
  });

  it("walks a local space into children held only by other servers", async () => {
    const page = await api<Page>(alice, "GET", `${V1}/rooms/${enc(space)}/hierarchy`);
    expect(page.rooms.map((x) => x.room_id)).toEqual([space, r.remotePub, r.remoteSub, r.c, r.d, r.local]);
    const byId = new Map(page.rooms.map((x) => [x.room_id, x]));
    expect(byId.get(r.remotePub)).toMatchObject({ name: "On hs2", topic: "far away", join_rule: "public", num_joined_members: 1, children_state: [] });
    expect(byId.get(r.remoteSub)).toMatchObject({ name: "Sub on hs2", room_type: "m.space" });
    // The remote subspace's children as hs2 holds them, the secret room included in children_state.
    expect(byId.get(r.remoteSub)!.children_state.map((c) => c.state_key)).toEqual([r.c, r.d, r.remoteSecret]);
    expect(byId.get(r.c)).toMatchObject({ name: "C on hs2" });
    expect(byId.get(r.d)).toMatchObject({ name: "D on hs3" });

    // Paginated one room at a time: the same rooms, each once.
    const ids: string[] = [];
    let from: string | undefined;
    do {
      const p = await api<Page>(alice, "GET", `${V1}/rooms/${enc(space)}/hierarchy?limit=1${from ? `&from=${enc(from)}` : ""}`);
      ids.push(...p.rooms.map((x) => x.room_id));
      from = p.next_batch;
    } while (from);
    expect(ids).toEqual(page.rooms.map((x) => x.room_id));

    const suggested = await api<Page>(alice, "GET", `${V1}/rooms/${enc(space)}/hierarchy?suggested_only=true`);
    expect(suggested.rooms.map((x) => x.room_id)).toEqual([space, r.remotePub]);
  });

  it("walks a space this server does not hold, through the servers given with via", async () => {
    const page = await api<Page>(alice, "GET", `${V1}/rooms/${enc(r.remoteSub)}/hierarchy?via=hs2.test`);
    expect(page.rooms.map((x) => x.room_id)).toEqual([r.remoteSub, r.c, r.d]);
    // Without any server to ask, the room is unknown here: 403 as the spec says.
    const res = await api<{ errcode: string }>(alice, "GET", `${V1}/rooms/${enc(r.remoteSub)}/hierarchy`, undefined, 403);
    expect(res.errcode).toBe("M_FORBIDDEN");
    // A remote root the user may not see.
    expect((await api(alice, "GET", `${V1}/rooms/${enc(r.remoteSecret)}/hierarchy?via=hs2.test`, undefined, 403)).errcode).toBe("M_FORBIDDEN");
  });

  it("summarises a remote room by ID with via, and by remote alias; inaccessible ones are 404", async () => {
    const s = await api(alice, "GET", `${V1}/room_summary/${enc(r.remotePub)}?via=hs2.test`);
    expect(s).toMatchObject({ room_id: r.remotePub, name: "On hs2", topic: "far away", join_rule: "public", num_joined_members: 1, membership: "leave" });
    expect(s.room_version).toEqual(expect.any(String));
    // Without a token: no membership.
    const anon = await request("GET", `${V1}/room_summary/${enc(r.remotePub)}?via=hs2.test`);
    expect(anon.status).toBe(200);
    expect(await anon.json()).not.toHaveProperty("membership");

    const alias = `#far_${Date.now().toString(36)}:hs2.test`;
    await api(bob, "PUT", `${V3}/directory/room/${enc(alias)}`, { room_id: r.remotePub });
    expect(await api(alice, "GET", `${V1}/room_summary/${enc(alias)}`)).toMatchObject({ room_id: r.remotePub, name: "On hs2" });

    expect((await api(alice, "GET", `${V1}/room_summary/${enc(r.remoteSecret)}?via=hs2.test`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await api(alice, "GET", `${V1}/room_summary/${enc(r.remotePub)}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
  });

  it("a remote invite-only room becomes visible to a user invited to it", async () => {
    const dave = await newUser("test.local", "dave");
    await api(bob, "POST", `${V3}/rooms/${enc(r.remoteSecret)}/invite`, { user_id: dave.userId });
    // The invite reached test.local (an out-of-band membership there): the summary names it, asked of hs2.
    const s = await waitForSummary(dave, r.remoteSecret);
    expect(s).toMatchObject({ room_id: r.remoteSecret, name: "Secret on hs2", join_rule: "invite", membership: "invite" });
  });
});

async function waitForSummary(user: ScenarioUser, roomId: string): Promise<Record<string, unknown>> {
  const end = Date.now() + 15_000;
  for (;;) {
    const res = await request("GET", `${V1}/room_summary/${enc(roomId)}?via=hs2.test`, { user });
    if (res.status === 200) return (await res.json()) as Record<string, unknown>;
    if (Date.now() > end) throw new Error(`no summary of ${roomId}: ${res.status} ${await res.text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
