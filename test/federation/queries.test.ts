/**
 * Queries other servers make of ours: profiles, aliases, our users' devices and keys, the published room
 * directory and space hierarchies — answers and refusals.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { call as clientCall, createUserDirect } from "../client/helpers";
import { deviceKeysOf, oneTimeKeys, uploadCrossSigning } from "../client/keys-helpers";
import { FakeServer, installFakeServers } from "./fake-server";
import { sharedRoom } from "./helpers";

let remote: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`asker${++seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote);
});
afterEach(() => restore());

const F = "/_matrix/federation/v1";
const V3 = "/_matrix/client/v3";
const enc = encodeURIComponent;

async function req<T = Record<string, any>>(method: string, uri: string, body?: unknown, status = 200): Promise<T> {
  const res = await remote.request(method, uri, body);
  const text = await res.text();
  expect(res.status, `${method} ${uri}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

describe("profile and directory queries", () => {
  it("answers our users' profiles, whole or one field", async () => {
    const bob = await createUserDirect();
    await clientCall("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Bob" } });
    expect(await req("GET", `${F}/query/profile?user_id=${enc(bob.userId)}`)).toMatchObject({ displayname: "Bob" });
    expect(await req("GET", `${F}/query/profile?user_id=${enc(bob.userId)}&field=displayname`)).toEqual({ displayname: "Bob" });
    expect((await req("GET", `${F}/query/profile?user_id=${enc(bob.userId)}&field=avatar_url`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/query/profile?user_id=${enc("@ghost:test.local")}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/query/profile?user_id=${enc("@x:elsewhere.test")}`, undefined, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await req("GET", `${F}/query/profile`, undefined, 400)).errcode).toBe("M_MISSING_PARAM");
    expect((await req("GET", `${F}/query/unknown_kind`, undefined, 404)).errcode).toBe("M_UNRECOGNIZED");
  });

  it("resolves our aliases with the servers in the room", async () => {
    const room = await sharedRoom(remote);
    const bob = await createUserDirect();
    await clientCall("POST", `${V3}/join/${enc(room.roomId)}`, { user: bob, body: {} });
    const alias = `#q${seq}:test.local`;
    await clientCall("PUT", `${V3}/directory/room/${enc(alias)}`, { user: bob, body: { room_id: room.roomId } });
    const res = await req("GET", `${F}/query/directory?room_alias=${enc(alias)}`);
    expect(res.room_id).toBe(room.roomId);
    expect(res.servers[0]).toBe("test.local");
    expect(res.servers).toContain(remote.name);
    expect((await req("GET", `${F}/query/directory?room_alias=${enc(`#none:test.local`)}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/query/directory?room_alias=${enc(`#a:elsewhere.test`)}`, undefined, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await req("GET", `${F}/query/directory`, undefined, 400)).errcode).toBe("M_MISSING_PARAM");
  });
});

describe("devices and keys", () => {
  it("lists a user's devices with their keys and cross-signing keys; answers key queries and claims", async () => {
    const bob = await createUserDirect();
    const d = deviceKeysOf(bob);
    await clientCall("POST", `${V3}/keys/upload`, { user: bob, body: { device_keys: d.deviceKeys, one_time_keys: oneTimeKeys(d, 2) } });
    await uploadCrossSigning(bob);
    await clientCall("PUT", `${V3}/devices/${enc(bob.deviceId)}`, { user: bob, body: { display_name: "Bob's phone" } });

    const devices = await req("GET", `${F}/user/devices/${enc(bob.userId)}`);
    expect(devices.user_id).toBe(bob.userId);
    expect(typeof devices.stream_id).toBe("number");
    expect(devices.devices).toEqual([{ device_id: bob.deviceId, keys: expect.objectContaining({ device_id: bob.deviceId, user_id: bob.userId }), device_display_name: "Bob's phone" }]);
    expect(devices.master_key).toMatchObject({ user_id: bob.userId, usage: ["master"] });
    expect(devices.self_signing_key).toMatchObject({ user_id: bob.userId, usage: ["self_signing"] });
    expect(devices.user_signing_key).toBeUndefined();

    const q = await req("POST", `${F}/user/keys/query`, { device_keys: { [bob.userId]: [], "@x:elsewhere.test": [] } });
    expect(Object.keys(q.device_keys)).toEqual([bob.userId]);
    expect(q.device_keys[bob.userId][bob.deviceId].unsigned).toEqual({ device_display_name: "Bob's phone" });
    expect(q.master_keys[bob.userId]).toBeDefined();
    expect(q.user_signing_keys).toBeUndefined();

    const claim = await req("POST", `${F}/user/keys/claim`, { one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519", NODEVICE: "signed_curve25519" } } });
    expect(Object.keys(claim.one_time_keys[bob.userId][bob.deviceId])).toHaveLength(1);
    expect(claim.one_time_keys[bob.userId].NODEVICE).toBeUndefined();

    expect((await req("GET", `${F}/user/devices/${enc("@ghost:test.local")}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/user/devices/${enc("@x:elsewhere.test")}`, undefined, 400)).errcode).toBe("M_INVALID_PARAM");
    expect((await req("POST", `${F}/user/keys/query`, { device_keys: [] }, 400)).errcode).toBe("M_BAD_JSON");
    expect((await req("POST", `${F}/user/keys/claim`, {}, 400)).errcode).toBe("M_BAD_JSON");
  });
});

describe("room directory and spaces", () => {
  it("lists published rooms (GET and POST with a search)", async () => {
    const bob = await createUserDirect();
    const name = `Published ${seq} ${Date.now()}`;
    const { room_id } = await clientCall<{ room_id: string }>("POST", `${V3}/createRoom`, { user: bob, body: { preset: "public_chat", visibility: "public", name } });
    await clientCall("POST", `${V3}/createRoom`, { user: bob, body: { preset: "public_chat", name: `Unlisted ${seq}` } });
    const all = await req("GET", `${F}/publicRooms?limit=500`);
    expect(all.chunk.map((r: { room_id: string }) => r.room_id)).toContain(room_id);
    const found = await req("POST", `${F}/publicRooms`, { filter: { generic_search_term: name } });
    expect(found.chunk).toEqual([expect.objectContaining({ room_id, name, num_joined_members: 1, world_readable: false, join_rule: "public" })]);
    expect((await req("POST", `${F}/publicRooms`, { filter: { generic_search_term: 5 } }, 400)).errcode).toBe("M_BAD_JSON");
    expect((await req("GET", `${F}/publicRooms?since=garbage`, undefined, 400)).errcode).toBe("M_INVALID_PARAM");
  });

  it("answers a space's hierarchy: the space, its children's summaries, the ones the asking server may not see", async () => {
    const bob = await createUserDirect();
    const make = async (body: Record<string, unknown>) => (await clientCall<{ room_id: string }>("POST", `${V3}/createRoom`, { user: bob, body })).room_id;
    const space = await make({ preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    const open = await make({ preset: "public_chat", name: "Open child" });
    const closed = await make({ preset: "private_chat", name: "Closed child" });
    for (const [child, suggested] of [[open, true], [closed, false]] as const) {
      await clientCall("PUT", `${V3}/rooms/${enc(space)}/state/m.space.child/${enc(child)}`, { user: bob, body: { via: ["test.local"], suggested } });
    }
    const h = await req("GET", `${F}/hierarchy/${enc(space)}`);
    expect(h.room).toMatchObject({ room_id: space, name: "Space", room_type: "m.space", join_rule: "public", num_joined_members: 1 });
    expect(h.room.children_state.map((c: { state_key: string }) => c.state_key).sort()).toEqual([open, closed].sort());
    expect(h.room.children_state[0]).toEqual(expect.objectContaining({ type: "m.space.child", sender: bob.userId, origin_server_ts: expect.any(Number) }));
    expect(h.children).toEqual([expect.objectContaining({ room_id: open, name: "Open child" })]);
    expect(h.inaccessible_children).toEqual([closed]);
    // Older servers call MSC2946's unstable path.
    expect(await req("GET", `/_matrix/federation/unstable/org.matrix.msc2946/hierarchy/${enc(space)}`)).toEqual(h);
    const suggested = await req("GET", `${F}/hierarchy/${enc(space)}?suggested_only=true`);
    expect(suggested.room.children_state.map((c: { state_key: string }) => c.state_key)).toEqual([open]);
    expect((await req("GET", `${F}/hierarchy/${enc(closed)}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/hierarchy/${enc("!missing:test.local")}`, undefined, 404)).errcode).toBe("M_NOT_FOUND");
    expect((await req("GET", `${F}/hierarchy/${enc(space)}?suggested_only=maybe`, undefined, 400)).errcode).toBe("M_INVALID_PARAM");
  });
});
