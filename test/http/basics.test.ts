import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { verifyBytes, signedBytes } from "../../src/protocol/signing";
import { decodeBase64 } from "../../src/protocol/base64";

const worker = (exports as unknown as { default: Fetcher }).default;
const get = (path: string, init?: RequestInit) => worker.fetch(`http://test.local${path}`, init);

describe("discovery and version endpoints", () => {
  it("serves /.well-known/matrix/server with an explicit port", async () => {
    const res = await get("/.well-known/matrix/server");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ "m.server": "test.local:443" });
  });

  it("serves /.well-known/matrix/client pointing at the request origin", async () => {
    const res = await get("/.well-known/matrix/client");
    expect(await res.json()).toEqual({ "m.homeserver": { base_url: "http://test.local" } });
  });

  it("serves the federation version", async () => {
    const body = await (await get("/_matrix/federation/v1/version")).json<{ server: { name: string } }>();
    expect(body.server.name).toBe("Axon");
  });

  it("advertises client spec versions", async () => {
    const body = await (await get("/_matrix/client/versions")).json<{ versions: string[] }>();
    expect(body.versions).toContain("v1.1");
  });
});

describe("errors and CORS", () => {
  it("answers unknown endpoints with 404 M_UNRECOGNIZED", async () => {
    const res = await get("/_matrix/client/v3/nonsense");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ errcode: "M_UNRECOGNIZED", error: expect.any(String) });
  });

  it("answers a known endpoint with the wrong method with 405 M_UNRECOGNIZED", async () => {
    const res = await get("/_matrix/key/v2/server", { method: "POST" });
    expect(res.status).toBe(405);
    expect((await res.json<{ errcode: string }>()).errcode).toBe("M_UNRECOGNIZED");
  });

  it("answers CORS preflights", async () => {
    const res = await get("/_matrix/client/versions", {
      method: "OPTIONS",
      headers: { Origin: "https://app.element.io", "Access-Control-Request-Method": "GET" },
    });
    expect(res.status).toBeLessThan(300);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-methods")).toContain("PUT");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
  });

  it("puts CORS headers on errors too", async () => {
    const res = await get("/_matrix/nothing", { headers: { Origin: "https://x.example" } });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("server key document", () => {
  it("is self-signed, valid for a while, and stable across requests", async () => {
    const doc = await (await get("/_matrix/key/v2/server")).json<{
      server_name: string;
      valid_until_ts: number;
      verify_keys: Record<string, { key: string }>;
      old_verify_keys: Record<string, unknown>;
      signatures: Record<string, Record<string, string>>;
    }>();
    expect(doc.server_name).toBe("test.local");
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
    const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
    expect(keyId).toMatch(/^ed25519:[A-Za-z0-9_]+$/);
    const sig = doc.signatures["test.local"]![keyId]!;
    expect(verifyBytes(decodeBase64(sig), signedBytes(doc), decodeBase64(key))).toBe(true);
    expect(doc.old_verify_keys).toEqual({});

    const again = await (await get("/_matrix/key/v2/server")).json<typeof doc>();
    expect(again.verify_keys).toEqual(doc.verify_keys);
  });
});
