/**
 * The outbox: rows written with the event, delivered right after the commit, retried by alarm with backoff
 * after a failure, coalesced to the newest position, and never lost across an eviction.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { alice, bob, createRoom } from "./helpers";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import { retryDelayMs } from "../../durable-objects/room/outbox";

type Stub = Awaited<ReturnType<typeof createRoom>>["stub"];

/** Replaces the room's 'user' deliverer with one that records calls and fails while `failing` is true. */
async function instrument(stub: Stub) {
  const calls: [string, number][] = [];
  const control = { failing: true };
  await runInDurableObject(stub, (inst: RoomDO) => {
    inst.deliverers = {
      user: async (target, position) => {
        calls.push([target, position]);
        if (control.failing) throw new Error("user stream unavailable");
      },
    };
  });
  return { calls, control };
}

/** Makes every outbox row due now (the alarm then retries without waiting for real time to pass). */
async function makeDue(stub: Stub) {
  await runInDurableObject(stub, (_: RoomDO, state) => {
    state.storage.sql.exec("UPDATE outbox SET next_attempt_ts = 0");
    state.storage.sql.exec("UPDATE tasks SET due_ts = 0 WHERE name = 'outbox'");
  });
}

describe("room outbox", () => {
  it("writes outbox rows in the event's transaction and retries failed deliveries with backoff", async () => {
    const { stub } = await createRoom();
    const { calls, control } = await instrument(stub);

    const sent = await stub.send({ type: "m.room.message", sender: alice, content: { body: "hello" } });
    if (!sent.ok) throw new Error(sent.error);
    // The sender's stream was tried at once (read-your-writes), failed, and is now scheduled for a retry.
    expect(calls).toContainEqual([alice, sent.stream_ordering]);
    const [row] = (await stub.summary())!.outbox;
    expect(row).toMatchObject({ consumer: "user", target: alice, position: sent.stream_ordering, attempts: 1, last_error: "user stream unavailable" });
    expect(row!.next_attempt_ts).toBeGreaterThan(Date.now());
    expect(row!.next_attempt_ts).toBeLessThanOrEqual(Date.now() + retryDelayMs(1));

    // A second failure doubles the wait.
    await makeDue(stub);
    await runDurableObjectAlarm(stub);
    const [again] = (await stub.summary())!.outbox;
    expect(again!.attempts).toBe(2);
    expect(again!.next_attempt_ts - Date.now()).toBeGreaterThan(retryDelayMs(1));

    // The consumer recovers: the next alarm delivers and clears the row.
    control.failing = false;
    await makeDue(stub);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await stub.summary())!.outbox).toEqual([]);
    expect(calls.at(-1)).toEqual([alice, sent.stream_ordering]);
  });

  it("coalesces undelivered notifications to the newest position", async () => {
    const { stub } = await createRoom();
    const { calls, control } = await instrument(stub);
    let last = 0;
    for (let i = 0; i < 5; i++) {
      const r = await stub.send({ type: "m.room.message", sender: alice, content: { body: `m${i}` } });
      if (r.ok) last = r.stream_ordering;
    }
    const rows = (await stub.summary())!.outbox;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.position).toBe(last);
    control.failing = false;
    calls.length = 0;
    await makeDue(stub);
    await runDurableObjectAlarm(stub);
    expect(calls).toEqual([[alice, last]]);
  });

  it("keeps undelivered rows across an eviction and delivers them from the alarm afterwards", async () => {
    const { stub } = await createRoom();
    await instrument(stub);
    const sent = await stub.send({ type: "m.room.member", state_key: bob, sender: alice, content: { membership: "invite" } });
    if (!sent.ok) throw new Error(sent.error);
    const targets = (await stub.summary())!.outbox.map((r) => r.target).sort();
    expect(targets).toEqual([alice, bob].sort());

    await evictDurableObject(stub);
    // A fresh instance has the default deliverers; replace them again and let the alarm deliver everything.
    const { calls, control } = await instrument(stub);
    control.failing = false;
    await makeDue(stub);
    await runDurableObjectAlarm(stub);
    expect(calls.map(([t]) => t).sort()).toEqual([alice, bob].sort());
    expect((await stub.summary())!.outbox).toEqual([]);
  });
});
