/**
 * MSC2409 (to-device messages for appservice users) and MSC3202 (device-list changes, one-time-key counts and
 * unused fallback keys of appservice users) in transactions: the UserDO of an appservice user announces news,
 * the AppServiceDO pulls it (src/appservices/user-updates.ts).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { call, createUserDirect, type TestUser } from "../client/helpers";
import { V3, enc, newRoom } from "../client/rooms-helpers";
import { oneTimeKeys, uploadDevice } from "../client/keys-helpers";
import { as, asSender, eventually, installFakeAppservices, type FakeAppservices } from "./helpers";

let fake: FakeAppservices;
let n = 0;
const unique = (prefix: string) => `${prefix}${++n}_${Date.now().toString(36)}`;

beforeEach(() => {
  fake = installFakeAppservices();
});

/** A bridge puppet with a device and its own access token. */
async function puppetWithDevice(): Promise<TestUser> {
  const reg = await call<{ user_id: string; device_id: string; access_token: string }>("POST", `${V3}/register`, {
    user: asSender("bridge"),
    body: { type: "m.login.application_service", username: unique("_asb_e2ee") },
  });
  return { userId: reg.user_id, deviceId: reg.device_id, accessToken: reg.access_token };
}

function bodies(): Record<string, unknown>[] {
  return fake.accepted("bridge").map((t) => t.body as Record<string, unknown>);
}

describe("MSC2409 to-device", () => {
  it("sends to-device messages for the appservice's users, with recipient user and device", async () => {
    const puppet = await puppetWithDevice();
    const alice = await createUserDirect();
    await call("PUT", `${V3}/sendToDevice/m.test.secret/${unique("t")}`, {
      user: alice,
      body: { messages: { [puppet.userId]: { [puppet.deviceId]: { hello: "puppet" } } } },
    });
    const msgs = await eventually(() => {
      const all = bodies().flatMap((b) => (b["de.sorunome.msc2409.to_device"] as Record<string, unknown>[] | undefined) ?? []);
      const mine = all.filter((m) => m.to_user_id === puppet.userId);
      expect(mine).toHaveLength(1);
      return mine;
    });
    expect(msgs[0]).toEqual({ type: "m.test.secret", sender: alice.userId, content: { hello: "puppet" }, to_user_id: puppet.userId, to_device_id: puppet.deviceId });
  });

  it("sends nothing for users outside its namespaces", async () => {
    const bob = await createUserDirect();
    const alice = await createUserDirect();
    await call("PUT", `${V3}/sendToDevice/m.test/${unique("t")}`, { user: alice, body: { messages: { [bob.userId]: { [bob.deviceId]: { x: 1 } } } } });
    await new Promise((r) => setTimeout(r, 300));
    const all = bodies().flatMap((b) => (b["de.sorunome.msc2409.to_device"] as Record<string, unknown>[] | undefined) ?? []);
    expect(all.filter((m) => m.to_user_id === bob.userId)).toEqual([]);
  });
});

describe("MSC3202", () => {
  it("sends one-time-key counts and unused fallback key types of the appservice's users", async () => {
    const puppet = await puppetWithDevice();
    const device = await uploadDevice(puppet);
    // The appservice uploads the puppet's keys by masquerading as the user and its device.
    await call("POST", as(`${V3}/keys/upload`, puppet.userId, { device_id: puppet.deviceId }), {
      user: asSender("bridge"),
      body: { one_time_keys: oneTimeKeys(device, 3), fallback_keys: oneTimeKeys(device, 1, "F", { fallback: true }) },
    });
    const counts = await eventually(() => {
      const found = bodies()
        .map((b) => b["org.matrix.msc3202.device_one_time_keys_count"] as Record<string, Record<string, Record<string, number>>> | undefined)
        .filter((c) => c?.[puppet.userId]?.[puppet.deviceId]?.signed_curve25519 === 3);
      expect(found.length).toBeGreaterThan(0);
      return found.at(-1)!;
    });
    expect(counts[puppet.userId]![puppet.deviceId]).toMatchObject({ signed_curve25519: 3 });
    const withCounts = bodies().find((b) => b["org.matrix.msc3202.device_one_time_keys_count"] === counts)!;
    expect(withCounts["org.matrix.msc3202.device_one_time_key_counts"]).toEqual(counts);
    expect((withCounts["org.matrix.msc3202.device_unused_fallback_key_types"] as Record<string, Record<string, string[]>>)[puppet.userId]).toEqual({
      [puppet.deviceId]: ["signed_curve25519"],
    });
    // A claim lowers the count; the next transaction says so.
    const alice = await createUserDirect();
    await call("POST", `${V3}/keys/claim`, { user: alice, body: { one_time_keys: { [puppet.userId]: { [puppet.deviceId]: "signed_curve25519" } } } });
    await eventually(() => {
      const last = bodies()
        .map((b) => b["org.matrix.msc3202.device_one_time_keys_count"] as Record<string, Record<string, Record<string, number>>> | undefined)
        .filter((c) => c?.[puppet.userId])
        .at(-1)!;
      expect(last[puppet.userId]![puppet.deviceId]!.signed_curve25519).toBe(2);
    });
  });

  it("sends device-list changes of users who share a room with the appservice's users", async () => {
    const puppet = await puppetWithDevice();
    const alice = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await call("POST", as(`${V3}/join/${enc(roomId)}`, puppet.userId), { user: asSender("bridge"), body: {} });
    // Alice's keys change: the puppet, in a room with her, must hear of it.
    await eventually(async () => {
      await uploadDevice(alice);
      const changed = bodies().flatMap((b) => ((b["org.matrix.msc3202.device_lists"] as { changed: string[] } | undefined)?.changed ?? []));
      expect(changed).toContain(alice.userId);
    }, 15_000);
  });
});
