/**
 * The acceptance pipeline for events from other servers: auth against auth events, against the state before
 * the event, soft-fail against current state; forks resolved by state resolution; redactions; dummy events.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { alice, bob, createRoom, RemoteServer } from "./helpers";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import type { RoomVersion } from "../../src/protocol/room-versions";

const remote = new RemoteServer("remote.test");
const carol = "@carol:remote.test";

type Stub = Awaited<ReturnType<typeof createRoom>>["stub"];

/** Reads rows from the room's storage. */
function query<T extends Record<string, SqlStorageValue>>(stub: Stub, sql: string, ...args: SqlStorageValue[]): Promise<T[]> {
  return runInDurableObject(stub, (_: RoomDO, state) => state.storage.sql.exec<T>(sql, ...args).toArray());
}

async function stateId(stub: Stub, type: string, sk: string): Promise<string | undefined> {
  const rows = await query<{ event_id: string }>(
    stub,
    `SELECT e.event_id FROM current_state c JOIN state_keys k ON k.id = c.key_id JOIN events e ON e.nid = c.event_nid
     WHERE k.type = ? AND k.state_key = ?`,
    type,
    sk,
  );
  return rows[0]?.event_id;
}

async function extremities(stub: Stub): Promise<string[]> {
  return (await stub.summary())!.forward_extremities;
}

async function depthOf(stub: Stub, eventId: string): Promise<number> {
  return (await query<{ depth: number }>(stub, "SELECT depth FROM events WHERE event_id = ?", eventId))[0]!.depth;
}

/** Auth events for a remote event, from the room's current state. */
async function authFor(stub: Stub, version: RoomVersion, keys: [string, string][]): Promise<string[]> {
  const ids: string[] = [];
  for (const [t, k] of keys) {
    if (t === "m.room.create" && version.roomIdFromCreateEvent) continue;
    const id = await stateId(stub, t, k);
    if (id) ids.push(id);
  }
  return ids;
}

/** Has carol (remote) join the room on top of the current extremity; returns the join's event ID. */
async function remoteJoin(stub: Stub, roomId: string, version: RoomVersion): Promise<string> {
  const [prev] = await extremities(stub);
  const auth = await authFor(stub, version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""]]);
  const join = remote.event(version, {
    room_id: roomId, type: "m.room.member", state_key: carol, sender: carol, content: { membership: "join" },
    prev_events: [prev!], auth_events: auth, depth: (await depthOf(stub, prev!)) + 1,
  });
  const [outcome] = await stub.receive([join.pdu]);
  expect(outcome).toEqual({ status: "accepted", event_id: join.eventId, stream_ordering: expect.any(Number) });
  return join.eventId;
}

