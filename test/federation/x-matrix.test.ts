/** The X-Matrix Authorization header: parsing per RFC 9110 auth-params, formatting, signing and verifying. */
import { describe, expect, it } from "vitest";
import {
  formatXMatrixHeader,
  parseXMatrixHeader,
  requestJson,
  signRequest,
  verifyRequestSignature,
  XMatrixParseError,
} from "../../src/federation/x-matrix";
import { generateSigningKey, publicKeyBase64, signJson } from "../../src/protocol/signing";
import { requestUri } from "../../src/routes/federation/auth";

describe("parseXMatrixHeader", () => {
  it("reads quoted parameters", () => {
    expect(parseXMatrixHeader('X-Matrix origin="a.example",destination="b.example",key="ed25519:k1",sig="c2ln"')).toEqual({
      origin: "a.example",
      destination: "b.example",
      key: "ed25519:k1",
      sig: "c2ln",
    });
  });

  it("accepts unquoted values, colons in them, any order, case-insensitive names and spaces around commas", () => {
    expect(parseXMatrixHeader("x-matrix   Sig=c2ln ,\tKEY=ed25519:k1 , origin=a.example:8448,destination=b.example")).toEqual({
      origin: "a.example:8448",
      destination: "b.example",
      key: "ed25519:k1",
      sig: "c2ln",
    });
  });

  it("unescapes backslash pairs in quoted values", () => {
    expect(parseXMatrixHeader('X-Matrix origin="a\\.ex\\"ample",key="ed25519:k",sig="s"').origin).toBe('a.ex"ample');
  });

  it("allows a missing destination (old servers) and ignores unknown parameters", () => {
    const c = parseXMatrixHeader('X-Matrix origin="a",key="ed25519:k",sig="s",future="x"');
    expect(c).toEqual({ origin: "a", key: "ed25519:k", sig: "s" });
  });

  it("takes the first credential when several were joined", () => {
    const c = parseXMatrixHeader('X-Matrix origin="a",key="ed25519:k",sig="s", X-Matrix origin="b",key="ed25519:j",sig="t"');
    expect(c.origin).toBe("a");
  });

  it.each([
    ["another scheme", "Bearer abc"],
    ["no parameters", "X-Matrix"],
    ["no origin", 'X-Matrix key="ed25519:k",sig="s"'],
    ["no key", 'X-Matrix origin="a",sig="s"'],
    ["no sig", 'X-Matrix origin="a",key="ed25519:k"'],
    ["unterminated quote", 'X-Matrix origin="a,key="ed25519:k",sig="s'],
    ["duplicate parameter", 'X-Matrix origin="a",origin="b",key="ed25519:k",sig="s"'],
    ["garbage after a value", 'X-Matrix origin="a" junk,key="ed25519:k",sig="s"'],
  ])("rejects %s", (_name, header) => {
    expect(() => parseXMatrixHeader(header)).toThrow(XMatrixParseError);
  });

  it("round-trips what formatXMatrixHeader writes", () => {
    const c = { origin: "o.example", destination: "d.example", key: "ed25519:a_b", sig: "abc+/def" };
    expect(parseXMatrixHeader(formatXMatrixHeader(c))).toEqual(c);
  });
});

describe("request signatures", () => {
  const key = generateSigningKey("k1");
  const request = { method: "PUT", uri: "/_matrix/federation/v1/send/1?x=y", origin: "o.example", destination: "d.example", content: { a: 1 } };

  it("signs the JSON object the spec describes", () => {
    const header = signRequest(request, key);
    const creds = parseXMatrixHeader(header);
    // The signature is the JSON signature of {method, uri, origin, destination, content}.
    const expected = signJson(requestJson(request), "o.example", key).signatures["o.example"]![key.keyId];
    expect(creds.sig).toBe(expected);
    expect(creds).toMatchObject({ origin: "o.example", destination: "d.example", key: "ed25519:k1" });
  });

  it("verifies only the exact request", async () => {
    const creds = parseXMatrixHeader(signRequest(request, key));
    const { origin: _o, ...rest } = request;
    const pub = publicKeyBase64(key);
    expect(await verifyRequestSignature(rest, creds, pub)).toBe(true);
    expect(await verifyRequestSignature({ ...rest, method: "POST" }, creds, pub)).toBe(false);
    expect(await verifyRequestSignature({ ...rest, uri: "/_matrix/federation/v1/send/2" }, creds, pub)).toBe(false);
    expect(await verifyRequestSignature({ ...rest, destination: "x.example" }, creds, pub)).toBe(false);
    expect(await verifyRequestSignature({ ...rest, content: { a: 2 } }, creds, pub)).toBe(false);
    expect(await verifyRequestSignature({ ...rest, content: undefined }, creds, pub)).toBe(false);
    expect(await verifyRequestSignature(rest, creds, publicKeyBase64(generateSigningKey("k1")))).toBe(false);
  });

  it("leaves content out for requests without a body", () => {
    expect(requestJson({ method: "GET", uri: "/x", origin: "o", destination: "d" })).toEqual({
      method: "GET",
      uri: "/x",
      origin: "o",
      destination: "d",
    });
  });

  it("takes the signed URI from the request URL as sent", () => {
    expect(requestUri("https://h.example:8448/_matrix/federation/v1/state/!r%3Ah?event_id=%24e")).toBe(
      "/_matrix/federation/v1/state/!r%3Ah?event_id=%24e",
    );
    expect(requestUri("http://h/_matrix/x")).toBe("/_matrix/x");
  });
});
