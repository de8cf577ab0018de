/**
 * Ed25519 signing keys and JSON signatures (https://spec.matrix.org/v1.19/appendices/#signing-json).
 *
 * Signing uses @noble/ed25519 made synchronous with @noble/hashes' SHA-512. Verification uses the library's
 * strict RFC 8032 branch (`zip215: false`), which is closer to what libsodium (Synapse) and WebCrypto accept
 * than ZIP-215. `verifyJsonSignatureWebCrypto` does the same check through `crypto.subtle` (Ed25519), so the
 * two can be compared and benchmarked.
 */

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { decodeBase64, encodeBase64 } from "./base64";
import { canonicalJsonBytes } from "./canonical-json";
import type { Signatures } from "./events";

ed.hashes.sha512 = sha512;

/** Keys that are never covered by a JSON signature. */
const UNSIGNED_KEYS = ["signatures", "unsigned"] as const;

/** A server's Ed25519 signing key. */
export interface SigningKey {
  /** `ed25519:<version>`, e.g. `ed25519:a_AbCd`. */
  readonly keyId: string;
  /** The 32-byte private seed. */
  readonly seed: Uint8Array;
  /** The 32-byte public key derived from the seed. */
  readonly publicKey: Uint8Array;
}

/** Thrown for malformed signing keys or key IDs. */
export class SigningKeyError extends Error {
  override readonly name = "SigningKeyError";
}

/** Key versions: the spec only says "a key identifier"; Synapse and others use `[a-zA-Z0-9_]`. */
const KEY_VERSION = /^[A-Za-z0-9_]+$/;

/** Builds a key from its version (the part after `ed25519:`) and 32-byte seed. */
export function signingKeyFromSeed(version: string, seed: Uint8Array): SigningKey {
  if (!KEY_VERSION.test(version)) {
    throw new SigningKeyError(`invalid key version ${JSON.stringify(version)}: expected [A-Za-z0-9_]+`);
  }
  if (seed.length !== 32) throw new SigningKeyError(`an ed25519 seed is 32 bytes, got ${seed.length}`);
  const copy = seed.slice();
  return { keyId: `ed25519:${version}`, seed: copy, publicKey: ed.getPublicKey(copy) };
}

/** Generates a fresh key with the given version (e.g. `a_` + random, or `auto`). */
export function generateSigningKey(version: string): SigningKey {
  return signingKeyFromSeed(version, crypto.getRandomValues(new Uint8Array(32)));
}

/** The version part of a key ID (`ed25519:abc` → `abc`). */
export function keyVersion(keyId: string): string {
  const i = keyId.indexOf(":");
  return i < 0 ? keyId : keyId.slice(i + 1);
}

/**
 * Parses a key in Synapse's signing key file format: `ed25519 <version> <unpadded base64 seed>` (whitespace
 * separated; the seed is decoded leniently). Throws {@link SigningKeyError}.
 */
export function parseSigningKey(line: string): SigningKey {
  const parts = line.trim().split(/\s+/);
  if (parts.length !== 3) {
    throw new SigningKeyError("expected a signing key of the form 'ed25519 <version> <base64 seed>'");
  }
  const [alg, version, seedB64] = parts as [string, string, string];
  if (alg !== "ed25519") throw new SigningKeyError(`unsupported signing algorithm ${JSON.stringify(alg)}`);
  let seed: Uint8Array;
  try {
    seed = decodeBase64(seedB64);
  } catch (e) {
    throw new SigningKeyError(`invalid signing key seed: ${(e as Error).message}`);
  }
  return signingKeyFromSeed(version, seed);
}

/** Parses a Synapse signing key file: one key per non-empty line (lines starting with `#` are ignored). */
export function parseSigningKeys(text: string): SigningKey[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map(parseSigningKey);
}

/** Formats a key as Synapse's signing key file line: `ed25519 <version> <unpadded base64 seed>`. */
export function formatSigningKey(key: SigningKey): string {
  return `ed25519 ${keyVersion(key.keyId)} ${encodeBase64(key.seed)}`;
}

/** The public key as unpadded base64, as published in `/_matrix/key/v2/server`. */
export function publicKeyBase64(key: SigningKey): string {
  return encodeBase64(key.publicKey);
}

/** Raw Ed25519 signature of `message`. */
export function signBytes(message: Uint8Array, key: SigningKey): Uint8Array {
  return ed.sign(message, key.seed);
}

