/**
 * The membership handshakes as resident (make_join/send_join v1+v2, make_leave/send_leave, make_knock/send_knock,
 * restricted joins), driven by hand-built remotes; and the joining side's fallback across resident servers.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PDU } from "../../src/protocol/events";
import { computeEventId } from "../../src/protocol/event-id";
import { generateSigningKey } from "../../src/protocol/signing";
import { alice, createRoom } from "../rooms/helpers";
import { FakeServer, installFakeServers, json } from "./fake-server";
import { query, sharedRoom, stateId } from "./helpers";
import { api, e, enc, newUser, V3 } from "./servers";

let remote: FakeServer;
let other: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`joiner${++seq}-${Date.now().toString(36)}.test`);
  other = new FakeServer(`other${seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote, other);
});
afterEach(() => restore());

const F = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";

async function call<T = Record<string, any>>(server: FakeServer, method: string, uri: string, body?: unknown, status = 200): Promise<T> {
  const res = await server.request(method, uri, body);
  const text = await res.text();
  expect(res.status, `${method} ${uri}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

/** Signs a template from make_* as the remote (optionally changed first). */
function signTemplate(server: FakeServer, room: { version: Parameters<FakeServer["event"]>[0] }, template: Record<string, any>, change: Record<string, unknown> = {}) {
  const fields = { ...template, origin_server_ts: Date.now(), ...change } as Parameters<FakeServer["event"]>[1];
  return server.event(room.version, fields);
}

async function membershipOf(stub: Awaited<ReturnType<typeof createRoom>>["stub"], userId: string): Promise<string | undefined> {
  return (await query<{ membership: string }>(stub, "SELECT membership FROM members WHERE user_id = ?", userId))[0]?.membership;
}

