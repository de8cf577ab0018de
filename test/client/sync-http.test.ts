/** /sync driven entirely through the client API: createRoom, send, join, knock, leave, as a client would. */
import { describe, expect, it } from "vitest";
import { bodies, call, createUserDirect, sync, type TestUser } from "./sync-helpers";

const enc = encodeURIComponent;
let txn = 0;

async function createRoom(user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  return (await call<{ room_id: string }>("POST", "/_matrix/client/v3/createRoom", { user, body })).room_id;
}

async function send(user: TestUser, roomId: string, body: string): Promise<{ event_id: string; txnId: string }> {
  const txnId = `t${++txn}`;
  const r = await call<{ event_id: string }>("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txnId}`, {
    user,
    body: { msgtype: "m.text", body },
  });
  return { event_id: r.event_id, txnId };
}

describe("/sync over the client API", () => {
  it("read-your-writes with transaction IDs for the sending device only", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, { user: bob, body: {} });
    const a0 = await sync(alice);
    const b0 = await sync(bob);
    const sent = await send(alice, roomId, "hi");
    const a1 = await sync(alice, { since: a0.next_batch });
    const mine = a1.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === sent.event_id)!;
    expect(mine.unsigned?.transaction_id).toBe(sent.txnId);
    const b1 = await sync(bob, { since: b0.next_batch, timeout: 10_000 });
    const theirs = b1.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === sent.event_id)!;
    expect(theirs.unsigned?.transaction_id).toBeUndefined();
  });

  it("invite, join, leave and knock move the room between sections", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await createRoom(alice, { preset: "private_chat", name: "Private" });
    const b0 = await sync(bob);
    await call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: bob.userId } });
    const b1 = await sync(bob, { since: b0.next_batch, timeout: 10_000 });
    const invite = b1.rooms.invite[roomId]!.invite_state.events;
    expect(invite.find((e) => e.type === "m.room.name")?.content).toEqual({ name: "Private" });
    expect(invite.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)?.content.membership).toBe("invite");
    await call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, { user: bob, body: {} });
    const b2 = await sync(bob, { since: b1.next_batch });
    expect(b2.rooms.join[roomId]!.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId });
    await send(alice, roomId, "welcome");
    await call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, { user: bob, body: {} });
    const b3 = await sync(bob, { since: b2.next_batch });
    expect(bodies(b3.rooms.leave[roomId])).toEqual(["welcome"]);
    expect(b3.rooms.join[roomId]).toBeUndefined();

    // Knocking on a knock room.
    const knockRoom = await createRoom(alice, { preset: "private_chat", room_version: "12", initial_state: [
      { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
    ] });
    await call("POST", `/_matrix/client/v3/knock/${enc(knockRoom)}`, { user: bob, body: { reason: "let me in" } });
    const b4 = await sync(bob, { since: b3.next_batch });
    const knock = b4.rooms.knock[knockRoom]!.knock_state.events;
    expect(knock.find((e) => e.type === "m.room.join_rules")?.content.join_rule).toBe("knock");
    expect(knock.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)?.content.membership).toBe("knock");
    // The members see the knock in their timeline.
    const a = await sync(alice);
    expect(a.rooms.join[knockRoom]!.timeline.events.some((e) => e.type === "m.room.member" && e.content.membership === "knock")).toBe(true);
  });
});
