/** Receipts (m.read, m.read.private, threaded) and read markers (m.fully_read). */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, member, newRoom, request, say, sync, type SyncBody } from "./sync-helpers";

const receiptPath = (roomId: string, type: string, eventId: string) =>
  `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/${type}/${encodeURIComponent(eventId)}`;
const markersPath = (roomId: string) => `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/read_markers`;

function receipts(s: SyncBody, roomId: string): Record<string, Record<string, Record<string, { ts: number; thread_id?: string }>>> | undefined {
  const e = s.rooms.join[roomId]?.ephemeral?.events.find((x) => x.type === "m.receipt");
  return e?.content as never;
}

async function setup() {
  const alice = await createUserDirect();
  const bob = await createUserDirect();
  const { roomId, stub } = await newRoom(alice);
  await member(stub, bob, bob.userId, "join");
  const e1 = await say(stub, alice, "one");
  const e2 = await say(stub, alice, "two");
  return { alice, bob, roomId, stub, e1, e2 };
}

describe("receipts", () => {
  it("m.read receipts reach other members, as deltas", async () => {
    const { alice, bob, roomId, e1, e2 } = await setup();
    const a0 = await sync(alice);
    await call("POST", receiptPath(roomId, "m.read", e1), { user: bob, body: {} });
    const a1 = await sync(alice, { since: a0.next_batch, timeout: 10_000 });
    const r1 = receipts(a1, roomId)!;
    expect(Object.keys(r1)).toEqual([e1]);
    expect(r1[e1]!["m.read"]![bob.userId]!.ts).toEqual(expect.any(Number));
    expect(r1[e1]!["m.read"]![bob.userId]!.thread_id).toBeUndefined();
    await call("POST", receiptPath(roomId, "m.read", e2), { user: bob, body: {} });
    const a2 = await sync(alice, { since: a1.next_batch, timeout: 10_000 });
    expect(Object.keys(receipts(a2, roomId)!)).toEqual([e2]);
    // Going backwards is accepted and ignored.
    await call("POST", receiptPath(roomId, "m.read", e1), { user: bob, body: {} });
    const a3 = await sync(alice, { since: a2.next_batch });
    expect(receipts(a3, roomId)).toBeUndefined();
    // An initial sync carries the current receipts.
    const fresh = await sync(alice);
    expect(Object.keys(receipts(fresh, roomId)!)).toEqual([e2]);
  });

  it("m.read.private is only shown to its owner", async () => {
    const { alice, bob, roomId, e2 } = await setup();
    const a0 = await sync(alice);
    const b0 = await sync(bob);
    await call("POST", receiptPath(roomId, "m.read.private", e2), { user: bob, body: {} });
    const b1 = await sync(bob, { since: b0.next_batch });
    expect(receipts(b1, roomId)?.[e2]?.["m.read.private"]?.[bob.userId]).toBeDefined();
    const a1 = await sync(alice, { since: a0.next_batch, timeout: 300 });
    expect(receipts(a1, roomId)).toBeUndefined();
    expect(receipts(await sync(alice), roomId)).toBeUndefined();
  });

  it("keeps threaded and unthreaded receipts apart", async () => {
    const { alice, bob, roomId, e1, e2 } = await setup();
    await call("POST", receiptPath(roomId, "m.read", e2), { user: bob, body: { thread_id: "main" } });
    await call("POST", receiptPath(roomId, "m.read", e1), { user: bob, body: {} });
    const r = receipts(await sync(alice), roomId)!;
    expect(r[e2]!["m.read"]![bob.userId]!.thread_id).toBe("main");
    expect(r[e1]!["m.read"]![bob.userId]!.thread_id).toBeUndefined();
  });

  it("refuses non-members, unknown events, bad types and thread IDs", async () => {
    const { alice, roomId, e1 } = await setup();
    const carol = await createUserDirect();
    const outsider = await request("POST", receiptPath(roomId, "m.read", e1), { user: carol, body: {} });
    expect(outsider.status).toBe(403);
    expect(await outsider.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    const unknown = await request("POST", receiptPath(roomId, "m.read", "$nope"), { user: alice, body: {} });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ errcode: "M_NOT_FOUND" });
    for (const [type, body] of [
      ["m.unknown", {}],
      ["m.read", { thread_id: "" }],
      ["m.read", { thread_id: 5 }],
      ["m.fully_read", { thread_id: "main" }],
    ] as const) {
      const res = await request("POST", receiptPath(roomId, type, e1), { user: alice, body });
      expect(res.status, `${type} ${JSON.stringify(body)}`).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_INVALID_PARAM");
    }
    expect((await request("POST", receiptPath(roomId, "m.read", "not-an-event"), { user: alice, body: {} })).status).toBe(400);
    expect((await request("POST", receiptPath(roomId, "m.read", e1), { body: {} })).status).toBe(401);
  });
});

describe("read markers", () => {
  it("sets m.fully_read as room account data and receipts in one call", async () => {
    const { alice, bob, roomId, e1, e2 } = await setup();
    const b0 = await sync(bob);
    await call("POST", markersPath(roomId), { user: bob, body: { "m.fully_read": e1, "m.read": e2, "m.read.private": e2 } });
    const b1 = await sync(bob, { since: b0.next_batch });
    expect(b1.rooms.join[roomId]!.account_data!.events).toEqual([{ type: "m.fully_read", content: { event_id: e1 } }]);
    const r = receipts(b1, roomId)!;
    expect(r[e2]!["m.read"]![bob.userId]).toBeDefined();
    expect(r[e2]!["m.read.private"]![bob.userId]).toBeDefined();
    const userPath = `/_matrix/client/v3/user/${encodeURIComponent(bob.userId)}/rooms/${encodeURIComponent(roomId)}/account_data/m.fully_read`;
    expect(await call("GET", userPath, { user: bob })).toEqual({ event_id: e1 });
    // The receipt endpoint also accepts m.fully_read.
    await call("POST", receiptPath(roomId, "m.fully_read", e2), { user: bob, body: {} });
    expect(await call("GET", userPath, { user: bob })).toEqual({ event_id: e2 });
    // Alice sees bob's public receipt only.
    const ra = receipts(await sync(alice), roomId)!;
    expect(ra[e2]!["m.read.private"]).toBeUndefined();
  });

  it("refuses non-members and bad bodies", async () => {
    const { alice, roomId, e1 } = await setup();
    const carol = await createUserDirect();
    const res = await request("POST", markersPath(roomId), { user: carol, body: { "m.fully_read": e1 } });
    expect(res.status).toBe(403);
    const bad = await request("POST", markersPath(roomId), { user: alice, body: { "m.fully_read": 12 } });
    expect(bad.status).toBe(400);
  });
});
