/**
 * Presence (docs/presence.md): PUT/GET /presence/{userId}/status, permissions and bad input, the presence section
 * of /sync (initial, incremental, filter, waking a long poll), set_presence, activity, the idle / offline timers
 * stepped through the UserDO's alarm, and PRESENCE_ENABLED=false.
 */
import { describe, expect, it } from "vitest";
import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { V3, enc, join, newRoom, sendText } from "./rooms-helpers";
import { shareRoom } from "../../src/presence/store";
import type { UserDO } from "../../durable-objects/user/UserDO";
import { UserPresence } from "../../durable-objects/user/presence";
import { UserStream } from "../../durable-objects/user/stream";
import app from "../../src/index";

const path = (userId: string) => `${V3}/presence/${enc(userId)}/status`;

type PresenceEv = { type: string; sender: string; content: Record<string, unknown> };
type Sync = { next_batch: string; presence?: { events: PresenceEv[] } };

async function sync(user: TestUser, q: Record<string, string> = {}): Promise<Sync> {
  return call<Sync>("GET", `${V3}/sync?${new URLSearchParams({ timeout: "0", set_presence: "offline", ...q })}`, { user });
}

function presenceOf(s: Sync, userId: string): Record<string, unknown> | undefined {
  return s.presence?.events.find((e) => e.sender === userId)?.content;
}

async function eventually<T>(probe: () => Promise<T | undefined | false>, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

/** alice and bob sharing a room, once the D1 directory knows it. */
async function pair(): Promise<{ alice: TestUser; bob: TestUser; roomId: string }> {
  const alice = await createUserDirect();
  const bob = await createUserDirect();
  const roomId = await newRoom(alice, { preset: "public_chat" });
  await join(bob, roomId);
  await eventually(() => shareRoom(testEnv, alice.userId, bob.userId), "the directory shows alice and bob together");
  return { alice, bob, roomId };
}

function userStub(userId: string): DurableObjectStub<UserDO> {
  return testEnv.USERS.get(testEnv.USERS.idFromName(userId));
}

/** Moves the user's presence times `ms` into the past (as if that much time had passed), then runs the alarm. */
async function age(userId: string, ms: number, opts: { syncs?: boolean } = {}): Promise<void> {
  const stub = userStub(userId);
  const syncs = opts.syncs ?? true;
  await runInDurableObject(stub, (_i, state) => {
    state.storage.sql.exec(
      `UPDATE presence SET last_active_ts = CASE WHEN last_active_ts > 0 THEN last_active_ts - ?1 ELSE 0 END,
         last_sync_ts = CASE WHEN last_sync_ts > 0 AND ?2 THEN last_sync_ts - ?1 ELSE last_sync_ts END, fed_ts = max(0, fed_ts - ?1)`,
      ms, syncs ? 1 : 0,
    );
  });
  await runDurableObjectAlarm(stub);
}

describe("PUT/GET /presence/{userId}/status", () => {
  it("sets and reads one's own presence, with status_msg, last_active_ago and currently_active", async () => {
    const alice = await createUserDirect();
    expect(await call("GET", path(alice.userId), { user: alice })).toEqual({ presence: "offline", currently_active: false });
    expect(await call("PUT", path(alice.userId), { user: alice, body: { presence: "online", status_msg: "here" } })).toEqual({});
    const got = await call("GET", path(alice.userId), { user: alice });
    expect(got).toMatchObject({ presence: "online", status_msg: "here", currently_active: true });
    expect(got.last_active_ago).toBeGreaterThanOrEqual(0);
    expect(got.last_active_ago).toBeLessThan(5_000);
    // No status_msg clears it; unavailable is not currently active.
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "unavailable" } });
    const idle = await call("GET", path(alice.userId), { user: alice });
    expect(idle).toMatchObject({ presence: "unavailable", currently_active: false });
    expect(idle.status_msg).toBeUndefined();
    // The r0 prefix works too.
    expect(await call("GET", `/_matrix/client/r0/presence/${enc(alice.userId)}/status`, { user: alice })).toMatchObject({ presence: "unavailable" });
  });

  it("refuses setting someone else's presence, and bad bodies", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const res = await request("PUT", path(bob.userId), { user: alice, body: { presence: "online" } });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_FORBIDDEN");
    const cases: [unknown, number, string][] = [
      [{}, 400, "M_BAD_JSON"],
      [{ presence: 1 }, 400, "M_BAD_JSON"],
      [{ presence: "busy" }, 400, "M_INVALID_PARAM"],
      [{ presence: "online", status_msg: 5 }, 400, "M_BAD_JSON"],
      [{ presence: "online", status_msg: null }, 400, "M_BAD_JSON"],
      ["[1]", 400, "M_BAD_JSON"],
      ["nope", 400, "M_NOT_JSON"],
    ];
    for (const [body, status, errcode] of cases) {
      const r = await request("PUT", path(alice.userId), { user: alice, body });
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(((await r.json()) as { errcode: string }).errcode, JSON.stringify(body)).toBe(errcode);
    }
    // Nothing was stored by the rejected requests.
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "offline" });
    expect((await request("PUT", path(alice.userId), { body: { presence: "online" } })).status).toBe(401);
  });

  it("shows presence to users sharing a room only; unknown users are 404", async () => {
    const { alice, bob } = await pair();
    const carol = await createUserDirect();
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online", status_msg: "lunch" } });
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "online", status_msg: "lunch" });
    const denied = await request("GET", path(alice.userId), { user: carol });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { errcode: string }).errcode).toBe("M_FORBIDDEN");
    const missing = await request("GET", path("@nobody_here:test.local"), { user: carol });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errcode: string }).errcode).toBe("M_NOT_FOUND");
    // A remote user nobody here shares a room with.
    expect((await request("GET", path("@someone:elsewhere.test"), { user: carol })).status).toBe(403);
    expect((await request("GET", `${V3}/presence/not-a-user/status`, { user: carol })).status).toBe(400);
  });
});

