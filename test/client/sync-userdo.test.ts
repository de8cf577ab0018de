/** UserDO: room positions fed by the RoomDO outbox, joined rooms, long-poll waiters. */
import { describe, expect, it } from "vitest";
import { alice, bob, createRoom, testEnv } from "../rooms/helpers";

function user(userId: string) {
  return testEnv.USERS.get(testEnv.USERS.idFromName(userId));
}

describe("UserDO", () => {
  it("learns the creator's room from the RoomDO before createRoom returns (read-your-writes)", async () => {
    const { roomId, stub } = await createRoom({ creator: alice });
    expect(await user(alice).joinedRooms()).toContain(roomId);
    const head = await user(alice).streamHead();
    await stub.send({ type: "m.room.message", sender: alice, content: { body: "hi" } });
    expect(await user(alice).streamHead()).toBeGreaterThan(head);
  });

  it("tracks invite then join then leave", async () => {
    const { roomId, stub } = await createRoom({ creator: alice });
    await stub.send({ type: "m.room.member", state_key: bob, sender: alice, content: { membership: "invite" } });
    // The invitee is notified in the background; the inviter's send only waits for the inviter.
    await expect.poll(async () => (await user(bob).memberships()).find((m) => m.room_id === roomId)?.membership).toBe("invite");
    const join = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "join" } });
    expect(join.ok).toBe(true);
    expect(await user(bob).joinedRooms()).toContain(roomId);
    await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "leave" } });
    expect(await user(bob).joinedRooms()).not.toContain(roomId);
  });

  it("ignores stale positions", async () => {
    const u = user("@stale:test.local");
    await u.roomAdvanced("!r:test.local", 10, "join");
    const head = await u.streamHead();
    await u.roomAdvanced("!r:test.local", 5, "leave");
    expect(await u.streamHead()).toBe(head);
    expect(await u.joinedRooms()).toEqual(["!r:test.local"]);
  });

  it("wakes a waiter when the stream moves, and cancels one on request", async () => {
    const u = user("@waiter:test.local");
    const head = await u.streamHead();
    const waiting = u.waitForChange("w1", head, 10_000);
    const cancelled = u.waitForChange("w2", head, 10_000);
    await expect.poll(() => u.waiterCount()).toBe(2);
    expect(await u.cancelWait("w2")).toBe(true);
    expect(await cancelled).toBe("cancelled");
    expect(await u.waiterCount()).toBe(1);
    await u.roomAdvanced("!w:test.local", 1, "join");
    expect(await waiting).toBe("changed");
    expect(await u.waiterCount()).toBe(0);
    expect(await u.waitForChange("w3", head + 1, 20)).toBe("timeout");
    expect(await u.waiterCount()).toBe(0);
  });
});

describe("UserDO room history pruning", () => {
  it("keeps what recent tokens need and thins out the rest, never skipping ahead", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const { ROOM_LOG_RETENTION_MS } = await import("../../durable-objects/user/rooms");
    const u = user("@prune:test.local");
    const old = Date.now() - ROOM_LOG_RETENTION_MS - 60_000;
    await runInDurableObject(u, (obj: import("../../durable-objects/user/UserDO").UserDO, state) => {
      state.storage.transactionSync(() => {
        for (let i = 1; i <= 5; i++) obj.rooms.advance("!a:test.local", i, "join", old);
        obj.rooms.advance("!b:test.local", 1, "join", old);
        obj.rooms.advance("!a:test.local", 6, "leave", Date.now());
      });
    });
    // Positions: a1..a5 = 1..5, b1 = 6, a6 = 7. Horizon = 6.
    const before = await u.roomPositionAt("!a:test.local", 3);
    expect(before).toBe(3);
    const removed = await runInDurableObject(u, (obj: import("../../durable-objects/user/UserDO").UserDO) => obj.rooms.prune());
    expect(removed).toBe(4);
    // Tokens at or after the horizon see exactly what they saw before.
    expect(await u.roomPositionAt("!a:test.local", 6)).toBe(5);
    expect(await u.roomPositionAt("!a:test.local", 7)).toBe(6);
    expect(await u.roomPositionAt("!b:test.local", 6)).toBe(1);
    // An older token now finds an earlier position (or none): more events, never fewer.
    expect(await u.roomPositionAt("!a:test.local", 3)).toBeNull();
    // ... and with such a token the leave of !a is still reported.
    const plan = JSON.parse(await u.syncPlan({ userId: "@prune:test.local", deviceId: "D", since: 3, fullState: false, includeLeave: false })) as {
      rooms: { roomId: string; membership: string }[];
    };
    expect(plan.rooms.filter((r) => r.roomId === "!a:test.local")).toMatchObject([{ membership: "leave" }]);
  });
});
