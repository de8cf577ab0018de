/**
 * Request authentication between servers: the `Authorization: X-Matrix …` header
 * (https://spec.matrix.org/v1.19/server-server-api/#request-authentication).
 *
 * The signed object is `{method, uri, origin, destination, content}` (content only when the request has a body),
 * signed with the origin's key as JSON. The header carries origin, destination, key ID and signature as RFC 9110
 * auth-params: names are case-insensitive, values may be tokens or quoted strings with backslash escapes, and for
 * compatibility an unquoted value may contain colons.
 */
import { encodeBase64 } from "../protocol/base64";
import { signBytes, signedBytes, verifyJsonSignatureWebCrypto, type SigningKey } from "../protocol/signing";

/** The parameters of an `X-Matrix` credential. `destination` is optional for compatibility with old senders. */
export interface XMatrixCredentials {
  origin: string;
  destination?: string;
  key: string;
  sig: string;
}

/** What a request signature covers. `content` is the parsed JSON body; absent for requests without one. */
export interface RequestToSign {
  method: string;
  uri: string;
  origin: string;
  destination: string;
  content?: unknown;
}

/** Why a header could not be parsed; the message ends up in the 401 response. */
export class XMatrixParseError extends Error {
  override readonly name = "XMatrixParseError";
}

// RFC 9110 tchar.
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const WS = /[ \t]/;

/**
 * Parses an `Authorization` header value holding an `X-Matrix` credential. If several credentials were joined
 * into one value (as `Headers.get` does with repeated headers), the first X-Matrix one is used.
 * Throws {@link XMatrixParseError}.
 */
export function parseXMatrixHeader(value: string): XMatrixCredentials {
  const start = value.search(/(^|[\s,])X-Matrix(?=[ \t])/i);
  if (start < 0) throw new XMatrixParseError("Authorization header is not an X-Matrix credential");
  let i = value.toLowerCase().indexOf("x-matrix", start) + "x-matrix".length;
  const params = new Map<string, string>();
  const n = value.length;

  const skip = (re: RegExp) => {
    while (i < n && re.test(value[i]!)) i++;
  };

  while (i < n) {
    skip(/[ \t,]/);
    if (i >= n) break;
    // Parameter name.
    const nameStart = i;
    while (i < n && TCHAR.test(value[i]!)) i++;
    const name = value.slice(nameStart, i).toLowerCase();
    if (name === "") throw new XMatrixParseError(`unexpected character ${JSON.stringify(value[i])} in X-Matrix header`);
    skip(WS);
    if (value[i] !== "=") {
      // A token followed by something other than "=" starts the next credential.
      if (params.size > 0) break;
      throw new XMatrixParseError(`X-Matrix parameter ${JSON.stringify(name)} has no value`);
    }
    i++;
    skip(WS);
    // Value: quoted string or token (colons allowed for compatibility).
    let val = "";
    if (value[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const ch = value[i]!;
        if (ch === "\\") {
          if (i + 1 >= n) break;
          val += value[i + 1];
          i += 2;
        } else if (ch === '"') {
          i++;
          closed = true;
          break;
        } else {
          val += ch;
          i++;
        }
      }
      if (!closed) throw new XMatrixParseError(`unterminated quoted value for ${JSON.stringify(name)}`);
    } else {
      const valStart = i;
      while (i < n && (TCHAR.test(value[i]!) || value[i] === ":" || value[i] === "/" || value[i] === "=")) i++;
      val = value.slice(valStart, i);
      if (val === "") throw new XMatrixParseError(`empty value for ${JSON.stringify(name)}`);
    }
    if (params.has(name)) throw new XMatrixParseError(`X-Matrix parameter ${JSON.stringify(name)} appears twice`);
    params.set(name, val);
    skip(WS);
    if (i < n && value[i] !== ",") throw new XMatrixParseError(`expected ',' after the ${JSON.stringify(name)} value`);
  }

  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (!origin) throw new XMatrixParseError("X-Matrix header has no origin");
  if (!key) throw new XMatrixParseError("X-Matrix header has no key");
  if (!sig) throw new XMatrixParseError("X-Matrix header has no sig");
  const creds: XMatrixCredentials = { origin, key, sig };
  const destination = params.get("destination");
  if (destination !== undefined) creds.destination = destination;
  return creds;
}

/** Formats a credential the way old servers parse best: lower-case names, quoted values, no spaces. */
export function formatXMatrixHeader(c: XMatrixCredentials & { destination: string }): string {
  const q = (s: string) => `"${s.replace(/(["\\])/g, "\\$1")}"`;
  return `X-Matrix origin=${q(c.origin)},destination=${q(c.destination)},key=${q(c.key)},sig=${q(c.sig)}`;
}

/** The JSON object a request signature covers. */
export function requestJson(r: RequestToSign): Record<string, unknown> {
  const obj: Record<string, unknown> = { method: r.method, uri: r.uri, origin: r.origin, destination: r.destination };
  if (r.content !== undefined) obj.content = r.content;
  return obj;
}

/** Signs a request and returns the `Authorization` header value. */
export function signRequest(r: RequestToSign, key: SigningKey): string {
  const sig = encodeBase64(signBytes(signedBytes(requestJson(r)), key));
  return formatXMatrixHeader({ origin: r.origin, destination: r.destination, key: key.keyId, sig });
}

/**
 * Checks a request signature made by `creds.origin` with the public key of `creds.key`. `destination` is the
 * destination as it appears in the signed JSON: the header's value, or (for old senders that omit it) our name.
 */
export async function verifyRequestSignature(
  r: Omit<RequestToSign, "origin">,
  creds: XMatrixCredentials,
  publicKey: string | Uint8Array,
): Promise<boolean> {
  const obj = { ...requestJson({ ...r, origin: creds.origin }), signatures: { [creds.origin]: { [creds.key]: creds.sig } } };
  return verifyJsonSignatureWebCrypto(obj, creds.origin, creds.key, publicKey);
}
