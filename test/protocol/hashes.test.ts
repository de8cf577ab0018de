import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64 } from "../../src/protocol/base64";
import { canonicalJson } from "../../src/protocol/canonical-json";
import {
  addContentHash,
  checkContentHash,
  computeContentHash,
  computeReferenceHash,
  signEvent,
  verifyEventSignature,
  verifyEventSignatureWebCrypto,
} from "../../src/protocol/hashes";
import { redactEvent } from "../../src/protocol/redaction";
import { ROOM_VERSIONS, type RoomVersion } from "../../src/protocol/room-versions";
import { generateSigningKey, parseSigningKey, verifyJsonSignature } from "../../src/protocol/signing";
import vectors from "../fixtures/vectors/spec-signing-vectors.json";
import { sha256 } from "@noble/hashes/sha2.js";

const SERVER = vectors.server_name;
const PUBLIC_KEY = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";
const v = (id: string): RoomVersion => ROOM_VERSIONS[id]!;
const eventVectors = vectors.vectors.filter((x) => x.kind === "event");
const PRE_V11 = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

describe("spec event signing vectors", () => {
  it("has the two event vectors", () => {
    expect(eventVectors.length).toBe(2);
  });

  for (const vec of eventVectors) {
    const key = parseSigningKey(`ed25519 1 ${vec.seed_base64}`);
    const expected = vec.expected_output as Record<string, unknown> & { hashes: { sha256: string } };

    it(`${vec.name}: content hash`, () => {
      expect(encodeBase64(computeContentHash(vec.input))).toBe(expected.hashes.sha256);
      expect(addContentHash(vec.input).hashes).toEqual(expected.hashes);
      expect(checkContentHash(expected)).toBe(true);
    });

    it.each(PRE_V11)(`${vec.name}: signEvent with pre-v11 redaction (room v%s) reproduces the spec output`, (rv) => {
      expect(signEvent(vec.input, SERVER, key, v(rv))).toEqual(expected);
      expect(verifyEventSignature(expected, SERVER, "ed25519:1", PUBLIC_KEY, v(rv))).toBe(true);
    });

    it.each(["11", "12"])(`${vec.name}: room v%s (origin not kept) gives derived_v11_signatures`, (rv) => {
      const signed = signEvent(vec.input, SERVER, key, v(rv));
      expect(signed.signatures).toEqual({ [SERVER]: { "ed25519:1": vec.derived_v11_signatures!["ed25519:1"] } });
      expect(signed.hashes).toEqual(expected.hashes);
      expect(verifyEventSignature(signed, SERVER, "ed25519:1", PUBLIC_KEY, v(rv))).toBe(true);
      // The spec's (pre-v11) signature does not verify under v11 rules.
      expect(verifyEventSignature(expected, SERVER, "ed25519:1", PUBLIC_KEY, v(rv))).toBe(false);
    });

    it(`${vec.name}: the signature survives redaction, the content hash does not`, async () => {
      const redacted = redactEvent(expected, v("1"));
      expect(verifyEventSignature(redacted, SERVER, "ed25519:1", PUBLIC_KEY, v("1"))).toBe(true);
      expect(await verifyEventSignatureWebCrypto(redacted, SERVER, "ed25519:1", PUBLIC_KEY, v("1"))).toBe(true);
      const changedContent = { ...expected, content: { body: "edited" } };
      expect(checkContentHash(changedContent)).toBe(false);
      // Content is not covered by the signature of an m.room.message / X event, only by the hash.
      expect(verifyEventSignature(changedContent, SERVER, "ed25519:1", PUBLIC_KEY, v("1"))).toBe(true);
      const changedSender = { ...expected, sender: "@mallory:domain" };
      expect(verifyEventSignature(changedSender, SERVER, "ed25519:1", PUBLIC_KEY, v("1"))).toBe(false);
    });
  }
});

