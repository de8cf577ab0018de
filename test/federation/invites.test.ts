/**
 * Invites from other servers (`PUT /v2/invite`, `/v1/invite`): checks, co-signing, the invite in the invitee's
 * /sync with its stripped state; rejecting such an invite through the inviting server, or locally when it is
 * gone. Driven by hand-built remotes that own the rooms.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PDU } from "../../src/protocol/events";
import { computeEventId, roomIdFromCreateEvent } from "../../src/protocol/event-id";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import { generateSigningKey } from "../../src/protocol/signing";
import { verifyEventSignature } from "../../src/protocol/hashes";
import { getServerKeys } from "../../src/server-keys";
import { publicKeyBase64 } from "../../src/protocol/signing";
import { createUserDirect, testEnv } from "../client/helpers";
import { authFor, extremities, query, sharedRoom } from "./helpers";
import { FakeServer, installFakeServers, json } from "./fake-server";
import { api, enc, sync, V3, type ScenarioUser } from "./servers";

let remote: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`inviter${++seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote);
});
afterEach(() => restore());

const F = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";

/** A room living on `server`: create, owner's join, power levels, join rules (invite), a name. */
function remoteRoom(server: FakeServer, version: RoomVersion) {
  const owner = `@owner:${server.name}`;
  const v12 = version.roomIdFromCreateEvent;
  const legacyId = `!room${++seq}:${server.name}`;
  const create = server.event(version, {
    ...(v12 ? {} : { room_id: legacyId }), type: "m.room.create", state_key: "", sender: owner,
    content: version.implicitRoomCreator ? { room_version: version.id } : { creator: owner, room_version: version.id },
    prev_events: [], auth_events: [], depth: 1,
  } as never);
  const roomId = v12 ? roomIdFromCreateEvent(create.pdu, version) : legacyId;
  const auth0 = v12 ? [] : [create.eventId];
  const ev = (f: Record<string, unknown>) => server.event(version, { room_id: roomId, sender: owner, ...f } as never);
  const member = ev({ type: "m.room.member", state_key: owner, content: { membership: "join" }, prev_events: [create.eventId], auth_events: auth0, depth: 2 });
  const pl = ev({ type: "m.room.power_levels", state_key: "", content: { users: { [owner]: 100 } }, prev_events: [member.eventId], auth_events: [...auth0, member.eventId], depth: 3 });
  const jr = ev({ type: "m.room.join_rules", state_key: "", content: { join_rule: "invite" }, prev_events: [pl.eventId], auth_events: [...auth0, member.eventId, pl.eventId], depth: 4 });
  const name = ev({ type: "m.room.name", state_key: "", content: { name: "Far away" }, prev_events: [jr.eventId], auth_events: [...auth0, member.eventId, pl.eventId], depth: 5 });
  const invite = (invitee: string, extra: Record<string, unknown> = {}) =>
    ev({
      type: "m.room.member", state_key: invitee, content: { membership: "invite" }, prev_events: [name.eventId],
      auth_events: [...auth0, member.eventId, pl.eventId, jr.eventId], depth: 6, ...extra,
    });
  return { roomId, owner, create, member, pl, jr, name, invite, version };
}

async function putInvite(room: ReturnType<typeof remoteRoom>, inv: { pdu: PDU; eventId: string }, body: Record<string, unknown> = {}, status = 200) {
  const res = await remote.request("PUT", `${F2}/invite/${encodeURIComponent(room.roomId)}/${encodeURIComponent(inv.eventId)}`, {
    room_version: room.version.id,
    event: inv.pdu,
    invite_room_state: [room.create.pdu, room.jr.pdu, room.name.pdu, room.member.pdu],
    ...body,
  });
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as Record<string, any>;
}

async function localUser(): Promise<ScenarioUser> {
  const u = await createUserDirect();
  return { server: "test.local", ...u };
}

