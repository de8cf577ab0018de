/**
 * Faster joins: what a partially joined server does during its resync, on the three-server harness (after
 * Complement's TestPartialStateJoin, complement-assertions.md §5). test.local joins rooms of hs2.test (some with
 * hs3.test members) with partial state; the resync's `/state_ids` requests are held by a gate until a test lets
 * them through.
 */
import { runInDurableObject } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { api, clientRequest, e, enc, newUser, paginateBack, sendText, V3, waitFor, type ScenarioUser } from "./servers";
import {
  awaitFullyStated, FederationGate, fedClient, LAZY, populatedRoom, room, syncWith, timelineFlags, users,
} from "./partial-join-helpers";
import { seg } from "../../src/federation/client";
import { signedFromTemplate } from "../../src/federation/join";
import { supportedRoomVersions } from "../../src/protocol/room-versions";
import { toFederationPdu } from "../../src/protocol/event-id";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { getServerKeys } from "../../src/server-keys";
import { parseConfig, ConfigError } from "../../src/config";
import type { RoomDO } from "../../durable-objects/room/RoomDO";

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

type Ev = { type: string; state_key?: string; sender: string; content: Record<string, unknown>; event_id: string };

/** A named room on hs2 (no heroes in a partial state) with members on hs2 and hs3; bob (test.local) partially joined. */
async function partiallyJoined(opts: { hs2?: number; hs3?: number } = {}) {
  const alice = await newUser("hs2.test", "alice");
  const hs2 = await users("hs2.test", opts.hs2 ?? 2, "h");
  const hs3 = await users("hs3.test", opts.hs3 ?? 2, "t");
  const roomId = await populatedRoom(alice, [...hs2, ...hs3], { preset: "public_chat", name: "Partial" });
  // hs3 is fully stated in the room once its /members answers (it waits for that).
  if (hs3.length > 0) await api(hs3[0]!, "GET", `${V3}/rooms/${enc(roomId)}/members`);
  const bob = await newUser("test.local", "bob");
  await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
  await gate!.held1();
  expect(await room(roomId).partialStateInfo()).not.toBeNull();
  return { alice, hs2, hs3, roomId, bob };
}

async function lazySync(user: ScenarioUser, since?: string) {
  const q = new URLSearchParams({ timeout: "0", filter: JSON.stringify(LAZY) });
  if (since) q.set("since", since);
  return api(user, "GET", `${V3}/sync?${q}`);
}

/** A test.local federation request to test.local itself (signed as test.local): what another server would get. */
async function selfRequest(method: "GET" | "PUT", path: string, body?: unknown, query?: Record<string, string | string[]>): Promise<{ status: number; errcode?: string }> {
  try {
    await fedClient().request("test.local", method, path, body, query ? { query } : {});
    return { status: 200 };
  } catch (err) {
    const x = err as { status?: number; errcode?: string };
    return { status: x.status ?? 0, errcode: x.errcode };
  }
}

