/** Test helpers for E2EE: Ed25519 key pairs, signed device keys, one-time keys and cross-signing keys. */
import { getPublicKey } from "@noble/ed25519";
import { encodeBase64 } from "../../src/protocol/base64";
import { signJson, type SigningKey } from "../../src/protocol/signing";
import { call, createUserDirect, testEnv, type TestUser } from "./helpers";
import { newToken, tokenHash } from "../../src/accounts/tokens";
import "../../src/protocol/signing"; // configures @noble/ed25519's SHA-512

export type Obj = Record<string, unknown>;

/** An Ed25519 key pair whose key ID is `ed25519:<id>` (a device ID, or the public key for cross-signing keys). */
export interface KeyPair extends SigningKey {
  publicKeyB64: string;
}

function keyPair(seed: Uint8Array, id?: string): KeyPair {
  const publicKey = getPublicKey(seed);
  const publicKeyB64 = encodeBase64(publicKey);
  return { keyId: `ed25519:${id ?? publicKeyB64}`, seed, publicKey, publicKeyB64 };
}

export function newKeyPair(id?: string): KeyPair {
  return keyPair(crypto.getRandomValues(new Uint8Array(32)), id);
}

/** Signs `obj` as `userId` with `key` (keeping other signatures). */
export function sign<T extends object>(obj: T, userId: string, key: SigningKey): T & { signatures: Obj } {
  return signJson(obj, userId, key) as T & { signatures: Obj };
}

export interface Device {
  user: TestUser;
  key: KeyPair;
  curve: string;
  deviceKeys: Obj;
}

/** The device's identity keys, signed by its own Ed25519 key. */
export function deviceKeysOf(user: TestUser, key = newKeyPair(user.deviceId)): Device {
  const curve = encodeBase64(crypto.getRandomValues(new Uint8Array(32)));
  const deviceKeys = sign(
    {
      user_id: user.userId,
      device_id: user.deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${user.deviceId}`]: curve, [key.keyId]: key.publicKeyB64 },
    },
    user.userId,
    key,
  );
  return { user, key, curve, deviceKeys };
}

/** Uploads the device's identity keys; returns the device. */
export async function uploadDevice(user: TestUser): Promise<Device> {
  const d = deviceKeysOf(user);
  await call("POST", "/_matrix/client/v3/keys/upload", { user, body: { device_keys: d.deviceKeys } });
  return d;
}

/** `n` signed one-time keys `signed_curve25519:<prefix><i>`. */
export function oneTimeKeys(d: Device, n: number, prefix = "K", extra: Obj = {}): Record<string, Obj> {
  const out: Record<string, Obj> = {};
  for (let i = 0; i < n; i++) {
    const key = encodeBase64(crypto.getRandomValues(new Uint8Array(32)));
    out[`signed_curve25519:${prefix}${i}`] = sign({ key, ...extra }, d.user.userId, d.key);
  }
  return out;
}

/** Another device (and access token) for an existing user. */
export async function addDevice(user: TestUser, deviceId = `DEV${Math.random().toString(36).slice(2, 8).toUpperCase()}`): Promise<TestUser> {
  const accessToken = newToken("syt");
  const now = Date.now();
  await testEnv.DB.batch([
    testEnv.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(user.userId, deviceId, now),
    testEnv.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(
      tokenHash(accessToken), user.userId, deviceId, now,
    ),
  ]);
  return { userId: user.userId, deviceId, accessToken };
}

export type Usage = "master" | "self_signing" | "user_signing";

/** A cross-signing key object for `userId`, optionally signed by `signer` (the master key). */
export function crossSigningKey(userId: string, usage: Usage, key: KeyPair, signer?: KeyPair): Obj {
  const obj = { user_id: userId, usage: [usage], keys: { [key.keyId]: key.publicKeyB64 } };
  return signer ? sign(obj, userId, signer) : obj;
}

export interface CrossSigning {
  master: KeyPair;
  ssk: KeyPair;
  usk: KeyPair;
  body: { master_key: Obj; self_signing_key: Obj; user_signing_key: Obj };
}

export function crossSigningSet(userId: string): CrossSigning {
  const master = newKeyPair();
  const ssk = newKeyPair();
  const usk = newKeyPair();
  return {
    master,
    ssk,
    usk,
    body: {
      master_key: crossSigningKey(userId, "master", master),
      self_signing_key: crossSigningKey(userId, "self_signing", ssk, master),
      user_signing_key: crossSigningKey(userId, "user_signing", usk, master),
    },
  };
}

/** Uploads a fresh set of cross-signing keys (the first upload needs no user-interactive auth). */
export async function uploadCrossSigning(user: TestUser): Promise<CrossSigning> {
  const cs = crossSigningSet(user.userId);
  await call("POST", "/_matrix/client/v3/keys/device_signing/upload", { user, body: cs.body });
  return cs;
}

/** Runs a sync and returns its body. */
export async function sync(user: TestUser, since?: string): Promise<Obj & { next_batch: string }> {
  const q = since ? `?since=${encodeURIComponent(since)}&timeout=0` : "?timeout=0";
  return call("GET", `/_matrix/client/v3/sync${q}`, { user });
}

export { createUserDirect };
