/** Device-list tracking: /sync `device_lists` and GET /keys/changes, driven by key changes and shared rooms. */
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { addDevice, sync, uploadCrossSigning, uploadDevice, type Obj } from "./keys-helpers";

type Lists = { changed: string[]; left: string[] };

const lists = (s: Obj): Lists => (s.device_lists as Lists | undefined) ?? { changed: [], left: [] };

async function createRoom(creator: TestUser): Promise<string> {
  return (await call<{ room_id: string }>("POST", "/_matrix/client/v3/createRoom", { user: creator, body: { preset: "public_chat" } })).room_id;
}

async function join(user: TestUser, roomId: string): Promise<void> {
  await call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { user, body: {} });
}

async function leave(user: TestUser, roomId: string): Promise<void> {
  await call("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, { user, body: {} });
}

/** Polls an incremental sync until `check` holds (fan-out to other users is asynchronous). */
async function eventually(user: TestUser, since: string, check: (l: Lists) => boolean): Promise<Lists> {
  let last: Lists = { changed: [], left: [] };
  for (let i = 0; i < 50; i++) {
    last = lists(await sync(user, since));
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

/** Waits until the user's E2EE outbox has delivered everything (device-list fan-out is asynchronous). */
async function outboxDrained(user: TestUser): Promise<void> {
  const stub = testEnv.USERS.get(testEnv.USERS.idFromName(user.userId));
  for (let i = 0; i < 100; i++) {
    const pending = await runInDurableObject(stub, (instance) =>
      (instance as unknown as { e2ee: { outbox: { pending(): number } } }).e2ee.outbox.pending(),
    );
    if (pending === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("outbox not drained");
}

async function changes(user: TestUser, from: string, to?: string): Promise<Lists> {
  const q = `from=${from}${to ? `&to=${to}` : ""}`;
  return call<Lists>("GET", `/_matrix/client/v3/keys/changes?${q}`, { user });
}

describe("device lists", () => {
  it("tells users sharing a room (and the user's own devices) when device keys change; not strangers", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const stranger = await createUserDirect();
    const roomId = await createRoom(alice);
    await join(bob, roomId);
    const bobSince = (await sync(bob)).next_batch;
    const aliceSince = (await sync(alice)).next_batch;
    const strangerSince = (await sync(stranger)).next_batch;

    await uploadDevice(alice);
    const seen = await eventually(bob, bobSince, (l) => l.changed.includes(alice.userId));
    expect(seen.changed).toContain(alice.userId);
    expect(lists(await sync(alice, aliceSince)).changed).toContain(alice.userId);
    expect(lists(await sync(stranger, strangerSince)).changed).not.toContain(alice.userId);

    const c = await changes(bob, bobSince);
    expect(c.changed).toContain(alice.userId);
    // Nothing changed between a token and itself; an initial sync has no device_lists.
    const now = (await sync(bob)).next_batch;
    expect(await changes(bob, now, now)).toEqual({ changed: [], left: [] });
    expect((await sync(bob)).device_lists).toBeUndefined();
  });

  it("reports new cross-signing keys and deleted devices", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await createRoom(alice);
    await join(bob, roomId);
    const extra = await addDevice(alice);
    await uploadDevice(extra);
    let since = (await sync(bob)).next_batch;
    await uploadCrossSigning(alice);
    expect((await eventually(bob, since, (l) => l.changed.includes(alice.userId))).changed).toContain(alice.userId);
    since = (await sync(bob)).next_batch;
    await call("POST", "/_matrix/client/v3/logout", { user: extra, body: {} });
    expect((await eventually(bob, since, (l) => l.changed.includes(alice.userId))).changed).toContain(alice.userId);
  });

  it("marks both sides changed when they start sharing a room, and left when they stop", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await createRoom(alice);
    const aliceSince = (await sync(alice)).next_batch;
    const bobSince = (await sync(bob)).next_batch;

    await join(bob, roomId);
    expect((await eventually(bob, bobSince, (l) => l.changed.includes(alice.userId))).changed).toContain(alice.userId);
    expect((await eventually(alice, aliceSince, (l) => l.changed.includes(bob.userId))).changed).toContain(bob.userId);

    const aliceMid = (await sync(alice)).next_batch;
    const bobMid = (await sync(bob)).next_batch;
    await leave(bob, roomId);
    expect((await eventually(bob, bobMid, (l) => l.left.includes(alice.userId))).left).toContain(alice.userId);
    expect((await eventually(alice, aliceMid, (l) => l.left.includes(bob.userId))).left).toContain(bob.userId);
    expect((await changes(alice, aliceMid)).left).toContain(bob.userId);
  });

  it("does not report left while another room is still shared", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const room1 = await createRoom(alice);
    const room2 = await createRoom(alice);
    await join(bob, room1);
    await join(bob, room2);
    await eventually(alice, (await sync(alice)).next_batch, () => true);
    const bobSince = (await sync(bob)).next_batch;
    const aliceSince = (await sync(alice)).next_batch;
    await leave(bob, room1);
    await outboxDrained(bob);
    expect(lists(await sync(alice, aliceSince)).left).not.toContain(bob.userId);
    expect(lists(await sync(bob, bobSince)).left).not.toContain(alice.userId);
    // Leaving the last shared room does report it.
    await leave(bob, room2);
    await outboxDrained(bob);
    expect(lists(await sync(alice, aliceSince)).left).toContain(bob.userId);
    expect(lists(await sync(bob, bobSince)).left).toContain(alice.userId);
  });

  it("rejects bad /keys/changes tokens", async () => {
    const bob = await createUserDirect();
    expect((await request("GET", "/_matrix/client/v3/keys/changes", { user: bob })).status).toBe(400);
    expect((await request("GET", "/_matrix/client/v3/keys/changes?from=bogus", { user: bob })).status).toBe(400);
    expect((await request("GET", "/_matrix/client/v3/keys/changes?from=u1&to=bogus", { user: bob })).status).toBe(400);
    expect((await request("GET", "/_matrix/client/v3/keys/changes?from=u1")).status).toBe(401);
  });
});