async function carolMessage(stub: Stub, roomId: string, version: RoomVersion, prev: string, body: string) {
  const auth = await authFor(stub, version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", carol]]);
  return remote.event(version, {
    room_id: roomId, type: "m.room.message", sender: carol, content: { body },
    prev_events: [prev], auth_events: auth, depth: (await depthOf(stub, prev)) + 1,
  });
}

for (const versionId of ["10", "11", "12"]) {
  describe(`room version ${versionId}`, () => {
    it("accepts a remote join to a public room and tracks the member and its server", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      await remoteJoin(stub, roomId, version);
      const members = await query<{ user_id: string; server: string; membership: string }>(stub, "SELECT user_id, server, membership FROM members ORDER BY user_id");
      expect(members).toEqual([
        { user_id: alice, server: "test.local", membership: "join" },
        { user_id: carol, server: "remote.test", membership: "join" },
      ]);
      // A local event now has to reach remote.test.
      await runInDurableObject(stub, (inst: RoomDO) => {
        inst.deliverers = { user: async () => {}, destination: async () => { throw new Error("offline"); } };
      });
      await stub.send({ type: "m.room.message", sender: alice, content: { body: "hi" } });
      const outbox = (await stub.summary())!.outbox;
      expect(outbox.map((r) => [r.consumer, r.target])).toContainEqual(["destination", "remote.test"]);
    });

    it("rejects an event from a non-member and never serves or builds on it", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      const [prev] = await extremities(stub);
      const msg = await carolMessage(stub, roomId, version, prev!, "let me in");
      const [outcome] = await stub.receive([msg.pdu]);
      expect(outcome!.status).toBe("rejected");
      const rows = await query<{ rejected: string | null; stream_ordering: number | null }>(stub, "SELECT rejected, stream_ordering FROM events WHERE event_id = ?", msg.eventId);
      expect(rows[0]!.rejected).toMatch(/./);
      expect(rows[0]!.stream_ordering).toBeNull();
      expect(await extremities(stub)).toEqual([prev]);
      // Rejected events are not state either: nothing changed.
      const sent = await stub.send({ type: "m.room.message", sender: alice, content: { body: "still fine" } });
      expect(sent.ok).toBe(true);
    });

    it("reports missing prev events without persisting anything", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      await remoteJoin(stub, roomId, version);
      const before = (await stub.summary())!.events;
      const msg = await carolMessage(stub, roomId, version, (await extremities(stub))[0]!, "x");
      const unknown = "$" + "A".repeat(43); // well-formed for every version from v4, but not held
      const orphan = remote.event(version, { ...(msg.pdu as unknown as Parameters<typeof remote.event>[1]), prev_events: [unknown] });
      const [outcome] = await stub.receive([orphan.pdu]);
      expect(outcome).toEqual({ status: "missing_prevs", event_id: orphan.eventId, missing: [unknown] });
      expect((await stub.summary())!.events).toBe(before);
    });

    it("soft-fails an event that the state before it allows but the current state forbids", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      const join = await remoteJoin(stub, roomId, version);
      const ban = await stub.send({ type: "m.room.member", state_key: carol, sender: alice, content: { membership: "ban" } });
      expect(ban.ok).toBe(true);
      // Carol sends as if she had not seen the ban: prev is her own join.
      const msg = await carolMessage(stub, roomId, version, join, "you can't ban me");
      msg.pdu.auth_events = await authFor(stub, version, [["m.room.create", ""], ["m.room.power_levels", ""]]);
      msg.pdu.auth_events.push(join);
      const resigned = remote.event(version, { ...(msg.pdu as unknown as Parameters<typeof remote.event>[1]) });
      const [outcome] = await stub.receive([resigned.pdu]);
      expect(outcome).toEqual({ status: "soft_failed", event_id: resigned.eventId });
      const events = await stub.eventsAfter(0, 100);
      expect(events.map((e) => e.event_id)).not.toContain(resigned.eventId);
      expect(await extremities(stub)).toEqual([ban.ok ? ban.event_id : ""]);
    });

    it("resolves state across a fork and merges it with the next local event", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      await remoteJoin(stub, roomId, version);
      const [base] = await extremities(stub);
      const depth = (await depthOf(stub, base!)) + 1;
      const auth = await authFor(stub, version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", carol]]);
      const a = remote.event(version, { room_id: roomId, type: "m.room.message", sender: carol, content: { body: "a" }, prev_events: [base!], auth_events: auth, depth });
      const b = remote.event(version, { room_id: roomId, type: "m.room.message", sender: carol, content: { body: "b" }, prev_events: [base!], auth_events: auth, depth, origin_server_ts: Date.now() + 1 });
      const outcomes = await stub.receive([a.pdu, b.pdu]);
      expect(outcomes.map((o) => o.status)).toEqual(["accepted", "accepted"]);
      expect(new Set(await extremities(stub))).toEqual(new Set([a.eventId, b.eventId]));
      const merged = await stub.send({ type: "m.room.topic", state_key: "", sender: alice, content: { topic: "merged" } });
      expect(merged.ok).toBe(true);
      expect(await extremities(stub)).toEqual([merged.ok ? merged.event_id : ""]);
      const prevs = await query<{ prev_id: string }>(stub, "SELECT prev_id FROM prev_edges p JOIN events e ON e.nid = p.event_nid WHERE e.event_id = ?", merged.ok ? merged.event_id : "");
      expect(new Set(prevs.map((p) => p.prev_id))).toEqual(new Set([a.eventId, b.eventId]));
    });

    it("applies a redaction by the original sender", async () => {
      const { stub } = await createRoom({ versionId });
      const msg = await stub.send({ type: "m.room.message", sender: alice, content: { body: "secret", msgtype: "m.text" } });
      if (!msg.ok) throw new Error(msg.error);
      const red = await stub.send({ type: "m.room.redaction", sender: alice, content: {}, redacts: msg.event_id });
      expect(red.ok).toBe(true);
      const [row] = await query<{ json: string; redacted_by: string }>(stub, "SELECT json, redacted_by FROM events WHERE event_id = ?", msg.event_id);
      expect(JSON.parse(row!.json).content).toEqual({});
      expect(row!.redacted_by).toBe(red.ok ? red.event_id : "");
    });

    it("refuses a local event the rules forbid and persists nothing", async () => {
      const { stub } = await createRoom({ versionId });
      const before = (await stub.summary())!;
      const res = await stub.send({ type: "m.room.message", sender: bob, content: { body: "not a member" } });
      expect(res).toMatchObject({ ok: false, errcode: "M_FORBIDDEN" });
      const after = (await stub.summary())!;
      expect(after.events).toBe(before.events);
      expect(after.stream_position).toBe(before.stream_position);
    });

    it("merges more than the threshold of forward extremities with an invisible dummy event", async () => {
      const { stub, roomId, version } = await createRoom({ versionId });
      await remoteJoin(stub, roomId, version);
      const [base] = await extremities(stub);
      const depth = (await depthOf(stub, base!)) + 1;
      const auth = await authFor(stub, version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", carol]]);
      const forks = Array.from({ length: 12 }, (_, i) =>
        remote.event(version, { room_id: roomId, type: "m.room.message", sender: carol, content: { body: `fork ${i}` }, prev_events: [base!], auth_events: auth, depth, origin_server_ts: Date.now() + i }),
      );
      await stub.receive(forks.map((f) => f.pdu));
      expect((await extremities(stub)).length).toBe(12);
      await runDurableObjectAlarm(stub);
      const ext = await extremities(stub);
      expect(ext).toHaveLength(1);
      const [dummy] = await query<{ type: string; sender: string }>(stub, "SELECT type, sender FROM events WHERE event_id = ?", ext[0]!);
      expect(dummy).toEqual({ type: "org.matrix.dummy_event", sender: alice });
    });
  });
}
