/**
 * The endpoints that serve room data to other servers, driven by hand-built remotes (FakeServer): state and
 * state_ids, event, event_auth, backfill and get_missing_events (with per-server history visibility), ACLs and
 * membership checks, timestamp_to_event — exact answers, and refusals for bad input and unauthorised servers.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PDU } from "../../src/protocol/events";
import { computeEventId } from "../../src/protocol/event-id";
import { roomVersion } from "../../src/protocol/room-versions";
import { alice } from "../rooms/helpers";
import { FakeServer, installFakeServers } from "./fake-server";
import { authFor, extremities, query, remoteMessage, sharedRoom, stateId } from "./helpers";

let remote: FakeServer;
let stranger: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`serve${++seq}-${Date.now().toString(36)}.test`);
  stranger = new FakeServer(`stranger${seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote, stranger);
});
afterEach(() => restore());

const F = "/_matrix/federation/v1";
const enc = encodeURIComponent;

async function get<T = Record<string, any>>(server: FakeServer, uri: string, status = 200): Promise<T> {
  const res = await server.request("GET", uri);
  const text = await res.text();
  expect(res.status, `${uri}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

async function post<T = Record<string, any>>(server: FakeServer, uri: string, body: unknown, status = 200): Promise<T> {
  const res = await server.request("POST", uri, body);
  const text = await res.text();
  expect(res.status, `${uri}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

/** IDs of the timeline events in stream order, with their types. */
async function timelineRows(room: Awaited<ReturnType<typeof sharedRoom>>) {
  return query<{ event_id: string; type: string; depth: number }>(
    room.stub,
    "SELECT event_id, type, depth FROM events WHERE stream_ordering IS NOT NULL ORDER BY stream_ordering",
  );
}

const V10 = roomVersion("10")!;

function idsOf(pdus: PDU[]): string[] {
  return pdus.map((p) => computeEventId(p, V10));
}

/** A well-formed event ID nobody has. */
const UNKNOWN = `$${"A".repeat(43)}`;

describe("state and state_ids", () => {
  it("answer the state before an event and its auth chain, to servers in the room only", async () => {
    const room = await sharedRoom(remote);
    const msg = await remoteMessage(remote, room, room.user, "hi");
    await remote.send("t1", [msg.pdu]);
    const ids = await get<{ pdu_ids: string[]; auth_chain_ids: string[] }>(remote, `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(msg.eventId)}`);
    const expected = (await query<{ event_id: string }>(room.stub,
      `SELECT e.event_id FROM current_state c JOIN events e ON e.nid = c.event_nid`)).map((r) => r.event_id);
    expect(ids.pdu_ids.sort()).toEqual(expected.sort());
    // The auth chain covers the state's auth events (create, power levels, alice's join…).
    expect(ids.auth_chain_ids).toEqual(expect.arrayContaining([await stateId(room.stub, "m.room.create", ""), await stateId(room.stub, "m.room.member", alice)]));

    const full = await get<{ pdus: PDU[]; auth_chain: PDU[] }>(remote, `${F}/state/${enc(room.roomId)}?event_id=${enc(msg.eventId)}`);
    expect(idsOf(full.pdus).sort()).toEqual(ids.pdu_ids.sort());
    expect(idsOf(full.auth_chain).sort()).toEqual([...ids.auth_chain_ids].sort());
    expect(full.pdus.every((p) => p.event_id === undefined && p.unsigned === undefined)).toBe(true);

    // The state before the join does not hold the join.
    const atJoin = await get<{ pdu_ids: string[] }>(remote, `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(room.joinId)}`);
    expect(atJoin.pdu_ids).not.toContain(room.joinId);

    // Refusals.
    expect((await get(stranger, `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(msg.eventId)}`, 403)).errcode).toBe("M_FORBIDDEN");
    expect((await get(remote, `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(UNKNOWN)}`, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await get(remote, `${F}/state_ids/${enc(room.roomId)}`, 400)).errcode).toBe("M_MISSING_PARAM");
    expect((await get(remote, `${F}/state/${enc("!nowhere:test.local")}?event_id=${enc(msg.eventId)}`, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await get(remote, `${F}/state_ids/not-a-room?event_id=${enc(msg.eventId)}`, 400)).errcode).toBe("M_INVALID_PARAM");
    const unsigned = await remote.request("GET", `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(msg.eventId)}`, undefined, { key: stranger.key });
    expect(unsigned.status).toBe(401);
  });

  it("are refused to a server the room's ACL denies", async () => {
    const room = await sharedRoom(remote);
    await room.stub.send({ type: "m.room.server_acl", state_key: "", sender: alice, content: { allow: ["*"], deny: [remote.name] } });
    const [latest] = await extremities(room.stub);
    for (const uri of [
      `${F}/state_ids/${enc(room.roomId)}?event_id=${enc(latest!)}`,
      `${F}/state/${enc(room.roomId)}?event_id=${enc(latest!)}`,
      `${F}/event_auth/${enc(room.roomId)}/${enc(latest!)}`,
      `${F}/backfill/${enc(room.roomId)}?v=${enc(latest!)}&limit=5`,
      `${F}/make_join/${enc(room.roomId)}/${enc(`@x:${remote.name}`)}?ver=10`,
      `${F}/timestamp_to_event/${enc(room.roomId)}?ts=0&dir=f`,
    ]) {
      expect((await get(remote, uri, 403)).errcode, uri).toBe("M_FORBIDDEN");
    }
    expect((await post(remote, `${F}/get_missing_events/${enc(room.roomId)}`, { earliest_events: [], latest_events: [latest], limit: 5 }, 403)).errcode).toBe("M_FORBIDDEN");
  });
});

describe("single events and auth chains", () => {
  it("serves an event of a shared room in federation format; 404 otherwise", async () => {
    const room = await sharedRoom(remote);
    await room.stub.syncDirectory(); // the D1 directory says which rooms the server shares
    const msg = await room.stub.send({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: "served" } });
    const eventId = msg.ok ? msg.event_id : "";
    const res = await get<{ origin: string; pdus: PDU[] }>(remote, `${F}/event/${enc(eventId)}`);
    expect(res.origin).toBe("test.local");
    expect(res.pdus).toHaveLength(1);
    expect(res.pdus[0]!.content).toEqual({ msgtype: "m.text", body: "served" });
    expect(computeEventId(res.pdus[0]!, room.version)).toBe(eventId);
    expect((await get(remote, `${F}/event/${enc(UNKNOWN)}`, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await get(stranger, `${F}/event/${enc(eventId)}`, 404)).errcode).toBe("M_NOT_FOUND");
  });

  it("event_auth answers exactly the event's auth chain", async () => {
    const room = await sharedRoom(remote);
    const joinRules = (await stateId(room.stub, "m.room.join_rules", ""))!;
    const jr = await get<{ auth_chain: PDU[] }>(remote, `${F}/event_auth/${enc(room.roomId)}/${enc(joinRules)}`);
    const jrRow = (await query<{ json: string }>(room.stub, "SELECT json FROM events WHERE event_id = ?", joinRules))[0]!;
    const jrAuth = (JSON.parse(jrRow.json) as { auth_events: string[] }).auth_events;
    // create, power levels, alice's join — and their own chains, which are within that set.
    expect(idsOf(jr.auth_chain).sort()).toEqual([...jrAuth].sort());
    const carol = await get<{ auth_chain: PDU[] }>(remote, `${F}/event_auth/${enc(room.roomId)}/${enc(room.joinId)}`);
    expect(idsOf(carol.auth_chain).sort()).toEqual(
      (await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""], ["m.room.member", alice]])).sort(),
    );
    expect((await get(remote, `${F}/event_auth/${enc(room.roomId)}/${enc(UNKNOWN)}`, 404)).errcode).toBe("M_NOT_FOUND");
  });
});

