/**
 * Checks on uploaded E2EE keys: device keys and their self-signature, one-time / fallback key maps,
 * cross-signing keys and the signatures that chain them.
 * https://spec.matrix.org/v1.19/client-server-api/#key-distribution and #cross-signing
 */
import { canonicalJson } from "../protocol/canonical-json";
import { verifyJsonSignature } from "../protocol/signing";
import { E2eeError, badJson, invalidParam, invalidSignature } from "./result";

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Canonical JSON of a signed object without `signatures` and `unsigned`: what its signatures cover. */
export function signedPart(obj: JsonObject): string {
  return canonicalJson(obj, { omit: ["signatures", "unsigned"] });
}

/** Whether two signed objects are the same apart from their signatures (and `unsigned`). */
export function sameSignedContent(a: JsonObject, b: JsonObject): boolean {
  return signedPart(a) === signedPart(b);
}

// ---------------------------------------------------------------------------------------------------------
// Device keys

/**
 * Checks the `device_keys` of a `/keys/upload`: well-formed, for this very user and device, carrying the
 * device's Ed25519 key (`ed25519:<device_id>`) and signed by it. Returns the device's Ed25519 public key.
 */
export function checkDeviceKeys(keys: unknown, userId: string, deviceId: string): string {
  if (!isObject(keys)) throw badJson("device_keys must be an object");
  if (keys.user_id !== userId || keys.device_id !== deviceId) {
    throw invalidParam("device_keys must have the user_id and device_id of the uploading device");
  }
  if (!Array.isArray(keys.algorithms) || !keys.algorithms.every((a) => typeof a === "string")) {
    throw badJson("device_keys.algorithms must be an array of strings");
  }
  if (!isObject(keys.keys) || !Object.values(keys.keys).every((k) => typeof k === "string")) {
    throw badJson("device_keys.keys must map key IDs to strings");
  }
  if (!isObject(keys.signatures)) throw badJson("device_keys.signatures must be an object");
  const keyId = `ed25519:${deviceId}`;
  const ed25519 = keys.keys[keyId];
  if (typeof ed25519 !== "string") throw invalidParam(`device_keys.keys must include ${keyId}`);
  try {
    canonicalJson(keys);
  } catch (e) {
    throw badJson(`device_keys are not canonical JSON: ${(e as Error).message}`);
  }
  if (!verifyJsonSignature(keys, userId, keyId, ed25519)) {
    throw invalidSignature(`device_keys are not signed by the device's own key ${keyId}`);
  }
  return ed25519;
}

