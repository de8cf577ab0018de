import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64 } from "../../src/protocol/base64";
import {
  SigningKeyError,
  formatSigningKey,
  generateSigningKey,
  keyVersion,
  parseSigningKey,
  parseSigningKeys,
  publicKeyBase64,
  signBytes,
  signJson,
  signedBytes,
  signingKeyFromSeed,
  verifyBytes,
  verifyBytesWebCrypto,
  verifyJsonSignature,
  verifyJsonSignatureWebCrypto,
} from "../../src/protocol/signing";
import vectors from "../fixtures/vectors/spec-signing-vectors.json";

const SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
const PUBLIC_KEY = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";
const SERVER = vectors.server_name;
const specKey = () => parseSigningKey(`ed25519 1 ${SEED}`);

interface JsonVector {
  name: string;
  kind: "json";
  seed_base64: string;
  key_id: string;
  input: Record<string, unknown>;
  expected_output: Record<string, unknown>;
}
const jsonVectors = vectors.vectors.filter((v) => v.kind === "json") as unknown as JsonVector[];

describe("signing keys", () => {
  it("derives the spec seed's public key (lenient seed decoding)", () => {
    const key = specKey();
    expect(key.keyId).toBe("ed25519:1");
    expect(publicKeyBase64(key)).toBe(PUBLIC_KEY);
    expect(key.seed.length).toBe(32);
  });

  it("formats and re-parses Synapse's key format", () => {
    const key = specKey();
    // Re-encoding normalises the trailing bits of the spec's seed.
    const line = formatSigningKey(key);
    expect(line).toMatch(/^ed25519 1 [A-Za-z0-9+/]{43}$/);
    const again = parseSigningKey(line);
    expect(again.seed).toEqual(key.seed);
    expect(again.publicKey).toEqual(key.publicKey);
    expect(again.keyId).toBe("ed25519:1");
  });

  it("generates distinct keys that round-trip", () => {
    const a = generateSigningKey("a_AbC1");
    const b = generateSigningKey("a_AbC1");
    expect(a.keyId).toBe("ed25519:a_AbC1");
    expect(keyVersion(a.keyId)).toBe("a_AbC1");
    expect(a.seed).not.toEqual(b.seed);
    expect(parseSigningKey(formatSigningKey(a))).toEqual(a);
  });

  it("parses key files with several keys, blank lines and comments", () => {
    const a = generateSigningKey("one");
    const b = generateSigningKey("two");
    const text = `# keys\n${formatSigningKey(a)}\n\n  ${formatSigningKey(b)}  \r\n`;
    expect(parseSigningKeys(text).map((k) => k.keyId)).toEqual(["ed25519:one", "ed25519:two"]);
  });

  it.each([
    ["", /expected a signing key/],
    ["ed25519 1", /expected a signing key/],
    [`ed25519 1 ${SEED} extra`, /expected a signing key/],
    [`curve25519 1 ${SEED}`, /unsupported signing algorithm/],
    [`ed25519 a:b ${SEED}`, /invalid key version/],
    [`ed25519 a-b ${SEED}`, /invalid key version/],
    ["ed25519 1 Zm9v", /32 bytes, got 3/],
    ["ed25519 1 !!!!", /invalid signing key seed/],
  ])("rejects %j", (line, message) => {
    expect(() => parseSigningKey(line)).toThrow(SigningKeyError);
    expect(() => parseSigningKey(line)).toThrow(message);
  });

  it("rejects seeds of the wrong length", () => {
    expect(() => signingKeyFromSeed("x", new Uint8Array(31))).toThrow(SigningKeyError);
  });
});

describe("spec JSON signing vectors", () => {
  it("has the two JSON vectors", () => {
    expect(jsonVectors.length).toBe(2);
  });

  it.each(jsonVectors.map((v) => [v.name, v] as const))("%s", (_name, v) => {
    const key = parseSigningKey(`ed25519 ${keyVersion(v.key_id)} ${v.seed_base64}`);
    const signed = signJson(v.input, SERVER, key);
    expect(signed).toEqual(v.expected_output);
    expect(verifyJsonSignature(v.expected_output, SERVER, v.key_id, PUBLIC_KEY)).toBe(true);
    // The input is not modified.
    expect(v.input).not.toHaveProperty("signatures");
  });
});

