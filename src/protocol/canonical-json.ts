/**
 * Canonical JSON (https://spec.matrix.org/v1.19/appendices/#canonical-json): the byte string that is hashed and
 * signed. Shortest UTF-8 encoding, object keys sorted by Unicode code point, no insignificant whitespace, only
 * the escapes the grammar requires (`\b \t \n \f \r \" \\` and lowercase `\u00XX` for other control characters),
 * integers without exponent or fraction, never `-0`.
 *
 * Strict mode (room versions 6+, `RoomVersion.strictCanonicalJson`) rejects floats and integers outside
 * [-(2^53)+1, 2^53-1] with a {@link CanonicalJsonError}. Non-strict mode (legacy room versions 1–5) tolerates
 * them: integers of any size are written in full decimal (no exponent), other finite numbers as JavaScript
 * prints them. Note that JSON.parse has already rounded any integer beyond 2^53, so such legacy events cannot be
 * reproduced byte-for-byte anyway.
 *
 * Both modes reject what JSON cannot carry: NaN/Infinity, functions, symbols, `undefined` inside arrays, and
 * strings with lone UTF-16 surrogates (they have no UTF-8 encoding). Object properties whose value is
 * `undefined` are skipped, as JSON.stringify does, so optional fields can be left unset.
 */

/** Why a value cannot be encoded; `path` points at the offending value (e.g. `content.users["@a:b"]`). */
export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
  constructor(
    readonly reason: string,
    readonly path: string = "",
  ) {
    super(path ? `${reason} at ${path}` : reason);
  }
}

export interface CanonicalJsonOptions {
  /** Reject floats and integers outside ±(2^53−1) (room v6+). Default false. */
  readonly strict?: boolean;
  /** Top-level object keys to leave out (e.g. `signatures`, `unsigned`), without copying the object. */
  readonly omit?: readonly string[];
}

/** Largest integer canonical JSON allows in strict mode (2^53 − 1). */
export const MAX_CANONICAL_INT = Number.MAX_SAFE_INTEGER;
/** Smallest integer canonical JSON allows in strict mode (−(2^53 − 1)). */
export const MIN_CANONICAL_INT = Number.MIN_SAFE_INTEGER;

/** Nesting deeper than this is refused rather than risking a stack overflow. */
const MAX_DEPTH = 1000;

const encoder = new TextEncoder();

/** Encodes `value` as canonical JSON text. Throws {@link CanonicalJsonError}. */
export function canonicalJson(value: unknown, options?: CanonicalJsonOptions): string {
  const strict = options?.strict === true;
  const omit = options?.omit;
  if (omit && omit.length > 0 && typeof value === "object" && value !== null && !Array.isArray(value)) {
    return encodeObject(value as Record<string, unknown>, strict, 0, omit);
  }
  return encodeValue(value, strict, 0);
}

/** Encodes `value` as canonical JSON and returns its UTF-8 bytes (what is hashed and signed). */
export function canonicalJsonBytes(value: unknown, options?: CanonicalJsonOptions): Uint8Array {
  return encoder.encode(canonicalJson(value, options));
}

