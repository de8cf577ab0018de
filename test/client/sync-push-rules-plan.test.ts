/**
 * The sync plan carries the user's push rules for the rooms' notification counts (durable-objects/user/sync-plan.ts,
 * src/sync/sync.ts): a rule changed through the push-rules API applies to the very next sync.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, member, newRoom, say, sync } from "./sync-helpers";

describe("/sync notification counts follow push rule changes", () => {
  it("disabling .m.rule.message stops plain messages counting; re-enabling counts them again", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await member(stub, bob, bob.userId, "join");
    // Three members, so .m.rule.room_one_to_one does not apply and .m.rule.message decides.
    await member(stub, carol, carol.userId, "join");
    await say(stub, bob, "one");
    await say(stub, bob, "two");
    expect((await sync(alice)).rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });

    const rule = "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled";
    await call("PUT", rule, { user: alice, body: { enabled: false } });
    expect((await sync(alice)).rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });

    await call("PUT", rule, { user: alice, body: { enabled: true } });
    expect((await sync(alice)).rooms.join[roomId]!.unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });
  });

  it("a user in no joined room gets no push rules in the plan and no counts to compute", async () => {
    const alice = await createUserDirect();
    const s = await sync(alice);
    expect(s.rooms.join).toEqual({});
    // The m.push_rules account data is still there for clients.
    expect(s.account_data.events.some((e) => e.type === "m.push_rules")).toBe(true);
  });
});
