/**
 * Faster joins: the resync (docs/faster-joins.md) — rotation when a resident answers `/state_ids` badly, resuming
 * after a restart mid-step, termination when events arrive before their prev events, and race
 * freedom at the HTTP/federation level: local sends, incoming PDUs, a second join and the resync's steps
 * (including the final un-partial-stating) interleaved in many orders, with SQLite triggers recording every
 * flagging and completion.
 */
import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { api, e, enc, newUser, sendText, V3, waitFor, type ScenarioUser } from "./servers";
import { awaitFullyStated, FederationGate, populatedRoom, room, syncWith, timelineFlags, users } from "./partial-join-helpers";
import { roomVersion } from "../../src/protocol/room-versions";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { computeEventId, roomIdFromCreateEvent } from "../../src/protocol/event-id";
import { generateSigningKey } from "../../src/protocol/signing";
import { getServerKeys } from "../../src/server-keys";
import type { JsonObject, PDU } from "../../src/protocol/events";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import type { PartialState } from "../../durable-objects/room/partial-state";

let gate: FederationGate | undefined;

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
  gate = new FederationGate();
});
afterEach(() => {
  gate?.open();
  gate?.restore();
  gate = undefined;
});

/** A named room on hs2 with members on hs2 and hs3, hs3 fully stated in it. */
async function residentRoom(hs2 = 2, hs3 = 1) {
  const alice = await newUser("hs2.test", "alice");
  const h = await users("hs2.test", hs2, "h");
  const t = await users("hs3.test", hs3, "t");
  const roomId = await populatedRoom(alice, [...h, ...t], { preset: "public_chat", name: "Resync" });
  if (t.length > 0) await api(t[0]!, "GET", `${V3}/rooms/${enc(roomId)}/members`); // waits for hs3's own resync
  return { alice, h, t, roomId };
}

