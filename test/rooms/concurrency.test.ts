/**
 * Many simultaneous sends to one RoomDO: each send reads the forward extremities and commits in one
 * synchronous transaction, so the DAG stays a single chain whatever the interleaving.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { alice, createRoom } from "./helpers";
import type { RoomDO } from "../../durable-objects/room/RoomDO";

describe("concurrent local sends", () => {
  it("300 simultaneous sends give one extremity, contiguous stream order, no duplicates, no losses", async () => {
    const { stub } = await createRoom();
    const before = (await stub.summary())!;
    const N = 300;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        stub.send({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: `message ${i}` } }),
      ),
    );
    for (const r of results) expect(r.ok).toBe(true);
    const ids = results.map((r) => (r.ok ? r.event_id : ""));
    expect(new Set(ids).size).toBe(N);

    const after = (await stub.summary())!;
    expect(after.forward_extremities).toHaveLength(1);
    expect(after.stream_position).toBe(before.stream_position + N);

    const events = await stub.eventsAfter(before.stream_position, N + 10);
    expect(events.map((e) => e.stream_ordering)).toEqual(Array.from({ length: N }, (_, i) => before.stream_position + 1 + i));
    expect(new Set(events.map((e) => e.event_id))).toEqual(new Set(ids));
    const bodies = new Set(events.map((e) => (JSON.parse(e.json) as { content: { body: string } }).content.body));
    expect(bodies.size).toBe(N);

    // Each event's single prev is the one before it: a chain, not a fork.
    await runInDurableObject(stub, (_: RoomDO, state) => {
      const forks = state.storage.sql
        .exec<{ n: number }>(
          `SELECT count(*) AS n FROM (SELECT prev_id FROM prev_edges p JOIN events e ON e.nid = p.event_nid
           WHERE e.outlier = 0 GROUP BY prev_id HAVING count(*) > 1)`,
        )
        .one().n;
      expect(forks).toBe(0);
    });
  });

  it("the same transaction ID from the same device sends once", async () => {
    const { stub } = await createRoom();
    const txn = { userId: alice, deviceId: "DEV", txnId: "t1" };
    const template = { type: "m.room.message", sender: alice, content: { body: "once" } };
    const results = await Promise.all(Array.from({ length: 20 }, () => stub.send(template, txn)));
    const ids = new Set(results.map((r) => (r.ok ? r.event_id : "")));
    expect(ids.size).toBe(1);
    const other = await stub.send(template, { ...txn, deviceId: "OTHER" });
    expect(other.ok && !ids.has(other.event_id)).toBe(true);
  });
});
