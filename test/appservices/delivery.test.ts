/**
 * Delivery to application services: which events interest which appservice (decided by the RoomDO at persist
 * time), the transaction format, ephemeral data, and the AppServiceDO's state machine under faults — backoff
 * 2, 4 … 512 s observed by stepping alarms with a controlled clock, the oldest transaction retried with its
 * original id, nothing lost or duplicated, order kept, delivery resuming after eviction — and a 10,000-event
 * backlog in at most 100 transactions.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { call, createUserDirect, testEnv } from "../client/helpers";
import { V3, enc, newRoom, sendText } from "../client/rooms-helpers";
import { getServerKeys } from "../../src/server-keys";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { roomVersion } from "../../src/protocol/room-versions";
import type { PDU } from "../../src/protocol/events";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import type { AppServiceDO } from "../../durable-objects/appservice/AppServiceDO";
import { initialEvents } from "../rooms/helpers";
import {
  appserviceStub, as, asSender, controlClock, eventually, flush, installFakeAppservices, SERVER, type FakeAppservices,
} from "./helpers";

const REG = `${V3}/register`;
let fake: FakeAppservices;
let n = 0;
const unique = (prefix: string) => `${prefix}${++n}_${Date.now().toString(36)}`;

beforeEach(() => {
  fake = installFakeAppservices();
});

async function registerPuppet(appservice: ReturnType<typeof asSender>, localpart: string, login = false) {
  return call<{ user_id: string; device_id?: string; access_token?: string }>("POST", REG, {
    user: appservice,
    body: { type: "m.login.application_service", username: localpart, inhibit_login: !login },
  });
}

function roomStub(roomId: string) {
  return testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
}

describe("interest", () => {
  it("sends the appservice the events of its sender, in client format, in order", async () => {
    const bot = asSender("bridge");
    const roomId = await newRoom(bot);
    const ids = [await sendText(bot, roomId, "one"), await sendText(bot, roomId, "two")];
    const events = await eventually(() => {
      const got = fake.events("bridge").filter((e) => e.room_id === roomId);
      expect(got.map((e) => e.event_id)).toEqual(expect.arrayContaining(ids));
      return got;
    });
    expect(events[0]!.type).toBe("m.room.create");
    const msgs = events.filter((e) => e.type === "m.room.message");
    expect(msgs.map((e) => e.content.body)).toEqual(["one", "two"]);
    const msg = msgs[0]!;
    expect(Object.keys(msg).sort()).toEqual(["content", "event_id", "origin_server_ts", "room_id", "sender", "type", "unsigned"]);
    expect(msg.unsigned).toEqual({ age: expect.any(Number) });
    // Nothing else is interested in this room.
    expect(fake.events("observer").filter((e) => e.room_id === roomId)).toEqual([]);
  });

  it("sends an invite of one of its users (state_key), then everything once the user is joined, with prev_content", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    const before = await sendText(alice, roomId, "before");
    const puppet = (await registerPuppet(asSender("bridge"), unique("_asb_m"))).user_id;
    await call("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: puppet } });
    await call("POST", as(`${V3}/join/${enc(roomId)}`, puppet), { user: asSender("bridge"), body: {} });
    const after = await sendText(alice, roomId, "after");
    const got = await eventually(() => {
      const list = fake.events("bridge").filter((e) => e.room_id === roomId);
      expect(list.map((e) => e.event_id)).toContain(after);
      return list;
    });
    expect(got.map((e) => e.event_id)).not.toContain(before);
    const members = got.filter((e) => e.type === "m.room.member" && e.state_key === puppet);
    expect(members.map((e) => e.content.membership)).toEqual(["invite", "join"]);
    expect(members[1]!.unsigned).toMatchObject({ prev_content: { membership: "invite" }, replaces_state: members[0]!.event_id });
  });

  it("sends everything of a room whose canonical alias is in its alias namespace (legacy ?access_token= when asked)", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const alias = `#${unique("_aso_room")}:${SERVER}`;
    await call("PUT", `${V3}/directory/room/${enc(alias)}`, { user: alice, body: { room_id: roomId } });
    const quiet = await sendText(alice, roomId, "not yet");
    await call("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias/`, { user: alice, body: { alias } });
    const loud = await sendText(alice, roomId, "now");
    await eventually(() => expect(fake.events("observer").map((e) => e.event_id)).toContain(loud));
    expect(fake.events("observer").map((e) => e.event_id)).not.toContain(quiet);
    const txn = fake.accepted("observer").at(-1)!;
    expect(new URL(txn.url).searchParams.get("access_token")).toBe("hs-token-observer");
    expect(txn.authorization).toBe("Bearer hs-token-observer");
  });

  it("sends everything of a room whose ID is in its rooms namespace", async () => {
    const version = roomVersion("10")!;
    const creator = `@${unique("creator")}:${SERVER}`;
    const roomId = `!asobserved${unique("x")}:${SERVER}`;
    const keys = await getServerKeys(testEnv);
    const create = signEvent(
      addContentHash({ room_id: roomId, sender: creator, type: "m.room.create", state_key: "", content: { creator, room_version: "10" }, origin_server_ts: Date.now(), depth: 1, prev_events: [], auth_events: [] }),
      SERVER, keys.current, version,
    ) as unknown as PDU;
    const results = await roomStub(roomId).createRoom(create, roomId, "10", initialEvents(creator, version));
    expect(results.every((r) => r.ok)).toBe(true);
    await eventually(() => expect(fake.events("observer").filter((e) => e.room_id === roomId)).toHaveLength(5));
  });

  it("sends nothing to an appservice without a URL", async () => {
    const bot = asSender("silent");
    const roomId = await newRoom(bot);
    await sendText(bot, roomId, "into the void");
    const status = await appserviceStub("silent").status("silent");
    expect(status).toMatchObject({ rooms_behind: 0, queued: 0, sent_transactions: 0 });
    expect(await runInDurableObject(roomStub(roomId), (_i: RoomDO, state) => state.storage.sql.exec("SELECT count(*) AS n FROM appservice_events").one().n)).toBe(0);
  });
});

describe("ephemeral data (receive_ephemeral)", () => {
  it("sends typing and receipts of rooms the appservice is interested in, with room_id", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    const puppet = (await registerPuppet(asSender("bridge"), unique("_asb_e"))).user_id;
    await call("POST", as(`${V3}/join/${enc(roomId)}`, puppet), { user: asSender("bridge"), body: {} });
    const msg = await sendText(alice, roomId, "read me");
    await call("PUT", `${V3}/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { user: alice, body: { typing: true, timeout: 10000 } });
    await call("POST", `${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(msg)}`, { user: alice, body: {} });
    const ephemeral = await eventually(() => {
      const all = fake.accepted("bridge").flatMap((t) => t.body.ephemeral ?? []).filter((e) => e.room_id === roomId);
      expect(all.some((e) => e.type === "m.receipt")).toBe(true);
      return all;
    });
    expect(ephemeral.find((e) => e.type === "m.typing")).toEqual({ type: "m.typing", room_id: roomId, content: { user_ids: [alice.userId] } });
    const receipt = ephemeral.find((e) => e.type === "m.receipt")!;
    expect(receipt.content).toEqual({ [msg]: { "m.read": { [alice.userId]: { ts: expect.any(Number) } } } });
    const withEphemeral = fake.accepted("bridge").find((t) => t.body.ephemeral)!;
    expect(withEphemeral.body["de.sorunome.msc2409.ephemeral"]).toEqual(withEphemeral.body.ephemeral);
  });
});

describe("faults: backoff, retries with the original id, recovery", () => {
  it("retries the oldest transaction after 2, 4 … 512 s (capped), loses nothing, duplicates nothing, keeps order", async () => {
    const id = "faulty";
    const bot = asSender(id);
    const roomId = await newRoom(bot);
    await eventually(async () => expect((await flush(id)).sent_transactions).toBeGreaterThan(0));
    const advance = await controlClock(id);
    fake.fail(id, "always");

    const sent: string[] = [];
    for (let i = 0; i < 3; i++) sent.push(await sendText(bot, roomId, `m${i}`));
    let status = await eventually(async () => {
      const s = await flush(id);
      expect(s.state).toBe("down");
      return s;
    });
    const failedId = fake.attempts.get(id)!.at(-1)!.txnId;
    const t0 = status.next_retry_ts! - 2000;
    expect(status.backoff_exponent).toBe(1);

    const delays: number[] = [];
    let clock = t0;
    for (let step = 0; step < 10; step++) {
      // The alarm firing before the retry is due does nothing.
      const attemptsBefore = fake.attempts.get(id)!.length;
      await runDurableObjectAlarm(appserviceStub(id));
      expect(fake.attempts.get(id)!.length).toBe(attemptsBefore);
      const due = status.next_retry_ts!;
      delays.push((due - clock) / 1000);
      clock = advance(due - clock);
      // Meanwhile, more events arrive; they wait.
      sent.push(await sendText(bot, roomId, `during ${step}`));
      await eventually(async () => expect((await appserviceStub(id).status()).rooms_behind).toBe(1));
      expect(await runDurableObjectAlarm(appserviceStub(id))).toBe(true);
      const attempts = fake.attempts.get(id)!;
      expect(attempts.length).toBe(attemptsBefore + 1);
      expect(attempts.at(-1)!.txnId).toBe(failedId); // always the oldest, with its original id
      status = await appserviceStub(id).status();
      expect(status.state).toBe("down");
    }
    expect(delays).toEqual([2, 4, 8, 16, 32, 64, 128, 256, 512, 512]);
    expect(status.stored_transactions).toBe(1);

    // The appservice comes back: the stored transaction goes first under its id, then the rest; then UP.
    fake.recover(id);
    advance(status.next_retry_ts! - clock);
    await runDurableObjectAlarm(appserviceStub(id));
    status = await eventually(async () => {
      const s = await flush(id);
      expect(s.state).toBe("up");
      return s;
    });
    expect(status).toMatchObject({ stored_transactions: 0, queued: 0, rooms_behind: 0, backoff_exponent: 0, next_retry_ts: null });
    const accepted = fake.accepted(id);
    const firstAfter = accepted.findIndex((t) => t.txnId === failedId);
    expect(firstAfter).toBeGreaterThanOrEqual(0);
    // Each event under exactly one transaction id, all of them, in order.
    const where = new Map<string, string>();
    for (const t of accepted) for (const e of t.body.events) {
      expect(where.get(e.event_id) ?? t.txnId).toBe(t.txnId);
      where.set(e.event_id, t.txnId);
    }
    const delivered = fake.events(id).filter((e) => e.type === "m.room.message").map((e) => e.event_id);
    expect(delivered).toEqual(sent);
    // Transaction ids only ever increase.
    const ids = [...new Set(accepted.map((t) => Number(t.txnId)))];
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
  });

  it("drops ephemeral work while DOWN, keeps events", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    const puppet = (await registerPuppet(asSender("bridge"), unique("_asb_f"))).user_id;
    await call("POST", as(`${V3}/join/${enc(roomId)}`, puppet), { user: asSender("bridge"), body: {} });
    await eventually(async () => expect((await flush("bridge")).rooms_behind).toBe(0));
    const advance = await controlClock("bridge");
    fake.fail("bridge", "always");
    const msg = await sendText(alice, roomId, "while down");
    await eventually(async () => expect((await flush("bridge")).state).toBe("down"));
    await call("PUT", `${V3}/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { user: alice, body: { typing: true, timeout: 10000 } });
    // Let the room's outbox tell the appservice (which drops it), then recover.
    await new Promise((r) => setTimeout(r, 200));
    fake.recover("bridge");
    advance(10_000);
    await runDurableObjectAlarm(appserviceStub("bridge"));
    await eventually(async () => expect((await flush("bridge")).state).toBe("up"));
    expect(fake.events("bridge").map((e) => e.event_id)).toContain(msg);
    const typing = fake.accepted("bridge").flatMap((t) => t.body.ephemeral ?? []).filter((e) => e.room_id === roomId && e.type === "m.typing");
    expect(typing).toEqual([]);
  });

  it("resumes after the AppServiceDO is evicted: state, stored transaction and alarm survive", async () => {
    const id = "faulty";
    const bot = asSender(id);
    const roomId = await newRoom(bot);
    await eventually(async () => expect((await flush(id)).rooms_behind).toBe(0));
    // (Whatever clock the instance has, its retry is not due before the eviction below.)
    fake.fail(id, 1);
    const msg = await sendText(bot, roomId, "survivor");
    const down = await eventually(async () => {
      const s = await flush(id);
      expect(s.state).toBe("down");
      return s;
    });
    await evictDurableObject(appserviceStub(id));
    const alarm = await runInDurableObject(appserviceStub(id), (_i: AppServiceDO, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(down.next_retry_ts!);
    expect(await appserviceStub(id).status()).toMatchObject({ state: "down", stored_transactions: 1 });
    // The new instance has the real clock; make the retry due and let the alarm run.
    await controlClock(id, down.next_retry_ts!);
    expect(await runDurableObjectAlarm(appserviceStub(id))).toBe(true);
    await eventually(async () => expect((await flush(id)).state).toBe("up"));
    const delivered = fake.events(id).filter((e) => e.event_id === msg);
    expect(delivered).toHaveLength(1);
  });

  it("a successful ping through the client API makes a DOWN appservice retry at once", async () => {
    const id = "faulty";
    const bot = asSender(id);
    const roomId = await newRoom(bot);
    await eventually(async () => expect((await flush(id)).rooms_behind).toBe(0));
    fake.fail(id, 1);
    const msg = await sendText(bot, roomId, "pinged back");
    const down = await eventually(async () => {
      const s = await flush(id);
      expect(s.state).toBe("down");
      return s;
    });
    expect(down.next_retry_ts).toBeGreaterThan(Date.now());
    fake.routes["POST faulty.as.test/_matrix/app/v1/ping"] = () => Response.json({});
    await call("POST", `/_matrix/client/v1/appservice/${id}/ping`, { user: bot, body: {} });
    await eventually(async () => expect((await flush(id)).state).toBe("up"));
    expect(fake.events(id).filter((e) => e.event_id === msg)).toHaveLength(1);
  });

  it("an UP appservice with work pending keeps a safety alarm, so an eviction mid-delivery resumes", async () => {
    const id = "faulty";
    const bot = asSender(id);
    const roomId = await newRoom(bot);
    await eventually(async () => expect((await flush(id)).rooms_behind).toBe(0));
    // A notice recorded but not yet pulled (as if the instance went away right after acknowledging it).
    await runInDurableObject(appserviceStub(id), (_i: AppServiceDO, state) => {
      state.storage.sql.exec("UPDATE room_cursors SET known = known + 1000 WHERE room_id = ?", roomId);
    });
    await appserviceStub(id).roomAdvanced(id, roomId, 1);
    expect(await runInDurableObject(appserviceStub(id), (_i: AppServiceDO, state) => state.storage.getAlarm())).not.toBeNull();
    await evictDurableObject(appserviceStub(id));
    const msg = await sendText(bot, roomId, "after eviction");
    await runDurableObjectAlarm(appserviceStub(id));
    await eventually(() => expect(fake.events(id).map((e) => e.event_id)).toContain(msg));
  });
});

describe("load", () => {
  it("delivers a 10,000-event backlog in at most 100 transactions, each event once, in order", async () => {
    const id = "bulk";
    const bot = asSender(id);
    const roomId = await newRoom(bot);
    await eventually(async () => expect((await flush(id)).sent_transactions).toBeGreaterThan(0));
    const advance = await controlClock(id);
    fake.fail(id, "always");
    // A state change fails and waits in a stored transaction (so the backlog that follows accumulates).
    await call("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.topic/`, { user: bot, body: { topic: "backlog" } });
    await eventually(async () => expect((await flush(id)).state).toBe("down"));
    const TOTAL = 10_000;
    const ids: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const made = await runInDurableObject(roomStub(roomId), (instance: RoomDO) => {
        const inner = instance as unknown as {
          transact<T>(fn: () => T): T;
          room: { createLocal(t: { type: string; sender: string; content: Record<string, unknown> }): { event_id: string } };
          outbox: { drain(): Promise<void> };
        };
        const out = inner.transact(() => {
          const list: string[] = [];
          for (let i = 0; i < TOTAL / 10; i++) {
            list.push(inner.room.createLocal({ type: "m.room.message", sender: bot.userId, content: { body: `${batch}.${i}` } }).event_id);
          }
          return list;
        });
        void inner.outbox.drain();
        return out;
      });
      ids.push(...made);
    }
    expect(ids).toHaveLength(TOTAL);
    fake.recover(id);
    advance(10_000);
    await runDurableObjectAlarm(appserviceStub(id));
    const status = await eventually(async () => {
      const s = await flush(id);
      expect(s).toMatchObject({ state: "up", rooms_behind: 0, queued: 0, stored_transactions: 0 });
      return s;
    }, 60_000);
    expect(status.state).toBe("up");
    const withBacklog = fake.accepted(id).filter((t) => t.body.events.some((e) => e.room_id === roomId && e.type === "m.room.message"));
    expect(withBacklog.length).toBeLessThanOrEqual(100);
    expect(Math.max(...withBacklog.map((t) => t.body.events.length))).toBeLessThanOrEqual(100);
    const delivered = fake.events(id).filter((e) => e.type === "m.room.message").map((e) => e.event_id);
    expect(delivered).toEqual(ids);
  }, 120_000);
});
