/** PUT /send, PUT+GET /state, PUT /redact: idempotency, state keys, permissions, sizes, redaction per room version. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { newToken, tokenHash } from "../../src/accounts/tokens";

/** Another device (and access token) of an existing test user. */
async function secondDevice(user: TestUser): Promise<TestUser> {
  const deviceId = `LAPTOP${Date.now()}`;
  const accessToken = newToken("syt");
  await testEnv.DB.batch([
    testEnv.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(user.userId, deviceId, Date.now()),
    testEnv.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(
      tokenHash(accessToken), user.userId, deviceId, Date.now(),
    ),
  ]);
  return { userId: user.userId, deviceId, accessToken };
}
import { V3, enc, expectError, join, newRoom, putState, sendText, type ClientEventJson } from "./rooms-helpers";

describe("PUT /rooms/{roomId}/send/{eventType}/{txnId}", () => {
  it("is idempotent per device and transaction ID", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const path = `${V3}/rooms/${enc(roomId)}/send/m.room.message/same-txn`;
    const a = await call<{ event_id: string }>("PUT", path, { user: alice, body: { msgtype: "m.text", body: "one" } });
    const b = await call<{ event_id: string }>("PUT", path, { user: alice, body: { msgtype: "m.text", body: "one" } });
    expect(b.event_id).toBe(a.event_id);
    // The same transaction ID from another device of the same user is another event.
    const laptop = await secondDevice(alice);
    const c = await call<{ event_id: string }>("PUT", path, { user: laptop, body: { msgtype: "m.text", body: "one" } });
    expect(c.event_id).not.toBe(a.event_id);
    // Each device sees its own transaction ID, and only its own.
    const seen = async (user: TestUser) =>
      (await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=5`, { user })).chunk
        .filter((e) => e.type === "m.room.message")
        .map((e) => [e.event_id, e.unsigned?.transaction_id]);
    expect(await seen(alice)).toEqual([[c.event_id, undefined], [a.event_id, "same-txn"]]);
    expect(await seen(laptop)).toEqual([[c.event_id, "same-txn"], [a.event_id, undefined]]);
  });

  it("refuses non-members, unknown rooms, bad room IDs and oversized events", async () => {
    const alice = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    const body = { msgtype: "m.text", body: "hi" };
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/x1`, { user: eve, body }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${V3}/rooms/${enc("!unknownroom:test.local")}/send/m.room.message/x2`, { user: alice, body }, 404, "M_NOT_FOUND");
    await expectError("PUT", `${V3}/rooms/notaroom/send/m.room.message/x3`, { user: alice, body }, 400, "M_INVALID_PARAM");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/x4`, { user: alice, body: { body: "x".repeat(70_000) } }, 413, "M_TOO_LARGE");
    // Just under the content limit, but the whole PDU is over 65,536 bytes.
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/x5`, { user: alice, body: { body: "x".repeat(65_000) } }, 413, "M_TOO_LARGE");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/x6`, { user: alice, body: "[1]" }, 400, "M_BAD_JSON");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/x7`, { user: alice, body: '{"n": 1.5}' }, 400, "M_BAD_JSON");
    // Nothing of that reached the room.
    const res = await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { user: alice });
    expect(res.chunk.filter((e) => e.type === "m.room.message")).toHaveLength(0);
  });

  it("events_default above the sender's level → 403", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat", power_level_content_override: { events_default: 10 } });
    await join(bob, roomId);
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/p1`, { user: bob, body: { body: "x" } }, 403, "M_FORBIDDEN");
  });
});

