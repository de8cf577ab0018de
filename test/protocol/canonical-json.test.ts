import { describe, expect, it } from "vitest";
import {
  CanonicalJsonError,
  canonicalJson,
  canonicalJsonBytes,
  compareCodePoints,
  utf8ByteLength,
} from "../../src/protocol/canonical-json";
import fixture from "../fixtures/vectors/canonical-json.json";

const decoder = new TextDecoder();

describe("spec examples (canonical-json.json)", () => {
  it.each(fixture.cases.map((c) => [c.input_text, c.expected] as const))("%s", (inputText, expected) => {
    const value: unknown = JSON.parse(inputText);
    expect(canonicalJson(value, { strict: true })).toBe(expected);
    expect(canonicalJson(value)).toBe(expected);
    const bytes = canonicalJsonBytes(value, { strict: true });
    expect(bytes).toEqual(new TextEncoder().encode(expected));
    expect(decoder.decode(bytes)).toBe(expected);
  });

  it.each(fixture.grammar_derived.map((c) => [c.expected, c.input_value] as const))("grammar: %s", (expected, value) => {
    expect(canonicalJson(value, { strict: true })).toBe(expected);
  });

  it("covers every fixture case", () => {
    expect(fixture.cases.length).toBe(10);
    expect(fixture.grammar_derived.length).toBe(4);
  });
});

describe("strings", () => {
  it("escapes exactly the control characters, quote and backslash", () => {
    for (let c = 0; c < 0x20; c++) {
      const named: Record<number, string> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };
      const expected = named[c] ?? "\\u00" + c.toString(16).padStart(2, "0");
      expect(canonicalJson(String.fromCharCode(c))).toBe(`"${expected}"`);
    }
    expect(canonicalJson('"')).toBe('"\\""');
    expect(canonicalJson("\\")).toBe('"\\\\"');
  });

  it("leaves printable ASCII, DEL, '/' and all non-ASCII raw", () => {
    let printable = "";
    for (let c = 0x20; c <= 0x7f; c++) if (c !== 0x22 && c !== 0x5c) printable += String.fromCharCode(c);
    expect(canonicalJson(printable)).toBe(`"${printable}"`);
    const unicode = "é日本\u2028\u2029\ufeff\uffff😀\u{10ffff}";
    expect(canonicalJson(unicode)).toBe(`"${unicode}"`);
  });

  it("uses lowercase hex in \\u escapes", () => {
    expect(canonicalJson("\u001b\u001f")).toBe('"\\u001b\\u001f"');
  });

  it.each(["\ud800", "a\udc00", "\udc00\ud800", "x\ud83d"])("rejects lone surrogates (%j)", (s) => {
    expect(() => canonicalJson(s)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson({ [s]: 1 })).toThrow(/lone UTF-16 surrogate/);
  });
});

describe("numbers", () => {
  it.each([
    [0, "0"],
    [-0, "0"],
    [1, "1"],
    [-1, "-1"],
    [1e10, "10000000000"],
    [2 ** 53 - 1, "9007199254740991"],
    [-(2 ** 53 - 1), "-9007199254740991"],
  ])("%d → %s in both modes", (n, expected) => {
    expect(canonicalJson(n, { strict: true })).toBe(expected);
    expect(canonicalJson(n)).toBe(expected);
    expect(canonicalJson({ n }, { strict: true })).toBe(`{"n":${expected}}`);
  });

  it.each([1.5, -0.25, 1e-7, 2 ** 53, -(2 ** 53), 1e21, Number.MAX_VALUE])("strict mode rejects %d", (n) => {
    expect(() => canonicalJson(n, { strict: true })).toThrow(CanonicalJsonError);
    expect(() => canonicalJson({ a: [n] }, { strict: true })).toThrow(/at a\[0\]/);
  });

  it("strict mode names floats and out-of-range integers", () => {
    expect(() => canonicalJson(1.5, { strict: true })).toThrow(/float 1.5/);
    expect(() => canonicalJson(2 ** 53, { strict: true })).toThrow(/integer 9007199254740992 is outside/);
  });

  it("legacy mode writes big integers without exponent and floats as JavaScript does", () => {
    expect(canonicalJson(2 ** 53)).toBe("9007199254740992");
    expect(canonicalJson(-(2 ** 63))).toBe("-9223372036854775808");
    expect(canonicalJson(1e21)).toBe("1000000000000000000000");
    expect(canonicalJson(1.5)).toBe("1.5");
    expect(canonicalJson(-0.25)).toBe("-0.25");
  });

  it.each([NaN, Infinity, -Infinity])("rejects %d in both modes", (n) => {
    expect(() => canonicalJson(n)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(n, { strict: true })).toThrow(CanonicalJsonError);
  });

  it("encodes bigint within range (and any bigint in legacy mode)", () => {
    expect(canonicalJson(12n, { strict: true })).toBe("12");
    expect(() => canonicalJson(2n ** 53n, { strict: true })).toThrow(CanonicalJsonError);
    expect(canonicalJson(2n ** 64n)).toBe("18446744073709551616");
  });
});

