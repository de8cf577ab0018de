import { describe, expect, it } from "vitest";
import {
  MatrixIdError,
  isIPv6Address,
  isStrictUserLocalpart,
  isValidEventId,
  isValidRoomAlias,
  isValidRoomId,
  isValidServerName,
  isValidUserId,
  parseEventId,
  parseRoomAlias,
  parseRoomId,
  parseServerName,
  parseUserId,
  serverNameOf,
} from "../../src/protocol/identifiers";
import { ROOM_VERSIONS, type RoomVersion } from "../../src/protocol/room-versions";

const v = (id: string): RoomVersion => ROOM_VERSIONS[id]!;
const HASH_URL = "Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"; // spec's v12 room ID example
const HASH_STD = "Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT/xyIuqDnpYQ";
const HASH_PLAIN = "acdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR"; // valid in both alphabets

describe("server names", () => {
  it.each([
    ["matrix.org", { host: "matrix.org", hostKind: "dns" }],
    ["matrix.org:8888", { host: "matrix.org", port: 8888, hostKind: "dns" }],
    ["1.2.3.4", { host: "1.2.3.4", hostKind: "ipv4" }],
    ["1.2.3.4:1234", { host: "1.2.3.4", port: 1234, hostKind: "ipv4" }],
    ["[1234:5678::abcd]", { host: "[1234:5678::abcd]", hostKind: "ipv6" }],
    ["[1234:5678::abcd]:5678", { host: "[1234:5678::abcd]", port: 5678, hostKind: "ipv6" }],
    ["localhost", { host: "localhost", hostKind: "dns" }],
    ["localhost:8787", { host: "localhost", port: 8787, hostKind: "dns" }],
    ["MATRIX.ORG", { host: "MATRIX.ORG", hostKind: "dns" }],
    ["a-b.c-d", { host: "a-b.c-d", hostKind: "dns" }],
    ["256.1.1.1", { host: "256.1.1.1", hostKind: "dns" }], // not an IPv4 literal, but fits dns-name
    ["x:0", { host: "x", port: 0, hostKind: "dns" }],
    ["x:99999", { host: "x", port: 99999, hostKind: "dns" }], // grammar: 1*5DIGIT
    ["[::1]", { host: "[::1]", hostKind: "ipv6" }],
    ["[::ffff:1.2.3.4]:80", { host: "[::ffff:1.2.3.4]", port: 80, hostKind: "ipv6" }],
    ["a".repeat(255), { host: "a".repeat(255), hostKind: "dns" }],
  ])("accepts %s", (s, expected) => {
    expect(parseServerName(s)).toEqual(expected);
    expect(isValidServerName(s)).toBe(true);
  });

  it.each([
    ["", /empty/],
    [":80", /hostname is empty/],
    ["matrix.org:", /port/],
    ["matrix.org:123456", /port/],
    ["matrix.org:80a", /port/],
    ["matrix.org:-1", /port/],
    ["matrix.org:8:8", /port/],
    ["matrix_org", /hostname may only contain/],
    ["mätrix.org", /hostname may only contain/],
    ["matrix.org/", /hostname may only contain/],
    ["matrix .org", /hostname may only contain/],
    ["a".repeat(256), /longer than 255/],
    ["[::1", /closing/],
    ["[]", /not a valid IPv6/],
    ["[1.2.3.4]", /not a valid IPv6/],
    ["[::g]", /not a valid IPv6/],
    ["[1:2:3:4:5:6:7:8:9]", /not a valid IPv6/],
    ["[::1]x", /unexpected characters/],
    ["[::1]:", /port/],
    ["[fe80::1%eth0]", /not a valid IPv6/],
  ])("rejects %j", (s, message) => {
    expect(() => parseServerName(s)).toThrow(MatrixIdError);
    expect(() => parseServerName(s)).toThrow(message);
    expect(isValidServerName(s)).toBe(false);
  });
});

describe("IPv6 literals (RFC 3513 §2.2)", () => {
  it.each([
    "::",
    "::1",
    "1::",
    "1:2:3:4:5:6:7:8",
    "FEDC:BA98:7654:3210:FEDC:BA98:7654:3210",
    "1080::8:800:200C:417A",
    "1080:0:0:0:8:800:200C:417A",
    "FF01::101",
    "0:0:0:0:0:0:13.1.68.3",
    "::13.1.68.3",
    "::FFFF:129.144.52.38",
    "1:2:3:4:5:6:1.2.3.4",
    "1::2:3:4:5:6:7",
  ])("valid: %s", (s) => expect(isIPv6Address(s)).toBe(true));

  it.each([
    ":",
    ":::",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    "12345::",
    ":1::",
    "1::2:",
    "1:2:3:4:5:6:7::8",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::1.2.3",
    "::256.1.1.1",
    "1.2.3.4",
    "g::",
  ])("invalid: %s", (s) => expect(isIPv6Address(s)).toBe(false));
});

