/** POST /keys/upload, /keys/query, /keys/claim, GET /keys/changes. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv } from "./helpers";
import { addDevice, deviceKeysOf, newKeyPair, oneTimeKeys, sign, uploadDevice, type Obj } from "./keys-helpers";

const UPLOAD = "/_matrix/client/v3/keys/upload";
const QUERY = "/_matrix/client/v3/keys/query";
const CLAIM = "/_matrix/client/v3/keys/claim";

type Counts = { one_time_key_counts: Record<string, number> };
type QueryResult = {
  device_keys: Record<string, Record<string, Obj>>;
  master_keys: Record<string, Obj>;
  self_signing_keys: Record<string, Obj>;
  user_signing_keys: Record<string, Obj>;
  failures: Record<string, Obj>;
};
type ClaimResult = { one_time_keys: Record<string, Record<string, Record<string, Obj>>>; failures: Record<string, Obj> };

describe("POST /keys/upload", () => {
  it("stores device keys and one-time keys, and counts them", async () => {
    const alice = await createUserDirect();
    const d = deviceKeysOf(alice);
    const res = await call<Counts>("POST", UPLOAD, {
      user: alice,
      body: { device_keys: d.deviceKeys, one_time_keys: oneTimeKeys(d, 5) },
    });
    expect(res.one_time_key_counts).toEqual({ signed_curve25519: 5 });
    const more = await call<Counts>("POST", UPLOAD, { user: alice, body: { one_time_keys: oneTimeKeys(d, 3, "L") } });
    expect(more.one_time_key_counts.signed_curve25519).toBe(8);
    // An empty upload just reports the counts.
    expect((await call<Counts>("POST", UPLOAD, { user: alice, body: {} })).one_time_key_counts).toEqual({ signed_curve25519: 8 });
  });

  it("reports zero for signed_curve25519 and counts other algorithms", async () => {
    const alice = await createUserDirect();
    const res = await call<Counts>("POST", UPLOAD, { user: alice, body: { one_time_keys: { "curve25519:A": "abc", "curve25519:B": "def" } } });
    expect(res.one_time_key_counts).toEqual({ signed_curve25519: 0, curve25519: 2 });
  });

  it("rejects device keys for another device or user", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const otherDevice = deviceKeysOf({ ...alice, deviceId: "NOTMINE" });
    let res = await request("POST", UPLOAD, { user: alice, body: { device_keys: otherDevice.deviceKeys } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Obj).errcode).toBe("M_INVALID_PARAM");
    const bobs = deviceKeysOf({ ...bob, deviceId: alice.deviceId });
    res = await request("POST", UPLOAD, { user: alice, body: { device_keys: bobs.deviceKeys } });
    expect(res.status).toBe(400);
    // Nothing was stored.
    const q = await call<QueryResult>("POST", QUERY, { user: alice, body: { device_keys: { [alice.userId]: [] } } });
    expect(q.device_keys[alice.userId]).toEqual({});
  });

  it("rejects device keys not signed by the device's own key, and nothing of the request is kept", async () => {
    const alice = await createUserDirect();
    const d = deviceKeysOf(alice);
    const forged = sign({ ...d.deviceKeys, signatures: {} }, alice.userId, { ...newKeyPair(), keyId: d.key.keyId });
    const res = await request("POST", UPLOAD, { user: alice, body: { device_keys: forged, one_time_keys: oneTimeKeys(d, 2) } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Obj).errcode).toBe("M_INVALID_SIGNATURE");
    const tampered = { ...d.deviceKeys, algorithms: ["m.olm.v1.curve25519-aes-sha2"] };
    expect((await request("POST", UPLOAD, { user: alice, body: { device_keys: tampered } })).status).toBe(400);
    const unsigned = { ...d.deviceKeys, signatures: {} };
    expect((await request("POST", UPLOAD, { user: alice, body: { device_keys: unsigned } })).status).toBe(400);
    expect((await call<Counts>("POST", UPLOAD, { user: alice, body: {} })).one_time_key_counts.signed_curve25519).toBe(0);
  });

  it("rejects malformed bodies", async () => {
    const alice = await createUserDirect();
    const d = deviceKeysOf(alice);
    for (const body of [
      { device_keys: "nope" },
      { device_keys: { ...d.deviceKeys, algorithms: "x" } },
      { device_keys: { ...d.deviceKeys, keys: { [`ed25519:${alice.deviceId}`]: 5 } } },
      { one_time_keys: { nocolon: "k" } },
      { one_time_keys: { "signed_curve25519:A": 5 } },
      { one_time_keys: { "signed_curve25519:A": { signatures: {} } } },
      { one_time_keys: [] },
    ]) {
      const res = await request("POST", UPLOAD, { user: alice, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await request("POST", UPLOAD, { body: {} })).status).toBe(401);
  });

  it("accepts a re-upload of the same one-time key but not a different key under the same ID", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const keys = oneTimeKeys(d, 1);
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: keys } });
    // Same key, re-signed: fine, still one key.
    const again = { "signed_curve25519:K0": sign({ key: keys["signed_curve25519:K0"]!.key }, alice.userId, d.key) };
    expect((await call<Counts>("POST", UPLOAD, { user: alice, body: { one_time_keys: again } })).one_time_key_counts.signed_curve25519).toBe(1);
    const res = await request("POST", UPLOAD, { user: alice, body: { one_time_keys: oneTimeKeys(d, 1) } });
    expect(res.status).toBe(400);
  });

  it("rejects two fallback keys of one algorithm", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const res = await request("POST", UPLOAD, {
      user: alice,
      body: { fallback_keys: { ...oneTimeKeys(d, 1, "F", { fallback: true }), ...oneTimeKeys(d, 1, "G", { fallback: true }) } },
    });
    expect(res.status).toBe(400);
  });
});

describe("POST /keys/query", () => {
  it("returns device keys with display names, all devices or the listed ones", async () => {
    const alice = await createUserDirect();
    const alice2 = await addDevice(alice, "SECOND");
    await testEnv.DB.prepare("UPDATE devices SET display_name = 'Phone' WHERE user_id = ? AND device_id = ?").bind(alice.userId, alice.deviceId).run();
    const d1 = await uploadDevice(alice);
    const d2 = await uploadDevice(alice2);
    const bob = await createUserDirect();

    const all = await call<QueryResult>("POST", QUERY, { user: bob, body: { device_keys: { [alice.userId]: [] } } });
    expect(Object.keys(all.device_keys[alice.userId]!).sort()).toEqual([alice.deviceId, "SECOND"].sort());
    expect(all.device_keys[alice.userId]![alice.deviceId]).toEqual({ ...d1.deviceKeys, unsigned: { device_display_name: "Phone" } });
    expect(all.device_keys[alice.userId]!.SECOND).toEqual({ ...d2.deviceKeys, unsigned: {} });
    expect(all.failures).toEqual({});

    const one = await call<QueryResult>("POST", QUERY, { user: bob, body: { device_keys: { [alice.userId]: ["SECOND", "NOPE"] } } });
    expect(Object.keys(one.device_keys[alice.userId]!)).toEqual(["SECOND"]);
  });

  it("shows unknown local users as empty and remote servers as failures (federation not wired yet)", async () => {
    const bob = await createUserDirect();
    const res = await call<QueryResult>("POST", QUERY, {
      user: bob,
      body: { device_keys: { "@nobody:test.local": [], "@carol:elsewhere.example": [] } },
    });
    expect(res.device_keys["@nobody:test.local"]).toEqual({});
    expect(res.failures["elsewhere.example"]).toMatchObject({ status: 503 });
  });

  it("drops the keys of a deleted device", async () => {
    const alice = await createUserDirect();
    const second = await addDevice(alice, "GOING");
    await uploadDevice(alice);
    const d = await uploadDevice(second);
    await call("POST", UPLOAD, { user: second, body: { one_time_keys: oneTimeKeys(d, 2) } });
    await call("POST", "/_matrix/client/v3/logout", { user: second, body: {} });
    const res = await call<QueryResult>("POST", QUERY, { user: alice, body: { device_keys: { [alice.userId]: [] } } });
    expect(Object.keys(res.device_keys[alice.userId]!)).toEqual([alice.deviceId]);
    const claim = await call<ClaimResult>("POST", CLAIM, { user: alice, body: { one_time_keys: { [alice.userId]: { GOING: "signed_curve25519" } } } });
    expect(claim.one_time_keys).toEqual({});
  });

  it("rejects bad queries", async () => {
    const bob = await createUserDirect();
    for (const body of [{}, { device_keys: [] }, { device_keys: { "not-a-user": [] } }, { device_keys: { "@a:test.local": "x" } }, { device_keys: {}, timeout: "x" }]) {
      expect((await request("POST", QUERY, { user: bob, body })).status, JSON.stringify(body)).toBe(400);
    }
  });
});

describe("POST /keys/claim", () => {
  it("hands out one-time keys oldest first, then the fallback key, which stays (marked used)", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const first = oneTimeKeys(d, 1, "A");
    const second = oneTimeKeys(d, 1, "B");
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: first } });
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: second, fallback_keys: oneTimeKeys(d, 1, "F", { fallback: true }) } });
    const bob = await createUserDirect();
    const claim = async () =>
      (await call<ClaimResult>("POST", CLAIM, { user: bob, body: { one_time_keys: { [alice.userId]: { [alice.deviceId]: "signed_curve25519" } } } }))
        .one_time_keys[alice.userId]?.[alice.deviceId];
    expect(await claim()).toEqual(first);
    expect(await claim()).toEqual(second);
    const fb1 = await claim();
    expect(Object.keys(fb1!)).toEqual(["signed_curve25519:F0"]);
    expect(fb1!["signed_curve25519:F0"]).toMatchObject({ fallback: true });
    expect(await claim()).toEqual(fb1);
  });

  it("reports fallback key use through /sync and resets it when a new fallback key is uploaded", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const fb = oneTimeKeys(d, 1, "F", { fallback: true });
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: oneTimeKeys(d, 2), fallback_keys: fb } });
    const sync = async () => call<Obj>("GET", "/_matrix/client/v3/sync?timeout=0", { user: alice });
    let s = await sync();
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 2 });
    expect(s.device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
    const bob = await createUserDirect();
    for (let i = 0; i < 3; i++) {
      await call("POST", CLAIM, { user: bob, body: { one_time_keys: { [alice.userId]: { [alice.deviceId]: "signed_curve25519" } } } });
    }
    s = await sync();
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(s.device_unused_fallback_key_types).toEqual([]);
    // Re-uploading the same fallback key does not reset it; a new one does.
    await call("POST", UPLOAD, { user: alice, body: { fallback_keys: fb } });
    expect((await sync()).device_unused_fallback_key_types).toEqual([]);
    await call("POST", UPLOAD, { user: alice, body: { fallback_keys: oneTimeKeys(d, 1, "G", { fallback: true }) } });
    expect((await sync()).device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
  });

  it("hands out each one-time key exactly once under many concurrent claims", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const N = 25;
    const uploaded = oneTimeKeys(d, N);
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: uploaded, fallback_keys: oneTimeKeys(d, 1, "F", { fallback: true }) } });
    const claimers = await Promise.all(Array.from({ length: 4 }, () => createUserDirect()));
    const CLAIMS = 40;
    const results = await Promise.all(
      Array.from({ length: CLAIMS }, (_, i) =>
        call<ClaimResult>("POST", CLAIM, {
          user: claimers[i % claimers.length]!,
          body: { one_time_keys: { [alice.userId]: { [alice.deviceId]: "signed_curve25519" } } },
        }),
      ),
    );
    const ids = results.map((r) => Object.keys(r.one_time_keys[alice.userId]![alice.deviceId]!)[0]!);
    const oneTime = ids.filter((id) => id !== "signed_curve25519:F0");
    expect(oneTime.length).toBe(N);
    expect(new Set(oneTime).size).toBe(N);
    expect(new Set(oneTime)).toEqual(new Set(Object.keys(uploaded)));
    expect(ids.filter((id) => id === "signed_curve25519:F0").length).toBe(CLAIMS - N);
    expect((await call<Counts>("POST", UPLOAD, { user: alice, body: {} })).one_time_key_counts.signed_curve25519).toBe(0);
  });

  it("claims for several users and devices at once; unknown ones are left out", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const da = await uploadDevice(alice);
    const db = await uploadDevice(bob);
    await call("POST", UPLOAD, { user: alice, body: { one_time_keys: oneTimeKeys(da, 1) } });
    await call("POST", UPLOAD, { user: bob, body: { one_time_keys: oneTimeKeys(db, 1) } });
    const carol = await createUserDirect();
    const res = await call<ClaimResult>("POST", CLAIM, {
      user: carol,
      body: {
        one_time_keys: {
          [alice.userId]: { [alice.deviceId]: "signed_curve25519", NODEVICE: "signed_curve25519" },
          [bob.userId]: { [bob.deviceId]: "signed_curve25519" },
          "@ghost:test.local": { X: "signed_curve25519" },
          "@remote:far.example": { X: "signed_curve25519" },
        },
      },
    });
    expect(Object.keys(res.one_time_keys).sort()).toEqual([alice.userId, bob.userId].sort());
    expect(Object.keys(res.one_time_keys[alice.userId]!)).toEqual([alice.deviceId]);
    expect(res.failures["far.example"]).toMatchObject({ status: 503 });
  });

  it("rejects bad claims", async () => {
    const bob = await createUserDirect();
    for (const body of [{}, { one_time_keys: [] }, { one_time_keys: { "@a:test.local": { D: 5 } } }, { one_time_keys: { nope: {} } }]) {
      expect((await request("POST", CLAIM, { user: bob, body })).status, JSON.stringify(body)).toBe(400);
    }
  });
});
