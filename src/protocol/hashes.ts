/**
 * Event hashes and event signatures (https://spec.matrix.org/v1.19/server-server-api/#signing-events).
 *
 * - Content hash: SHA-256 of the canonical JSON of the full event without `unsigned`, `signatures`, `hashes`;
 *   stored as `hashes.sha256` (unpadded base64). It covers the unredacted content.
 * - Reference hash: SHA-256 of the canonical JSON of the *redacted* event without `signatures` and `unsigned`
 *   (redaction already drops `unsigned` and any legacy top-level `age_ts`). Event IDs derive from it in v3+.
 * - Event signature: the redacted event (with `hashes`) is signed as JSON, so it stays checkable after
 *   redaction.
 *
 * All functions take the event as it is (or will be) sent over federation. For v3+ room versions that means
 * without an `event_id` property, and for v12 create events without `room_id`; see `toFederationPdu` in
 * `event-id.ts` for stripping locally added fields first.
 */

import { sha256 } from "@noble/hashes/sha2.js";
import { decodeBase64, encodeBase64 } from "./base64";
import { canonicalJsonBytes } from "./canonical-json";
import type { EventHashes, Signatures } from "./events";
import { redactEvent } from "./redaction";
import type { RoomVersion } from "./room-versions";
import { signJson, verifyJsonSignature, verifyJsonSignatureWebCrypto, type SigningKey } from "./signing";

const CONTENT_HASH_OMIT = ["unsigned", "signatures", "hashes"] as const;
const REFERENCE_HASH_OMIT = ["signatures", "unsigned", "age_ts"] as const;

/** SHA-256 of the event's canonical JSON without `unsigned`, `signatures` and `hashes`. */
export function computeContentHash(event: object): Uint8Array {
  return sha256(canonicalJsonBytes(event, { omit: CONTENT_HASH_OMIT }));
}

/** Returns a copy of `event` whose `hashes` is `{sha256: <content hash>}` (any other algorithms are dropped). */
export function addContentHash<T extends object>(event: T): T & { hashes: EventHashes } {
  return { ...event, hashes: { sha256: encodeBase64(computeContentHash(event)) } };
}

/**
 * Whether `hashes.sha256` matches the event's content hash. False when it is missing or not base64 (or the
 * event cannot be canonicalised): callers then treat the event as redacted, per the spec.
 */
export function checkContentHash(event: object): boolean {
  const hashes = (event as { hashes?: unknown }).hashes;
  if (typeof hashes !== "object" || hashes === null) return false;
  const claimed = (hashes as Record<string, unknown>).sha256;
  if (typeof claimed !== "string") return false;
  let expected: Uint8Array;
  let actual: Uint8Array;
  try {
    expected = decodeBase64(claimed);
    actual = computeContentHash(event);
  } catch {
    return false;
  }
  if (expected.length !== actual.length) return false;
  let diff = 0;
  for (let i = 0; i < actual.length; i++) diff |= actual[i]! ^ expected[i]!;
  return diff === 0;
}

/** SHA-256 of the canonical JSON of the redacted event without `signatures`, `unsigned` (and `age_ts`). */
export function computeReferenceHash(event: object, roomVersion: RoomVersion): Uint8Array {
  return sha256(canonicalJsonBytes(redactEvent(event, roomVersion), { omit: REFERENCE_HASH_OMIT }));
}

/**
 * Hashes and signs an event as `serverName`: sets the content hash, signs the redacted form, and returns a
 * copy of the full event with the signature merged into its existing `signatures` (`unsigned` is kept).
 */
export function signEvent<T extends object>(
  event: T,
  serverName: string,
  key: SigningKey,
  roomVersion: RoomVersion,
): T & { hashes: EventHashes; signatures: Signatures } {
  const hashed = addContentHash(event);
  const signedRedacted = signJson(redactEvent(hashed, roomVersion), serverName, key);
  return { ...hashed, signatures: signedRedacted.signatures };
}

/**
 * Checks the signature `serverName` made with `keyId` on the event: the event is redacted under
 * `roomVersion`'s rules first, so this works on full and redacted copies alike. The content hash is not
 * checked here (see {@link checkContentHash}).
 */
export function verifyEventSignature(
  event: object,
  serverName: string,
  keyId: string,
  publicKey: string | Uint8Array,
  roomVersion: RoomVersion,
): boolean {
  let redacted: object;
  try {
    redacted = redactEvent(event, roomVersion);
  } catch {
    return false;
  }
  return verifyJsonSignature(redacted, serverName, keyId, publicKey);
}

/** {@link verifyEventSignature} through WebCrypto's Ed25519. */
export async function verifyEventSignatureWebCrypto(
  event: object,
  serverName: string,
  keyId: string,
  publicKey: string | Uint8Array,
  roomVersion: RoomVersion,
): Promise<boolean> {
  return verifyJsonSignatureWebCrypto(redactEvent(event, roomVersion), serverName, keyId, publicKey);
}