describe("presence in /sync", () => {
  it("initial sync: own presence and that of users sharing a room (offline ones left out)", async () => {
    const { alice, bob } = await pair();
    const carol = await createUserDirect(); // shares nothing
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online", status_msg: "hi" } });
    await call("PUT", path(carol.userId), { user: carol, body: { presence: "online" } });
    const s = await eventually(async () => {
      const r = await sync(bob);
      return presenceOf(r, alice.userId) ? r : undefined;
    }, "alice's presence in bob's initial sync");
    expect(s.presence!.events.find((e) => e.sender === alice.userId)).toMatchObject({
      type: "m.presence",
      sender: alice.userId,
      content: { presence: "online", status_msg: "hi", currently_active: true, last_active_ago: expect.any(Number) },
    });
    expect(presenceOf(s, carol.userId)).toBeUndefined();
    expect(presenceOf(s, bob.userId)).toBeUndefined(); // bob syncs with set_presence=offline and never set any
    // alice sees her own presence.
    expect(presenceOf(await sync(alice), alice.userId)).toMatchObject({ presence: "online" });
  });

  it("incremental sync: changes since the token, once", async () => {
    const { alice, bob } = await pair();
    const s0 = await sync(bob);
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "unavailable", status_msg: "away" } });
    const s1 = await eventually(async () => {
      const r = await sync(bob, { since: s0.next_batch });
      return presenceOf(r, alice.userId) ? r : undefined;
    }, "alice's change in bob's incremental sync");
    expect(presenceOf(s1, alice.userId)).toMatchObject({ presence: "unavailable", status_msg: "away" });
    const s2 = await sync(bob, { since: s1.next_batch });
    expect(presenceOf(s2, alice.userId)).toBeUndefined();
    // Setting the same state again is not news.
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "unavailable", status_msg: "away" } });
    await new Promise((r) => setTimeout(r, 200));
    expect(presenceOf(await sync(bob, { since: s1.next_batch }), alice.userId)).toBeUndefined();
  });

  it("wakes a long poll of a user sharing a room", async () => {
    const { alice, bob } = await pair();
    const s0 = await sync(bob);
    const started = Date.now();
    const poll = sync(bob, { since: s0.next_batch, timeout: "20000" });
    await new Promise((r) => setTimeout(r, 300));
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online" } });
    const s1 = await poll;
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(presenceOf(s1, alice.userId)).toMatchObject({ presence: "online" });
  });

  it("applies the presence filter", async () => {
    const { alice, bob } = await pair();
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online" } });
    await eventually(async () => presenceOf(await sync(bob), alice.userId), "alice visible to bob");
    const none = await sync(bob, { filter: JSON.stringify({ presence: { not_types: ["m.presence"] } }) });
    expect(none.presence?.events ?? []).toEqual([]);
    const others = await sync(bob, { filter: JSON.stringify({ presence: { not_senders: [alice.userId] } }) });
    expect(presenceOf(others, alice.userId)).toBeUndefined();
    const only = await sync(bob, { filter: JSON.stringify({ presence: { senders: [alice.userId], limit: 1 } }) });
    expect(only.presence!.events.map((e) => e.sender)).toEqual([alice.userId]);
    const empty = await sync(bob, { filter: JSON.stringify({ presence: { types: [] } }) });
    expect(empty.presence?.events ?? []).toEqual([]);
  });

  it("a newly joined room brings its members' presence", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online", status_msg: "hello" } });
    const roomId = await newRoom(alice, { preset: "public_chat" });
    const s0 = await sync(bob);
    expect(presenceOf(s0, alice.userId)).toBeUndefined();
    await join(bob, roomId);
    await eventually(() => shareRoom(testEnv, alice.userId, bob.userId), "directory");
    // Either the joined room's members (bob's side) or alice's re-announcement (her side) brings it.
    await eventually(async () => {
      const r = await sync(bob, { since: s0.next_batch });
      return presenceOf(r, alice.userId)?.status_msg === "hello";
    }, "alice's presence after bob joined");
  });
});