describe("backfill and get_missing_events", () => {
  /** A room (shared or joined-only history) with `n` messages from alice, then the remote's user joined. */
  async function roomWithHistory(n: number, visibility: "shared" | "joined") {
    const room = await sharedRoom(remote);
    const carol = room.user;
    // Make the remote's user leave, change visibility, write history, then have them come back.
    await room.stub.send({ type: "m.room.history_visibility", state_key: "", sender: alice, content: { history_visibility: visibility } });
    const sent: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await room.stub.send({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: `h${i}` } });
      if (r.ok) sent.push(r.event_id);
    }
    return { room, carol, sent };
  }

  it("backfill walks back from the given events, newest first, at most `limit` (the given events included)", async () => {
    const { room, sent } = await roomWithHistory(5, "shared");
    const res = await get<{ origin: string; pdus: PDU[] }>(remote, `${F}/backfill/${enc(room.roomId)}?v=${enc(sent.at(-1)!)}&limit=3`);
    expect(res.origin).toBe("test.local");
    expect(idsOf(res.pdus)).toEqual([sent[4], sent[3], sent[2]]);
    const all = await get<{ pdus: PDU[] }>(remote, `${F}/backfill/${enc(room.roomId)}?v=${enc(sent.at(-1)!)}&limit=1000`);
    const rows = await timelineRows(room);
    const upTo = rows.slice(0, rows.findIndex((r) => r.event_id === sent.at(-1)) + 1).map((r) => r.event_id);
    expect(idsOf(all.pdus).sort()).toEqual(upTo.sort());
    expect((await get(remote, `${F}/backfill/${enc(room.roomId)}?limit=3`, 400)).errcode).toBe("M_MISSING_PARAM");
    expect((await get(remote, `${F}/backfill/${enc(room.roomId)}?v=${enc(sent[0]!)}&limit=x`, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await get(stranger, `${F}/backfill/${enc(room.roomId)}?v=${enc(sent[0]!)}&limit=3`, 403)).errcode).toBe("M_FORBIDDEN");
  });

  it("redacts what the server's users could not see (joined-only history before they joined)", async () => {
    const room = await sharedRoom(remote);
    await room.stub.send({ type: "m.room.history_visibility", state_key: "", sender: alice, content: { history_visibility: "joined" } });
    // The remote's user leaves, history happens, then they come back.
    const leave = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.member", state_key: room.user, sender: room.user, content: { membership: "leave" },
      prev_events: await extremities(room.stub),
      auth_events: await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", room.user]]),
      depth: 100,
    });
    expect((await remote.send("leave", [leave.pdu])).body).toEqual({ pdus: { [leave.eventId]: {} } });
    const hidden = await room.stub.send({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: "while away" } });
    const rejoin = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.member", state_key: room.user, sender: room.user, content: { membership: "join" },
      prev_events: await extremities(room.stub),
      auth_events: await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", room.user], ["m.room.join_rules", ""]]),
      depth: 102,
    });
    expect((await remote.send("rejoin", [rejoin.pdu])).body).toEqual({ pdus: { [rejoin.eventId]: {} } });
    const seen = await room.stub.send({ type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: "after return" } });
    const hiddenId = hidden.ok ? hidden.event_id : "";
    const seenId = seen.ok ? seen.event_id : "";

    const res = await get<{ pdus: PDU[] }>(remote, `${F}/backfill/${enc(room.roomId)}?v=${enc(seenId)}&limit=10`);
    const byId = new Map(res.pdus.map((p) => [computeEventId(p, room.version), p]));
    expect(byId.get(seenId)!.content).toEqual({ msgtype: "m.text", body: "after return" });
    expect(byId.get(hiddenId)!.content).toEqual({}); // redacted: the server had nobody in the room then
    expect(byId.get(hiddenId)!.hashes).toBeDefined(); // a redacted event still verifies
    const missing = await post<{ events: PDU[] }>(remote, `${F}/get_missing_events/${enc(room.roomId)}`, {
      earliest_events: [leave.eventId], latest_events: [seenId], limit: 10, min_depth: 0,
    });
    const m = new Map(missing.events.map((p) => [computeEventId(p, room.version), p]));
    expect(m.get(hiddenId)!.content).toEqual({});
    const single = await get<{ pdus: PDU[] }>(remote, `${F}/event/${enc(hiddenId)}`);
    expect(single.pdus[0]!.content).toEqual({});
  });

  it("get_missing_events returns what lies between earliest and latest, oldest first, within limit and min_depth", async () => {
    const { room, sent } = await roomWithHistory(6, "shared");
    const res = await post<{ events: PDU[] }>(remote, `${F}/get_missing_events/${enc(room.roomId)}`, {
      earliest_events: [sent[0]], latest_events: [sent[5]], limit: 10, min_depth: 0,
    });
    expect(idsOf(res.events)).toEqual(sent.slice(1, 5));
    expect(res.events.every((p) => (p.content as { body?: string }).body !== undefined)).toBe(true);
    const limited = await post<{ events: PDU[] }>(remote, `${F}/get_missing_events/${enc(room.roomId)}`, {
      earliest_events: [sent[0]], latest_events: [sent[5]], limit: 2,
    });
    expect(idsOf(limited.events)).toEqual([sent[3], sent[4]]);
    const depthOf = async (id: string) => (await query<{ depth: number }>(room.stub, "SELECT depth FROM events WHERE event_id = ?", id))[0]!.depth;
    const deep = await post<{ events: PDU[] }>(remote, `${F}/get_missing_events/${enc(room.roomId)}`, {
      earliest_events: [], latest_events: [sent[5]], limit: 10, min_depth: await depthOf(sent[3]!),
    });
    expect(idsOf(deep.events)).toEqual([sent[3], sent[4]]);
    expect((await post(remote, `${F}/get_missing_events/${enc(room.roomId)}`, { latest_events: "x" }, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await post(stranger, `${F}/get_missing_events/${enc(room.roomId)}`, { earliest_events: [], latest_events: [sent[5]] }, 403)).errcode).toBe("M_FORBIDDEN");
  });

  it("timestamp_to_event finds the closest event in either direction", async () => {
    const room = await sharedRoom(remote);
    const a = await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "a" }, origin_server_ts: 1_000_000 });
    const b = await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "b" }, origin_server_ts: 2_000_000 });
    const ok = (r: typeof a) => (r.ok ? r.event_id : "");
    expect(await get(remote, `${F}/timestamp_to_event/${enc(room.roomId)}?ts=1500000&dir=b`)).toEqual({ event_id: ok(a), origin_server_ts: 1_000_000 });
    expect(await get(remote, `${F}/timestamp_to_event/${enc(room.roomId)}?ts=1500000&dir=f`)).toEqual({ event_id: ok(b), origin_server_ts: 2_000_000 });
    // Older servers call MSC3030's unstable path.
    expect(await get(remote, `/_matrix/federation/unstable/org.matrix.msc3030/timestamp_to_event/${enc(room.roomId)}?ts=1500000&dir=f`)).toEqual({ event_id: ok(b), origin_server_ts: 2_000_000 });
    expect((await get(remote, `${F}/timestamp_to_event/${enc(room.roomId)}?ts=1&dir=b`, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await get(remote, `${F}/timestamp_to_event/${enc(room.roomId)}?ts=1&dir=x`, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await get(remote, `${F}/timestamp_to_event/${enc(room.roomId)}?dir=f`, 400)).errcode).toBe("M_MISSING_PARAM");
  });
});