/** Raw Ed25519 verification (strict RFC 8032); false on any malformed input rather than throwing. */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** The bytes a JSON signature covers: canonical JSON of the object without `signatures` and `unsigned`. */
export function signedBytes(obj: object): Uint8Array {
  return canonicalJsonBytes(obj, { omit: UNSIGNED_KEYS });
}

/**
 * Signs `obj` as `serverName` and returns a new object with the signature merged into any existing
 * `signatures` (other servers' and other keys' signatures are kept; `unsigned` is kept untouched).
 */
export function signJson<T extends object>(obj: T, serverName: string, key: SigningKey): T & { signatures: Signatures } {
  const signature = encodeBase64(signBytes(signedBytes(obj), key));
  const existing = (obj as { signatures?: Signatures }).signatures;
  const signatures: Signatures = { ...existing };
  signatures[serverName] = { ...existing?.[serverName], [key.keyId]: signature };
  return { ...obj, signatures };
}

function decodePublicKey(publicKey: string | Uint8Array): Uint8Array | undefined {
  if (typeof publicKey !== "string") return publicKey;
  try {
    return decodeBase64(publicKey);
  } catch {
    return undefined;
  }
}

/** The signature `serverName` made with `keyId`, decoded; `undefined` if absent or not valid base64. */
function findSignature(obj: object, serverName: string, keyId: string): Uint8Array | undefined {
  const sigs = (obj as { signatures?: unknown }).signatures;
  if (typeof sigs !== "object" || sigs === null) return undefined;
  const byServer = Object.hasOwn(sigs, serverName) ? (sigs as Record<string, unknown>)[serverName] : undefined;
  if (typeof byServer !== "object" || byServer === null) return undefined;
  const sig = Object.hasOwn(byServer, keyId) ? (byServer as Record<string, unknown>)[keyId] : undefined;
  if (typeof sig !== "string") return undefined;
  try {
    return decodeBase64(sig);
  } catch {
    return undefined;
  }
}

/**
 * Checks `obj.signatures[serverName][keyId]` against the public key (unpadded base64 or raw bytes). Returns
 * false when the signature is missing, malformed or wrong, or when the object cannot be canonicalised.
 */
export function verifyJsonSignature(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: string | Uint8Array,
): boolean {
  const sig = findSignature(obj, serverName, keyId);
  const pub = decodePublicKey(publicKey);
  if (!sig || !pub) return false;
  let message: Uint8Array;
  try {
    message = signedBytes(obj);
  } catch {
    return false;
  }
  return verifyBytes(sig, message, pub);
}

/** Cache of imported WebCrypto keys by base64 public key (importKey is a noticeable part of a verify). */
const webCryptoKeys = new Map<string, Promise<CryptoKey>>();
const WEBCRYPTO_CACHE_MAX = 1024;

async function importEd25519(pub: Uint8Array): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  } catch {
    // Older workerd only knows the pre-standard name.
    return await crypto.subtle.importKey("raw", pub, { name: "NODE-ED25519", namedCurve: "NODE-ED25519" }, false, [
      "verify",
    ]);
  }
}

function webCryptoKey(pub: Uint8Array): Promise<CryptoKey> {
  const cacheKey = encodeBase64(pub);
  let key = webCryptoKeys.get(cacheKey);
  if (!key) {
    if (webCryptoKeys.size >= WEBCRYPTO_CACHE_MAX) webCryptoKeys.clear();
    key = importEd25519(pub);
    webCryptoKeys.set(cacheKey, key);
    key.catch(() => webCryptoKeys.delete(cacheKey));
  }
  return key;
}

/** Raw Ed25519 verification through WebCrypto; false on malformed input. */
export async function verifyBytesWebCrypto(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    const key = await webCryptoKey(publicKey);
    const algorithm = key.algorithm.name === "Ed25519" ? { name: "Ed25519" } : key.algorithm;
    return await crypto.subtle.verify(algorithm, key, signature, message);
  } catch {
    return false;
  }
}

/** {@link verifyJsonSignature} using WebCrypto's Ed25519 instead of @noble/ed25519. */
export async function verifyJsonSignatureWebCrypto(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: string | Uint8Array,
): Promise<boolean> {
  const sig = findSignature(obj, serverName, keyId);
  const pub = decodePublicKey(publicKey);
  if (!sig || !pub) return false;
  let message: Uint8Array;
  try {
    message = signedBytes(obj);
  } catch {
    return false;
  }
  return verifyBytesWebCrypto(sig, message, pub);
}