describe("invites from other servers", () => {
  it("co-signs the invite, and the invitee's sync shows it with the room's stripped state", async () => {
    const bob = await localUser();
    const room = remoteRoom(remote, roomVersion("10")!);
    const inv = room.invite(bob.userId);
    const res = await putInvite(room, inv);
    const signed = res.event as PDU;
    expect(computeEventId(signed, room.version)).toBe(inv.eventId);
    const ours = await getServerKeys(testEnv);
    expect(verifyEventSignature(signed, "test.local", ours.current.keyId, publicKeyBase64(ours.current), room.version)).toBe(true);
    expect(signed.signatures[remote.name]).toEqual(inv.pdu.signatures[remote.name]);

    const s = await sync(bob);
    const events = s.rooms.invite[room.roomId].invite_state.events as Record<string, any>[];
    expect(events.map((e) => e.type).sort()).toEqual(["m.room.create", "m.room.join_rules", "m.room.member", "m.room.member", "m.room.name"]);
    // Stripped: no signatures or hashes, just what clients need.
    expect(events.find((e) => e.type === "m.room.name")).toEqual({ type: "m.room.name", state_key: "", sender: room.owner, content: { name: "Far away" } });
    expect(events.find((e) => e.state_key === bob.userId)).toMatchObject({ sender: room.owner, content: { membership: "invite" }, event_id: inv.eventId });
    // The room is not something the invitee can read yet.
    await api(bob, "GET", `${V3}/rooms/${enc(room.roomId)}/messages?dir=b`, undefined, 403);
  });

  it("refuses invites it must not sign", async () => {
    const bob = await localUser();
    const room = remoteRoom(remote, roomVersion("10")!);
    const errcode = async (inv: { pdu: PDU; eventId: string }, body: Record<string, unknown>, status: number) => (await putInvite(room, inv, body, status)).errcode;
    const inv = room.invite(bob.userId);
    expect((await putInvite(room, inv, { room_version: "99" }, 400))).toMatchObject({ errcode: "M_INCOMPATIBLE_ROOM_VERSION", room_version: "99" });
    expect(await errcode(inv, { room_version: undefined }, 400)).toBe("M_MISSING_PARAM");
    expect(await errcode(room.invite("@bob:elsewhere.test"), {}, 400)).toBe("M_INVALID_PARAM");
    expect(await errcode(room.invite("@ghost:test.local"), {}, 404)).toBe("M_NOT_FOUND");
    const gone = await localUser();
    await testEnv.DB.prepare("UPDATE users SET deactivated = 1 WHERE user_id = ?").bind(gone.userId).run();
    expect(await errcode(room.invite(gone.userId), {}, 403)).toBe("M_FORBIDDEN");
    expect(await errcode(room.invite(bob.userId, { sender: "@someone:elsewhere.test" }), {}, 400)).toBe("M_INVALID_PARAM");
    expect(await errcode(room.invite(bob.userId, { content: { membership: "join" } }), {}, 400)).toBe("M_INVALID_PARAM");
    // Signed with a key the server never published, and with a signature by its key that does not verify.
    const rogue = room.invite(bob.userId, { origin_server_ts: 7 });
    const byRogue = remote.event(room.version, { ...(rogue.pdu as unknown as Record<string, unknown>), signatures: {} } as never, generateSigningKey("rogue"));
    expect(await errcode({ pdu: { ...byRogue.pdu, signatures: { [remote.name]: byRogue.pdu.signatures[remote.name]! } }, eventId: byRogue.eventId }, {}, 400)).toBe("M_INVALID_PARAM");
    expect(await errcode({ pdu: { ...rogue.pdu, signatures: { [remote.name]: { [remote.key.keyId]: "AAAA" } } }, eventId: rogue.eventId }, {}, 400)).toBe("M_INVALID_PARAM");
    const other = room.invite(bob.userId, { origin_server_ts: 42 });
    const res = await remote.request("PUT", `${F2}/invite/${encodeURIComponent(room.roomId)}/${encodeURIComponent(inv.eventId)}`, {
      room_version: "10", event: other.pdu, invite_room_state: [],
    });
    expect(res.status).toBe(400); // the event is not the one named in the path
    expect((await sync(bob)).rooms?.invite?.[room.roomId]).toBeUndefined();
  });

  it("room version 12: invite_room_state must hold the room's create event, as events", async () => {
    const bob = await localUser();
    const room = remoteRoom(remote, roomVersion("12")!);
    const inv = room.invite(bob.userId);
    expect((await putInvite(room, inv, { invite_room_state: [room.jr.pdu] }, 400)).errcode).toBe("M_MISSING_PARAM");
    const stripped = [{ type: "m.room.create", state_key: "", sender: room.owner, content: room.create.pdu.content }];
    expect((await putInvite(room, inv, { invite_room_state: stripped }, 400)).errcode).toBe("M_INVALID_PARAM");
    await putInvite(room, inv);
    expect((await sync(bob)).rooms.invite[room.roomId]).toBeDefined();
  });

  it("the v1 API (rooms v1–v2) takes the event as the body and answers [200, {event}]", async () => {
    const bob = await localUser();
    const v1 = roomVersion("1")!;
    const roomId = `!old${++seq}:${remote.name}`;
    const owner = `@owner:${remote.name}`;
    const ref = (id: string) => [id, { sha256: "aGFzaA" }];
    const inv = remote.event(v1, {
      event_id: `$inv${seq}:${remote.name}`, room_id: roomId, type: "m.room.member", state_key: bob.userId, sender: owner,
      content: { membership: "invite" }, prev_events: [ref(`$p:${remote.name}`)], auth_events: [ref(`$a:${remote.name}`)], depth: 3,
      unsigned: { invite_room_state: [{ type: "m.room.name", state_key: "", sender: owner, content: { name: "Ancient" } }] },
    } as never);
    const res = await remote.request("PUT", `${F}/invite/${encodeURIComponent(roomId)}/${encodeURIComponent(inv.eventId)}`, inv.pdu);
    const body = (await res.json()) as [number, { event: PDU }];
    expect(res.status).toBe(200);
    expect(body[0]).toBe(200);
    expect(Object.keys(body[1].event.signatures).sort()).toEqual([remote.name, "test.local"].sort());
    const s = await sync(bob);
    expect((s.rooms.invite[roomId].invite_state.events as { type: string; content: { name?: string } }[]).find((e) => e.type === "m.room.name")!.content.name).toBe("Ancient");
  });
});