describe("user IDs", () => {
  it.each([
    ["@alice:example.org", "alice", "example.org", true, true],
    ["@a.b_c=d-e/f+g:example.org:8448", "a.b_c=d-e/f+g", "example.org:8448", true, true],
    ["@0:[::1]:8448", "0", "[::1]:8448", true, true],
    ["@Alice:example.org", "Alice", "example.org", false, true], // historical: upper case
    ["@al!ce:example.org", "al!ce", "example.org", false, true],
    ["@:example.org", "", "example.org", false, false], // historical: empty
    ["@al ice:example.org", "al ice", "example.org", false, false], // historical: space
    ["@ålice:example.org", "ålice", "example.org", false, false],
    ["@\u0001:x", "\u0001", "x", false, false],
    ["@😀:x", "😀", "x", false, false],
  ])("parses %j", (id, localpart, serverName, strictLocalpart, compliant) => {
    expect(parseUserId(id)).toEqual({ localpart, serverName, strictLocalpart, compliant });
    expect(isValidUserId(id)).toBe(true);
    expect(isValidUserId(id, { strict: true })).toBe(strictLocalpart);
  });

  it.each([
    ["alice:example.org", /must start with '@'/],
    ["@alice", /missing ':'/],
    ["@alice:", /bad server name: empty/],
    ["@alice:exa mple.org", /bad server name/],
    ["@al\u0000ice:x", /NUL/],
    ["@a\ud800:x", /surrogate/],
    ["@" + "a".repeat(250) + ":x.org", /longer than 255 bytes/],
    ["@" + "é".repeat(127) + ":x", /longer than 255 bytes/], // 1 + 254 + 2 bytes, though only 130 code units
  ])("rejects %j", (id, message) => {
    expect(() => parseUserId(id)).toThrow(MatrixIdError);
    expect(() => parseUserId(id)).toThrow(message);
    expect(isValidUserId(id)).toBe(false);
  });

  it("strict mode rejects historical localparts with a clear message", () => {
    expect(() => parseUserId("@Alice:x", { strict: true })).toThrow(/localpart may only contain a-z/);
    expect(() => parseUserId("@:x", { strict: true })).toThrow(/localpart is empty/);
    expect(parseUserId("@alice:x", { strict: true }).localpart).toBe("alice");
  });

  it("measures the 255-byte limit in UTF-8 bytes", () => {
    const at255 = "@" + "a".repeat(255 - 3) + ":x";
    expect(new TextEncoder().encode(at255).length).toBe(255);
    expect(isValidUserId(at255)).toBe(true);
    expect(isValidUserId("@" + "a".repeat(253) + ":x")).toBe(false);
  });

  it("isStrictUserLocalpart", () => {
    expect(isStrictUserLocalpart("abc")).toBe(true);
    expect(isStrictUserLocalpart("")).toBe(false);
    expect(isStrictUserLocalpart("a:b")).toBe(false);
  });

  it("isValidUserId handles non-strings", () => {
    expect(isValidUserId(5)).toBe(false);
    expect(isValidUserId(null)).toBe(false);
  });
});

describe("room IDs", () => {
  it.each([
    ["!abc:example.org", undefined, { opaqueId: "abc", serverName: "example.org" }],
    ["!abc:example.org", v("11"), { opaqueId: "abc", serverName: "example.org" }],
    ["!abc:example.org", v("1"), { opaqueId: "abc", serverName: "example.org" }],
    ["!ÅBC def:x:80", undefined, { opaqueId: "ÅBC def", serverName: "x:80" }],
    [`!${HASH_URL}`, undefined, { opaqueId: HASH_URL }],
    [`!${HASH_URL}`, v("12"), { opaqueId: HASH_URL }],
    [`!${HASH_PLAIN}`, v("12"), { opaqueId: HASH_PLAIN }],
  ] as const)("parses %j (version %#)", (id, rv, expected) => {
    expect(parseRoomId(id, rv)).toEqual(expected);
    expect(isValidRoomId(id, rv)).toBe(true);
  });

  it.each([
    ["abc:x", undefined, /must start with '!'/],
    ["!abc", undefined, /43 characters of URL-safe base64/],
    [`!${HASH_STD}`, undefined, /URL-safe/],
    [`!${HASH_URL}x`, undefined, /URL-safe/],
    [`!${HASH_URL}`, v("11"), /missing ':'/],
    ["!abc:example.org", v("12"), /room version 12 room IDs have no server name/],
    ["!abc:", undefined, /bad server name/],
    ["!a\u0000:x", undefined, /NUL/],
    ["!" + "a".repeat(254) + ":x", undefined, /longer than 255/],
  ] as const)("rejects %j (%#)", (id, rv, message) => {
    expect(() => parseRoomId(id, rv)).toThrow(MatrixIdError);
    expect(() => parseRoomId(id, rv)).toThrow(message);
    expect(isValidRoomId(id, rv)).toBe(false);
  });
});