/** The Ed25519 public key a stored device-keys object names for its device (`keys["ed25519:<device>"]`). */
export function deviceEd25519(keys: JsonObject, deviceId: string): string | undefined {
  const k = isObject(keys.keys) ? keys.keys[`ed25519:${deviceId}`] : undefined;
  return typeof k === "string" ? k : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// One-time and fallback keys

export interface UploadedKey {
  algorithm: string;
  keyId: string;
  /** Canonical JSON of the key (a string for unsigned `curve25519`, an object for `signed_curve25519`). */
  json: string;
}

/**
 * Parses `one_time_keys` / `fallback_keys`: `{"<algorithm>:<key id>": key}` where a key is a string or an object.
 * `field` names the field in error messages.
 */
export function parseKeyMap(map: unknown, field: string): UploadedKey[] {
  if (map === undefined || map === null) return [];
  if (!isObject(map)) throw badJson(`${field} must be an object`);
  const out: UploadedKey[] = [];
  for (const [id, key] of Object.entries(map)) {
    const i = id.indexOf(":");
    if (i <= 0 || i === id.length - 1) throw invalidParam(`${field}: key ID ${JSON.stringify(id)} is not <algorithm>:<key id>`);
    if (typeof key !== "string" && !isObject(key)) throw badJson(`${field}.${id} must be a string or an object`);
    if (isObject(key) && typeof key.key !== "string") throw badJson(`${field}.${id}.key must be a string`);
    let json: string;
    try {
      json = canonicalJson(key);
    } catch (e) {
      throw badJson(`${field}.${id} is not canonical JSON: ${(e as Error).message}`);
    }
    out.push({ algorithm: id.slice(0, i), keyId: id.slice(i + 1), json });
  }
  return out;
}

/** Whether a re-uploaded one-time key is the one already stored (signatures may legitimately differ). */
export function oneTimeKeysMatch(storedJson: string, uploadedJson: string): boolean {
  const a: unknown = JSON.parse(storedJson);
  const b: unknown = JSON.parse(uploadedJson);
  if (!isObject(a) || !isObject(b)) return storedJson === uploadedJson;
  return canonicalJson(a, { omit: ["signatures"] }) === canonicalJson(b, { omit: ["signatures"] });
}

// ---------------------------------------------------------------------------------------------------------
// Cross-signing

export type CrossSigningUsage = "master" | "self_signing" | "user_signing";
export const CROSS_SIGNING_USAGES: readonly CrossSigningUsage[] = ["master", "self_signing", "user_signing"];

/** The request body field of each usage in `/keys/device_signing/upload`. */
export const CROSS_SIGNING_FIELDS: Record<CrossSigningUsage, string> = {
  master: "master_key",
  self_signing: "self_signing_key",
  user_signing: "user_signing_key",
};

export interface CrossSigningKeyInfo {
  /** `ed25519:<public key>`. */
  keyId: string;
  /** The unpadded base64 public key (also the key's "device ID" in signatures uploads). */
  publicKey: string;
}

/**
 * Checks a cross-signing key: for `userId`, with `usage` among its usages, exactly one key, an Ed25519 key whose
 * ID is `ed25519:<its public key>`.
 */
export function checkCrossSigningKey(key: unknown, userId: string, usage: CrossSigningUsage): CrossSigningKeyInfo {
  const what = `${usage} key`;
  if (!isObject(key)) throw badJson(`${what} must be an object`);
  if (key.user_id !== userId) throw invalidParam(`Invalid ${what}: user_id must be ${userId}`);
  if (!Array.isArray(key.usage) || !key.usage.includes(usage) || !key.usage.every((u) => typeof u === "string")) {
    throw invalidParam(`Invalid ${what}: usage must include ${JSON.stringify(usage)}`);
  }
  if (!isObject(key.keys) || Object.keys(key.keys).length !== 1) throw invalidParam(`Invalid ${what}: exactly one key expected`);
  const [keyId, publicKey] = Object.entries(key.keys)[0]!;
  if (typeof publicKey !== "string" || keyId !== `ed25519:${publicKey}`) {
    throw invalidParam(`Invalid ${what}: the key ID must be ed25519:<public key>`);
  }
  if (key.signatures !== undefined && !isObject(key.signatures)) throw badJson(`${what}.signatures must be an object`);
  try {
    canonicalJson(key);
  } catch (e) {
    throw badJson(`${what} is not canonical JSON: ${(e as Error).message}`);
  }
  return { keyId, publicKey };
}

/** Whether `obj` carries a valid signature by `userId`'s key `signer` (a cross-signing or device key). */
export function isSignedBy(obj: JsonObject, userId: string, signer: CrossSigningKeyInfo): boolean {
  return verifyJsonSignature(obj, userId, signer.keyId, signer.publicKey);
}

/** Throws M_INVALID_SIGNATURE unless `obj` is signed by `signer`. */
export function requireSignedBy(obj: JsonObject, userId: string, signer: CrossSigningKeyInfo, what: string): void {
  if (!isSignedBy(obj, userId, signer)) throw invalidSignature(`Invalid signature on ${what}`);
}

/** The signatures `userId` put on `obj`: `{keyId: signature}` (strings only). */
export function signaturesBy(obj: JsonObject, userId: string): Record<string, string> {
  const sigs = isObject(obj.signatures) && isObject(obj.signatures[userId]) ? obj.signatures[userId] : {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(sigs)) if (typeof v === "string") out[k] = v;
  return out;
}

/** A copy of `obj` with extra signatures merged in: `extra[signerUser][keyId] = signature`. */
export function withSignatures(obj: JsonObject, extra: Record<string, Record<string, string>>): JsonObject {
  if (Object.keys(extra).length === 0) return obj;
  const signatures: Record<string, Record<string, unknown>> = {};
  if (isObject(obj.signatures)) {
    for (const [u, s] of Object.entries(obj.signatures)) if (isObject(s)) signatures[u] = { ...s };
  }
  for (const [u, s] of Object.entries(extra)) signatures[u] = { ...signatures[u], ...s };
  return { ...obj, signatures };
}

export { E2eeError };
