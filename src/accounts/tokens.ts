/**
 * Access and refresh tokens. Tokens are random 256-bit values shown to the client once; D1 keeps only their
 * SHA-256, so a leaked database does not leak usable tokens.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64, encodeBase64Url } from "../protocol/base64";

/** A new opaque token with a recognisable prefix (`syt_` access, `syr_` refresh, `syl_` login, as Synapse does; `syo_` OpenID). */
export function newToken(prefix: "syt" | "syr" | "syl" | "syo"): string {
  return `${prefix}_${encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)))}`;
}

export function tokenHash(token: string): string {
  return encodeBase64(sha256(new TextEncoder().encode(token)));
}

/** A device ID as Synapse makes them: ten upper-case letters. */
export function newDeviceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (b) => String.fromCharCode(65 + (b % 26))).join("");
}

/** A random identifier of `bytes` bytes, URL-safe base64 (UIA session IDs and the like). */
export function randomId(bytes = 24): string {
  return encodeBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}