describe("rejecting invites from other servers", () => {
  it("through the inviting server (make_leave/send_leave), or locally when it cannot be reached", async () => {
    const bob = await localUser();
    const room = remoteRoom(remote, roomVersion("10")!);
    const inv = room.invite(bob.userId);
    await putInvite(room, inv);
    let sentLeave: PDU | undefined;
    remote.routes.push((req) => {
      if (req.path.startsWith(`${F}/make_leave/`)) {
        return json({
          room_version: "10",
          event: {
            room_id: room.roomId, type: "m.room.member", state_key: bob.userId, sender: bob.userId, content: { membership: "leave" },
            origin: remote.name, origin_server_ts: Date.now(), depth: 7, prev_events: [inv.eventId],
            auth_events: [room.create.eventId, room.pl.eventId, inv.eventId],
          },
        });
      }
      if (req.path.startsWith(`${F2}/send_leave/`)) {
        sentLeave = req.body as PDU;
        return json({});
      }
      return undefined;
    });
    const before = await sync(bob);
    await api(bob, "POST", `${V3}/rooms/${enc(room.roomId)}/leave`, { reason: "not for me" });
    expect(sentLeave).toMatchObject({ sender: bob.userId, state_key: bob.userId, content: { membership: "leave", reason: "not for me" } });
    expect(Object.keys(sentLeave!.signatures)).toEqual(["test.local"]);
    const after = await sync(bob, before.next_batch);
    expect(after.rooms.leave[room.roomId].timeline.events.at(-1)).toMatchObject({ type: "m.room.member", content: { membership: "leave" } });
    expect((await sync(bob)).rooms?.invite?.[room.roomId]).toBeUndefined();

    // A second invite from a server that has gone away: rejected here anyway.
    const carol = await localUser();
    const room2 = remoteRoom(remote, roomVersion("10")!);
    await putInvite(room2, room2.invite(carol.userId));
    remote.routes.unshift(() => json({ errcode: "M_UNKNOWN", error: "gone" }, 503));
    await api(carol, "POST", `${V3}/rooms/${enc(room2.roomId)}/leave`, {});
    expect((await sync(carol)).rooms?.invite?.[room2.roomId]).toBeUndefined();
  });

  it("an invite to a room this server is in is co-signed but not stored out of band: it arrives through /send", async () => {
    const bob = await localUser();
    const room = await sharedRoom(remote); // a room here, with the remote's user joined
    const inv = remote.event(room.version, {
      room_id: room.roomId, type: "m.room.member", state_key: bob.userId, sender: room.user, content: { membership: "invite" },
      prev_events: await extremities(room.stub),
      auth_events: await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", room.user], ["m.room.join_rules", ""]]),
      depth: 50,
    });
    const res = await remote.request("PUT", `${F2}/invite/${encodeURIComponent(room.roomId)}/${encodeURIComponent(inv.eventId)}`, {
      room_version: "10", event: inv.pdu, invite_room_state: [],
    });
    expect(res.status).toBe(200);
    const cosigned = ((await res.json()) as { event: PDU }).event;
    expect(await query(room.stub, "SELECT event_id FROM events WHERE event_id = ?", inv.eventId)).toEqual([]);
    expect((await remote.send(`inv-${inv.eventId}`, [cosigned])).body).toEqual({ pdus: { [inv.eventId]: {} } });
    const s = await sync(bob);
    expect(s.rooms.invite[room.roomId].invite_state.events.find((e: { state_key?: string }) => e.state_key === bob.userId).event_id).toBe(inv.eventId);
  });
});