describe("signJson / verifyJsonSignature", () => {
  const key = specKey();

  it("ignores signatures and unsigned when signing and verifying", () => {
    const obj = { a: 1, unsigned: { age: 5 } };
    const signed = signJson(obj, SERVER, key);
    expect(signed.unsigned).toEqual({ age: 5 });
    expect(verifyJsonSignature({ ...signed, unsigned: { age: 99 } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(true);
    expect(verifyJsonSignature(signed, SERVER, "ed25519:1", key.publicKey)).toBe(true);
    expect(signedBytes(signed)).toEqual(new TextEncoder().encode('{"a":1}'));
  });

  it("merges into existing signatures", () => {
    const other = generateSigningKey("2");
    const once = signJson({ a: 1, signatures: { "other.org": { "ed25519:x": "sig" } } }, SERVER, key);
    const twice = signJson(once, SERVER, other);
    expect(twice.signatures).toEqual({
      "other.org": { "ed25519:x": "sig" },
      [SERVER]: { "ed25519:1": once.signatures[SERVER]!["ed25519:1"], "ed25519:2": expect.any(String) },
    });
    expect(verifyJsonSignature(twice, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(true);
    expect(verifyJsonSignature(twice, SERVER, "ed25519:2", other.publicKey)).toBe(true);
    expect(once.signatures[SERVER]).not.toHaveProperty("ed25519:2"); // not mutated
  });

  it("fails on tampering, wrong key, wrong server, missing or malformed signatures", () => {
    const signed = signJson({ a: 1, b: "x" }, SERVER, key);
    const other = generateSigningKey("1");
    expect(verifyJsonSignature({ ...signed, a: 2 }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ ...signed, c: null }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature(signed, SERVER, "ed25519:1", other.publicKey)).toBe(false);
    expect(verifyJsonSignature(signed, "other", "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature(signed, SERVER, "ed25519:2", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ a: 1 }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ a: 1, signatures: null }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ a: 1, signatures: { [SERVER]: { "ed25519:1": 5 } } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ a: 1, signatures: { [SERVER]: { "ed25519:1": "!!" } } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature({ a: 1, signatures: { [SERVER]: { "ed25519:1": "Zm9v" } } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(verifyJsonSignature(signed, SERVER, "ed25519:1", "not base64!")).toBe(false);
    expect(verifyJsonSignature(signed, SERVER, "ed25519:1", "Zm9v")).toBe(false);
    expect(verifyJsonSignature({ ...signed, bad: "\ud800" }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
  });

  it("does not find signatures through the prototype chain", () => {
    expect(verifyJsonSignature({ signatures: {} }, "toString", "ed25519:1", PUBLIC_KEY)).toBe(false);
  });

  it("accepts URL-safe or padded signatures (lenient base64)", () => {
    const signed = signJson({ a: 1 }, SERVER, key);
    const sig = signed.signatures[SERVER]!["ed25519:1"]!;
    const urlSafe = sig.replace(/\+/g, "-").replace(/\//g, "_");
    expect(verifyJsonSignature({ ...signed, signatures: { [SERVER]: { "ed25519:1": urlSafe } } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(true);
    expect(verifyJsonSignature({ ...signed, signatures: { [SERVER]: { "ed25519:1": sig + "==" } } }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(true);
  });
});

describe("raw signatures", () => {
  const key = specKey();
  const msg = new TextEncoder().encode("hello");

  it("verifies its own signatures and rejects bit flips", () => {
    const sig = signBytes(msg, key);
    expect(verifyBytes(sig, msg, key.publicKey)).toBe(true);
    for (const i of [0, 31, 32, 63]) {
      const bad = sig.slice();
      bad[i]! ^= 1;
      expect(verifyBytes(bad, msg, key.publicKey)).toBe(false);
    }
    expect(verifyBytes(sig.slice(0, 63), msg, key.publicKey)).toBe(false);
    expect(verifyBytes(sig, msg, key.publicKey.slice(0, 31))).toBe(false);
  });

  it("rejects a non-canonical S (strict RFC 8032 verification)", () => {
    const sig = signBytes(msg, key);
    // S + L (the group order) is the same scalar mod L but not canonical.
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
    let t = s + L;
    const forged = sig.slice();
    for (let i = 32; i < 64; i++) {
      forged[i] = Number(t & 255n);
      t >>= 8n;
    }
    expect(verifyBytes(forged, msg, key.publicKey)).toBe(false);
  });
});

describe("WebCrypto verification", () => {
  const key = specKey();

  it("agrees with noble on the spec vectors", async () => {
    for (const v of jsonVectors) {
      expect(await verifyJsonSignatureWebCrypto(v.expected_output, SERVER, v.key_id, PUBLIC_KEY)).toBe(true);
    }
  });

  it("agrees with noble on valid and invalid signatures", async () => {
    const signed = signJson({ hello: "world", n: [1, 2, 3] }, SERVER, key);
    expect(await verifyJsonSignatureWebCrypto(signed, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(true);
    expect(await verifyJsonSignatureWebCrypto({ ...signed, hello: "x" }, SERVER, "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(await verifyJsonSignatureWebCrypto(signed, SERVER, "ed25519:1", generateSigningKey("1").publicKey)).toBe(false);
    expect(await verifyJsonSignatureWebCrypto(signed, "nope", "ed25519:1", PUBLIC_KEY)).toBe(false);
    expect(await verifyJsonSignatureWebCrypto(signed, SERVER, "ed25519:1", "Zm9v")).toBe(false);
  });

  it("raw verify agrees with noble on random messages", async () => {
    for (let i = 0; i < 20; i++) {
      const k = generateSigningKey("r");
      const msg = crypto.getRandomValues(new Uint8Array(i * 7));
      const sig = signBytes(msg, k);
      expect(await verifyBytesWebCrypto(sig, msg, k.publicKey)).toBe(true);
      const bad = sig.slice();
      bad[i % 64]! ^= 0x80;
      expect(await verifyBytesWebCrypto(bad, msg, k.publicKey)).toBe(verifyBytes(bad, msg, k.publicKey));
    }
  });

  it("signatures from WebCrypto keys verify with noble", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const pub = new Uint8Array((await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer);
    const msg = new TextEncoder().encode('{"a":1}');
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, msg));
    expect(verifyBytes(sig, msg, pub)).toBe(true);
    expect(verifyJsonSignature({ a: 1, signatures: { s: { "ed25519:w": encodeBase64(sig) } } }, "s", "ed25519:w", pub)).toBe(true);
    expect(decodeBase64(encodeBase64(pub))).toEqual(pub);
  });
});
