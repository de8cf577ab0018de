/** GET /_matrix/client/v3/notifications (docs/push.md). */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "../client/helpers";
import { settle, V3 } from "./helpers";

const enc = encodeURIComponent;
let txn = 0;
async function send(user: TestUser, roomId: string, content: Record<string, unknown>): Promise<string> {
  return (await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/n${++txn}`, { user, body: content })).event_id;
}

interface Notification {
  actions: unknown[];
  event: { event_id: string; room_id: string; sender: string; content: Record<string, unknown> };
  read: boolean;
  room_id: string;
  ts: number;
  profile_tag?: string;
}
type Page = { notifications: Notification[]; next_token?: string };

async function setup() {
  const alice = await createUserDirect();
  const bob = await createUserDirect();
  const carol = await createUserDirect();
  const roomId = (await call<{ room_id: string }>("POST", `${V3}/createRoom`, { user: alice, body: { invite: [bob.userId, carol.userId] } })).room_id;
  await call("POST", `${V3}/join/${enc(roomId)}`, { user: bob, body: {} });
  await call("POST", `${V3}/join/${enc(roomId)}`, { user: carol, body: {} });
  const e1 = await send(alice, roomId, { msgtype: "m.text", body: "one" });
  const e2 = await send(carol, roomId, { msgtype: "m.text", body: "two, bob", "m.mentions": { user_ids: [bob.userId] } });
  const e3 = await send(alice, roomId, { msgtype: "m.text", body: "three" });
  await send(bob, roomId, { msgtype: "m.text", body: "my own" });
  await settle(bob, [roomId]);
  return { alice, bob, carol, roomId, e1, e2, e3 };
}

describe("GET /notifications", () => {
  it("lists notifying events newest first, only=highlight, read after a receipt, pages exactly once", async () => {
    const { bob, roomId, e1, e2, e3 } = await setup();
    const all = await call<Page>("GET", `${V3}/notifications`, { user: bob });
    expect(all.notifications.map((n) => n.event.event_id)).toEqual([e3, e2, e1]);
    expect(all.next_token).toBeUndefined();
    const [n3, n2] = all.notifications;
    expect(n3).toMatchObject({ room_id: roomId, read: false, ts: expect.any(Number), actions: ["notify"] });
    expect(n3!.event).toMatchObject({ room_id: roomId, content: { body: "three" } });
    expect(n2!.actions).toContainEqual({ set_tweak: "highlight" });

    const hl = await call<Page>("GET", `${V3}/notifications?only=highlight`, { user: bob });
    expect(hl.notifications.map((n) => n.event.event_id)).toEqual([e2]);

    // Pagination: every notification exactly once.
    const seen: string[] = [];
    let from: string | undefined;
    let pages = 0;
    do {
      const page: Page = await call<Page>("GET", `${V3}/notifications?limit=2${from ? `&from=${enc(from)}` : ""}`, { user: bob });
      seen.push(...page.notifications.map((n) => n.event.event_id));
      from = page.next_token;
      pages++;
    } while (from && pages < 10);
    expect(seen).toEqual([e3, e2, e1]);
    expect(pages).toBe(2);

    // A receipt for e2 reads e1 and e2, not e3.
    await call("POST", `${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(e2)}`, { user: bob, body: {} });
    const after = await call<Page>("GET", `${V3}/notifications`, { user: bob });
    expect(after.notifications.map((n) => [n.event.event_id, n.read])).toEqual([[e3, false], [e2, true], [e1, true]]);
  });

  it("is per user, and empty for someone without notifications", async () => {
    const { alice, roomId, e2, e3 } = await setup();
    await settle(alice, [roomId]);
    const nobody = await createUserDirect();
    expect((await call<Page>("GET", `${V3}/notifications`, { user: nobody })).notifications).toEqual([]);
    // alice hears from carol (e2) and bob; not her own messages.
    const aliceRoom = (await call<Page>("GET", `${V3}/notifications`, { user: alice })).notifications.map((n) => n.event.event_id);
    expect(aliceRoom).not.toContain(e3);
    expect(aliceRoom).toContain(e2);
  });

  it("rejects bad input and anonymous requests", async () => {
    const user = await createUserDirect();
    for (const q of ["limit=-1", "limit=abc", "limit=1.5", "from=xyz", "from=-3"]) {
      const res = await request("GET", `${V3}/notifications?${q}`, { user });
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode, q).toBe("M_INVALID_PARAM");
    }
    expect((await request("GET", `${V3}/notifications`)).status).toBe(401);
    expect((await call<Page>("GET", `${V3}/notifications?limit=0`, { user })).notifications).toEqual([]);
  });

  it("never lists events from before the user joined", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = (await call<{ room_id: string }>("POST", `${V3}/createRoom`, { user: alice, body: { preset: "public_chat" } })).room_id;
    await send(alice, roomId, { msgtype: "m.text", body: "before bob" });
    await call("POST", `${V3}/join/${enc(roomId)}`, { user: bob, body: {} });
    const after = await send(alice, roomId, { msgtype: "m.text", body: "after bob" });
    await settle(bob, [roomId]);
    const listed = (await call<Page>("GET", `${V3}/notifications`, { user: bob })).notifications.map((n) => n.event.event_id);
    expect(listed).toEqual([after]);
  });
});
