/**
 * Unpadded Base64 as Matrix uses it (https://spec.matrix.org/v1.19/appendices/#unpadded-base64).
 *
 * Encoding always produces unpadded output, in the standard (`+/`) or URL-safe (`-_`) alphabet.
 * Decoding is deliberately lenient, as the spec asks ("implementations SHOULD accept input with or without
 * padding characters"): it accepts either alphabet (even mixed), with or without `=` padding, and ignores
 * non-zero trailing bits (the spec's own test seed has them). Anything else — whitespace, stray `=`,
 * characters outside both alphabets, an impossible length — is rejected with a {@link Base64Error}.
 */

const STANDARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Thrown by {@link decodeBase64} for input that is not Base64 in any accepted form. */
export class Base64Error extends Error {
  override readonly name = "Base64Error";
}

/** Char code → 6-bit value for both alphabets; 255 marks an invalid character. */
const DECODE = new Uint8Array(128).fill(255);
for (let i = 0; i < 64; i++) {
  DECODE[STANDARD.charCodeAt(i)] = i;
  DECODE[URL_SAFE.charCodeAt(i)] = i;
}

/** Two-character lookup tables (12 bits per entry) so the encoder emits two characters per step. */
function pairTable(alphabet: string): string[] {
  const t = new Array<string>(4096);
  for (let i = 0; i < 4096; i++) t[i] = alphabet[i >> 6]! + alphabet[i & 63]!;
  return t;
}
const STANDARD_PAIRS = pairTable(STANDARD);
const URL_SAFE_PAIRS = pairTable(URL_SAFE);

function encode(bytes: Uint8Array, alphabet: string, pairs: string[]): string {
  const n = bytes.length;
  const full = n - (n % 3);
  let out = "";
  let i = 0;
  for (; i < full; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += pairs[v >> 12]! + pairs[v & 4095]!;
  }
  const rest = n - full;
  if (rest === 1) {
    const v = bytes[i]!;
    out += alphabet[v >> 2]! + alphabet[(v & 3) << 4]!;
  } else if (rest === 2) {
    const v = (bytes[i]! << 8) | bytes[i + 1]!;
    out += pairs[v >> 4]! + alphabet[(v & 15) << 2]!;
  }
  return out;
}

/** Standard unpadded Base64 (`+` and `/`), e.g. for signatures, hashes and keys. */
export function encodeBase64(bytes: Uint8Array): string {
  return encode(bytes, STANDARD, STANDARD_PAIRS);
}

/** URL-safe unpadded Base64 (`-` and `_`), e.g. for v4+ event IDs and v12 room IDs. */
export function encodeBase64Url(bytes: Uint8Array): string {
  return encode(bytes, URL_SAFE, URL_SAFE_PAIRS);
}

function invalidChar(input: string, index: number): never {
  const code = input.charCodeAt(index);
  const shown = code >= 0x21 && code <= 0x7e ? `'${input[index]}'` : `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  throw new Base64Error(`invalid Base64 character ${shown} at position ${index}`);
}

/**
 * Decodes Base64 leniently: standard or URL-safe alphabet (or a mix), padded or unpadded, trailing bits
 * ignored. Throws {@link Base64Error} on invalid characters, misplaced padding or a length no encoding
 * can produce (one leftover character).
 */
export function decodeBase64(input: string): Uint8Array {
  let end = input.length;
  // Strip at most two '=' of padding; when padding is present, the total length must be a multiple of 4.
  if (end > 0 && input.charCodeAt(end - 1) === 0x3d) {
    end--;
    if (end > 0 && input.charCodeAt(end - 1) === 0x3d) end--;
    if (input.length % 4 !== 0) {
      throw new Base64Error(`invalid Base64 padding: padded input must have a length divisible by 4 (got ${input.length})`);
    }
  }
  const rest = end % 4;
  if (rest === 1) {
    // Report a bad character in preference to the length, as it is the more likely mistake.
    for (let i = 0; i < end; i++) {
      const code = input.charCodeAt(i);
      if (code >= 128 || DECODE[code] === 255) invalidChar(input, i);
    }
    throw new Base64Error(`invalid Base64 length: ${end} characters leave a single dangling character`);
  }
  const out = new Uint8Array(((end >> 2) * 3) + (rest === 0 ? 0 : rest - 1));
  const full = end - rest;
  let o = 0;
  let i = 0;
  for (; i < full; i += 4) {
    const c0 = input.charCodeAt(i);
    const c1 = input.charCodeAt(i + 1);
    const c2 = input.charCodeAt(i + 2);
    const c3 = input.charCodeAt(i + 3);
    const a = c0 < 128 ? DECODE[c0]! : 255;
    const b = c1 < 128 ? DECODE[c1]! : 255;
    const c = c2 < 128 ? DECODE[c2]! : 255;
    const d = c3 < 128 ? DECODE[c3]! : 255;
    if ((a | b | c | d) > 63) {
      invalidChar(input, a === 255 ? i : b === 255 ? i + 1 : c === 255 ? i + 2 : i + 3);
    }
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 255;
    out[o++] = v & 255;
  }
  if (rest >= 2) {
    let v = 0;
    for (let k = 0; k < rest; k++) {
      const code = input.charCodeAt(i + k);
      const x = code < 128 ? DECODE[code]! : 255;
      if (x === 255) invalidChar(input, i + k);
      v = (v << 6) | x;
    }
    if (rest === 2) {
      out[o++] = v >> 4; // 12 bits: 8 data + 4 ignored trailing bits
    } else {
      out[o++] = v >> 10; // 18 bits: 16 data + 2 ignored trailing bits
      out[o++] = (v >> 2) & 255;
    }
  }
  return out;
}

/** Like {@link decodeBase64} but returns `undefined` instead of throwing. */
export function tryDecodeBase64(input: string): Uint8Array | undefined {
  try {
    return decodeBase64(input);
  } catch {
    return undefined;
  }
}

/** Whether `s` is unpadded Base64 in exactly the given alphabet (no leniency), e.g. to validate IDs. */
export function isUnpaddedBase64(s: string, alphabet: "standard" | "url-safe"): boolean {
  if (s.length % 4 === 1) return false;
  const re = alphabet === "standard" ? /^[A-Za-z0-9+/]*$/ : /^[A-Za-z0-9_-]*$/;
  return re.test(s);
}