describe("set_presence and activity", () => {
  it("a syncing client marks the user online (the default); offline does not; unavailable does", async () => {
    const { alice, bob } = await pair();
    await sync(alice); // set_presence=offline in these helpers
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "offline" });
    await call("GET", `${V3}/sync?timeout=0`, { user: alice });
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "online", currently_active: true });
    await call("GET", `${V3}/sync?timeout=0&set_presence=unavailable`, { user: alice });
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "unavailable" });
    // A state set explicitly with PUT is not overridden by syncing.
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "unavailable", status_msg: "brb" } });
    await call("GET", `${V3}/sync?timeout=0`, { user: alice });
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "unavailable", status_msg: "brb" });
    // ...but activity brings an unavailable user back online.
    await sendText(alice, (await newRoom(alice)), "back");
    await eventually(async () => (await call("GET", path(alice.userId), { user: alice })).presence === "online", "online after sending");
  });

  it("the first sync of an offline user returns its own presence at once", async () => {
    const alice = await createUserDirect();
    const s0 = await sync(alice);
    const started = Date.now();
    const s1 = await call<Sync>("GET", `${V3}/sync?since=${s0.next_batch}&timeout=20000`, { user: alice });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(presenceOf(s1, alice.userId)).toMatchObject({ presence: "online" });
  });
});

