/** Push delivery to push gateways (docs/push.md): formats, rules, backoff, rejected pushkeys, badge updates. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDurableObjectAlarm } from "cloudflare:test";
import { setPushGatewayFetch } from "../../src/push/gateway";
import { call, createUserDirect, request, type TestUser } from "../client/helpers";
import { FakeGateway, pushTable, settle, setPusher, userStub, V3 } from "./helpers";

const enc = encodeURIComponent;
const gw = new FakeGateway();
beforeAll(() => gw.install());
afterAll(() => setPushGatewayFetch(undefined));

let txn = 0;
async function send(user: TestUser, roomId: string, content: Record<string, unknown>): Promise<string> {
  return (await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/p${++txn}`, { user, body: content })).event_id;
}
const text = (body: string) => ({ msgtype: "m.text", body });

/** alice (named "Alice") and bob in a room named "Pets" (plus `others`), everyone joined. */
async function room(others: TestUser[] = []) {
  const alice = await createUserDirect();
  const bob = await createUserDirect();
  await call("PUT", `${V3}/profile/${enc(alice.userId)}/displayname`, { user: alice, body: { displayname: "Alice" } });
  const roomId = (await call<{ room_id: string }>("POST", `${V3}/createRoom`, {
    user: alice, body: { name: "Pets", invite: [bob.userId, ...others.map((o) => o.userId)] },
  })).room_id;
  for (const u of [bob, ...others]) await call("POST", `${V3}/join/${enc(roomId)}`, { user: u, body: {} });
  return { alice, bob, roomId };
}

let keySeq = 0;
const key = (name: string) => `${name}-${++keySeq}`;