describe("make_join and send_join", () => {
  it("hands out a checked template and accepts the signed join, answering with the state and auth chain (v2 and v1)", async () => {
    const room = await createRoom({ versionId: "10" });
    const user = `@dana:${remote.name}`;
    const tpl = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user)}?ver=9&ver=10`);
    expect(tpl.room_version).toBe("10");
    expect(tpl.event).toMatchObject({ room_id: room.roomId, type: "m.room.member", sender: user, state_key: user, content: { membership: "join" }, origin: "test.local" });
    expect(tpl.event.prev_events).toHaveLength(1);
    expect(tpl.event.auth_events).toEqual(expect.arrayContaining([await stateId(room.stub, "m.room.create", ""), await stateId(room.stub, "m.room.join_rules", "")]));

    const join = signTemplate(remote, room, tpl.event);
    const res = await call(remote, "PUT", `${F2}/send_join/${enc(room.roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(res.origin).toBe("test.local");
    expect(res.servers_in_room).toEqual(["test.local"]);
    const stateIds = (res.state as PDU[]).map((p) => computeEventId(p, room.version));
    for (const [t, k] of [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""], ["m.room.member", alice]] as const) {
      expect(stateIds).toContain(await stateId(room.stub, t, k));
    }
    expect(stateIds).not.toContain(join.eventId);
    expect((res.auth_chain as PDU[]).length).toBeGreaterThan(0);
    expect(res.event).toBeUndefined(); // not a restricted join: nothing co-signed
    expect(await membershipOf(room.stub, user)).toBe("join");

    // Repeated (a retry): the same answer, nothing new.
    const again = await call(remote, "PUT", `${F2}/send_join/${enc(room.roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(again.state.length).toBe(res.state.length);

    // v1 wraps the answer.
    const user2 = `@erin:${remote.name}`;
    const tpl2 = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user2)}?ver=10`);
    const join2 = signTemplate(remote, room, tpl2.event);
    const v1 = await call<unknown[]>(remote, "PUT", `${F}/send_join/${enc(room.roomId)}/${enc(join2.eventId)}`, join2.pdu);
    expect(v1[0]).toBe(200);
    expect((v1[1] as { state: unknown[] }).state.length).toBeGreaterThan(0);
  });

  it("passes a join it accepted on to the other servers in the room", async () => {
    const room = await sharedRoom(other); // `other` has a user in the room already
    const user = `@fay:${remote.name}`;
    const tpl = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user)}?ver=10`);
    const join = signTemplate(remote, room, tpl.event);
    await call(remote, "PUT", `${F2}/send_join/${enc(room.roomId)}/${enc(join.eventId)}`, join.pdu);
    const deadline = Date.now() + 10_000;
    while (!other.transactions.some((t) => t.body.pdus.some((p) => computeEventId(p, room.version) === join.eventId))) {
      if (Date.now() > deadline) throw new Error("the join was not passed on");
      await new Promise((r) => setTimeout(r, 30));
    }
  });

  it("refuses bad requests: versions, users of other servers, unknown rooms, rooms one may not join, malformed joins", async () => {
    const room = await createRoom({ versionId: "10" });
    const user = `@gus:${remote.name}`;
    const noVer = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user)}`, undefined, 400);
    expect(noVer).toMatchObject({ errcode: "M_INCOMPATIBLE_ROOM_VERSION", room_version: "10" });
    expect((await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user)}?ver=11`, undefined, 400)).errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    expect((await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc("@gus:elsewhere.test")}?ver=10`, undefined, 403)).errcode).toBe("M_FORBIDDEN");
    expect((await call(remote, "GET", `${F}/make_join/${enc("!missing:test.local")}/${enc(user)}?ver=10`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    const inviteOnly = await createRoom({ versionId: "10", joinRule: "invite" });
    expect((await call(remote, "GET", `${F}/make_join/${enc(inviteOnly.roomId)}/${enc(user)}?ver=10`, undefined, 403)).errcode).toBe("M_FORBIDDEN");

    const tpl = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(user)}?ver=10`);
    const good = signTemplate(remote, room, tpl.event);
    const bad = async (pdu: unknown, eventId = computeEventId(pdu as object, room.version), status = 400) =>
      (await call(remote, "PUT", `${F2}/send_join/${enc(room.roomId)}/${enc(eventId)}`, pdu, status)).errcode;
    expect(await bad(good.pdu, `$${"B".repeat(43)}`)).toBe("M_INVALID_PARAM"); // ID is not the event's
    expect(await bad(signTemplate(remote, room, tpl.event, { content: { membership: "leave" } }).pdu)).toBe("M_INVALID_PARAM");
    expect(await bad(signTemplate(remote, room, tpl.event, { state_key: `@other:${remote.name}` }).pdu)).toBe("M_INVALID_PARAM");
    expect(await bad(signTemplate(remote, room, tpl.event, { sender: "@gus:elsewhere.test", state_key: "@gus:elsewhere.test" }).pdu)).toBe("M_INVALID_PARAM");
    expect(await bad(remote.event(room.version, { ...tpl.event, origin_server_ts: 5 } as never, generateSigningKey("rogue")).pdu)).toBe("M_INVALID_PARAM"); // unknown key
    const tampered = { ...good.pdu, content: { membership: "join", displayname: "changed after hashing" } };
    expect(await bad(tampered)).toBe("M_INVALID_PARAM");
    expect(await membershipOf(room.stub, user)).toBeUndefined();
    expect((await call(remote, "PUT", `${F2}/send_join/${enc("!missing:test.local")}/${enc(good.eventId)}`, good.pdu, 404)).errcode).toBe("M_NOT_FOUND");
  });

  it("restricted rooms: joins through an allowed room are co-signed by a local authoriser; others are refused", async () => {
    const allowed = await sharedRoom(remote); // the remote's user is in `allowed`
    const room = await createRoom({ versionId: "10", joinRule: "invite" });
    await room.stub.send({
      type: "m.room.join_rules", state_key: "", sender: alice,
      content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowed.roomId }] },
    });
    const tpl = await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(allowed.user)}?ver=10`);
    expect(tpl.event.content).toEqual({ membership: "join", join_authorised_via_users_server: alice });
    const join = signTemplate(remote, room, tpl.event);
    const res = await call(remote, "PUT", `${F2}/send_join/${enc(room.roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(computeEventId(res.event as PDU, room.version)).toBe(join.eventId);
    expect(Object.keys((res.event as PDU).signatures).sort()).toEqual([remote.name, "test.local"].sort());
    expect(await membershipOf(room.stub, allowed.user)).toBe("join");

    // A user who is in none of the allowed rooms.
    expect((await call(remote, "GET", `${F}/make_join/${enc(room.roomId)}/${enc(`@nobody:${remote.name}`)}?ver=10`, undefined, 403)).errcode).toBe("M_FORBIDDEN");
    // A room whose allowed rooms this server does not know.
    const unknownAllow = await createRoom({ versionId: "10", joinRule: "invite" });
    await unknownAllow.stub.send({
      type: "m.room.join_rules", state_key: "", sender: alice,
      content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!elsewhere:other.example" }] },
    });
    expect((await call(remote, "GET", `${F}/make_join/${enc(unknownAllow.roomId)}/${enc(allowed.user)}?ver=10`, undefined, 400)).errcode).toBe("M_UNABLE_TO_AUTHORISE_JOIN");
  });
});

describe("make_leave/send_leave and make_knock/send_knock", () => {
  it("a remote user leaves through the handshake (v2 and v1)", async () => {
    const room = await sharedRoom(remote);
    const tpl = await call(remote, "GET", `${F}/make_leave/${enc(room.roomId)}/${enc(room.user)}`);
    expect(tpl.event.content).toEqual({ membership: "leave" });
    const leave = signTemplate(remote, room, tpl.event);
    expect(await call(remote, "PUT", `${F2}/send_leave/${enc(room.roomId)}/${enc(leave.eventId)}`, leave.pdu)).toEqual({});
    expect(await membershipOf(room.stub, room.user)).toBe("leave");
    expect((await call(remote, "GET", `${F}/make_leave/${enc(room.roomId)}/${enc("@x:elsewhere.test")}`, undefined, 403)).errcode).toBe("M_FORBIDDEN");

    const room2 = await sharedRoom(remote);
    const tpl2 = await call(remote, "GET", `${F}/make_leave/${enc(room2.roomId)}/${enc(room2.user)}`);
    const leave2 = signTemplate(remote, room2, tpl2.event);
    expect(await call(remote, "PUT", `${F}/send_leave/${enc(room2.roomId)}/${enc(leave2.eventId)}`, leave2.pdu)).toEqual([200, {}]);
    // A join sent to send_leave is refused.
    const tpl3 = await call(remote, "GET", `${F}/make_join/${enc(room2.roomId)}/${enc(room2.user)}?ver=10`);
    const join = signTemplate(remote, room2, tpl3.event);
    expect((await call(remote, "PUT", `${F2}/send_leave/${enc(room2.roomId)}/${enc(join.eventId)}`, join.pdu, 400)).errcode).toBe("M_INVALID_PARAM");
  });

  it("knocks: make_knock needs ver and a knock room; send_knock answers with the stripped state", async () => {
    const room = await createRoom({ versionId: "10", joinRule: "knock" });
    await room.stub.send({ type: "m.room.name", state_key: "", sender: alice, content: { name: "Door" } });
    const user = `@kim:${remote.name}`;
    expect((await call(remote, "GET", `${F}/make_knock/${enc(room.roomId)}/${enc(user)}`, undefined, 400)).errcode).toBe("M_MISSING_PARAM");
    expect((await call(remote, "GET", `${F}/make_knock/${enc(room.roomId)}/${enc(user)}?ver=11`, undefined, 400)).errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    const tpl = await call(remote, "GET", `${F}/make_knock/${enc(room.roomId)}/${enc(user)}?ver=10`);
    expect(tpl).toMatchObject({ room_version: "10", event: { content: { membership: "knock" } } });
    const knock = signTemplate(remote, room, tpl.event, { content: { membership: "knock", reason: "hi" } });
    const res = await call(remote, "PUT", `${F}/send_knock/${enc(room.roomId)}/${enc(knock.eventId)}`, knock.pdu);
    const types = (res.knock_room_state as PDU[]).map((p) => p.type).sort();
    expect(types).toEqual(["m.room.create", "m.room.join_rules", "m.room.name"]);
    expect((res.knock_room_state as PDU[]).every((p) => typeof p.signatures === "object")).toBe(true); // full PDUs (v1.16)
    expect(await membershipOf(room.stub, user)).toBe("knock");

    const publicRoom = await createRoom({ versionId: "10" });
    expect((await call(remote, "GET", `${F}/make_knock/${enc(publicRoom.roomId)}/${enc(user)}?ver=10`, undefined, 403)).errcode).toBe("M_FORBIDDEN");
  });
});

describe("joining through other servers", () => {
  it("tries the next server when one gives a bad template, and reports when none works", async () => {
    if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
    const alice2 = await newUser("hs2.test", "alice");
    const roomId = (await api<{ room_id: string }>(alice2, "POST", `${V3}/createRoom`, { preset: "public_chat" })).room_id;
    // `remote` answers make_join with a template for another room; `other` is down.
    remote.routes.push((req) => (req.path.startsWith(`${F}/make_join/`) ? json({ room_version: "12", event: { room_id: "!other:x", type: "m.room.member", content: { membership: "join" } } }) : undefined));
    other.routes.push(() => json({ errcode: "M_UNKNOWN", error: "down" }, 502));
    const bob = await newUser("test.local", "bob");
    const joined = await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=${remote.name}&server_name=${other.name}&server_name=hs2.test`, {});
    expect(joined.room_id).toBe(roomId);
    expect(remote.requestsTo(`${F}/make_join/`)).toHaveLength(1);
    expect(other.requestsTo(`${F}/make_join/`)).toHaveLength(1);

    // A room this server is not in yet, through servers that cannot help.
    const carol = await newUser("test.local", "carol");
    const elsewhere = (await api<{ room_id: string }>(alice2, "POST", `${V3}/createRoom`, { preset: "public_chat" })).room_id;
    const failed = await api(carol, "POST", `${V3}/join/${enc(elsewhere)}?server_name=${remote.name}&server_name=${other.name}`, {}, 502);
    expect(failed.errcode).toBe("M_UNKNOWN");
    // No server known at all.
    expect((await api(carol, "POST", `${V3}/join/${enc(`!${"C".repeat(43)}`)}`, {}, 404)).errcode).toBe("M_NOT_FOUND");
  });

  it("joins through a resident whose state verifies, and refuses one whose state does not (nothing stored)", async () => {
    const v10 = (await createRoom({ versionId: "10" })).version;
    /** A public v10 room living on `server`, and resident answers for make_join/send_join. */
    function fakeResident(server: FakeServer, forge: boolean) {
      const owner = `@owner:${server.name}`;
      const roomId = `!room${++seq}:${server.name}`;
      const ev = (f: Record<string, unknown>) => server.event(v10, { room_id: roomId, sender: owner, ...f } as never);
      const create = ev({ type: "m.room.create", state_key: "", content: { creator: owner, room_version: "10" }, prev_events: [], auth_events: [], depth: 1 });
      const member = ev({ type: "m.room.member", state_key: owner, content: { membership: "join" }, prev_events: [create.eventId], auth_events: [create.eventId], depth: 2 });
      const pl = ev({ type: "m.room.power_levels", state_key: "", content: { users: { [owner]: 100 } }, prev_events: [member.eventId], auth_events: [create.eventId, member.eventId], depth: 3 });
      let jr = ev({ type: "m.room.join_rules", state_key: "", content: { join_rule: "public" }, prev_events: [pl.eventId], auth_events: [create.eventId, member.eventId, pl.eventId], depth: 4 });
      const state = [create, member, pl, jr];
      if (forge) {
        // Same event, with a signature by the server's key that does not verify.
        const real = jr.pdu.signatures[server.name]![server.key.keyId]!;
        const wrong = (real[0] === "A" ? "B" : "A") + real.slice(1);
        jr = { ...jr, pdu: { ...jr.pdu, signatures: { [server.name]: { [server.key.keyId]: wrong } } } };
        state[3] = jr;
      }
      server.routes.push((req) => {
        if (req.path.startsWith(`${F}/make_join/${enc(roomId)}/`)) {
          const user = decodeURIComponent(req.path.split("/").at(-1)!);
          return json({
            room_version: "10",
            event: {
              room_id: roomId, type: "m.room.member", state_key: user, sender: user, content: { membership: "join" }, origin: server.name,
              origin_server_ts: Date.now(), depth: 5, prev_events: [state[3]!.eventId], auth_events: [create.eventId, pl.eventId, state[3]!.eventId],
            },
          });
        }
        if (req.path.startsWith(`${F2}/send_join/${enc(roomId)}/`)) {
          return json({ origin: server.name, state: state.map((s) => s.pdu), auth_chain: state.map((s) => s.pdu) });
        }
        return undefined;
      });
      return roomId;
    }
    const goodRoom = fakeResident(remote, false);
    const bob = await newUser("test.local", "bob");
    expect((await api(bob, "POST", `${V3}/join/${enc(goodRoom)}`, {})).room_id).toBe(goodRoom);
    const members = await api(bob, "GET", `${V3}/rooms/${enc(goodRoom)}/joined_members`);
    expect(Object.keys(members.joined).sort()).toEqual([`@owner:${remote.name}`, bob.userId].sort());

    const badRoom = fakeResident(other, true);
    const res = await api(bob, "POST", `${V3}/join/${enc(badRoom)}`, {}, 502);
    expect(res.error).toMatch(/could not be placed|does not verify|m\.room\.create/);
    await api(bob, "GET", `${V3}/rooms/${enc(badRoom)}/joined_members`, undefined, 403);
  });
});