describe("while partially joined", () => {
  it("does not act as a resident: make_join, send_join, make_knock, send_knock 404; /state_ids and /state at a partial event 403", async () => {
    const { roomId, bob } = await partiallyJoined({ hs3: 0 });
    // Only the resync's requests to hs2 stay held; these requests to test.local itself pass.
    gate!.set("hold", "hs2.test");
    gate!.set("pass");
    const joiner = (await newUser("test.local", "late")).userId;
    expect(await selfRequest("GET", `/_matrix/federation/v1/make_join/${seg(roomId)}/${seg(joiner)}`, undefined, { ver: supportedRoomVersions() }))
      .toEqual({ status: 404, errcode: "M_NOT_FOUND" });
    expect(await selfRequest("GET", `/_matrix/federation/v1/make_knock/${seg(roomId)}/${seg(joiner)}`, undefined, { ver: supportedRoomVersions() }))
      .toEqual({ status: 404, errcode: "M_NOT_FOUND" });
    // A well-formed join (template from the real resident, signed by us) and a knock made from it.
    const template = await fedClient().request<{ room_version?: unknown; event?: unknown }>(
      "hs2.test", "GET", `/_matrix/federation/v1/make_join/${seg(roomId)}/${seg(joiner)}`, undefined, { query: { ver: supportedRoomVersions() } },
    );
    const join = await signedFromTemplate(e, template, { roomId, userId: joiner, membership: "join", content: {} });
    expect(await selfRequest("PUT", `/_matrix/federation/v2/send_join/${seg(roomId)}/${seg(join.eventId)}`, toFederationPdu(join.pdu, join.version)))
      .toEqual({ status: 404, errcode: "M_NOT_FOUND" });
    const key = (await getServerKeys(e)).current;
    const knockEvent: Record<string, unknown> = { ...(template.event as Record<string, unknown>), content: { membership: "knock" }, origin_server_ts: Date.now() };
    delete knockEvent.event_id;
    const knock = signEvent(addContentHash(knockEvent), "test.local", key, join.version) as unknown as Record<string, unknown>;
    const { computeEventId } = await import("../../src/protocol/event-id");
    const knockId = computeEventId(knock, join.version);
    expect(await selfRequest("PUT", `/_matrix/federation/v1/send_knock/${seg(roomId)}/${seg(knockId)}`, toFederationPdu(knock, join.version)))
      .toEqual({ status: 404, errcode: "M_NOT_FOUND" });
    // The state at bob's join is not fully known here: never answered with partial state.
    const joinId = (await room(roomId).partialStateInfo())!.join_event_id;
    expect(await selfRequest("GET", `/_matrix/federation/v1/state_ids/${seg(roomId)}`, undefined, { event_id: joinId })).toMatchObject({ status: 403 });
    expect(await selfRequest("GET", `/_matrix/federation/v1/state/${seg(roomId)}`, undefined, { event_id: joinId })).toMatchObject({ status: 403 });
    // Once fully stated, the same requests are answered.
    gate!.open();
    await awaitFullyStated(roomId);
    expect(await selfRequest("GET", `/_matrix/federation/v1/state_ids/${seg(roomId)}`, undefined, { event_id: joinId })).toEqual({ status: 200 });
    expect(await selfRequest("GET", `/_matrix/federation/v1/make_join/${seg(roomId)}/${seg(joiner)}`, undefined, { ver: supportedRoomVersions() }))
      .toEqual({ status: 200 });
    void bob;
  });

  it("a second local user joins without waiting (through the resident); both see each other at once in lazy syncs", async () => {
    const { roomId, bob, alice } = await partiallyJoined();
    const carol = await newUser("test.local", "carol");
    const started = Date.now();
    await api(carol, "POST", `${V3}/join/${enc(roomId)}`, {});
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(gate!.waiting).toBeGreaterThan(0); // the resync is still held
    // The second join went through hs2 (make_join/send_join), not locally.
    expect(gate!.log.some((r) => r.host === "hs2.test" && r.path.includes("/make_join/") && r.path.includes(encodeURIComponent(carol.userId)))).toBe(true);
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[carol.userId], "carol on hs2");
    await sendText(carol, roomId, "carol here");
    const s = await waitFor(async () => {
      const r = (await lazySync(bob)).rooms?.join?.[roomId];
      return r?.timeline.events.some((ev: Ev) => ev.content.body === "carol here") ? r : undefined;
    }, "carol's message at bob's");
    expect(s.state.events.concat(s.timeline.events).some((ev: Ev) => ev.type === "m.room.member" && ev.state_key === carol.userId)).toBe(true);
    gate!.open();
    await awaitFullyStated(roomId);
    const joined = await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`);
    expect(Object.keys(joined.joined)).toEqual(expect.arrayContaining([bob.userId, carol.userId, alice.userId]));
  });

  it("leaving works at once, the resync pauses, and a rejoin works without waiting for it; the leave reaches the resident", async () => {
    const { roomId, bob, alice } = await partiallyJoined({ hs3: 0 });
    const first = await lazySync(bob);
    expect(first.rooms.join[roomId]).toBeDefined();
    await api(bob, "POST", `${V3}/rooms/${enc(roomId)}/leave`, {});
    const left = await waitFor(async () => {
      const s = await lazySync(bob, first.next_batch);
      return s.rooms?.leave?.[roomId] ? s : undefined;
    }, "bob's leave in his sync");
    await waitFor(async () => !(await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob's leave on hs2");
    // The held step finishes; with nobody of ours in the room the resync then pauses (residents would refuse us).
    gate!.open(true);
    await waitFor(async () => (await room(roomId).partialStateInfo())?.last_error?.startsWith("paused") ?? false, "the resync paused");

    // Rejoin while still partial: a partial join again, through hs2; the resync resumes and completes.
    gate!.set("pass");
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await waitFor(async () => (await lazySync(bob, left.next_batch)).rooms?.join?.[roomId], "bob's rejoin in his sync");
    await awaitFullyStated(roomId);
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob back on hs2");
    expect((await timelineFlags(roomId)).every((f) => f.partial_state === 0)).toBe(true);
  });

  it("accepts typing, receipts and to-device messages from members the partial state does not know", async () => {
    const { roomId, bob, hs3 } = await partiallyJoined();
    const t = hs3[1]!; // not in the partial state (named room: no heroes; not a state sender)
    const stub = room(roomId);
    expect(await runInDurableObject(stub, (_: RoomDO, state) => state.storage.sql.exec("SELECT 1 FROM members WHERE user_id = ?", t.userId).toArray().length)).toBe(0);
    const since = (await lazySync(bob)).next_batch;
    await api(t, "PUT", `${V3}/rooms/${enc(roomId)}/typing/${enc(t.userId)}`, { typing: true, timeout: 30_000 });
    await waitFor(async () => (await stub.typingUsers()).includes(t.userId), "t typing at test.local");
    const msg = await sendText(t, roomId, "read me");
    await waitFor(async () => (await timelineFlags(roomId)).some((f) => f.event_id === msg), "t's message at test.local");
    await api(t, "POST", `${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(msg)}`, {});
    await api(t, "PUT", `${V3}/sendToDevice/m.test/partial1`, { messages: { [bob.userId]: { [bob.deviceId]: { hi: "bob" } } } });
    const s = await waitFor(async () => {
      const r = await lazySync(bob, since);
      const eph = r.rooms?.join?.[roomId]?.ephemeral?.events ?? [];
      const receipt = eph.find((ev: { type: string; content: Record<string, any> }) => ev.type === "m.receipt" && ev.content[msg]);
      const toDevice = (r.to_device?.events ?? []).find((ev: { type: string }) => ev.type === "m.test");
      return receipt && toDevice ? { r, receipt, toDevice } : undefined;
    }, "the receipt and the to-device message at bob's");
    expect(s.receipt.content[msg]["m.read"][t.userId]).toBeDefined();
    expect(s.toDevice).toMatchObject({ sender: t.userId, content: { hi: "bob" } });
  });

  it("receives events whose prev events are missing (get_missing_events) while partial", async () => {
    const { roomId, bob, alice, hs3 } = await partiallyJoined();
    // hs2 cannot reach us: alice's messages reach hs3 only; then hs3's own message (after them) reaches us.
    await e.HS2_CONTROL.blockFederation(["test.local"]);
    try {
      await sendText(alice, roomId, "gap one");
      await sendText(alice, roomId, "gap two");
      await waitFor(async () => (await e.HS3_CONTROL.timeline(roomId)).some((ev) => ev.body === "gap two"), "the gap on hs3");
      await sendText(hs3[0]!, roomId, "after the gap");
      await waitFor(async () => {
        const s = (await lazySync(bob)).rooms?.join?.[roomId];
        const bodies = (s?.timeline.events ?? []).map((ev: Ev) => ev.content.body);
        return ["gap one", "gap two", "after the gap"].every((b) => bodies.includes(b));
      }, "the gap filled at bob's");
    } finally {
      await e.HS2_CONTROL.blockFederation([]);
    }
    gate!.open();
    await awaitFullyStated(roomId);
    const flags = await timelineFlags(roomId);
    expect(flags.every((f) => f.partial_state === 0 && f.rejected === null)).toBe(true);
  });

  it("a message sent between make_join and send_join shows in the joiner's /messages (the resident's dummy event)", async () => {
    const alice = await newUser("hs2.test", "alice");
    const roomId = await populatedRoom(alice, await users("hs2.test", 2, "h"));
    const bob = await newUser("test.local", "bob");
    gate!.set("pass");
    let slipped: string | undefined;
    gate!.onRequest = async (url) => {
      if (url.pathname.includes("/send_join/") && slipped === undefined) slipped = await sendText(alice, roomId, "slipped in");
    };
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    expect(slipped).toBeDefined();
    // The message is not an ancestor of bob's join; the dummy event names both, and test.local fetches it.
    await waitFor(async () => (await timelineFlags(roomId)).some((f) => f.event_id === slipped), "the message at test.local");
    await awaitFullyStated(roomId);
    const seen = await paginateBack(bob, roomId, 10);
    expect(seen.eventIds).toContain(slipped);
    expect(seen.bodies).toContain("slipped in");
    expect((await timelineFlags(roomId)).some((f) => f.type === "org.matrix.dummy_event")).toBe(true);
  });

  it("remote members' device lists are tracked only once fully stated; then eager syncs show the room with every member, whose device lists count as changed", async () => {
    const { roomId, bob, alice, hs2, hs3 } = await partiallyJoined();
    const before = await syncWith(bob);
    expect(before.rooms?.join?.[roomId]).toBeUndefined();
    // While partial, a remote member's keys are fetched from their server each time, not cached (not tracked).
    const dest = e.DESTINATIONS.get(e.DESTINATIONS.idFromName("hs2.test"));
    const query = () => api(bob, "POST", `${V3}/keys/query`, { device_keys: { [alice.userId]: [] } });
    await query();
    expect(JSON.parse(await dest.cachedDeviceLists([alice.userId]))[alice.userId]).toBeUndefined();
    gate!.open();
    await awaitFullyStated(roomId);
    await waitFor(async () => {
      await query();
      return JSON.parse(await dest.cachedDeviceLists([alice.userId]))[alice.userId];
    }, "alice's device list tracked once the room is fully stated");
    const after = await waitFor(async () => {
      const s = await syncWith(bob, { since: before.next_batch });
      return s.rooms?.join?.[roomId] && (s.device_lists?.changed ?? []).includes(hs3[1]!.userId) ? s : undefined;
    }, "the room and the device-list changes in bob's eager sync");
    const r = after.rooms.join[roomId];
    const members = [...r.state.events, ...r.timeline.events].filter((ev: Ev) => ev.type === "m.room.member").map((ev: Ev) => ev.state_key);
    for (const u of [alice, ...hs2, ...hs3, bob]) expect(members).toContain(u.userId);
    expect(after.device_lists.changed).toEqual(expect.arrayContaining([alice, ...hs2, ...hs3].map((u) => u.userId)));
  });

  it("servers heard from while partial get our events too (servers_in_room grows)", async () => {
    const alice = await newUser("hs2.test", "alice");
    const roomId = await populatedRoom(alice, await users("hs2.test", 2, "h"), { preset: "public_chat", name: "Growing" });
    const bob = await newUser("test.local", "bob");
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await gate!.held1();
    expect((await room(roomId).partialStateInfo())!.servers_in_room).toEqual(["hs2.test"]);
    // A user of hs3 joins through hs2 and speaks: hs3 is heard from here.
    const [t] = await users("hs3.test", 1, "t");
    await api(t!, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    const said = await sendText(t!, roomId, "hello from hs3");
    await waitFor(async () => (await timelineFlags(roomId)).some((f) => f.event_id === said), "hs3's message here");
    expect((await room(roomId).partialStateInfo())!.servers_in_room).toContain("hs3.test");
    const mine = await sendText(bob, roomId, "hello hs3");
    await waitFor(async () => (await e.HS3_CONTROL.timeline(roomId)).some((ev) => ev.event_id === mine), "bob's message on hs3");
  });
});

describe("admin view and configuration", () => {
  it("GET /_axon/admin/v1/rooms/{roomId}/partial_state: progress while partial, false after; admins only; 404 for unknown rooms", async () => {
    const { roomId, bob } = await partiallyJoined({ hs3: 1 });
    const admin = await newUser("test.local", "admin");
    await e.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(admin.userId).run();
    const path = `/_axon/admin/v1/rooms/${enc(roomId)}/partial_state`;
    const denied = await clientRequest(bob, "GET", path);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { errcode: string }).errcode).toBe("M_FORBIDDEN");
    expect((await clientRequest(admin, "GET", `/_axon/admin/v1/rooms/${enc("!nowhere:test.local")}/partial_state`)).status).toBe(404);
    expect((await clientRequest(admin, "GET", `/_axon/admin/v1/rooms/not-a-room/partial_state`)).status).toBe(400);
    const during = await api(admin, "GET", path);
    expect(during).toMatchObject({ room_id: roomId, partial_state: true, joined_via: "hs2.test", events_left: 1, events_completed: 0, failures: 0, next_server: "hs2.test" });
    expect(during.servers_in_room).toEqual(["hs2.test", "hs3.test"]);
    gate!.open();
    await awaitFullyStated(roomId);
    expect(await api(admin, "GET", path)).toEqual({ room_id: roomId, partial_state: false });
  });

  it("PARTIAL_JOINS: on by default, false turns it off, anything else is a configuration error", () => {
    const base = { SERVER_NAME: "example.org" } as Parameters<typeof parseConfig>[0];
    expect(parseConfig(base).partialJoins).toBe(true);
    expect(parseConfig({ ...base, PARTIAL_JOINS: "false" }).partialJoins).toBe(false);
    expect(parseConfig({ ...base, PARTIAL_JOINS: "true" }).partialJoins).toBe(true);
    expect(() => parseConfig({ ...base, PARTIAL_JOINS: "sometimes" })).toThrow(ConfigError);
  });

  it("falls back to a full join when the resident ignores omit_members", async () => {
    const alice = await newUser("hs2.test", "alice");
    const others = await users("hs2.test", 6, "h");
    const roomId = await populatedRoom(alice, others);
    const bob = await newUser("test.local", "bob");
    // A resident that does not know the parameter: the same send_join, without it (signed afresh).
    gate!.onRequest = async (url, request) => {
      if (!url.pathname.includes("/send_join/") || !url.searchParams.has("omit_members")) return;
      const answer = await fedClient().request("hs2.test", request.method as "PUT", url.pathname, await request.json());
      return new Response(JSON.stringify(answer), { headers: { "content-type": "application/json" } });
    };
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    expect(await room(roomId).partialStateInfo()).toBeNull();
    const s = await syncWith(bob);
    const r = s.rooms.join[roomId];
    const members = r.state.events.concat(r.timeline.events).filter((ev: Ev) => ev.type === "m.room.member");
    expect(members).toHaveLength(8);
  });
});