/**
 * Compares two strings by Unicode code point (the order canonical JSON sorts keys in). This differs from
 * JavaScript's default UTF-16 code-unit order only when a surrogate pair (U+10000 and above) meets a code
 * unit in U+E000–U+FFFF at the first difference.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Swap the blocks so surrogates (0xD800–0xDFFF, i.e. code points ≥ U+10000) sort above U+E000–U+FFFF;
        // the order inside each block is kept.
        return (x < 0xe000 ? x + 0x2000 : x - 0x800) - (y < 0xe000 ? y + 0x2000 : y - 0x800);
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** Number of bytes `s` takes in UTF-8 (lone surrogates count as the 3 bytes of U+FFFD), without encoding it. */
export function utf8ByteLength(s: string): number {
  const n = s.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a pair: 2 code units → 4 bytes
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/** Matches a key or string that contains a code unit at or above U+D800 (where code-point order can differ). */
const HIGH_UNIT = /[\ud800-\uffff]/;

function sortedKeys(obj: object): string[] {
  const keys = Object.keys(obj);
  const n = keys.length;
  if (n < 2) return keys;
  if (n <= 12) {
    // Small objects (most of an event): insertion sort with the exact comparator beats a generic sort call.
    for (let i = 1; i < n; i++) {
      const k = keys[i]!;
      let j = i - 1;
      while (j >= 0 && compareCodePoints(keys[j]!, k) > 0) {
        keys[j + 1] = keys[j]!;
        j--;
      }
      keys[j + 1] = k;
    }
    return keys;
  }
  keys.sort(); // UTF-16 code-unit order: native and fast, and correct unless high code units are involved
  for (let i = 0; i < n; i++) {
    if (HIGH_UNIT.test(keys[i]!)) {
      keys.sort(compareCodePoints);
      break;
    }
  }
  return keys;
}

function encodeString(s: string): string {
  // JSON.stringify escapes exactly what the canonical grammar escapes (", \, \b \t \n \f \r, other controls as
  // lowercase \u00XX) and leaves everything else raw, including '/' and DEL. It would write lone surrogates as
  // \udXXX escapes, which canonical JSON (raw UTF-8 only) cannot represent, so those are refused.
  if (!isWellFormed(s)) throw new CanonicalJsonError("string contains a lone UTF-16 surrogate (not valid Unicode)");
  return JSON.stringify(s);
}

const nativeIsWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const isWellFormed: (s: string) => boolean = nativeIsWellFormed
  ? (s) => nativeIsWellFormed.call(s)
  : (s) => !LONE_SURROGATE.test(s);

function encodeNumber(n: number, strict: boolean): string {
  if (Number.isSafeInteger(n)) return "" + n; // "" + -0 === "0"
  if (!Number.isFinite(n)) throw new CanonicalJsonError(`${n} cannot be represented in JSON`);
  if (Number.isInteger(n)) {
    if (strict) throw new CanonicalJsonError(`integer ${BigInt(n)} is outside the canonical JSON range ±(2^53−1)`);
    return BigInt(n).toString();
  }
  if (strict) throw new CanonicalJsonError(`float ${n} is not allowed in canonical JSON`);
  return "" + n;
}

function encodeBigInt(n: bigint, strict: boolean): string {
  if (strict && (n > BigInt(MAX_CANONICAL_INT) || n < BigInt(MIN_CANONICAL_INT))) {
    throw new CanonicalJsonError(`integer ${n} is outside the canonical JSON range ±(2^53−1)`);
  }
  return n.toString();
}

function encodeValue(v: unknown, strict: boolean, depth: number): string {
  switch (typeof v) {
    case "string":
      return encodeString(v);
    case "number":
      return encodeNumber(v, strict);
    case "boolean":
      return v ? "true" : "false";
    case "object":
      if (v === null) return "null";
      if (Array.isArray(v)) return encodeArray(v, strict, depth + 1);
      return encodeObject(v as Record<string, unknown>, strict, depth + 1, undefined);
    case "bigint":
      return encodeBigInt(v, strict);
    default:
      throw new CanonicalJsonError(`a value of type ${typeof v} cannot be encoded as JSON`);
  }
}

function encodeArray(arr: readonly unknown[], strict: boolean, depth: number): string {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH} levels`);
  const n = arr.length;
  if (n === 0) return "[]";
  let out = "[";
  for (let i = 0; i < n; i++) {
    const item = arr[i];
    try {
      if (item === undefined) throw new CanonicalJsonError("undefined is not a JSON value inside an array");
      out += (i === 0 ? "" : ",") + encodeValue(item, strict, depth);
    } catch (e) {
      throw withPath(e, `[${i}]`);
    }
  }
  return out + "]";
}

function encodeObject(
  obj: Record<string, unknown>,
  strict: boolean,
  depth: number,
  omit: readonly string[] | undefined,
): string {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH} levels`);
  const keys = sortedKeys(obj);
  let out = "{";
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const item = obj[key];
    if (item === undefined || (omit !== undefined && omit.includes(key))) continue;
    try {
      out += (first ? "" : ",") + encodeString(key) + ":" + encodeValue(item, strict, depth);
    } catch (e) {
      throw withPath(e, SIMPLE_KEY.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);
    }
    first = false;
  }
  return out + "}";
}

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Prefixes the location of a nested failure while the error unwinds (only on the error path). */
function withPath(e: unknown, segment: string): unknown {
  if (!(e instanceof CanonicalJsonError)) return e;
  const inner = e.path === "" || e.path.startsWith("[") ? e.path : "." + e.path;
  const path = segment + inner;
  return new CanonicalJsonError(e.reason, path.startsWith(".") ? path.slice(1) : path);
}