describe("objects and arrays", () => {
  it("sorts keys by code point, not UTF-16 code unit", () => {
    // U+FFFD (BMP, above the surrogate range) sorts before U+1F600 by code point; UTF-16 order says otherwise.
    const keys = ["\ufffd", "😀", "\ue000", "a", "", "\u{10000}", "\uffff", "ab", "B"];
    const obj = Object.fromEntries(keys.map((k, i) => [k, i]));
    const out = canonicalJson(obj);
    const order = Object.keys(JSON.parse(out) as object);
    const byCodePoint = [...keys].sort((x, y) => {
      const a = [...x].map((c) => c.codePointAt(0)!);
      const b = [...y].map((c) => c.codePointAt(0)!);
      for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
      return a.length - b.length;
    });
    expect(order).toEqual(byCodePoint);
    expect(order).toEqual(["", "B", "a", "ab", "\ue000", "\ufffd", "\uffff", "\u{10000}", "😀"]);
  });

  it("sorts large objects (the non-insertion-sort path) by code point too", () => {
    const keys: string[] = [];
    for (let i = 0; i < 40; i++) keys.push(`k${i}`, `\u{1f600}${i}`, `\uffee${i}`, `\ue000${i}`);
    const obj = Object.fromEntries(keys.map((k) => [k, 1]));
    const order = Object.keys(JSON.parse(canonicalJson(obj)) as object);
    expect(order).toEqual([...keys].sort(compareCodePoints));
    expect(order.indexOf("\uffee0")).toBeLessThan(order.indexOf("\u{1f600}0"));
    expect(order.indexOf("\ue0000")).toBeLessThan(order.indexOf("\uffee0"));
    // ASCII-only large objects use the native order, which is the same.
    const ascii = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`u${(i * 37) % 101}`, i]));
    expect(Object.keys(JSON.parse(canonicalJson(ascii)) as object)).toEqual(Object.keys(ascii).sort());
  });

  it("compareCodePoints agrees with code point order on random strings", () => {
    const pool = ["a", "z", "\u00e9", "\ud7ff", "\ue000", "\uffff", "\u{10000}", "\u{1f600}", "\u{10ffff}"];
    const rnd = () => Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () => pool[Math.floor(Math.random() * pool.length)]).join("");
    for (let i = 0; i < 500; i++) {
      const x = rnd();
      const y = rnd();
      const a = [...x].map((c) => c.codePointAt(0)!);
      const b = [...y].map((c) => c.codePointAt(0)!);
      let expected = a.length - b.length;
      for (let j = 0; j < Math.min(a.length, b.length); j++) {
        if (a[j] !== b[j]) {
          expected = a[j]! - b[j]!;
          break;
        }
      }
      expect(Math.sign(compareCodePoints(x, y))).toBe(Math.sign(expected));
    }
  });

  it("sorts nested objects and keeps array order", () => {
    expect(canonicalJson({ b: { d: 1, c: [3, { z: 1, y: 2 }] }, a: [] })).toBe('{"a":[],"b":{"c":[3,{"y":2,"z":1}],"d":1}}');
  });

  it("encodes booleans, null, empty containers", () => {
    expect(canonicalJson({ t: true, f: false, n: null, o: {}, a: [] })).toBe('{"a":[],"f":false,"n":null,"o":{},"t":true}');
  });

  it("skips object properties whose value is undefined", () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it.each([
    [[undefined], /undefined/],
    [{ f: () => 1 }, /function/],
    [{ s: Symbol("x") }, /symbol/],
    [undefined, /undefined/],
  ])("rejects non-JSON values (%#)", (value, message) => {
    expect(() => canonicalJson(value)).toThrow(message);
  });

  it("reports the path of the offending value", () => {
    try {
      canonicalJson({ content: { users: { "@a:b": 1.5 } } }, { strict: true });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CanonicalJsonError);
      expect((e as CanonicalJsonError).path).toBe('content.users["@a:b"]');
    }
    expect(() => canonicalJson([[1], [2, 0.5]], { strict: true })).toThrow(/at \[1\]\[1\]/);
  });

  it("rejects absurd nesting instead of overflowing the stack", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 1100; i++) deep = [deep];
    expect(() => canonicalJson(deep)).toThrow(/nesting deeper/);
    let ok: unknown = 1;
    for (let i = 0; i < 900; i++) ok = { a: ok };
    expect(canonicalJson(ok).length).toBe(900 * 6 + 1);
  });

  it("omits top-level keys on request without touching nested ones", () => {
    const obj = { signatures: { x: 1 }, unsigned: { age: 1 }, content: { signatures: 2 }, a: 1 };
    expect(canonicalJson(obj, { omit: ["signatures", "unsigned"] })).toBe('{"a":1,"content":{"signatures":2}}');
    expect(obj.signatures).toEqual({ x: 1 });
  });

  it("agrees with JSON.stringify for ASCII-keyed data", () => {
    const value = { z: [1, "two", { c: null, b: false }], a: { nested: "q\"\\\n" }, m: -5 };
    const sortDeep = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(sortDeep)
        : v && typeof v === "object"
          ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortDeep((v as Record<string, unknown>)[k])]))
          : v;
    expect(canonicalJson(value)).toBe(JSON.stringify(sortDeep(value)));
  });
});

describe("utf8ByteLength", () => {
  it.each(["", "abc", "é", "日本語", "😀", "a😀b\u{10ffff}", "\u07ff\u0800\uffff"])("%j", (s) => {
    expect(utf8ByteLength(s)).toBe(new TextEncoder().encode(s).length);
  });

  it("counts lone surrogates as U+FFFD", () => {
    expect(utf8ByteLength("\ud800")).toBe(3);
    expect(utf8ByteLength("\udc00a")).toBe(4);
  });
});
