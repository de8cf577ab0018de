/** PUT /rooms/{roomId}/typing/{userId}: typing in sync's ephemeral section, expiry by the RoomDO's alarm. */
import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm } from "cloudflare:test";
import { testEnv } from "./helpers";
import { call, createUserDirect, member, newRoom, request, sync, type SyncBody } from "./sync-helpers";

const typingPath = (roomId: string, userId: string) =>
  `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(userId)}`;

function typingIn(s: SyncBody, roomId: string): string[] | undefined {
  const e = s.rooms.join[roomId]?.ephemeral?.events.find((x) => x.type === "m.typing");
  return e ? (e.content.user_ids as string[]) : undefined;
}

describe("typing", () => {
  it("shows typing users to members, and the stop", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    const a0 = await sync(alice);
    expect(typingIn(a0, roomId)).toBeUndefined();
    await call("PUT", typingPath(roomId, bob.userId), { user: bob, body: { typing: true, timeout: 30_000 } });
    // Bob sees himself at once (read-your-writes); alice hears about it through her long poll.
    const b1 = await sync(bob);
    expect(typingIn(b1, roomId)).toEqual([bob.userId]);
    const a1 = await sync(alice, { since: a0.next_batch, timeout: 10_000 });
    expect(typingIn(a1, roomId)).toEqual([bob.userId]);
    // A renewal is not news.
    await call("PUT", typingPath(roomId, bob.userId), { user: bob, body: { typing: true, timeout: 30_000 } });
    const a2 = await sync(alice, { since: a1.next_batch });
    expect(typingIn(a2, roomId)).toBeUndefined();
    await call("PUT", typingPath(roomId, bob.userId), { user: bob, body: { typing: false } });
    const a3 = await sync(alice, { since: a2.next_batch, timeout: 10_000 });
    expect(typingIn(a3, roomId)).toEqual([]);
  });

  it("expires after the timeout", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const s0 = await sync(alice);
    await call("PUT", typingPath(roomId, alice.userId), { user: alice, body: { typing: true, timeout: 200 } });
    expect(await stub.typingUsers()).toEqual([alice.userId]);
    const s1 = await sync(alice, { since: s0.next_batch });
    expect(typingIn(s1, roomId)).toEqual([alice.userId]);
    await new Promise((r) => setTimeout(r, 250));
    await runDurableObjectAlarm(stub);
    expect(await stub.typingUsers()).toEqual([]);
    const s2 = await sync(alice, { since: s1.next_batch, timeout: 10_000 });
    expect(typingIn(s2, roomId)).toEqual([]);
  });

  it("caps the timeout at two minutes", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await call("PUT", typingPath(roomId, alice.userId), { user: alice, body: { typing: true, timeout: 3_600_000 } });
    const { runInDurableObject } = await import("cloudflare:test");
    const expires = await runInDurableObject(stub, (_, state) =>
      state.storage.sql.exec<{ expires_ts: number }>("SELECT expires_ts FROM typing").one().expires_ts,
    );
    expect(expires - Date.now()).toBeLessThanOrEqual(120_000);
  });

  it("requires membership, oneself, and a well-formed body", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { roomId } = await newRoom(alice);
    const notMember = await request("PUT", typingPath(roomId, bob.userId), { user: bob, body: { typing: true } });
    expect(notMember.status).toBe(403);
    expect(await notMember.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    const noRoom = await request("PUT", typingPath("!nowhere:test.local", bob.userId), { user: bob, body: { typing: true } });
    expect(noRoom.status).toBe(403);
    const other = await request("PUT", typingPath(roomId, alice.userId), { user: bob, body: { typing: true } });
    expect(other.status).toBe(403);
    for (const body of [{}, { typing: "yes" }, { typing: true, timeout: -1 }, { typing: true, timeout: "soon" }]) {
      const res = await request("PUT", typingPath(roomId, alice.userId), { user: alice, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_BAD_JSON");
    }
    expect((await request("PUT", typingPath(roomId, alice.userId), { body: { typing: true } })).status).toBe(401);
    expect(await testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId)).typingUsers()).toEqual([]);
  });
});
