/**
 * Partial state in the RoomDO: a join persisted on top of a state without its members, events accepted while
 * partial (flagged, no soft-fail, auth falling back to their own auth events), per-event completion with the
 * full state (accepted may become rejected), un-partial-stating in the transaction that proves nothing is left,
 * and interleavings of sends, incoming events and resync steps in many orders. The network half of the resync
 * is exercised by the federation tests; here the full states are handed in directly.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { roomStub, SERVER, testEnv } from "./helpers";
import { roomVersion } from "../../src/protocol/room-versions";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { computeEventId, roomIdFromCreateEvent } from "../../src/protocol/event-id";
import { generateSigningKey } from "../../src/protocol/signing";
import { getServerKeys } from "../../src/server-keys";
import type { JsonObject, PDU } from "../../src/protocol/events";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import type { PartialState } from "../../durable-objects/room/partial-state";

const version = roomVersion("12")!;
const REMOTE = "resident.test";
const remoteKey = generateSigningKey("r1");
const owner = `@owner:${REMOTE}`;
const member = (i: number) => `@m${i}:${REMOTE}`;
const alice = `@alice:${SERVER}`;

interface Built {
  pdu: PDU;
  id: string;
}

/** A resident room on a pretend remote server: create, owner, power levels, public join rule, N members. */
function residentRoom(members: number, opts: { bannedLater?: number } = {}) {
  let ts = Date.now() - 1_000_000;
  const sign = (event: Record<string, unknown>, server = REMOTE, key = remoteKey): Built => {
    const pdu = signEvent(addContentHash({ origin_server_ts: ts++, ...event }), server, key, version) as unknown as PDU;
    return { pdu, id: computeEventId(pdu, version) };
  };
  const create = sign({ type: "m.room.create", state_key: "", sender: owner, content: { room_version: "12" }, depth: 1, prev_events: [], auth_events: [] });
  const roomId = roomIdFromCreateEvent(create.pdu, version);
  const events: Built[] = [create];
  let prev = create.id;
  let depth = 1;
  const state = new Map<string, string>([["m.room.create|", create.id]]);
  const add = (type: string, stateKey: string, sender: string, content: JsonObject, auth: string[]) => {
    const e = sign({ room_id: roomId, type, state_key: stateKey, sender, content, depth: ++depth, prev_events: [prev], auth_events: auth });
    events.push(e);
    prev = e.id;
    state.set(`${type}|${stateKey}`, e.id);
    return e;
  };
  const ownerJoin = add("m.room.member", owner, owner, { membership: "join" }, []);
  const pl = add("m.room.power_levels", "", owner, { users: {}, ban: 50, kick: 50, events_default: 0, state_default: 50 }, [ownerJoin.id]);
  const jr = add("m.room.join_rules", "", owner, { join_rule: "public" }, [ownerJoin.id, pl.id]);
  const joins: Built[] = [];
  for (let i = 0; i < members; i++) joins.push(add("m.room.member", member(i), member(i), { membership: "join" }, [pl.id, jr.id]));
  let ban: Built | undefined;
  if (opts.bannedLater !== undefined) {
    const target = member(opts.bannedLater);
    ban = add("m.room.member", target, owner, { membership: "ban" }, [ownerJoin.id, pl.id, state.get(`m.room.member|${target}`)!]);
  }
  return { roomId, events, create, ownerJoin, pl, jr, joins, ban, state, head: () => ({ prev, depth }), sign };
}

type Resident = ReturnType<typeof residentRoom>;

/** Joins alice (local) to the resident room with partial state: everything but the other members. */
async function partialJoin(resident: Resident) {
  const stub = roomStub(resident.roomId);
  const keys = await getServerKeys(testEnv);
  const { prev, depth } = resident.head();
  const join = resident.sign(
    { room_id: resident.roomId, type: "m.room.member", state_key: alice, sender: alice, content: { membership: "join" }, depth: depth + 1, prev_events: [prev], auth_events: [resident.pl.id, resident.jr.id] },
    SERVER,
    keys.current,
  );
  const partialState = [resident.create, resident.ownerJoin, resident.pl, resident.jr];
  // The room must be known before outliers can be stored (the joining side initialises it first).
  await runInDurableObject(stub, (inst: RoomDO) => {
    const room = (inst as unknown as { room: { initialise(id: string, v: typeof version): void } }).room;
    room.initialise(resident.roomId, version);
  });
  // The state from send_join is stored as outliers, auth chain order (create first).
  const stored = await stub.storeOutliers(partialState.map((e) => JSON.stringify(e.pdu)));
  expect(stored.map((o) => o.status)).toEqual(["stored", "stored", "stored", "stored"]);
  const outcome = await stub.beginPartialJoin(resident.roomId, "12", JSON.stringify(join.pdu), partialState.map((e) => e.id), {
    servers_in_room: [REMOTE],
    joined_via: REMOTE,
  });
  expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: "accepted", event_id: join.id });
  return { stub, join };
}

