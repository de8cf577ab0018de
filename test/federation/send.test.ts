/**
 * Inbound PUT /_matrix/federation/v1/send/{txnId} from a hand-built remote: idempotency, limits, and for each
 * kind of bad PDU the right per-PDU result with nothing wrong persisted; missing events fetched through
 * get_missing_events, event_auth and state_ids; EDUs.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PDU } from "../../src/protocol/events";
import { generateSigningKey } from "../../src/protocol/signing";
import { redactEvent } from "../../src/protocol/redaction";
import { alice, createRoom, roomStub } from "../rooms/helpers";
import { FakeServer, installFakeServers, json } from "./fake-server";
import { authFor, depthOf, eventRow, extremities, query, remoteMessage, sharedRoom, stateId, timeline } from "./helpers";

let remote: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`send${++seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote);
});
afterEach(() => restore());

describe("transactions", () => {
  it("accepts a remote join and a message, and answers {} for each", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "hello");
    const res = await remote.send("t-msg", [msg.pdu]);
    expect(res).toEqual({ status: 200, body: { pdus: { [msg.eventId]: {} } } });
    expect((await eventRow(room.stub, msg.eventId))?.stream_ordering).toBeGreaterThan(0);
  });

  it("processes a transaction ID once and replays its response", async () => {
    const room = await sharedRoom(remote);
    const first = await remoteMessage(remote, room, room.user, "first");
    const r1 = await remote.send("same-id", [first.pdu]);
    const second = await remoteMessage(remote, room, room.user, "second");
    const r2 = await remote.send("same-id", [second.pdu]);
    expect(r2.body).toEqual(r1.body);
    expect(await eventRow(room.stub, second.eventId)).toBeUndefined();
    // Another transaction ID is processed.
    const r3 = await remote.send("other-id", [second.pdu]);
    expect(r3.body).toEqual({ pdus: { [second.eventId]: {} } });
  });

  it("refuses transactions over the limits or malformed, with nothing processed or remembered", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "x");
    const tooMany = Array.from({ length: 51 }, () => msg.pdu);
    const cases: [string, unknown[] | string, unknown[]][] = [
      ["51 PDUs", tooMany, []],
      ["101 EDUs", [msg.pdu], Array.from({ length: 101 }, () => ({ edu_type: "m.typing", content: {} }))],
      ["pdus not an array", "nope", []],
    ];
    for (const [name, pdus, edus] of cases) {
      const res = await remote.request("PUT", "/_matrix/federation/v1/send/limits", { origin: remote.name, origin_server_ts: 1, pdus, edus: edus as unknown[] });
      expect(res.status, name).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_BAD_JSON");
    }
    expect(await eventRow(room.stub, msg.eventId)).toBeUndefined();
    // The ID was not used up by the refused attempts.
    expect((await remote.send("limits", [msg.pdu])).body).toEqual({ pdus: { [msg.eventId]: {} } });
  });

  it("ignores PDUs for rooms this server is not in, with an error entry", async () => {
    const room = await sharedRoom(remote);
    const stranger = remote.event(room.version, {
      room_id: "!elsewhere:" + remote.name,
      type: "m.room.message",
      sender: room.user,
      content: { body: "x" },
      prev_events: [],
      auth_events: [],
      depth: 3,
    });
    const good = await remoteMessage(remote, room, room.user, "fine");
    const res = await remote.send("t-notin", [stranger.pdu, good.pdu]);
    expect(res.body.pdus![stranger.eventId]!.error).toMatch(/not in room/);
    expect(res.body.pdus![good.eventId]).toEqual({});
    expect(await roomStub("!elsewhere:" + remote.name).federationInfo()).toBeNull();
  });

  it("drops an event with a bad signature but processes the others", async () => {
    const room = await sharedRoom(remote);
    const forged = await remoteMessage(remote, room, room.user, "forged");
    const bad = { ...forged.pdu, signatures: { [remote.name]: { [remote.key.keyId]: forged.pdu.signatures[remote.name]![remote.key.keyId]!.replace(/^./, (c) => (c === "A" ? "B" : "A")) } } };
    const byStranger = remote.event(room.version, { ...(forged.pdu as unknown as Parameters<FakeServer["event"]>[1]), content: { body: "other" } }, generateSigningKey("x"));
    const good = await remoteMessage(remote, room, room.user, "good");
    const res = await remote.send("t-sig", [bad, byStranger.pdu, good.pdu]);
    expect(res.body.pdus![forged.eventId]!.error).toMatch(/signature/);
    expect(res.body.pdus![byStranger.eventId]!.error).toMatch(/signature/);
    expect(res.body.pdus![good.eventId]).toEqual({});
    expect(await eventRow(room.stub, forged.eventId)).toBeUndefined();
    expect(await eventRow(room.stub, byStranger.eventId)).toBeUndefined();
  });

  it("refuses an event that claims a sender on a server that did not sign it (spoofed origin)", async () => {
    const room = await sharedRoom(remote);
    const victim = new FakeServer(`victim${seq}.test`);
    restore();
    restore = installFakeServers(remote, victim);
    const spoof = await remoteMessage(remote, room, `@bob:${victim.name}`, "I am bob");
    const res = await remote.send("t-spoof", [spoof.pdu]);
    expect(res.body.pdus![spoof.eventId]!.error).toMatch(new RegExp(`not signed by ${victim.name.replace(/\./g, "\\.")}`));
    expect(await eventRow(room.stub, spoof.eventId)).toBeUndefined();
  });

  it("redacts an event whose content hash does not match before persisting it", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "original");
    // Content is not covered by the signature of a message (only by the hash): change it in transit.
    const altered = { ...msg.pdu, content: { msgtype: "m.text", body: "altered in transit" } };
    const res = await remote.send("t-hash", [altered]);
    expect(res.body.pdus![msg.eventId]).toEqual({});
    const row = await eventRow(room.stub, msg.eventId);
    const stored = JSON.parse(row!.json) as PDU;
    expect(stored.content).toEqual({});
    expect(stored).toEqual(JSON.parse(JSON.stringify(redactEvent(altered, room.version))));
    expect(row!.rejected).toBeNull();
  });

  it("rejects an event that fails the authorization rules", async () => {
    const room = await sharedRoom(remote);
    const outsider = `@mallory:${remote.name}`;
    const msg = await remoteMessage(remote, room, outsider, "let me in");
    const res = await remote.send("t-auth", [msg.pdu]);
    expect(res.body.pdus![msg.eventId]!.error).toMatch(/rejected/);
    const row = await eventRow(room.stub, msg.eventId);
    expect(row?.rejected).toBeTruthy();
    expect(row?.stream_ordering).toBeNull();
    expect(await timeline(room.stub)).not.toContain(msg.eventId);
  });

  it("refuses floats in room versions 6 and later", async () => {
    const room = await sharedRoom(remote, "10");
    const msg = await remoteMessage(remote, room, room.user, "float", { content: { body: "x", value: 1.5 } });
    const res = await remote.send("t-float", [msg.pdu]);
    expect(res.body.pdus![msg.eventId]!.error).toMatch(/canonical JSON/);
    expect(await eventRow(room.stub, msg.eventId)).toBeUndefined();
  });

  it("refuses an event larger than 64 KiB", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "x".repeat(70_000));
    const res = await remote.send("t-big", [msg.pdu]);
    expect(res.body.pdus![msg.eventId]!.error).toMatch(/65536/);
    expect(await eventRow(room.stub, msg.eventId)).toBeUndefined();
  });

  it("refuses events whose format is wrong for the room version", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "x");
    const noDepth: Record<string, unknown> = { ...msg.pdu };
    delete noDepth.depth;
    const res = await remote.send("t-format", [noDepth, "not an object", { room_id: 5 }]);
    expect(Object.values(res.body.pdus!).every((r) => typeof r.error === "string")).toBe(true);
    expect(await eventRow(room.stub, msg.eventId)).toBeUndefined();
  });
});

describe("server ACLs", () => {
  it("ignores PDUs and typing from a server the room's ACL denies", async () => {
    const room = await sharedRoom(remote);
    const acl = await room.stub.send({ type: "m.room.server_acl", state_key: "", sender: alice, content: { allow: ["*"], deny: [remote.name] } });
    expect(acl.ok).toBe(true);
    const msg = await remoteMessage(remote, room, room.user, "still here?");
    const res = await remote.send("t-acl", [msg.pdu], [{ edu_type: "m.typing", content: { room_id: room.roomId, user_id: room.user, typing: true } }]);
    expect(res.body.pdus![msg.eventId]!.error).toMatch(/server ACL/);
    expect(await eventRow(room.stub, msg.eventId)).toBeUndefined();
    expect(await room.stub.typingUsers()).toEqual([]);
  });
});

describe("missing events", () => {
  /** Three events carol sends on top of the room's extremity, the first two withheld. */
  async function chain(room: Awaited<ReturnType<typeof sharedRoom>>, n: number) {
    const auth = await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", room.user]]);
    let prev = (await extremities(room.stub))[0]!;
    let depth = await depthOf(room.stub, prev);
    const events: { pdu: PDU; eventId: string }[] = [];
    for (let i = 1; i <= n; i++) {
      const e = remote.event(room.version, {
        room_id: room.roomId,
        type: "m.room.message",
        sender: room.user,
        content: { body: `m${i}` },
        prev_events: [prev],
        auth_events: auth,
        depth: ++depth,
      });
      events.push(e);
      prev = e.eventId;
    }
    return events;
  }

  it("fills a gap with get_missing_events and keeps the order", async () => {
    const room = await sharedRoom(remote);
    const lastShared = (await extremities(room.stub))[0]!;
    const events = await chain(room, 4);
    remote.routes.push((req) => {
      if (!req.path.startsWith("/_matrix/federation/v1/get_missing_events/")) return undefined;
      return json({ events: events.slice(0, 3).map((e) => e.pdu).reverse() });
    });
    const res = await remote.send("t-gap", [events[3]!.pdu]);
    expect(res.body.pdus).toEqual({ [events[3]!.eventId]: {} });
    const [gme] = remote.requestsTo("/_matrix/federation/v1/get_missing_events/");
    expect(gme!.body).toMatchObject({ earliest_events: [lastShared], latest_events: [events[3]!.eventId], limit: 10 });
    expect(remote.requestsTo("/_matrix/federation/v1/state_ids/")).toHaveLength(0);
    const tl = await timeline(room.stub);
    expect(tl.slice(tl.indexOf(lastShared))).toEqual([lastShared, ...events.map((e) => e.eventId)]);
  });

  it("falls back to the state at the missing prev event when the gap cannot be closed", async () => {
    const room = await sharedRoom(remote);
    const events = await chain(room, 3);
    const [m1, m2, m3] = events as [(typeof events)[0], (typeof events)[0], (typeof events)[0]];
    // get_missing_events gives nothing; state_ids and event describe m2.
    remote.routes.push((req) => (req.path.startsWith("/_matrix/federation/v1/get_missing_events/") ? json({ events: [] }) : undefined));
    const stateIds = await query<{ event_id: string }>(room.stub, "SELECT e.event_id FROM current_state c JOIN events e ON e.nid = c.event_nid");
    remote.routes.push((req) =>
      req.path.startsWith("/_matrix/federation/v1/state_ids/") && req.query.get("event_id") === m2.eventId
        ? json({ pdu_ids: stateIds.map((r) => r.event_id), auth_chain_ids: [] })
        : undefined,
    );
    remote.events.delete(m1.eventId); // m1 is unknown to everyone
    const res = await remote.send("t-state", [m3.pdu]);
    expect(res.body.pdus).toEqual({ [m3.eventId]: {} });
    expect(remote.requestsTo("/_matrix/federation/v1/get_missing_events/")).toHaveLength(1);
    expect(remote.requestsTo("/_matrix/federation/v1/state_ids/")).toHaveLength(1);
    expect((await eventRow(room.stub, m3.eventId))?.stream_ordering).toBeGreaterThan(0);
    expect((await eventRow(room.stub, m2.eventId))?.outlier).toBe(1);
    expect(await eventRow(room.stub, m1.eventId)).toBeUndefined();
  });

  it("reports an error when neither the gap nor the state can be fetched, and stores nothing", async () => {
    const room = await sharedRoom(remote);
    const events = await chain(room, 2);
    for (const e of events) remote.events.delete(e.eventId);
    const res = await remote.send("t-nogap", [events[1]!.pdu]);
    expect(res.body.pdus![events[1]!.eventId]!.error).toMatch(/prev events/);
    expect(await eventRow(room.stub, events[1]!.eventId)).toBeUndefined();
  });

  it("ignores a missing event with a float (v6+) and does not accept the event that needs it", async () => {
    const room = await sharedRoom(remote, "10");
    const prev = (await extremities(room.stub))[0]!;
    const auth = await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", room.user]]);
    const depth = await depthOf(room.stub, prev);
    const floaty = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.message", sender: room.user, content: { body: "f", n: 0.5 },
      prev_events: [prev], auth_events: auth, depth: depth + 1,
    });
    const pushed = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.message", sender: room.user, content: { body: "after" },
      prev_events: [floaty.eventId], auth_events: auth, depth: depth + 2,
    });
    remote.routes.push((req) => (req.path.startsWith("/_matrix/federation/v1/get_missing_events/") ? json({ events: [floaty.pdu] }) : undefined));
    const res = await remote.send("t-floaty", [pushed.pdu]);
    expect(Object.keys(res.body.pdus!)).toEqual([pushed.eventId]);
    expect(res.body.pdus![pushed.eventId]!.error).toBeTruthy();
    expect(await eventRow(room.stub, floaty.eventId)).toBeUndefined();
    expect(await eventRow(room.stub, pushed.eventId)).toBeUndefined();
  });

  it("fetches missing auth events through event_auth and stores them as outliers first", async () => {
    const room = await sharedRoom(remote);
    // carol changes her display name (withheld), then sends a message authorised by that membership event.
    const baseAuth = await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""], ["m.room.member", room.user]]);
    const prev = (await extremities(room.stub))[0]!;
    const depth = await depthOf(room.stub, prev);
    const rename = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.member", state_key: room.user, sender: room.user,
      content: { membership: "join", displayname: "Carol" }, prev_events: [prev], auth_events: baseAuth, depth: depth + 1,
    });
    const create = await stateId(room.stub, "m.room.create", "");
    const pl = await stateId(room.stub, "m.room.power_levels", "");
    const msg = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.message", sender: room.user, content: { body: "as Carol" },
      prev_events: [rename.eventId], auth_events: [create!, pl!, rename.eventId].filter(Boolean), depth: depth + 2,
    });
    remote.routes.push((req) =>
      req.path.startsWith("/_matrix/federation/v1/event_auth/") ? json({ auth_chain: [rename.pdu] }) : undefined,
    );
    remote.routes.push((req) => (req.path.startsWith("/_matrix/federation/v1/get_missing_events/") ? json({ events: [rename.pdu] }) : undefined));
    const res = await remote.send("t-auth-chain", [msg.pdu]);
    expect(res.body.pdus).toEqual({ [msg.eventId]: {} });
    expect(remote.requestsTo("/_matrix/federation/v1/event_auth/")).toHaveLength(1);
    // The rename went in as an outlier, then into the timeline through get_missing_events.
    expect((await eventRow(room.stub, rename.eventId))?.outlier).toBe(0);
    expect(await timeline(room.stub)).toEqual(expect.arrayContaining([rename.eventId, msg.eventId]));
  });

  it("never accepts an event whose fetched auth chain fails authorization", async () => {
    const room = await sharedRoom(remote);
    const create = await stateId(room.stub, "m.room.create", "");
    const pl = await stateId(room.stub, "m.room.power_levels", "");
    const prev = (await extremities(room.stub))[0]!;
    const depth = await depthOf(room.stub, prev);
    // carol (power 0) promotes herself: rejected against its own auth events.
    const coup = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.power_levels", state_key: "", sender: room.user,
      content: { users: { [room.user]: 100 }, users_default: 0 },
      prev_events: [prev], auth_events: [create!, pl!, room.joinId], depth: depth + 1,
    });
    const abuse = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.topic", state_key: "", sender: room.user, content: { topic: "mine" },
      prev_events: [coup.eventId], auth_events: [create!, coup.eventId, room.joinId], depth: depth + 2,
    });
    remote.routes.push((req) => (req.path.startsWith("/_matrix/federation/v1/event_auth/") ? json({ auth_chain: [coup.pdu] }) : undefined));
    remote.routes.push((req) => (req.path.startsWith("/_matrix/federation/v1/get_missing_events/") ? json({ events: [coup.pdu] }) : undefined));
    const res = await remote.send("t-coup", [abuse.pdu]);
    expect(res.body.pdus![abuse.eventId]!.error).toMatch(/rejected/);
    expect((await eventRow(room.stub, coup.eventId))?.rejected).toBeTruthy();
    expect(await stateId(room.stub, "m.room.topic", "")).toBeUndefined();
    expect(await stateId(room.stub, "m.room.power_levels", "")).toBe(pl);
  });
});

