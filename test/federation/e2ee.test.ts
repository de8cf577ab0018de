/**
 * End-to-end encryption across servers on the harness: key queries and claims for remote users, the remote
 * device-list cache and its upkeep through m.device_list_update / m.signing_key_update EDUs, and to-device
 * messages both ways.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { api, createRoom, e, enc, fullyStated, newUser, sync, V3, waitFor, type ScenarioUser } from "./servers";
import { crossSigningSet, deviceKeysOf, oneTimeKeys, type Device } from "../client/keys-helpers";

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

async function uploadKeys(user: ScenarioUser, otks = 0): Promise<Device> {
  const d = deviceKeysOf({ userId: user.userId, deviceId: user.deviceId, accessToken: user.accessToken });
  await api(user, "POST", `${V3}/keys/upload`, { device_keys: d.deviceKeys, ...(otks ? { one_time_keys: oneTimeKeys(d, otks) } : {}) });
  return d;
}

/** alice on hs2 and bob here, sharing a room. */
async function pair() {
  const alice = await newUser("hs2.test", "alice");
  const bob = await newUser("test.local", "bob");
  const roomId = await createRoom(alice);
  await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
  await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob joined on hs2");
  await fullyStated(roomId); // faster joins: remote members' device lists are tracked once the resync is done
  return { alice, bob, roomId };
}

describe("keys across servers", () => {
  it("queries and claims keys of a remote user; tracks their device list and follows its changes through EDUs", async () => {
    const { alice, bob } = await pair();
    const device = await uploadKeys(alice, 3);
    const cs = crossSigningSet(alice.userId);
    await api(alice, "POST", `${V3}/keys/device_signing/upload`, cs.body);

    const q = await api(bob, "POST", `${V3}/keys/query`, { device_keys: { [alice.userId]: [] } });
    expect(q.failures).toEqual({});
    expect(q.device_keys[alice.userId][alice.deviceId]).toMatchObject({ user_id: alice.userId, device_id: alice.deviceId, keys: device.deviceKeys.keys });
    expect(q.master_keys[alice.userId]).toMatchObject({ user_id: alice.userId, usage: ["master"] });
    expect(q.self_signing_keys[alice.userId]).toMatchObject({ user_id: alice.userId, usage: ["self_signing"] });
    expect(q.user_signing_keys[alice.userId]).toBeUndefined();

    // alice is now tracked here (bob shares a room with her): her list lives in hs2's DestinationDO.
    const dest = e.DESTINATIONS.get(e.DESTINATIONS.idFromName("hs2.test"));
    expect(Object.keys(JSON.parse(await dest.cachedDeviceLists([alice.userId]))[alice.userId].devices)).toEqual([alice.deviceId]);

    const claimed = await api(bob, "POST", `${V3}/keys/claim`, { one_time_keys: { [alice.userId]: { [alice.deviceId]: "signed_curve25519" } } });
    expect(Object.keys(claimed.one_time_keys[alice.userId][alice.deviceId])[0]).toMatch(/^signed_curve25519:/);

    // A new device of alice's: hs2 sends a device-list update, our cache resyncs, bob's sync says alice changed.
    const since = (await sync(bob)).next_batch;
    const second = await e.HS2_CONTROL.addDevice(alice.userId, "SECOND");
    const alice2: ScenarioUser = { server: "hs2.test", userId: alice.userId, deviceId: second.device_id, accessToken: second.access_token };
    await uploadKeys(alice2);
    await waitFor(async () => (await sync(bob, since)).device_lists?.changed?.includes(alice.userId), "alice in bob's device_lists.changed");
    await waitFor(async () => Object.keys(JSON.parse(await dest.cachedDeviceLists([alice.userId]))[alice.userId].devices).length === 2, "the cache has both devices");
    const again = await api(bob, "POST", `${V3}/keys/query`, { device_keys: { [alice.userId]: [] } });
    expect(Object.keys(again.device_keys[alice.userId]).sort()).toEqual([alice.deviceId, "SECOND"].sort());
  });

  it("answers other servers' key queries for our users, and sends to-device messages both ways", async () => {
    const { alice, bob } = await pair();
    await uploadKeys(bob, 2);
    const q = await api(alice, "POST", `${V3}/keys/query`, { device_keys: { [bob.userId]: [] } });
    expect(Object.keys(q.device_keys[bob.userId])).toEqual([bob.deviceId]);
    const claimed = await api(alice, "POST", `${V3}/keys/claim`, { one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" } } });
    expect(Object.keys(claimed.one_time_keys[bob.userId][bob.deviceId])).toHaveLength(1);

    const aliceSince = (await sync(alice)).next_batch;
    await api(bob, "PUT", `${V3}/sendToDevice/m.test/txn1`, { messages: { [alice.userId]: { [alice.deviceId]: { hello: "alice" } } } });
    const got = await waitFor(async () => {
      const s = await sync(alice, aliceSince);
      return (s.to_device?.events ?? []).find((ev: { type: string }) => ev.type === "m.test");
    }, "bob's to-device message on hs2");
    expect(got).toMatchObject({ sender: bob.userId, content: { hello: "alice" } });

    const bobSince = (await sync(bob)).next_batch;
    await api(alice, "PUT", `${V3}/sendToDevice/m.test/txn2`, { messages: { [bob.userId]: { "*": { hello: "bob" } } } });
    const back = await waitFor(async () => {
      const s = await sync(bob, bobSince);
      return (s.to_device?.events ?? []).find((ev: { type: string }) => ev.type === "m.test");
    }, "alice's to-device message here");
    expect(back).toMatchObject({ sender: alice.userId, content: { hello: "bob" } });
  });
});