describe("room aliases", () => {
  it.each([
    ["#room:example.org", "room", "example.org"],
    ["#Room Name!:example.org:8448", "Room Name!", "example.org:8448"],
    ["#:x", "", "x"],
    ["#日本:x", "日本", "x"],
  ])("parses %j", (id, localpart, serverName) => {
    expect(parseRoomAlias(id)).toEqual({ localpart, serverName });
    expect(isValidRoomAlias(id)).toBe(true);
  });

  it.each([
    ["room:x", /must start with '#'/],
    ["#room", /missing ':'/],
    ["#a\u0000b:x", /NUL/],
    ["#" + "a".repeat(254) + ":x", /longer than 255/],
  ])("rejects %j", (id, message) => {
    expect(() => parseRoomAlias(id)).toThrow(message);
    expect(isValidRoomAlias(id)).toBe(false);
  });
});

describe("event IDs", () => {
  it.each([
    ["$abc:example.org", undefined, { opaqueId: "abc", serverName: "example.org" }],
    ["$abc:example.org", v("1"), { opaqueId: "abc", serverName: "example.org" }],
    ["$abc:example.org", v("2"), { opaqueId: "abc", serverName: "example.org" }],
    [`$${HASH_STD}`, v("3"), { opaqueId: HASH_STD }],
    [`$${HASH_STD}`, undefined, { opaqueId: HASH_STD }],
    [`$${HASH_URL}`, v("4"), { opaqueId: HASH_URL }],
    [`$${HASH_URL}`, v("12"), { opaqueId: HASH_URL }],
    [`$${HASH_URL}`, undefined, { opaqueId: HASH_URL }],
    [`$${HASH_PLAIN}`, v("3"), { opaqueId: HASH_PLAIN }],
    [`$${HASH_PLAIN}`, v("4"), { opaqueId: HASH_PLAIN }],
  ] as const)("parses %j (%#)", (id, rv, expected) => {
    expect(parseEventId(id, rv)).toEqual(expected);
    expect(isValidEventId(id, rv)).toBe(true);
  });

  it.each([
    ["abc:x", undefined, /must start with '\$'/],
    ["$abc", undefined, /43 characters of standard or URL-safe/],
    [`$${HASH_URL}`, v("3"), /43 characters of standard unpadded/],
    [`$${HASH_STD}`, v("4"), /43 characters of URL-safe unpadded/],
    [`$${HASH_URL}`, v("1"), /missing ':'/],
    ["$abc:x", v("4"), /URL-safe/],
    [`$${HASH_URL}=`, v("10"), /URL-safe/],
    ["$a:", v("1"), /bad server name/],
    ["$" + "a".repeat(254) + ":x", undefined, /longer than 255/],
  ] as const)("rejects %j (%#)", (id, rv, message) => {
    expect(() => parseEventId(id, rv)).toThrow(MatrixIdError);
    expect(() => parseEventId(id, rv)).toThrow(message);
    expect(isValidEventId(id, rv)).toBe(false);
  });
});

describe("serverNameOf", () => {
  it.each([
    ["@a:example.org", "example.org"],
    ["@a:example.org:8448", "example.org:8448"],
    ["!r:[::1]:80", "[::1]:80"],
    ["#alias:x", "x"],
    ["$e:x", "x"],
  ])("%s → %s", (id, server) => expect(serverNameOf(id)).toBe(server));

  it.each([
    [`!${HASH_URL}`, /room ID .* has no server name/],
    [`$${HASH_URL}`, /event ID .* has no server name/],
    ["a:b", /known sigil/],
    ["@a:", /bad server name/],
    ["", /known sigil/],
  ])("rejects %j", (id, message) => {
    expect(() => serverNameOf(id)).toThrow(MatrixIdError);
    expect(() => serverNameOf(id)).toThrow(message);
  });

  it("error messages name the identifier kind and input", () => {
    try {
      parseUserId("@alice");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(MatrixIdError);
      const err = e as MatrixIdError;
      expect(err.kind).toBe("user ID");
      expect(err.input).toBe("@alice");
      expect(err.message).toBe(`invalid user ID "@alice": missing ':' before the server name`);
    }
  });
});
