// Benchmark group `crypto`: the Matrix primitives of src/protocol (signing.ts, hashes.ts, canonical-json.ts),
// run inside workerd by bench/worker.ts (cases in bench/cases/crypto.ts). `npm run bench -- crypto`.
import { getJson } from "./lib.mjs";

export const group = "crypto";
export const description = "Ed25519 (noble vs WebCrypto), canonical JSON, content/reference hashes, event signing and verification";
export const worker = { config: "bench/wrangler.toml" };

/** Federation transactions carry at most 50 PDUs: the natural batch for one Promise.all. */
const TRANSACTION = 50;

export const cases = [
  {
    name: "ed25519-verify-noble",
    path: "crypto/ed25519-verify-noble",
    description: "verifyBytes: @noble/ed25519 (synchronous, strict RFC 8032) over the bytes an event signature covers",
  },
  {
    name: "ed25519-verify-webcrypto-seq",
    path: "crypto/ed25519-verify-webcrypto-seq",
    description: "verifyBytesWebCrypto (crypto.subtle Ed25519, imported key cached), one `await` after another",
  },
  {
    name: "ed25519-verify-webcrypto-bulk",
    path: "crypto/ed25519-verify-webcrypto-bulk",
    query: { batch: String(TRANSACTION) },
    description: `verifyBytesWebCrypto under Promise.all, ${TRANSACTION} at a time (one federation transaction)`,
  },
  {
    name: "ed25519-verify-webcrypto-bulk-all",
    path: "crypto/ed25519-verify-webcrypto-bulk",
    description: "verifyBytesWebCrypto under one Promise.all over all n (e.g. a send_join response's auth chain)",
  },
  {
    name: "ed25519-verify-subtle-bulk",
    path: "crypto/ed25519-verify-subtle-bulk",
    query: { batch: String(TRANSACTION) },
    description: `crypto.subtle.verify directly (key imported once, no wrapper), Promise.all ${TRANSACTION} at a time: the floor under the WebCrypto path`,
  },
  {
    name: "ed25519-sign-noble",
    path: "crypto/ed25519-sign-noble",
    description: "signBytes: @noble/ed25519 sign (SHA-512 from @noble/hashes)",
  },
  {
    name: "ed25519-sign-webcrypto",
    path: "crypto/ed25519-sign-webcrypto",
    description: "crypto.subtle.sign Ed25519 with the same key imported as PKCS#8, sequential awaits",
  },
  {
    name: "canonical-json",
    path: "crypto/canonical-json",
    description: "canonicalJsonBytes of the ~1 KiB event without unsigned/signatures/hashes (the content hash input)",
  },
  {
    name: "content-hash",
    path: "crypto/content-hash",
    description: "computeContentHash: canonical JSON + SHA-256 of the ~1 KiB event",
  },
  {
    name: "content-hash-subtle",
    path: "crypto/content-hash-subtle",
    description: "the same with crypto.subtle.digest SHA-256 instead of @noble/hashes (comparison; not what hashes.ts does)",
  },
  {
    name: "check-content-hash",
    path: "crypto/check-content-hash",
    description: "checkContentHash: recompute and compare hashes.sha256 (done for every received PDU)",
  },
  {
    name: "reference-hash",
    path: "crypto/reference-hash",
    description: "computeReferenceHash: redact (v12 rules) + canonical JSON + SHA-256",
  },
  {
    name: "event-id",
    path: "crypto/event-id",
    description: "computeEventId: reference hash + URL-safe base64 ($… event ID, room v12)",
  },
  {
    name: "event-sign-noble",
    path: "crypto/event-sign-noble",
    description: "signEvent: content hash + redact + canonical JSON + noble sign",
  },
  {
    name: "event-verify-noble",
    path: "crypto/event-verify-noble",
    description: "verifyEventSignature: redact + canonical JSON + noble verify",
  },
  {
    name: "event-verify-webcrypto-seq",
    path: "crypto/event-verify-webcrypto-seq",
    description: "verifyEventSignatureWebCrypto: redact + canonical JSON + WebCrypto verify, one `await` after another",
  },
  {
    name: "event-verify-webcrypto-bulk",
    path: "crypto/event-verify-webcrypto-bulk",
    query: { batch: String(TRANSACTION) },
    description: `verifyEventSignatureWebCrypto under Promise.all, ${TRANSACTION} events at a time`,
  },
];

export const targets = [
  {
    name: "bulk Ed25519 signature verification (WebCrypto, Promise.all per transaction)",
    result: "ed25519-verify-webcrypto-bulk",
    target: 20_000,
  },
];

/** Fixture sizes (the event's canonical JSON, the signed bytes, …) as the Worker reports them. */
export function info(w) {
  return getJson(w, "/crypto/info");
}