describe("EDUs", () => {
  it("applies typing from the origin's users and ignores typing for users of other servers", async () => {
    const room = await sharedRoom(remote);
    await remote.send("t-typing", [], [
      { edu_type: "m.typing", content: { room_id: room.roomId, user_id: room.user, typing: true } },
      { edu_type: "m.typing", content: { room_id: room.roomId, user_id: alice, typing: true } },
    ]);
    expect(await room.stub.typingUsers()).toEqual([room.user]);
    await remote.send("t-typing-off", [], [{ edu_type: "m.typing", content: { room_id: room.roomId, user_id: room.user, typing: false } }]);
    expect(await room.stub.typingUsers()).toEqual([]);
  });

  it("ignores malformed and unknown EDUs without failing the transaction", async () => {
    const room = await createRoom();
    const res = await remote.send("t-bad-edus", [], [
      "junk",
      { edu_type: "m.typing" },
      { edu_type: "m.something_new", content: {} },
      { edu_type: "m.typing", content: { room_id: room.roomId, user_id: `@x:${remote.name}`, typing: true } },
      { edu_type: "m.receipt", content: { [room.roomId]: { "m.read": { [`@x:${remote.name}`]: { event_ids: "nope" } } } } },
    ]);
    expect(res).toEqual({ status: 200, body: { pdus: {} } });
    expect(await room.stub.typingUsers()).toEqual([]);
  });
});
