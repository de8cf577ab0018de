/** POST /keys/device_signing/upload and /keys/signatures/upload, and what /keys/query shows of them. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { hashPassword } from "../../src/accounts/passwords";
import {
  crossSigningKey,
  crossSigningSet,
  newKeyPair,
  sign,
  uploadCrossSigning,
  uploadDevice,
  type Obj,
} from "./keys-helpers";

const DEVICE_SIGNING = "/_matrix/client/v3/keys/device_signing/upload";
const SIGNATURES = "/_matrix/client/v3/keys/signatures/upload";
const QUERY = "/_matrix/client/v3/keys/query";

type QueryResult = {
  device_keys: Record<string, Record<string, Obj>>;
  master_keys: Record<string, Obj>;
  self_signing_keys: Record<string, Obj>;
  user_signing_keys: Record<string, Obj>;
};

async function query(viewer: TestUser, ...users: string[]): Promise<QueryResult> {
  return call<QueryResult>("POST", QUERY, { user: viewer, body: { device_keys: Object.fromEntries(users.map((u) => [u, []])) } });
}

async function withPassword(user: TestUser, password = "correct horse"): Promise<TestUser> {
  await testEnv.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(await hashPassword(password, 1000), user.userId).run();
  return user;
}

const sigsOf = (obj: Obj | undefined, userId: string) => ((obj?.signatures as Record<string, Obj> | undefined)?.[userId] ?? {}) as Record<string, string>;

describe("POST /keys/device_signing/upload", () => {
  it("stores the first set without user-interactive auth; query shows the user-signing key only to its owner", async () => {
    const alice = await createUserDirect();
    const cs = await uploadCrossSigning(alice);
    const own = await query(alice, alice.userId);
    expect(own.master_keys[alice.userId]).toEqual(cs.body.master_key);
    expect(own.self_signing_keys[alice.userId]).toEqual(cs.body.self_signing_key);
    expect(own.user_signing_keys[alice.userId]).toEqual(cs.body.user_signing_key);
    const bob = await createUserDirect();
    const theirs = await query(bob, alice.userId);
    expect(theirs.master_keys[alice.userId]).toEqual(cs.body.master_key);
    expect(theirs.self_signing_keys[alice.userId]).toEqual(cs.body.self_signing_key);
    expect(theirs.user_signing_keys).toEqual({});
  });

  it("is idempotent: repeating the same keys needs no auth; replacing them does", async () => {
    const alice = await withPassword(await createUserDirect());
    const cs = await uploadCrossSigning(alice);
    await call("POST", DEVICE_SIGNING, { user: alice, body: cs.body });
    await call("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: cs.body.self_signing_key } });

    const next = crossSigningSet(alice.userId);
    const res = await request("POST", DEVICE_SIGNING, { user: alice, body: next.body });
    expect(res.status).toBe(401);
    const uia = (await res.json()) as { flows: { stages: string[] }[]; session: string };
    expect(uia.flows).toEqual([{ stages: ["m.login.password"] }]);
    // Nothing changed yet.
    expect((await query(alice, alice.userId)).master_keys[alice.userId]).toEqual(cs.body.master_key);

    const wrong = await request("POST", DEVICE_SIGNING, {
      user: alice,
      body: { ...next.body, auth: { type: "m.login.password", session: uia.session, identifier: { type: "m.id.user", user: alice.userId }, password: "nope" } },
    });
    expect(wrong.status).toBe(401);
    await call("POST", DEVICE_SIGNING, {
      user: alice,
      body: { ...next.body, auth: { type: "m.login.password", session: uia.session, identifier: { type: "m.id.user", user: alice.userId }, password: "correct horse" } },
    });
    expect((await query(alice, alice.userId)).master_keys[alice.userId]).toEqual(next.body.master_key);
  });

  it("needs auth to replace only the self-signing key once a master key exists", async () => {
    const alice = await withPassword(await createUserDirect());
    const cs = await uploadCrossSigning(alice);
    const ssk2 = crossSigningKey(alice.userId, "self_signing", newKeyPair(), cs.master);
    expect((await request("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: ssk2 } })).status).toBe(401);
  });

  it("checks signatures by the master key (in the request or stored)", async () => {
    const alice = await withPassword(await createUserDirect());
    const cs = crossSigningSet(alice.userId);
    const otherMaster = newKeyPair();
    const badSsk = crossSigningKey(alice.userId, "self_signing", cs.ssk, otherMaster);
    let res = await request("POST", DEVICE_SIGNING, { user: alice, body: { ...cs.body, self_signing_key: badSsk } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Obj).errcode).toBe("M_INVALID_SIGNATURE");
    const unsignedUsk = crossSigningKey(alice.userId, "user_signing", cs.usk);
    res = await request("POST", DEVICE_SIGNING, { user: alice, body: { ...cs.body, user_signing_key: unsignedUsk } });
    expect(((await res.json()) as Obj).errcode).toBe("M_INVALID_SIGNATURE");
    // Nothing was stored by the failed requests.
    expect((await query(alice, alice.userId)).master_keys).toEqual({});
    // No master key at all: the others cannot be checked.
    res = await request("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: cs.body.self_signing_key } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Obj).errcode).toBe("M_MISSING_PARAM");
    // Master first, then the self-signing key alone, checked against the stored master. Adding a key next to an
    // existing master key is a change, so it needs user-interactive auth (spec: "the request contains no new keys").
    await call("POST", DEVICE_SIGNING, { user: alice, body: { master_key: cs.body.master_key } });
    res = await request("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: badSsk } });
    expect(((await res.json()) as Obj).errcode).toBe("M_INVALID_SIGNATURE");
    res = await request("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: cs.body.self_signing_key } });
    expect(res.status).toBe(401);
    const { session } = (await res.json()) as { session: string };
    const auth = { type: "m.login.password", session, identifier: { type: "m.id.user", user: alice.userId }, password: "correct horse" };
    await call("POST", DEVICE_SIGNING, { user: alice, body: { self_signing_key: cs.body.self_signing_key, auth } });
    expect((await query(alice, alice.userId)).self_signing_keys[alice.userId]).toEqual(cs.body.self_signing_key);
  });

  it("rejects malformed keys, another user's keys and keys that collide with a device ID", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const cs = crossSigningSet(alice.userId);
    const bad: Obj[] = [
      { master_key: { ...cs.body.master_key, user_id: bob.userId } },
      { master_key: { ...cs.body.master_key, usage: ["self_signing"] } },
      { master_key: { ...cs.body.master_key, keys: {} } },
      { master_key: { ...cs.body.master_key, keys: { "ed25519:abc": "def" } } },
      { master_key: "key" },
    ];
    for (const body of bad) {
      const res = await request("POST", DEVICE_SIGNING, { user: alice, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    // A master key whose public key is one of the user's device IDs.
    const collide = newKeyPair();
    await testEnv.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(alice.userId, collide.publicKeyB64, Date.now()).run();
    const res = await request("POST", DEVICE_SIGNING, { user: alice, body: { master_key: crossSigningKey(alice.userId, "master", collide) } });
    expect(res.status).toBe(403);
  });
});

describe("POST /keys/signatures/upload", () => {
  it("stores the self-signing key's signature of a device, shown to everyone in /keys/query", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const cs = await uploadCrossSigning(alice);
    const signedDevice = sign(d.deviceKeys, alice.userId, cs.ssk);
    const res = await call<{ failures: Obj }>("POST", SIGNATURES, { user: alice, body: { [alice.userId]: { [alice.deviceId]: signedDevice } } });
    expect(res.failures).toEqual({});
    const bob = await createUserDirect();
    const q = await query(bob, alice.userId);
    expect(sigsOf(q.device_keys[alice.userId]![alice.deviceId], alice.userId)).toEqual(sigsOf(signedDevice, alice.userId));
  });

  it("stores a device's signature of the master key", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const cs = await uploadCrossSigning(alice);
    const signedMaster = sign(cs.body.master_key, alice.userId, d.key);
    const res = await call<{ failures: Obj }>("POST", SIGNATURES, { user: alice, body: { [alice.userId]: { [cs.master.publicKeyB64]: signedMaster } } });
    expect(res.failures).toEqual({});
    const bob = await createUserDirect();
    expect(sigsOf((await query(bob, alice.userId)).master_keys[alice.userId], alice.userId)).toEqual({ [d.key.keyId]: sigsOf(signedMaster, alice.userId)[d.key.keyId] });
  });

  it("stores the user-signing key's signature of another user's master key, visible to the signer only", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const aliceCs = await uploadCrossSigning(alice);
    const bobCs = await uploadCrossSigning(bob);
    const signedBobMaster = sign(bobCs.body.master_key, alice.userId, aliceCs.usk);
    const res = await call<{ failures: Obj }>("POST", SIGNATURES, { user: alice, body: { [bob.userId]: { [bobCs.master.publicKeyB64]: signedBobMaster } } });
    expect(res.failures).toEqual({});
    expect(sigsOf((await query(alice, bob.userId)).master_keys[bob.userId], alice.userId)).toEqual({ [aliceCs.usk.keyId]: sigsOf(signedBobMaster, alice.userId)[aliceCs.usk.keyId] });
    expect(sigsOf((await query(carol, bob.userId)).master_keys[bob.userId], alice.userId)).toEqual({});
    expect(sigsOf((await query(bob, bob.userId)).master_keys[bob.userId], alice.userId)).toEqual({});
  });

  it("reports failures per key: bad signatures, wrong signers, unknown devices, mismatched keys", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const d = await uploadDevice(alice);
    const aliceCs = await uploadCrossSigning(alice);
    const bobCs = await uploadCrossSigning(bob);
    const notSsk = newKeyPair();
    const body = {
      [alice.userId]: {
        // Signed by some key that is not the self-signing key.
        [alice.deviceId]: sign(d.deviceKeys, alice.userId, { ...notSsk, keyId: aliceCs.ssk.keyId }),
        // A device that does not exist.
        NODEVICE: sign({ ...d.deviceKeys, device_id: "NODEVICE" }, alice.userId, aliceCs.ssk),
      },
      [bob.userId]: {
        // Bob's master key, but modified before signing.
        [bobCs.master.publicKeyB64]: sign({ ...bobCs.body.master_key, usage: ["master", "extra"] }, alice.userId, aliceCs.usk),
        // Not Bob's master key at all.
        [bobCs.ssk.publicKeyB64]: sign(bobCs.body.self_signing_key, alice.userId, aliceCs.usk),
      },
    };
    const res = await call<{ failures: Record<string, Record<string, Obj>> }>("POST", SIGNATURES, { user: alice, body });
    expect(res.failures[alice.userId]![alice.deviceId]).toMatchObject({ errcode: "M_INVALID_SIGNATURE" });
    expect(res.failures[alice.userId]!.NODEVICE).toMatchObject({ errcode: "M_NOT_FOUND" });
    expect(res.failures[bob.userId]![bobCs.master.publicKeyB64]).toMatchObject({ errcode: "M_INVALID_PARAM" });
    expect(res.failures[bob.userId]![bobCs.ssk.publicKeyB64]).toMatchObject({ errcode: "M_NOT_FOUND" });
    // None of it was stored.
    const q = await query(alice, alice.userId, bob.userId);
    expect(Object.keys(sigsOf(q.device_keys[alice.userId]![alice.deviceId], alice.userId))).toEqual([d.key.keyId]);
    expect(sigsOf(q.master_keys[bob.userId], alice.userId)).toEqual({});
  });

  it("fails signatures of others' keys without a user-signing key, and of users without a master key", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const bobCs = await uploadCrossSigning(bob);
    const signed = sign(bobCs.body.master_key, alice.userId, newKeyPair());
    let res = await call<{ failures: Record<string, Record<string, Obj>> }>("POST", SIGNATURES, { user: alice, body: { [bob.userId]: { [bobCs.master.publicKeyB64]: signed } } });
    expect(res.failures[bob.userId]![bobCs.master.publicKeyB64]).toMatchObject({ errcode: "M_NOT_FOUND" });
    const aliceCs = await uploadCrossSigning(alice);
    const carol = await createUserDirect();
    res = await call("POST", SIGNATURES, { user: alice, body: { [carol.userId]: { SOMEKEY: sign({ a: 1 }, alice.userId, aliceCs.usk) } } });
    expect(res.failures[carol.userId]!.SOMEKEY).toMatchObject({ errcode: "M_NOT_FOUND" });
  });

  it("rejects malformed bodies", async () => {
    const alice = await createUserDirect();
    for (const body of [{ "not-a-user": {} }, { [alice.userId]: "x" }, { [alice.userId]: { D: 5 } }]) {
      expect((await request("POST", SIGNATURES, { user: alice, body })).status, JSON.stringify(body)).toBe(400);
    }
  });

  it("drops the self-signing signature when the device uploads new identity keys", async () => {
    const alice = await createUserDirect();
    const d = await uploadDevice(alice);
    const cs = await uploadCrossSigning(alice);
    await call("POST", SIGNATURES, { user: alice, body: { [alice.userId]: { [alice.deviceId]: sign(d.deviceKeys, alice.userId, cs.ssk) } } });
    const d2 = await uploadDevice(alice);
    const q = await query(alice, alice.userId);
    expect(q.device_keys[alice.userId]![alice.deviceId]).toEqual({ ...d2.deviceKeys, unsigned: {} });
  });
});