describe("content hash", () => {
  const event = {
    type: "m.room.message",
    sender: "@a:x",
    room_id: "!r:x",
    content: { body: "hi" },
    origin_server_ts: 1,
    depth: 1,
    prev_events: [],
    auth_events: [],
  };

  it("ignores unsigned, signatures and existing hashes", () => {
    const h = computeContentHash(event);
    expect(h).toEqual(sha256(new TextEncoder().encode(canonicalJson(event))));
    expect(computeContentHash({ ...event, unsigned: { age: 1 }, signatures: { x: {} }, hashes: { sha256: "zzz" } })).toEqual(h);
    expect(computeContentHash({ ...event, content: { body: "ho" } })).not.toEqual(h);
  });

  it("addContentHash replaces any previous hashes and does not mutate", () => {
    const withOld = { ...event, hashes: { sha256: "old", other: "x" } };
    const hashed = addContentHash(withOld);
    expect(hashed.hashes).toEqual({ sha256: encodeBase64(computeContentHash(event)) });
    expect(withOld.hashes.sha256).toBe("old");
    expect(checkContentHash(hashed)).toBe(true);
  });

  it("checkContentHash is false for missing, malformed or wrong hashes", () => {
    const hashed = addContentHash(event);
    expect(checkContentHash(event)).toBe(false);
    expect(checkContentHash({ ...event, hashes: null })).toBe(false);
    expect(checkContentHash({ ...event, hashes: { sha256: 5 } })).toBe(false);
    expect(checkContentHash({ ...event, hashes: { sha256: "!!" } })).toBe(false);
    expect(checkContentHash({ ...event, hashes: { sha256: "Zm9v" } })).toBe(false);
    expect(checkContentHash({ ...hashed, depth: 2 })).toBe(false);
    expect(checkContentHash({ ...hashed, unsigned: { age: 5 } })).toBe(true);
    // Padded / URL-safe encodings of the right hash are accepted (lenient decoding).
    const urlSafe = hashed.hashes.sha256.replace(/\+/g, "-").replace(/\//g, "_") ;
    expect(checkContentHash({ ...hashed, hashes: { sha256: urlSafe } })).toBe(true);
    expect(decodeBase64(hashed.hashes.sha256).length).toBe(32);
  });
});

describe("reference hash", () => {
  const event = {
    type: "m.room.message",
    sender: "@a:x",
    room_id: "!r:x",
    content: { body: "hi" },
    origin_server_ts: 1,
    depth: 1,
    prev_events: [],
    auth_events: [],
    hashes: { sha256: "abc" },
    signatures: { x: { "ed25519:1": "sig" } },
    unsigned: { age: 5 },
    age_ts: 7,
    origin: "x",
  };

  it("is the sha256 of the redacted event without signatures, unsigned and age_ts", () => {
    const { signatures: _s, unsigned: _u, age_ts: _a, content: _c, ...rest } = event;
    const expectedV1 = sha256(new TextEncoder().encode(canonicalJson({ ...rest, content: {} })));
    expect(computeReferenceHash(event, v("4"))).toEqual(expectedV1);
    const { origin: _o, ...restV11 } = rest;
    const expectedV11 = sha256(new TextEncoder().encode(canonicalJson({ ...restV11, content: {} })));
    expect(computeReferenceHash(event, v("11"))).toEqual(expectedV11);
  });

  it("does not change when redactable parts or signatures change", () => {
    const h = computeReferenceHash(event, v("10"));
    expect(computeReferenceHash({ ...event, content: { body: "other" } }, v("10"))).toEqual(h);
    expect(computeReferenceHash({ ...event, signatures: {} }, v("10"))).toEqual(h);
    expect(computeReferenceHash({ ...event, unsigned: {} }, v("10"))).toEqual(h);
    expect(computeReferenceHash({ ...event, hashes: { sha256: "def" } }, v("10"))).not.toEqual(h);
    expect(computeReferenceHash({ ...event, depth: 2 }, v("10"))).not.toEqual(h);
  });
});

describe("signEvent / verifyEventSignature", () => {
  const key = generateSigningKey("k1");
  const base = {
    type: "m.room.member",
    state_key: "@a:x",
    sender: "@a:x",
    room_id: "!r:x",
    content: { membership: "join", displayname: "A" },
    origin_server_ts: 1,
    depth: 3,
    prev_events: [],
    auth_events: [],
    unsigned: { age: 1 },
  };

  it.each(Object.keys(ROOM_VERSIONS))("round-trips in room v%s", (rv) => {
    const signed = signEvent(base, "x", key, v(rv));
    expect(signed.unsigned).toEqual({ age: 1 });
    expect(checkContentHash(signed)).toBe(true);
    expect(verifyEventSignature(signed, "x", key.keyId, key.publicKey, v(rv))).toBe(true);
    // The signature is over the redacted form, so a plain JSON signature check fails.
    expect(verifyJsonSignature(signed, "x", key.keyId, key.publicKey)).toBe(false);
    expect(verifyEventSignature({ ...signed, content: { membership: "leave" } }, "x", key.keyId, key.publicKey, v(rv))).toBe(false);
    expect(verifyEventSignature({ ...signed, content: { membership: "join" } }, "x", key.keyId, key.publicKey, v(rv))).toBe(true);
    expect(verifyEventSignature(signed, "y", key.keyId, key.publicKey, v(rv))).toBe(false);
  });

  it("keeps other servers' signatures", () => {
    const other = generateSigningKey("o");
    const first = signEvent(base, "x", key, v("12"));
    const second = signEvent(first, "y", other, v("12"));
    expect(Object.keys(second.signatures).sort()).toEqual(["x", "y"]);
    expect(verifyEventSignature(second, "x", key.keyId, key.publicKey, v("12"))).toBe(true);
    expect(verifyEventSignature(second, "y", other.keyId, other.publicKey, v("12"))).toBe(true);
  });

  it("is false for events that cannot be canonicalised", () => {
    const signed = signEvent(base, "x", key, v("10"));
    expect(verifyEventSignature({ ...signed, sender: "@\ud800:x" }, "x", key.keyId, key.publicKey, v("10"))).toBe(false);
  });
});
