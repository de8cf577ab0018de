/**
 * The `crypto` benchmark group: Ed25519 signing and verification (@noble/ed25519 vs WebCrypto), canonical JSON,
 * content and reference hashes, event IDs, and whole-event signing and verification, on a realistic event.
 *
 * The fixture is an `m.room.message` in a v12 room with about 1 KiB of content, as it arrives over federation
 * (no `event_id`), hashed and signed by a fixed key. Raw Ed25519 cases sign and verify the bytes an event
 * signature actually covers: the canonical JSON of the *redacted* event without `signatures`/`unsigned`.
 */

import { sha256 } from "@noble/hashes/sha2.js";
import { canonicalJsonBytes } from "../../src/protocol/canonical-json";
import { computeEventId } from "../../src/protocol/event-id";
import {
  checkContentHash,
  computeContentHash,
  computeReferenceHash,
  signEvent,
  verifyEventSignature,
  verifyEventSignatureWebCrypto,
} from "../../src/protocol/hashes";
import { redactEvent } from "../../src/protocol/redaction";
import { ROOM_VERSIONS } from "../../src/protocol/room-versions";
import {
  signBytes,
  signedBytes,
  signingKeyFromSeed,
  verifyBytes,
  verifyBytesWebCrypto,
  type SigningKey,
} from "../../src/protocol/signing";
import type { BenchCase } from "./types";

const ROOM_VERSION = ROOM_VERSIONS["12"]!;
const SERVER = "bench.example.org";
const encoder = new TextEncoder();

/** ~1 KiB of deterministic message text: mixed ASCII, a little non-ASCII, quotes and a newline to escape. */
function messageText(bytes: number): string {
  const words = [
    "federation", "room", "state", "résumé", "event", "signature", "\"quoted\"", "Ω", "hash", "DAG",
    "server", "key", "timeline", "sync", "membership", "power", "levels", "🙂", "redaction", "auth\n",
  ];
  let s = "";
  for (let i = 0; utf8Length(s) < bytes; i++) s += (i === 0 ? "" : " ") + words[(i * 7) % words.length];
  return s;
}
function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/** 43 characters of URL-safe base64, like the hash part of a v4+ event ID, derived from `label`. */
function fakeHash(label: string): string {
  const b = sha256(encoder.encode(label));
  let bin = "";
  for (const x of b) bin += String.fromCharCode(x);
  return btoa(bin).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function fixtureEvent(): Record<string, unknown> {
  const body = messageText(480);
  return {
    room_id: "!" + fakeHash("room"),
    sender: `@alice:${SERVER}`,
    type: "m.room.message",
    content: {
      msgtype: "m.text",
      body,
      format: "org.matrix.custom.html",
      formatted_body: `<p>${body.slice(0, 380).replace(/\n/g, "<br>")}</p>`,
      "m.mentions": { user_ids: [`@bob:${SERVER}`] },
    },
    origin_server_ts: 1_767_225_600_000,
    depth: 4711,
    prev_events: ["$" + fakeHash("prev")],
    auth_events: ["$" + fakeHash("create"), "$" + fakeHash("power_levels"), "$" + fakeHash("member")],
    unsigned: { age_ts: 1_767_225_600_000 },
  };
}

interface Fixtures {
  key: SigningKey;
  /** The hashed and signed event, as received over federation. */
  event: Record<string, unknown>;
  /** What its signature covers: canonical JSON of the redacted event without signatures/unsigned. */
  message: Uint8Array;
  signature: Uint8Array;
  webCryptoPrivateKey: CryptoKey;
  webCryptoPublicKey: CryptoKey;
}

let fixtures: Promise<Fixtures> | undefined;

function getFixtures(): Promise<Fixtures> {
  fixtures ??= (async () => {
    // A fixed seed, so every run signs the same bytes.
    const key = signingKeyFromSeed("bench", sha256(encoder.encode("axon benchmark signing key")));
    const event = signEvent(fixtureEvent(), SERVER, key, ROOM_VERSION) as Record<string, unknown>;
    const message = signedBytes(redactEvent(event, ROOM_VERSION));
    const signature = signBytes(message, key);
    // PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): fixed 16-byte prefix + the 32-byte seed.
    const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...key.seed]);
    const webCryptoPrivateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    const webCryptoPublicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    const f: Fixtures = { key, event, message, signature, webCryptoPrivateKey, webCryptoPublicKey };
    selfCheck(f, await crypto.subtle.sign({ name: "Ed25519" }, webCryptoPrivateKey, message));
    return f;
  })();
  fixtures.catch(() => (fixtures = undefined));
  return fixtures;
}

function selfCheck(f: Fixtures, webCryptoSignature: ArrayBuffer): void {
  const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (!same(new Uint8Array(webCryptoSignature), f.signature)) throw new Error("WebCrypto and noble signatures differ");
  if (!verifyEventSignature(f.event, SERVER, f.key.keyId, f.key.publicKey, ROOM_VERSION)) {
    throw new Error("fixture event signature does not verify");
  }
  if (!checkContentHash(f.event)) throw new Error("fixture content hash does not match");
}

function fail(what: string): never {
  throw new Error(`${what} failed: the benchmark would be measuring the wrong path`);
}

/** `batch` query parameter: how many operations one Promise.all covers (0 or absent: all n at once). */
function batchSize(n: number, params: URLSearchParams): number {
  const b = Number(params.get("batch") ?? "0");
  return Number.isSafeInteger(b) && b > 0 ? b : Math.max(n, 1);
}

