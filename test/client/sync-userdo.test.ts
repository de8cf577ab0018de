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