describe("state events", () => {
  it("PUT and GET with empty and non-empty state keys, with and without the trailing slash", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const base = `${V3}/rooms/${enc(roomId)}/state`;
    const e1 = await call<{ event_id: string }>("PUT", `${base}/m.room.topic`, { user: alice, body: { topic: "one" } });
    expect(await call("GET", `${base}/m.room.topic`, { user: alice })).toEqual({ topic: "one" });
    expect(await call("GET", `${base}/m.room.topic/`, { user: alice })).toEqual({ topic: "one" });
    await call("PUT", `${base}/m.room.topic/`, { user: alice, body: { topic: "two" } });
    expect(await call("GET", `${base}/m.room.topic`, { user: alice })).toEqual({ topic: "two" });
    await call("PUT", `${base}/org.example.thing/${enc("a/b c")}`, { user: alice, body: { v: 1 } });
    expect(await call("GET", `${base}/org.example.thing/${enc("a/b c")}`, { user: alice })).toEqual({ v: 1 });
    await expectError("GET", `${base}/org.example.thing/other`, { user: alice }, 404, "M_NOT_FOUND");
    const full = await call<ClientEventJson>("GET", `${base}/m.room.topic?format=event`, { user: alice });
    expect(full).toMatchObject({ type: "m.room.topic", state_key: "", sender: alice.userId, content: { topic: "two" } });
    expect(full.unsigned?.prev_content).toEqual({ topic: "one" });
    expect(full.unsigned?.replaces_state).toBe(e1.event_id);
    await expectError("GET", `${base}/m.room.topic?format=xml`, { user: alice }, 400, "M_INVALID_PARAM");
  });

  it("an identical state event from the same sender returns the existing event", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const a = await putState(alice, roomId, "m.room.name", { name: "same" });
    const b = await putState(alice, roomId, "m.room.name", { name: "same" });
    expect(b).toBe(a);
  });

  it("needs the state level; state keys of other users are refused; non-members get 403", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const base = `${V3}/rooms/${enc(roomId)}/state`;
    await expectError("PUT", `${base}/m.room.name`, { user: bob, body: { name: "bob's" } }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${base}/m.room.power_levels`, { user: bob, body: { users: { [bob.userId]: 100 } } }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${base}/org.example/${enc(alice.userId)}`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${base}/m.room.topic`, { user: eve, body: { topic: "eve" } }, 403, "M_FORBIDDEN");
    await expectError("GET", `${base}/m.room.topic`, { user: eve }, 403, "M_FORBIDDEN");
    await expectError("GET", `${base}`, { user: eve }, 403, "M_FORBIDDEN");
  });

  it("m.room.canonical_alias must name aliases of this room", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const other = await newRoom(alice);
    const mine = `#mine${Date.now()}:test.local`;
    const theirs = `#theirs${Date.now()}:test.local`;
    await call("PUT", `${V3}/directory/room/${enc(mine)}`, { user: alice, body: { room_id: roomId } });
    await call("PUT", `${V3}/directory/room/${enc(theirs)}`, { user: alice, body: { room_id: other } });
    await putState(alice, roomId, "m.room.canonical_alias", { alias: mine });
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { user: alice, body: { alias: theirs } }, 400, "M_BAD_ALIAS");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { user: alice, body: { alias: mine, alt_aliases: ["#nope:test.local"] } }, 400, "M_BAD_ALIAS");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { user: alice, body: { alias: "bad" } }, 400, "M_INVALID_PARAM");
  });
});

describe("redaction", () => {
  async function getEvent(user: TestUser, roomId: string, eventId: string) {
    return call<ClientEventJson>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { user });
  }

  it("redacts own events; others' only with the redact level; served redacted with redacted_because", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const mine = await sendText(bob, roomId, "bob's words");
    const hers = await sendText(alice, roomId, "alice's words");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(hers)}/r1`, { user: bob, body: {} }, 403, "M_FORBIDDEN");
    const r = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(mine)}/r2`, { user: bob, body: { reason: "oops" } });
    const again = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(mine)}/r2`, { user: bob, body: { reason: "oops" } });
    expect(again.event_id).toBe(r.event_id);
    const ev = await getEvent(alice, roomId, mine);
    expect(ev.content).toEqual({});
    expect((ev.unsigned?.redacted_because as ClientEventJson).event_id).toBe(r.event_id);
    expect((ev.unsigned?.redacted_because as ClientEventJson).content).toMatchObject({ reason: "oops" });
    // The admin may redact others' events.
    await call("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(mine)}/r3`, { user: alice, body: {} });
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc("$" + "a".repeat(43))}/r4`, { user: alice, body: {} }, 404, "M_NOT_FOUND");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/redact/not-an-id/r5`, { user: alice, body: {} }, 400, "M_INVALID_PARAM");
  });

  it("the create event cannot be redacted", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const state = await call<ClientEventJson[]>("GET", `${V3}/rooms/${enc(roomId)}/state`, { user: alice });
    const create = state.find((e) => e.type === "m.room.create")!;
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(create.event_id)}/c1`, { user: alice, body: {} }, 403, "M_FORBIDDEN");
  });

  it.each([
    ["10", false],
    ["11", true],
  ])("room version %s: redaction format and the power-levels algorithm", async (version, v11) => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { room_version: version });
    const text = await sendText(alice, roomId, "secret");
    const r = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(text)}/v${version}`, { user: alice, body: {} });
    const redaction = await getEvent(alice, roomId, r.event_id);
    expect(redaction.redacts).toBe(text); // top-level for clients in every version
    if (v11) expect(redaction.content.redacts).toBe(text);
    else expect(redaction.content.redacts).toBeUndefined();
    expect((await getEvent(alice, roomId, text)).content).toEqual({});

    // Redacting power levels: v11 keeps `invite`, v10 drops it.
    const plId = await putState(alice, roomId, "m.room.power_levels", {
      users: { [alice.userId]: 100 }, users_default: 0, events: {}, events_default: 0, state_default: 50,
      ban: 50, kick: 50, redact: 50, invite: 30,
    });
    await call("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(plId)}/pl${version}`, { user: alice, body: {} });
    const pl = await getEvent(alice, roomId, plId);
    expect(pl.content.users).toEqual({ [alice.userId]: 100 });
    expect(pl.content.invite).toBe(v11 ? 30 : undefined);
    expect(pl.unsigned?.redacted_because).toBeDefined();
  });
});

describe("routing", () => {
  it("wrong methods are 405; unauthenticated requests are 401", async () => {
    const res = await request("DELETE", `${V3}/rooms/${enc("!a:test.local")}/send/m.room.message/1`);
    expect(res.status).toBe(405);
    await expectError("PUT", `${V3}/rooms/${enc("!a:test.local")}/send/m.room.message/1`, { body: {} }, 401, "M_MISSING_TOKEN");
  });
});
