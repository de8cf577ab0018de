/**
 * Password hashing: PBKDF2-HMAC-SHA-256 through WebCrypto, a random 16-byte salt per hash, and the iteration
 * count stored with the hash so it can be raised later without invalidating old hashes:
 *
 *     pbkdf2-sha256$<iterations>$<salt, unpadded base64>$<32-byte derived key, unpadded base64>
 *
 * Why PBKDF2 and why 100 000 iterations: see docs/accounts.md ("Passwords"). In short, it is the strongest KDF
 * WebCrypto offers natively in Workers (scrypt/argon2 would run in JavaScript at a fraction of the speed, which
 * only helps attackers with native code), and workerd refuses more than 100 000 PBKDF2 iterations.
 */
import { decodeBase64, encodeBase64 } from "../protocol/base64";

export const PASSWORD_SCHEME = "pbkdf2-sha256";
/** The count used for new hashes: workerd's maximum for PBKDF2 (it rejects larger counts). */
export const PBKDF2_ITERATIONS = 100_000;
/** Stored hashes claiming more work than this are refused rather than computed (they would fail anyway). */
const MAX_ITERATIONS = 100_000;
const MIN_ITERATIONS = 1_000;
const SALT_BYTES = 16;
const KEY_BITS = 256;
/** Longest accepted password, in characters (as Synapse). */
export const MAX_PASSWORD_LENGTH = 512;

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, KEY_BITS);
  return new Uint8Array(bits);
}

/** Hashes `password` with a fresh salt. */
export async function hashPassword(password: string, iterations = PBKDF2_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const dk = await derive(password, salt, iterations);
  return `${PASSWORD_SCHEME}$${iterations}$${encodeBase64(salt)}$${encodeBase64(dk)}`;
}

interface ParsedHash {
  iterations: number;
  salt: Uint8Array;
  key: Uint8Array;
}

function parseHash(stored: string): ParsedHash | undefined {
  const parts = stored.split("$");
  if (parts.length !== 4 || parts[0] !== PASSWORD_SCHEME || !/^\d{1,7}$/.test(parts[1]!)) return undefined;
  const iterations = Number(parts[1]);
  if (iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) return undefined;
  try {
    const salt = decodeBase64(parts[2]!);
    const key = decodeBase64(parts[3]!);
    if (salt.length < 8 || key.length !== KEY_BITS / 8) return undefined;
    return { iterations, salt, key };
  } catch {
    return undefined;
  }
}

/** Compares two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** A fixed hash to verify against when the account does not exist, so that timing does not reveal that. */
let decoy: Promise<string> | undefined;

/**
 * Whether `password` matches `stored`. A missing or unparseable hash never matches, but still costs one full
 * derivation so that unknown accounts and accounts without a password answer as slowly as wrong passwords.
 */
export async function verifyPassword(password: string, stored: string | null | undefined): Promise<boolean> {
  const parsed = stored ? parseHash(stored) : undefined;
  if (!parsed) {
    decoy ??= hashPassword("decoy password");
    const d = parseHash(await decoy)!;
    await derive(password, d.salt, d.iterations);
    return false;
  }
  const dk = await derive(password, parsed.salt, parsed.iterations);
  return constantTimeEqual(dk, parsed.key);
}

/** Whether a stored hash uses fewer iterations than new hashes do (rehash it after the next successful login). */
export function needsRehash(stored: string): boolean {
  const parsed = parseHash(stored);
  return !parsed || parsed.iterations < PBKDF2_ITERATIONS;
}
