/**
 * The sync timeline is read in pages, the first sized by the timeline limit (durable-objects/room/sync-view.ts):
 * the boundaries — exactly `limit` events, one more, a limit of 0 — and filters that hide most events, so that
 * the first small page is not enough and later pages must be read.
 */
import { describe, expect, it } from "vitest";
import { bodies, createUserDirect, newRoom, say, sync } from "./sync-helpers";

const filter = (f: unknown) => ({ filter: JSON.stringify(f) });

describe("/sync timeline pages", () => {
  it("exactly `limit` events after the room's own are not limited, one more is", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    const base = await sync(alice);
    for (let i = 0; i < 5; i++) await say(stub, alice, `m${i}`);
    const exact = (await sync(alice, { since: base.next_batch, ...filter({ room: { timeline: { limit: 5 } } }) })).rooms.join[roomId]!;
    expect(bodies(exact)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(exact.timeline.limited).toBe(false);
    const over = (await sync(alice, { since: base.next_batch, ...filter({ room: { timeline: { limit: 4 } } }) })).rooms.join[roomId]!;
    expect(bodies(over)).toEqual(["m1", "m2", "m3", "m4"]);
    expect(over.timeline.limited).toBe(true);
  });

  it("a limit of 0 gives no events and says limited", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await say(stub, alice, "hidden");
    const room = (await sync(alice, filter({ room: { timeline: { limit: 0 } } }))).rooms.join[roomId]!;
    expect(room.timeline.events).toEqual([]);
    expect(room.timeline.limited).toBe(true);
  });

  it("finds the few events a filter lets through behind many it hides (later, bigger pages)", async () => {
    const alice = await createUserDirect();
    const { roomId, stub } = await newRoom(alice);
    await stub.send({ type: "m.room.topic", state_key: "", sender: alice.userId, content: { topic: "early" } });
    for (let i = 0; i < 300; i++) await say(stub, alice, `noise ${i}`);
    await stub.send({ type: "m.room.topic", state_key: "", sender: alice.userId, content: { topic: "late" } });
    for (let i = 0; i < 5; i++) await say(stub, alice, `tail ${i}`);
    const room = (await sync(alice, filter({ room: { timeline: { limit: 3, types: ["m.room.topic"] } } }))).rooms.join[roomId]!;
    expect(room.timeline.events.map((e) => e.content.topic)).toEqual(["early", "late"]);
    expect(room.timeline.limited).toBe(false);
  });
});