describe("timers (UserDO alarm)", () => {
  it("online → unavailable after 5 minutes without activity (while syncing), back online on activity", async () => {
    const { alice, bob } = await pair();
    await call("PUT", path(alice.userId), { user: alice, body: { presence: "online" } });
    const s0 = await sync(bob);
    // alice keeps long-polling (a poll in flight, or one that just ended) while idle time passes: only her
    // activity ages, not her syncs.
    const ac = new AbortController();
    const polling = (async () => {
      let since = (await sync(alice)).next_batch;
      while (!ac.signal.aborted) {
        const r = await request("GET", `${V3}/sync?since=${since}&timeout=60000&set_presence=online`, { user: alice, signal: ac.signal }).catch(() => undefined);
        if (!r || r.status !== 200) break;
        since = ((await r.json()) as Sync).next_batch;
      }
    })();
    await eventually(async () => (await userStub(alice.userId).waiterCount()) > 0, "alice's long poll waiting");
    await age(alice.userId, 61_000, { syncs: false });
    // After a minute, no longer currently active, still online.
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "online", currently_active: false });
    await age(alice.userId, 5 * 60_000, { syncs: false });
    const idle = await call("GET", path(alice.userId), { user: bob });
    expect(idle).toMatchObject({ presence: "unavailable", currently_active: false });
    expect(idle.last_active_ago).toBeGreaterThanOrEqual(6 * 60_000);
    const s1 = await eventually(async () => {
      const r = await sync(bob, { since: s0.next_batch });
      return presenceOf(r, alice.userId)?.presence === "unavailable" ? r : undefined;
    }, "bob hears alice is idle");
    expect(presenceOf(s1, alice.userId)!.last_active_ago).toBeGreaterThanOrEqual(6 * 60_000);
    ac.abort();
    await polling;
    // Syncing does not end idleness; activity (a receipt-less typing start) does.
    const roomId = await newRoom(alice);
    await call("PUT", `${V3}/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { user: alice, body: { typing: true, timeout: 1000 } });
    await eventually(async () => (await call("GET", path(alice.userId), { user: alice })).presence === "online", "online after typing");
  });

  it("a syncing-then-gone user goes offline 30 s after the last sync", async () => {
    const { alice, bob } = await pair();
    await call("GET", `${V3}/sync?timeout=0`, { user: alice }); // online by syncing
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "online" });
    const s0 = await sync(bob);
    await age(alice.userId, 10_000);
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "online" });
    await age(alice.userId, 25_000);
    expect(await call("GET", path(alice.userId), { user: bob })).toMatchObject({ presence: "offline", currently_active: false });
    await eventually(async () => presenceOf(await sync(bob, { since: s0.next_batch }), alice.userId)?.presence === "offline", "bob hears alice went offline");
    // The timers are done: presence needs no alarm any more (the alarm is shared; others may still use it).
    const due = await runInDurableObject(userStub(alice.userId), (_i, state) =>
      new UserPresence(state.storage.sql, new UserStream(state.storage.sql)).nextDue(Date.now()),
    );
    expect(due).toBeNull();
  });
});

describe("PRESENCE_ENABLED=false", () => {
  async function fetchDisabled(method: string, p: string, user: TestUser, body?: unknown): Promise<Response> {
    const ctx = createExecutionContext();
    const res = await app.fetch(
      new Request(`http://test.local${p}`, {
        method,
        headers: { authorization: `Bearer ${user.accessToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
      { ...testEnv, PRESENCE_ENABLED: "false" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return res;
  }

  it("accepts and ignores PUT, answers offline to GET, leaves presence out of /sync", async () => {
    const { alice, bob } = await pair();
    const put = await fetchDisabled("PUT", path(alice.userId), alice, { presence: "online", status_msg: "x" });
    expect(put.status).toBe(200);
    expect((await fetchDisabled("PUT", path(alice.userId), alice, { presence: "busy" })).status).toBe(400);
    expect((await fetchDisabled("PUT", path(bob.userId), alice, { presence: "online" })).status).toBe(403);
    expect(await (await fetchDisabled("GET", path(alice.userId), bob)).json()).toEqual({ presence: "offline" });
    // Nothing was stored (presence is on for the rest of the tests' Worker).
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "offline" });
    const s = (await (await fetchDisabled("GET", `${V3}/sync?timeout=0`, alice)).json()) as Sync;
    expect(s.presence).toBeUndefined();
    expect(await call("GET", path(alice.userId), { user: alice })).toMatchObject({ presence: "offline" });
  });
});
