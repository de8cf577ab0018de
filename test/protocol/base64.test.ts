import { describe, expect, it } from "vitest";
import {
  Base64Error,
  decodeBase64,
  encodeBase64,
  encodeBase64Url,
  isUnpaddedBase64,
  tryDecodeBase64,
} from "../../src/protocol/base64";

const utf8 = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Reference encoder built on btoa (padded, standard alphabet). */
function reference(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

describe("encodeBase64", () => {
  // The spec's examples (appendices, "Unpadded Base64").
  it.each([
    ["", ""],
    ["f", "Zg"],
    ["fo", "Zm8"],
    ["foo", "Zm9v"],
    ["foob", "Zm9vYg"],
    ["fooba", "Zm9vYmE"],
    ["foobar", "Zm9vYmFy"],
  ])("UNPADDED_BASE64(%j) = %j", (input, expected) => {
    expect(encodeBase64(utf8(input))).toBe(expected);
    expect(encodeBase64Url(utf8(input))).toBe(expected);
  });

  it("uses + and / in the standard alphabet and - and _ in the URL-safe one", () => {
    const bytes = new Uint8Array([0xfb, 0xff, 0xbf]);
    expect(encodeBase64(bytes)).toBe("+/+/");
    expect(encodeBase64Url(bytes)).toBe("-_-_");
  });

  it("matches btoa without padding for every length 0..70", () => {
    for (let n = 0; n <= 70; n++) {
      const bytes = randomBytes(n);
      const ref = reference(bytes).replace(/=+$/, "");
      expect(encodeBase64(bytes)).toBe(ref);
      expect(encodeBase64Url(bytes)).toBe(ref.replace(/\+/g, "-").replace(/\//g, "_"));
    }
  });

  it("encodes all byte values", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(encodeBase64(all)).toBe(reference(all).replace(/=+$/, ""));
  });
});

describe("decodeBase64", () => {
  it("round-trips random data in both alphabets, padded and unpadded", () => {
    for (let n = 0; n <= 70; n++) {
      const bytes = randomBytes(n);
      expect(decodeBase64(encodeBase64(bytes))).toEqual(bytes);
      expect(decodeBase64(encodeBase64Url(bytes))).toEqual(bytes);
      expect(decodeBase64(reference(bytes))).toEqual(bytes);
    }
  });

  it.each([
    ["Zg", "f"],
    ["Zg==", "f"],
    ["Zm8", "fo"],
    ["Zm8=", "fo"],
    ["Zm9v", "foo"],
    ["", ""],
  ])("accepts %j", (input, expected) => {
    expect(decodeBase64(input)).toEqual(utf8(expected));
  });

  it("accepts both alphabets and a mix of them", () => {
    expect(decodeBase64("+/+/")).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
    expect(decodeBase64("-_-_")).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
    expect(decodeBase64("+_-/")).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
  });

  it("ignores non-zero trailing bits (the spec's test seed has them)", () => {
    const seed = decodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1");
    expect(hex(seed)).toBe("6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d");
    expect(decodeBase64("Zh")).toEqual(utf8("f")); // 'h' leaves bits 0001 after 'f'
    expect(decodeBase64("Zm9")).toEqual(utf8("fo"));
  });

  it.each([
    ["Zm9v!", /invalid Base64 character '!' at position 4/],
    ["Zm 9v", /invalid Base64 character U\+0020 at position 2/],
    ["Zm9v\n", /U\+000A/],
    ["Zm9vé", /U\+00E9/],
    ["Zm9v😀", /U\+D83D/],
    ["Z", /dangling/],
    ["Zm9vY", /dangling/],
    ["Z===", /invalid Base64 character '=' at position 1/],
    ["Zg=", /padding/],
    ["Zg=a", /invalid Base64 character '='/],
    ["=", /padding/],
    ["Zm=v", /invalid Base64 character '='/],
  ])("rejects %j", (input, message) => {
    expect(() => decodeBase64(input)).toThrow(Base64Error);
    expect(() => decodeBase64(input)).toThrow(message);
    expect(tryDecodeBase64(input)).toBeUndefined();
  });
});

describe("isUnpaddedBase64", () => {
  it.each([
    ["Zm9v", "standard", true],
    ["Zm9", "standard", true],
    ["Zm9v+/", "standard", true],
    ["Zm9v-_", "standard", false],
    ["Zm9v-_", "url-safe", true],
    ["Zm9v+/", "url-safe", false],
    ["Zg==", "standard", false],
    ["Z", "standard", false],
    ["", "url-safe", true],
  ] as const)("%j in %s → %s", (s, alphabet, expected) => {
    expect(isUnpaddedBase64(s, alphabet)).toBe(expected);
  });
});