/** Runs `op` n times, `batch` at a time under Promise.all; returns how many resolved true. */
async function bulk(n: number, batch: number, op: () => Promise<boolean>): Promise<number> {
  let ok = 0;
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    const results = await Promise.all(Array.from({ length: size }, op));
    for (const r of results) if (r) ok++;
  }
  return ok;
}

/** XOR of the first byte of every digest: depends on every result, costs nothing. */
function fold(sink: number, bytes: Uint8Array): number {
  return sink ^ bytes[0]!;
}

export const cases: Record<string, BenchCase> = {
  // ---- raw Ed25519 over the bytes an event signature covers ----
  "crypto/ed25519-verify-noble": async (n) => {
    const f = await getFixtures();
    for (let i = 0; i < n; i++) if (!verifyBytes(f.signature, f.message, f.key.publicKey)) fail("noble verify");
    return n;
  },
  "crypto/ed25519-verify-webcrypto-seq": async (n) => {
    const f = await getFixtures();
    for (let i = 0; i < n; i++) if (!(await verifyBytesWebCrypto(f.signature, f.message, f.key.publicKey))) fail("WebCrypto verify");
    return n;
  },
  "crypto/ed25519-verify-webcrypto-bulk": async (n, params) => {
    const f = await getFixtures();
    const ok = await bulk(n, batchSize(n, params), () => verifyBytesWebCrypto(f.signature, f.message, f.key.publicKey));
    if (ok !== n) fail("WebCrypto bulk verify");
    return ok;
  },
  "crypto/ed25519-verify-subtle-bulk": async (n, params) => {
    // The floor under the WebCrypto path: crypto.subtle.verify on a key imported once, no wrapper.
    const f = await getFixtures();
    const key = f.webCryptoPublicKey;
    const ok = await bulk(n, batchSize(n, params), () => crypto.subtle.verify({ name: "Ed25519" }, key, f.signature, f.message));
    if (ok !== n) fail("crypto.subtle.verify");
    return ok;
  },
  "crypto/ed25519-sign-noble": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) sink = fold(sink, signBytes(f.message, f.key));
    return sink;
  },
  "crypto/ed25519-sign-webcrypto": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) {
      sink = fold(sink, new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, f.webCryptoPrivateKey, f.message)));
    }
    return sink;
  },

  // ---- hashing the ~1 KiB event ----
  "crypto/canonical-json": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) sink += canonicalJsonBytes(f.event, { omit: ["unsigned", "signatures", "hashes"] }).length;
    return sink;
  },
  "crypto/content-hash": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) sink = fold(sink, computeContentHash(f.event));
    return sink;
  },
  "crypto/content-hash-subtle": async (n) => {
    // The same hash with WebCrypto's native SHA-256 instead of @noble/hashes (for comparison only).
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) {
      const bytes = canonicalJsonBytes(f.event, { omit: ["unsigned", "signatures", "hashes"] });
      sink = fold(sink, new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
    }
    return sink;
  },
  "crypto/check-content-hash": async (n) => {
    const f = await getFixtures();
    for (let i = 0; i < n; i++) if (!checkContentHash(f.event)) fail("content hash check");
    return n;
  },
  "crypto/reference-hash": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) sink = fold(sink, computeReferenceHash(f.event, ROOM_VERSION));
    return sink;
  },
  "crypto/event-id": async (n) => {
    const f = await getFixtures();
    let sink = 0;
    for (let i = 0; i < n; i++) sink += computeEventId(f.event, ROOM_VERSION).charCodeAt(1);
    return sink;
  },

  // ---- whole events ----
  "crypto/event-sign-noble": async (n) => {
    const f = await getFixtures();
    const unsigned = { ...f.event };
    delete unsigned.hashes;
    delete unsigned.signatures;
    let sink = 0;
    for (let i = 0; i < n; i++) sink += (signEvent(unsigned, SERVER, f.key, ROOM_VERSION).hashes.sha256 as string).length;
    return sink;
  },
  "crypto/event-verify-noble": async (n) => {
    const f = await getFixtures();
    for (let i = 0; i < n; i++) {
      if (!verifyEventSignature(f.event, SERVER, f.key.keyId, f.key.publicKey, ROOM_VERSION)) fail("noble event verify");
    }
    return n;
  },
  "crypto/event-verify-webcrypto-seq": async (n) => {
    const f = await getFixtures();
    for (let i = 0; i < n; i++) {
      if (!(await verifyEventSignatureWebCrypto(f.event, SERVER, f.key.keyId, f.key.publicKey, ROOM_VERSION))) {
        fail("WebCrypto event verify");
      }
    }
    return n;
  },
  "crypto/event-verify-webcrypto-bulk": async (n, params) => {
    const f = await getFixtures();
    const ok = await bulk(n, batchSize(n, params), () =>
      verifyEventSignatureWebCrypto(f.event, SERVER, f.key.keyId, f.key.publicKey, ROOM_VERSION),
    );
    if (ok !== n) fail("WebCrypto bulk event verify");
    return ok;
  },
};

/** Sizes of the fixtures, reported next to the results. */
export async function info(): Promise<unknown> {
  const f = await getFixtures();
  return {
    room_version: ROOM_VERSION.id,
    event_type: f.event.type,
    event_canonical_json_bytes: canonicalJsonBytes(f.event).length,
    content_canonical_json_bytes: canonicalJsonBytes(f.event.content).length,
    content_hash_input_bytes: canonicalJsonBytes(f.event, { omit: ["unsigned", "signatures", "hashes"] }).length,
    signed_bytes: f.message.length,
    event_id: computeEventId(f.event, ROOM_VERSION),
  };
}