describe("resync robustness", () => {
  it("rotates to another server when one answers /state_ids with garbage or fails", async () => {
    const { roomId } = await residentRoom();
    gate!.set("pass");
    gate!.set({ status: 200, body: { pdu_ids: "not a list" } }, "hs2.test");
    const bob = await newUser("test.local", "bob");
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await awaitFullyStated(roomId, 20_000);
    // The first step asks for the whole state (/state; later ones /state_ids).
    const asked = gate!.log.filter((r) => /\/state(_ids)?\//.test(r.path)).map((r) => r.host);
    expect(asked[0]).toBe("hs2.test"); // the server joined through first
    expect(asked).toContain("hs3.test");
    expect((await timelineFlags(roomId)).every((f) => f.partial_state === 0)).toBe(true);

    // A server failing outright (500) is rotated away from too.
    const second = await residentRoom();
    gate!.set({ status: 500, body: { errcode: "M_UNKNOWN", error: "boom" } }, "hs2.test");
    await api(bob, "POST", `${V3}/join/${enc(second.roomId)}?server_name=hs2.test`, {});
    await waitFor(async () => (await room(second.roomId).partialStateInfo())?.failures === 1, "the failed step recorded");
    expect((await room(second.roomId).partialStateInfo())!.last_error).toMatch(/500/);
    await awaitFullyStated(second.roomId, 20_000);
  });

  it("continues after a restart (every object aborted) in the middle of a resync step; eager sync omits the room until then", async () => {
    const { roomId, alice } = await residentRoom(3, 0);
    const bob = await newUser("test.local", "bob");
    const before = await syncWith(bob);
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await gate!.held1();
    const eager = await syncWith(bob, { since: before.next_batch });
    expect(eager.rooms?.join?.[roomId]).toBeUndefined();

    // A restart: every Durable Object is aborted (the one waiting on /state_ids too), storage survives.
    await abortAllDurableObjects();
    // Still partial; the step that was in flight is gone.
    expect(await room(roomId).partialStateInfo()).toMatchObject({ events_left: 1, events_completed: 0 });
    expect((await syncWith(bob, { since: eager.next_batch })).rooms?.join?.[roomId]).toBeUndefined();
    gate!.open();
    // The watchdog alarm (due a minute after the step began) brings the resync back; let that minute pass.
    const due = await room(roomId).partialStateInfo();
    expect(due!.resync_due_ts).toBeGreaterThan(Date.now());
    await runInDurableObject(room(roomId), (_: RoomDO, state) => state.storage.sql.exec("UPDATE tasks SET due_ts = ? WHERE name = 'resync'", Date.now()));
    expect(await runDurableObjectAlarm(room(roomId))).toBe(true);
    await awaitFullyStated(roomId);
    const after = await waitFor(async () => {
      const s = await syncWith(bob, { since: eager.next_batch });
      return s.rooms?.join?.[roomId] ? s : undefined;
    }, "the room in bob's eager sync");
    const members = after.rooms.join[roomId].state.events.filter((ev: { type: string }) => ev.type === "m.room.member");
    expect(members.map((m: { state_key: string }) => m.state_key)).toContain(alice.userId);
  });
});

// -------------------------------------------------------------------------------------------------------------
// Events arriving before their prev events (RoomDO level, hand-built events of a pretend resident)

const version = roomVersion("12")!;
const REMOTE = "resident.example";
const remoteKey = generateSigningKey("r1");

describe("resync order", () => {
  it("terminates when events were stored as outliers before their prev events (their nids come first)", async () => {
    let ts = Date.now() - 100_000;
    const sign = (event: Record<string, unknown>, server = REMOTE, key = remoteKey) => {
      const pdu = signEvent(addContentHash({ origin_server_ts: ts++, ...event }), server, key, version) as unknown as PDU;
      return { pdu, id: computeEventId(pdu, version) };
    };
    const owner = `@owner:${REMOTE}`;
    const create = sign({ type: "m.room.create", state_key: "", sender: owner, content: { room_version: "12" }, depth: 1, prev_events: [], auth_events: [] });
    const roomId = roomIdFromCreateEvent(create.pdu, version);
    const add = (type: string, sk: string | undefined, sender: string, content: JsonObject, prev: string, depth: number, auth: string[]) =>
      sign({ room_id: roomId, type, ...(sk === undefined ? {} : { state_key: sk }), sender, content, depth, prev_events: [prev], auth_events: auth });
    const ownerJoin = add("m.room.member", owner, owner, { membership: "join" }, create.id, 2, []);
    const pl = add("m.room.power_levels", "", owner, { users: {}, state_default: 50 }, ownerJoin.id, 3, [ownerJoin.id]);
    const jr = add("m.room.join_rules", "", owner, { join_rule: "public" }, pl.id, 4, [ownerJoin.id, pl.id]);
    const m1 = add("m.room.member", `@m1:${REMOTE}`, `@m1:${REMOTE}`, { membership: "join" }, jr.id, 5, [pl.id, jr.id]);
    const alice = (await newUser("test.local", "alice")).userId;
    const keys = await getServerKeys(e);
    const join = sign({ room_id: roomId, type: "m.room.member", state_key: alice, sender: alice, content: { membership: "join" }, depth: 6, prev_events: [m1.id], auth_events: [pl.id, jr.id] }, "test.local", keys.current);
    const stub = room(roomId);
    const partial = [create, ownerJoin, pl, jr];
    const outcome = await stub.beginPartialJoin(roomId, "12", JSON.stringify(join.pdu), partial.map((x) => x.id), { servers_in_room: [REMOTE], joined_via: REMOTE }, partial.map((x) => JSON.stringify(x.pdu)));
    expect(outcome.status).toBe("accepted");

    // A (child of the join) and B (child of A) by m1. B is first known as an outlier (say, as an auth event
    // fetched early), so it has the smaller nid; A arrives, then B is placed in the timeline.
    await stub.storeOutliers([JSON.stringify(m1.pdu)]);
    const a = add("m.room.message", undefined, `@m1:${REMOTE}`, { body: "A" }, join.id, 7, [pl.id, m1.id]);
    const b = add("m.room.topic", "", owner, { topic: "B" }, a.id, 8, [ownerJoin.id, pl.id]);
    expect((await stub.storeOutliers([JSON.stringify(b.pdu)]))[0]!.status).toBe("stored");
    expect((await stub.receive([a.pdu]))[0]!.status).toBe("accepted");
    expect((await stub.receive([b.pdu]))[0]!.status).toBe("accepted");
    const nid = async (id: string) =>
      runInDurableObject(stub, (_: RoomDO, state) => state.storage.sql.exec<{ nid: number }>("SELECT nid FROM events WHERE event_id = ?", id).one().nid);
    expect(await nid(b.id)).toBeLessThan(await nid(a.id));

    // Parents first: the join (asked of a resident), then A and B from their prev events, without the network.
    const order: string[] = [];
    const full = [create, ownerJoin, pl, jr, m1].map((x) => x.id);
    for (;;) {
      const step = await runInDurableObject(stub, (inst: RoomDO, state) => {
        const p = (inst as unknown as { partial: PartialState }).partial;
        return state.storage.transactionSync(() => {
          const next = p.nextReady();
          if (!next) return p.finish() ? "done" : "again";
          order.push(next.event_id);
          const r = next.local ? p.completeFromPrevs(next.event_id) : p.complete(next.event_id, full);
          expect(r.status).toBe("completed");
          return next.local ? "local" : "network";
        });
      });
      if (step === "done") break;
    }
    expect(order).toEqual([join.id, a.id, b.id]);
    expect(await stub.partialStateInfo()).toBeNull();
    const flags = await timelineFlags(roomId);
    expect(flags.every((f) => f.partial_state === 0 && f.rejected === null)).toBe(true);
    // The topic change (B) is in the current state with the full state under it (m1's membership included).
    const state = await stub.clientRead({ userId: alice }, { kind: "state" });
    const events = JSON.parse(state.body) as { type: string; state_key: string; content: JsonObject }[];
    expect(events.find((ev) => ev.type === "m.room.topic")?.content.topic).toBe("B");
    expect(events.find((ev) => ev.type === "m.room.member" && ev.state_key === `@m1:${REMOTE}`)).toBeDefined();
  });
});

// -------------------------------------------------------------------------------------------------------------
// Race freedom at the HTTP/federation level

/** Triggers that log, in one sequence, every flagging and completion of an event and the un-partial-stating. */
const TRIGGERS = `
  CREATE TABLE IF NOT EXISTS test_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, event_id TEXT);
  CREATE TRIGGER IF NOT EXISTS test_flag_insert AFTER INSERT ON events WHEN NEW.partial_state = 1
    BEGIN INSERT INTO test_log (kind, event_id) VALUES ('flagged', NEW.event_id); END;
  CREATE TRIGGER IF NOT EXISTS test_flag_update AFTER UPDATE OF partial_state ON events WHEN NEW.partial_state = 1 AND OLD.partial_state = 0
    BEGIN INSERT INTO test_log (kind, event_id) VALUES ('flagged', NEW.event_id); END;
  CREATE TRIGGER IF NOT EXISTS test_complete AFTER UPDATE OF partial_state ON events WHEN NEW.partial_state = 0 AND OLD.partial_state = 1
    BEGIN INSERT INTO test_log (kind, event_id) VALUES ('completed', NEW.event_id); END;
  CREATE TRIGGER IF NOT EXISTS test_finish AFTER DELETE ON meta WHEN OLD.key = 'partial_state'
    BEGIN INSERT INTO test_log (kind, event_id) VALUES ('finished', NULL); END;
`;

function prng(seed: number) {
  let s = seed;
  return (n: number) => ((s = (s * 48271) % 2147483647), s % n);
}

describe("race freedom", () => {
  it("a second local join that went through the resident while partial, answered after the resync finished, joins without making the room partial again", async () => {
    const { roomId, h } = await residentRoom(2, 1);
    await runInDurableObject(room(roomId), (_: RoomDO, state) => state.storage.sql.exec(TRIGGERS));
    gate!.set("hold");
    const bob = await newUser("test.local", "bob");
    const carol = await newUser("test.local", "carol");
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await gate!.held1();

    // Carol's send_join waits until the resync has finished (the flag is polled: no promise crosses I/O contexts).
    const flags = { resynced: false, sendJoinSeen: false };
    gate!.onRequest = async (url) => {
      if (!url.pathname.includes("/send_join/")) return; // bob has joined: the only send_join now is carol's
      flags.sendJoinSeen = true;
      while (!flags.resynced) await new Promise((r) => setTimeout(r, 10));
    };
    const carolJoin = api(carol, "POST", `${V3}/join/${enc(roomId)}`, {});
    await waitFor(async () => flags.sendJoinSeen, "carol's send_join on its way");
    // Meanwhile the room moves on at the resident (its messages reach test.local too).
    await sendText(h[0]!, roomId, "while carol joins");
    gate!.open();
    await awaitFullyStated(roomId);
    flags.resynced = true;
    await carolJoin;

    // The join landed as an ordinary event; the room was un-partial-stated exactly once and stays fully stated.
    const log = await runInDurableObject(room(roomId), (_: RoomDO, state) =>
      state.storage.sql.exec<{ kind: string }>("SELECT kind FROM test_log ORDER BY seq").toArray(),
    );
    expect(log.filter((l) => l.kind === "finished"), JSON.stringify(log)).toHaveLength(1);
    expect(await room(roomId).partialStateInfo()).toBeNull();
    const carolsJoin = (await timelineFlags(roomId)).filter((f) => f.type === "m.room.member" && f.sender === carol.userId);
    expect(carolsJoin).toHaveLength(1);
    expect(carolsJoin[0]).toMatchObject({ partial_state: 0, rejected: null });
    // Carol sees the room at once (read-your-writes), and can talk in it.
    const s = await syncWith(carol);
    expect(Object.keys(s.rooms?.join ?? {})).toContain(roomId);
    await sendText(carol, roomId, "carol here");
  });

  it("interleaves local sends, incoming PDUs, a second join and resync steps (the final un-partial step too) in many orders: every flagged event completed exactly once, none lost, no errors or retries", async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const rand = prng(seed * 7919);
      const { roomId, h, t } = await residentRoom(2, 1);
      await runInDurableObject(room(roomId), (_: RoomDO, state) => state.storage.sql.exec(TRIGGERS));
      gate!.set("hold");
      const bob = await newUser("test.local", "bob");
      const carol = await newUser("test.local", "carol");
      await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
      await gate!.held1();

      // The operations, in a random order, each after a random delay, all running at once.
      const sent: string[] = [];
      const ops: (() => Promise<void>)[] = [];
      const send = (u: ScenarioUser, body: string) => async () => void sent.push(await sendText(u, roomId, body));
      for (let i = 0; i < 4; i++) ops.push(send(bob, `bob ${seed}.${i}`));
      for (let i = 0; i < 3; i++) ops.push(send(h[i % h.length]!, `hs2 ${seed}.${i}`));
      ops.push(send(t[0]!, `hs3 ${seed}`));
      ops.push(async () => {
        await api(carol, "POST", `${V3}/join/${enc(roomId)}`, {});
        sent.push(await sendText(carol, roomId, `carol ${seed}`));
      });
      ops.push(async () => gate!.open()); // the held step, then every later one, go through
      for (let i = ops.length - 1; i > 0; i--) {
        const j = rand(i + 1);
        [ops[i], ops[j]] = [ops[j]!, ops[i]!];
      }
      await Promise.all(ops.map((op, i) => new Promise((r) => setTimeout(r, i * 15 + rand(40))).then(op)));
      // Sends right around the un-partial-stating.
      const last = Promise.all([send(bob, `bob ${seed}.late`)(), send(h[0]!, `hs2 ${seed}.late`)()]);
      await awaitFullyStated(roomId);
      await last;

      await waitFor(async () => {
        const have = new Set((await timelineFlags(roomId)).map((f) => f.event_id));
        return sent.every((id) => have.has(id));
      }, `every sent event at test.local (seed ${seed})`);
      await awaitFullyStated(roomId);
      const flags = await timelineFlags(roomId);
      const log = await runInDurableObject(room(roomId), (_: RoomDO, state) =>
        state.storage.sql.exec<{ seq: number; kind: string; event_id: string | null }>("SELECT seq, kind, event_id FROM test_log ORDER BY seq").toArray(),
      );
      const flagged = log.filter((l) => l.kind === "flagged").map((l) => l.event_id!);
      const completed = log.filter((l) => l.kind === "completed").map((l) => l.event_id!);
      const finishedAt = log.filter((l) => l.kind === "finished").map((l) => l.seq);
      const context = `seed ${seed}: ${JSON.stringify(log)}`;
      // Each flagged event was completed exactly once, after it was flagged.
      expect(new Set(flagged).size, context).toBe(flagged.length);
      expect(new Set(completed).size, context).toBe(completed.length);
      expect([...completed].sort(), context).toEqual([...flagged].sort());
      for (const id of completed) {
        expect(log.findIndex((l) => l.kind === "completed" && l.event_id === id), context).toBeGreaterThan(log.findIndex((l) => l.kind === "flagged" && l.event_id === id));
      }
      // The room was un-partial-stated once, after the last completion, and nothing was flagged after that.
      expect(finishedAt, context).toHaveLength(1);
      expect(log.filter((l) => l.seq > finishedAt[0]!), context).toEqual([]);
      // None lost, none left partial, none rejected; every sent event exactly once.
      const ids = flags.map((f) => f.event_id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const id of sent) expect(ids, context).toContain(id);
      expect(flags.every((f) => f.partial_state === 0 && f.rejected === null), context).toBe(true);
      // No step was retried: the resync asked about each partial event at most once (no failures).
      const asked = gate!.log.filter((r) => /\/state(_ids)?\//.test(r.path)).map((r) => new URLSearchParams(r.query).get("event_id")!);
      const resyncAsks = asked.filter((id) => flagged.includes(id));
      expect(new Set(resyncAsks).size, context).toBe(resyncAsks.length);
      gate!.log.length = 0;
    }
  });
});