/** The full state before an event of the resident room after the join: the resident's state plus alice's join. */
function fullStateIds(resident: Resident, extra: string[] = []): string[] {
  return [...resident.state.values(), ...extra];
}

async function withPartial<T>(stub: ReturnType<typeof roomStub>, fn: (p: PartialState, sql: SqlStorage) => T): Promise<T> {
  return runInDurableObject(stub, (inst: RoomDO, state) => {
    const p = (inst as unknown as { partial: PartialState }).partial;
    return state.storage.transactionSync(() => fn(p, state.storage.sql));
  });
}

async function flags(stub: ReturnType<typeof roomStub>) {
  return runInDurableObject(stub, (_: RoomDO, state) =>
    state.storage.sql
      .exec<{ event_id: string; partial_state: number; rejected: string | null }>(
        "SELECT event_id, partial_state, rejected FROM events WHERE outlier = 0 ORDER BY nid",
      )
      .toArray(),
  );
}

describe("partial-state rooms", () => {
  it("joins with partial state, accepts remote events against partial state, completes and un-partial-states", async () => {
    const resident = residentRoom(30);
    const { stub, join } = await partialJoin(resident);
    const info = await stub.partialStateInfo();
    expect(info).toMatchObject({ join_event_id: join.id, servers_in_room: [REMOTE], joined_via: REMOTE, events_left: 1 });

    // A member the partial state does not contain sends a message; its own member event came as an outlier
    // (fetched as an auth event), and the message is accepted against partial state + its auth events.
    const m5 = resident.joins[5]!;
    await stub.storeOutliers([JSON.stringify(m5.pdu)]);
    const msg = resident.sign({ room_id: resident.roomId, type: "m.room.message", sender: member(5), content: { body: "hi" }, depth: 100, prev_events: [join.id], auth_events: [resident.pl.id, m5.id] });
    const [outcome] = await stub.receive([msg.pdu]);
    expect(outcome).toMatchObject({ status: "accepted" });

    // Local users can send while partial.
    const local = await stub.send({ type: "m.room.message", sender: alice, content: { body: "from alice" } });
    expect(local.ok).toBe(true);
    expect((await stub.partialStateInfo())!.events_left).toBe(3);
    expect((await flags(stub)).every((f) => f.partial_state === 1)).toBe(true);

    // Waiters for full state wait; a cancelled one is removed at once.
    const waiting = stub.waitForFullState("w1", 30_000);
    const cancelled = stub.waitForFullState("w2", 30_000);
    expect(await stub.fullStateWaiterCount()).toBe(2);
    expect(await stub.cancelFullStateWait("w2")).toBe(true);
    expect(await cancelled).toBe(false);
    expect(await stub.fullStateWaiterCount()).toBe(1);

    // Resync: each event gets its full state, oldest first.
    const allMembers = resident.joins.map((j) => j.id);
    await stub.storeOutliers(resident.joins.map((j) => JSON.stringify(j.pdu)));
    const order: string[] = [];
    for (;;) {
      const done = await withPartial(stub, (p) => {
        const next = p.next();
        if (!next) return p.finish();
        order.push(next.event_id);
        const extra = next.event_id === join.id ? [] : [join.id];
        expect(p.complete(next.event_id, [...fullStateIds(resident), ...extra, ...allMembers]).status).toBe("completed");
        return false;
      });
      if (done) break;
    }
    expect(order[0]).toBe(join.id);
    expect(await stub.partialStateInfo()).toBeNull();
    expect((await flags(stub)).every((f) => f.partial_state === 0 && f.rejected === null)).toBe(true);
    // The un-partial-stating woke the waiter.
    expect(await waiting).toBe(true);
    expect(await stub.fullStateWaiterCount()).toBe(0);
    // A cancelled waiter (client went away) is removed and answers "not full".
    expect(await stub.cancelFullStateWait("nobody")).toBe(false);
    const members = await runInDurableObject(stub, (_: RoomDO, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = 'join'").one().n,
    );
    expect(members).toBe(32); // owner + 30 members + alice
  });

  it("an event accepted against partial state is rejected once the full state shows its sender was banned", async () => {
    const resident = residentRoom(10, { bannedLater: 3 });
    const { stub, join } = await partialJoin(resident);
    const m3 = resident.joins[3]!;
    await stub.storeOutliers([JSON.stringify(m3.pdu)]);
    // Sent by m3 citing its join: the partial state knows nothing of the ban.
    const msg = resident.sign({ room_id: resident.roomId, type: "m.room.message", sender: member(3), content: { body: "banned but talking" }, depth: 100, prev_events: [join.id], auth_events: [resident.pl.id, m3.id] });
    expect((await stub.receive([msg.pdu]))[0]).toMatchObject({ status: "accepted" });

    await stub.storeOutliers([...resident.joins, resident.ban!].map((e) => JSON.stringify(e.pdu)));
    const full = [...resident.state.values()]; // includes the ban as m3's membership
    await withPartial(stub, (p) => {
      expect(p.complete(join.id, full)).toMatchObject({ status: "completed", rejected_now: false });
      expect(p.complete(msg.id, [...full, join.id])).toMatchObject({ status: "completed", rejected_before: false, rejected_now: true });
      expect(p.finish()).toBe(true);
    });
    const f = await flags(stub);
    expect(f.find((x) => x.event_id === msg.id)!.rejected).toMatch(/state before event/);
    // The rejected event is no longer an extremity: alice's next event builds on her join.
    const sent = await stub.send({ type: "m.room.message", sender: alice, content: { body: "after" } });
    expect(sent.ok).toBe(true);
    expect((await stub.summary())!.forward_extremities).toEqual([sent.ok ? sent.event_id : ""]);
  });

  it("interleaves local sends, incoming events and resync steps in many orders without losing or double-completing anything", async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const resident = residentRoom(12);
      const { stub, join } = await partialJoin(resident);
      await stub.storeOutliers(resident.joins.map((j) => JSON.stringify(j.pdu)));
      let rng = seed * 7919;
      const rand = (n: number) => ((rng = (rng * 48271) % 2147483647), rng % n);
      const sent: string[] = [join.id];
      const completed: string[] = [];
      let remoteCount = 0;
      let finished = false;
      for (let step = 0; step < 40 && !finished; step++) {
        const action = rand(3);
        if (action === 0) {
          const r = await stub.send({ type: "m.room.message", sender: alice, content: { body: `local ${step}` } });
          expect(r.ok).toBe(true);
          if (r.ok) sent.push(r.event_id);
        } else if (action === 1) {
          const who = rand(12);
          const ext = (await stub.summary())!.forward_extremities;
          const msg = resident.sign({ room_id: resident.roomId, type: "m.room.message", sender: member(who), content: { body: `remote ${remoteCount++}` }, depth: 1000 + step, prev_events: ext, auth_events: [resident.pl.id, resident.joins[who]!.id] });
          const [o] = await stub.receive([msg.pdu]);
          expect(o!.status).toBe("accepted");
          sent.push(msg.id);
        } else {
          finished = await withPartial(stub, (p) => {
            const next = p.next();
            if (!next) return p.finish();
            const extra = sent.slice(0, sent.indexOf(next.event_id)).filter((id) => id === join.id);
            const r = p.complete(next.event_id, [...resident.state.values(), ...extra]);
            expect(r.status).toBe("completed");
            completed.push(next.event_id);
            return false;
          });
        }
      }
      // Drain the rest of the resync.
      while (!finished) {
        finished = await withPartial(stub, (p) => {
          const next = p.next();
          if (!next) return p.finish();
          expect(p.complete(next.event_id, [...resident.state.values(), join.id]).status).toBe("completed");
          completed.push(next.event_id);
          return false;
        });
      }
      // Every event flagged partial was completed exactly once; events whose prev events were already fully
      // stated were accepted with full state and never needed it. None lost, none left partial, none rejected.
      expect(new Set(completed).size).toBe(completed.length);
      expect(completed.every((id) => sent.includes(id))).toBe(true);
      expect(completed).toContain(join.id);
      const f = await flags(stub);
      expect(f.map((x) => x.event_id).sort()).toEqual([...sent].sort());
      expect(f.every((x) => x.partial_state === 0 && x.rejected === null)).toBe(true);
      expect(await stub.partialStateInfo()).toBeNull();
      // After un-partial-stating, new events are never flagged.
      const after = await stub.send({ type: "m.room.message", sender: alice, content: { body: "full now" } });
      expect(after.ok).toBe(true);
      expect((await flags(stub)).at(-1)!.partial_state).toBe(0);
    }
  });
});