describe("push delivery", () => {
  it("pushes a message to the other member once, in the full format; the sender gets nothing", async () => {
    const { alice, bob, roomId } = await room();
    const bobKey = key("bob");
    const aliceKey = key("alice");
    await setPusher(bob, bobKey, { custom: "kept" });
    await setPusher(alice, aliceKey);
    const eventId = await send(alice, roomId, text("hello"));
    await settle(bob, [roomId]);
    await settle(alice, [roomId]);

    const got = gw.events(bobKey);
    expect(got).toHaveLength(1);
    const n = got[0]!;
    expect(n).toMatchObject({
      event_id: eventId, room_id: roomId, type: "m.room.message", sender: alice.userId, sender_display_name: "Alice",
      room_name: "Pets", prio: "high", content: { msgtype: "m.text", body: "hello" }, counts: { unread: 1 },
    });
    expect(n.devices).toHaveLength(1);
    expect(n.devices[0]).toEqual({
      app_id: "org.example.app", pushkey: bobKey, pushkey_ts: expect.any(Number), data: { custom: "kept" },
      tweaks: { sound: "default" }, // .m.rule.room_one_to_one
    });
    expect(n.devices[0]!.pushkey_ts).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(gw.delivered(aliceKey)).toEqual([]);
    // Running the pass again sends nothing more.
    await userStub(bob).pushFlush();
    expect(gw.events(bobKey)).toHaveLength(1);
  });

  it("event_id_only pushers get the event ID, room, priority, counts and device only", async () => {
    const { alice, bob, roomId } = await room();
    const k = key("eio");
    await setPusher(bob, k, { format: "event_id_only", other: 1 });
    const eventId = await send(alice, roomId, text("psst"));
    await settle(bob, [roomId]);
    const got = gw.events(k);
    expect(got).toHaveLength(1);
    expect(got[0]).toEqual({
      event_id: eventId, room_id: roomId, prio: "high", counts: { unread: 1 },
      devices: [{ app_id: "org.example.app", pushkey: k, pushkey_ts: expect.any(Number), data: { other: 1 } }],
    });
  });

  it("follows the rules: plain messages in bigger rooms, mentions, muted rooms", async () => {
    const cases: {
      name: string;
      rule?: { kind: string; id: (roomId: string) => string; body: (roomId: string) => Record<string, unknown> };
      content: (bob: TestUser) => Record<string, unknown>;
      expect: null | { prio: string; tweaks?: Record<string, unknown> };
    }[] = [
      { name: "plain message, three members", content: () => text("hi all"), expect: { prio: "low" } },
      {
        name: "mention", content: (bob) => ({ ...text("hi bob"), "m.mentions": { user_ids: [bob.userId] } }),
        expect: { prio: "high", tweaks: { highlight: true, sound: "default" } },
      },
      {
        name: "room muted by an override rule with no actions",
        rule: {
          kind: "override", id: () => "mute",
          body: (roomId) => ({ conditions: [{ kind: "event_match", key: "room_id", pattern: roomId }], actions: [] }),
        },
        content: (bob) => ({ ...text("hi bob"), "m.mentions": { user_ids: [bob.userId] } }),
        expect: null,
      },
      {
        name: "room rule dont_notify", rule: { kind: "room", id: (roomId) => roomId, body: () => ({ actions: ["dont_notify"] }) },
        content: () => text("quiet"), expect: null,
      },
    ];
    for (const c of cases) {
      const carol = await createUserDirect();
      const { alice, bob, roomId } = await room([carol]);
      const k = key("rules");
      await setPusher(bob, k);
      if (c.rule) {
        await call("PUT", `${V3}/pushrules/global/${c.rule.kind}/${enc(c.rule.id(roomId))}`, { user: bob, body: c.rule.body(roomId) });
      }
      const eventId = await send(alice, roomId, c.content(bob));
      await settle(bob, [roomId]);
      const got = gw.events(k);
      const listed = await call<{ notifications: unknown[] }>("GET", `${V3}/notifications`, { user: bob });
      if (c.expect === null) {
        expect(got, c.name).toEqual([]);
        expect(listed.notifications, c.name).toEqual([]);
        continue;
      }
      expect(got, c.name).toHaveLength(1);
      expect(got[0]!.event_id, c.name).toBe(eventId);
      expect(got[0]!.prio, c.name).toBe(c.expect.prio);
      expect(got[0]!.devices[0]!.tweaks, c.name).toEqual(c.expect.tweaks);
      expect(listed.notifications, c.name).toHaveLength(1);
    }
  });

  it("never pushes events of ignored users", async () => {
    const { alice, bob, roomId } = await room();
    const k = key("ignored");
    await setPusher(bob, k);
    await call("PUT", `${V3}/user/${enc(bob.userId)}/account_data/m.ignored_user_list`, { user: bob, body: { ignored_users: { [alice.userId]: {} } } });
    await send(alice, roomId, text("you cannot hear me"));
    await settle(bob, [roomId]);
    expect(gw.events(k)).toEqual([]);
    expect((await call<{ notifications: unknown[] }>("GET", `${V3}/notifications`, { user: bob })).notifications).toEqual([]);
  });

  it("retries with backoff while the gateway is down, then delivers once", async () => {
    const { alice, bob, roomId } = await room();
    const k = key("retry");
    await setPusher(bob, k);
    gw.mode = "down";
    try {
      const eventId = await send(alice, roomId, text("are you there?"));
      await settle(bob, [roomId]);
      const failed = () => gw.attempts.filter((a) => !a.ok && a.received.notification.devices[0]!.pushkey === k).length;
      expect(failed()).toBe(1);
      let [st] = await pushTable<{ backoff_ms: number; next_attempt_ts: number; failing_since: number | null }>(bob, "SELECT * FROM push_deliveries");
      expect(st!.backoff_ms).toBe(1000);
      expect(st!.failing_since).not.toBeNull();

      // The alarm before the retry is due does nothing; after it, the next failure doubles the wait.
      expect(await runDurableObjectAlarm(userStub(bob))).toBe(true);
      expect(failed()).toBe(1);
      gw.mode = "500";
      await new Promise((r) => setTimeout(r, st!.next_attempt_ts - Date.now() + 20));
      await runDurableObjectAlarm(userStub(bob));
      expect(failed()).toBe(2);
      [st] = await pushTable(bob, "SELECT * FROM push_deliveries");
      expect(st!.backoff_ms).toBe(2000);

      gw.mode = "ok";
      await new Promise((r) => setTimeout(r, st!.next_attempt_ts - Date.now() + 20));
      expect(await runDurableObjectAlarm(userStub(bob))).toBe(true);
      expect(gw.events(k).map((n) => n.event_id)).toEqual([eventId]);
      [st] = await pushTable(bob, "SELECT * FROM push_deliveries");
      expect(st).toMatchObject({ backoff_ms: 0, failing_since: null });
      await userStub(bob).pushFlush();
      await runDurableObjectAlarm(userStub(bob));
      expect(gw.events(k)).toHaveLength(1);
    } finally {
      gw.mode = "ok";
    }
  });

  it("a rejected pushkey removes the pusher", async () => {
    const { alice, bob, roomId } = await room();
    const k = key("rejected");
    await setPusher(bob, k);
    gw.mode = { reject: [k] };
    try {
      await send(alice, roomId, text("one"));
      await settle(bob, [roomId]);
    } finally {
      gw.mode = "ok";
    }
    expect(gw.events(k)).toHaveLength(1);
    expect((await call<{ pushers: unknown[] }>("GET", `${V3}/pushers`, { user: bob })).pushers).toEqual([]);
    await send(alice, roomId, text("two"));
    await settle(bob, [roomId]);
    expect(gw.events(k)).toHaveLength(1);
  });

  it("sends a count-only notification when the user reads and the unread count drops", async () => {
    const { alice, bob, roomId } = await room();
    const k = key("badge");
    await setPusher(bob, k);
    await send(alice, roomId, text("one"));
    const e2 = await send(alice, roomId, text("two"));
    await settle(bob, [roomId]);
    expect(gw.events(k).map((n) => n.counts?.unread)).toEqual([1, 1]);
    await call("POST", `${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(e2)}`, { user: bob, body: {} });
    await settle(bob, [roomId]);
    const badges = gw.delivered(k).filter((n) => n.event_id === undefined);
    expect(badges).toHaveLength(1);
    expect(badges[0]).toMatchObject({ counts: { unread: 0 } });
    expect(badges[0]!.devices[0]!.pushkey).toBe(k);
  });

  it("accepts email pushers and sends nothing to them", async () => {
    const { alice, bob, roomId } = await room();
    await call("POST", `${V3}/pushers/set`, {
      user: bob,
      body: { kind: "email", app_id: "m.email", pushkey: "bob@example.org", app_display_name: "Email", device_display_name: "bob@example.org", lang: "en", data: {} },
    });
    expect((await call<{ pushers: { kind: string }[] }>("GET", `${V3}/pushers`, { user: bob })).pushers.map((p) => p.kind)).toEqual(["email"]);
    const before = gw.attempts.length;
    await send(alice, roomId, text("mail?"));
    await settle(bob, [roomId]);
    expect(gw.attempts.length).toBe(before);
    // Still listed under /notifications.
    expect((await call<{ notifications: unknown[] }>("GET", `${V3}/notifications`, { user: bob })).notifications).toHaveLength(1);
    expect((await request("POST", `${V3}/pushers/set`, { user: bob, body: { kind: "sms", app_id: "a", pushkey: "b", app_display_name: "c", device_display_name: "d", lang: "en", data: {} } })).status).toBe(400);
  });
});
