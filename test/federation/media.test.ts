/**
 * Media over federation (docs/media.md): the signed `/_matrix/federation/v1/media/download|thumbnail` endpoints
 * (multipart answers, our media only, X-Matrix required), and remote media fetched, cached and served to our
 * clients — between the real servers of the harness (test.local ⇄ hs2.test) and against hand-built remotes
 * (redirects, fallbacks to the deprecated endpoint, failures, size limits).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { setFederationFetch } from "../../src/federation/fetch";
import app from "../../src/index";
import type { Env } from "../../src/env";
import { createUserDirect, request, testEnv, type TestUser } from "../client/helpers";
import { FakeServer, installFakeServers, json, type RecordedRequest } from "./fake-server";
import { control, e, newUser, type ScenarioUser } from "./servers";

const V1 = "/_matrix/client/v1/media";
const FED = "/_matrix/federation/v1/media";
const enc = encodeURIComponent;
const encoder = new TextEncoder();
const worker = (exports as unknown as { default: Fetcher }).default;

function png(width: number, height: number): Uint8Array {
  const be32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const chunk = (type: string, data: number[]) => [...be32(data.length), ...[...type].map((c) => c.charCodeAt(0)), ...data, 0, 0, 0, 0];
  return new Uint8Array([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
    ...chunk("IHDR", [...be32(width), ...be32(height), 8, 6, 0, 0, 0]), ...chunk("IDAT", []), ...chunk("IEND", []),
  ]);
}

function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? encoder.encode(p) : p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** A multipart/mixed federation answer written by hand (independent of Axon's builder). */
function multipart(second: { headers: Record<string, string>; body?: Uint8Array }, boundary = "6e9bc1f0d7Boundary"): Response {
  const head = Object.entries(second.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const body = concat(
    `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n`,
    `--${boundary}\r\n${head}\r\n`,
    second.body ?? new Uint8Array(0),
    `\r\n--${boundary}--\r\n`,
  );
  return new Response(body, { headers: { "content-type": `multipart/mixed; boundary=${boundary}` } });
}

/** Splits a multipart answer of Axon's (test-side parser: CRLF framing). */
function splitMultipart(contentType: string, body: Uint8Array): { headers: Record<string, string>; body: Uint8Array }[] {
  const boundary = /boundary=([^;]+)/.exec(contentType)![1]!;
  let text = ""; // one character per byte (TextDecoder's "latin1" is windows-1252, not byte-preserving)
  for (let i = 0; i < body.length; i += 8192) text += String.fromCharCode(...body.subarray(i, i + 8192));
  const pieces = text.split(`--${boundary}`);
  expect(pieces.at(-1)).toBe("--\r\n");
  return pieces.slice(1, -1).map((piece) => {
    expect(piece.startsWith("\r\n") && piece.endsWith("\r\n")).toBe(true);
    const inner = piece.slice(2, -2);
    const split = inner.indexOf("\r\n\r\n");
    const headers = Object.fromEntries(
      inner.slice(0, split).split("\r\n").map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
    );
    return { headers, body: Uint8Array.from(inner.slice(split + 4), (c) => c.charCodeAt(0)) };
  });
}

async function uploadLocal(user: TestUser, bytes: Uint8Array | string, contentType: string, filename?: string): Promise<string> {
  const q = filename ? `?filename=${enc(filename)}` : "";
  const res = await worker.fetch(`http://test.local/_matrix/media/v3/upload${q}`, {
    method: "POST",
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": contentType },
    body: bytes,
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return (JSON.parse(text) as { content_uri: string }).content_uri;
}

/** A request through the app with environment overrides (a fresh configuration). */
async function withEnv(overrides: Partial<Env>, path: string, user: TestUser): Promise<Response> {
  const env = Object.assign(Object.create(null), testEnv, overrides) as Env;
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`http://test.local${path}`, { headers: { authorization: `Bearer ${user.accessToken}` } }), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function expectError(res: Response, status: number, errcode: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect((JSON.parse(text) as { errcode: string }).errcode).toBe(errcode);
}

describe("serving our media to other servers", () => {
  let remote: FakeServer;
  let restore: () => void;
  let seq = 0;
  beforeEach(() => {
    remote = new FakeServer(`mediafed${++seq}-${Date.now().toString(36)}.test`);
    restore = installFakeServers(remote);
  });
  afterEach(() => restore());

  it("download: multipart/mixed, {} then the bytes with type and disposition", async () => {
    const alice = await createUserDirect();
    const bytes = crypto.getRandomValues(new Uint8Array(3000));
    const uri = await uploadLocal(alice, bytes, "application/pdf", "report 1.pdf");
    const mediaId = uri.split("/").pop()!;
    const res = await remote.request("GET", `${FED}/download/${mediaId}`);
    expect(res.status).toBe(200);
    const type = res.headers.get("content-type")!;
    expect(type).toMatch(/^multipart\/mixed; boundary=/);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.headers.get("content-length")).toBe(String(body.length));
    const parts = splitMultipart(type, body);
    expect(parts).toHaveLength(2);
    expect(parts[0]!.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(new TextDecoder().decode(parts[0]!.body))).toEqual({});
    expect(parts[1]!.headers["content-type"]).toBe("application/pdf");
    expect(parts[1]!.headers["content-disposition"]).toBe("attachment; filename*=utf-8''report%201.pdf");
    expect(parts[1]!.body).toEqual(bytes);
  });

  it("thumbnail: the original image when it fits, inline; 400 for what cannot be thumbnailed", async () => {
    const alice = await createUserDirect();
    const image = png(40, 30);
    const mediaId = (await uploadLocal(alice, image, "image/png")).split("/").pop()!;
    const res = await remote.request("GET", `${FED}/thumbnail/${mediaId}?width=64&height=64&method=scale`);
    expect(res.status).toBe(200);
    const parts = splitMultipart(res.headers.get("content-type")!, new Uint8Array(await res.arrayBuffer()));
    expect(parts[1]!.headers["content-type"]).toBe("image/png");
    expect(parts[1]!.headers["content-disposition"]).toBe("inline; filename=thumbnail.png");
    expect(parts[1]!.body).toEqual(image);

    const textId = (await uploadLocal(alice, "words", "text/plain")).split("/").pop()!;
    await expectError(await remote.request("GET", `${FED}/thumbnail/${textId}?width=64&height=64`), 400, "M_UNKNOWN");
    await expectError(await remote.request("GET", `${FED}/thumbnail/${mediaId}?height=64`), 400, "M_MISSING_PARAM");
  });

  it("unknown, malformed, not-yet-uploaded and other servers' cached media", async () => {
    const alice = await createUserDirect();
    await expectError(await remote.request("GET", `${FED}/download/unknownMedia1`), 404, "M_NOT_FOUND");
    await expectError(await remote.request("GET", `${FED}/download/bad.id`), 400, "M_INVALID_PARAM");
    const created = await request("POST", "/_matrix/media/v1/create", { user: alice });
    const pending = ((await created.json()) as { content_uri: string }).content_uri.split("/").pop()!;
    await expectError(await remote.request("GET", `${FED}/download/${pending}?timeout_ms=0`), 504, "M_NOT_YET_UPLOADED");
    // Media cached from elsewhere has another origin: never served as ours.
    await testEnv.DB.prepare(
      "INSERT INTO media (origin, media_id, created_ts, content_type, size, sha256, object_key) VALUES ('elsewhere.test', 'cachedOne', 0, 'text/plain', 1, 'x', 'remote/elsewhere.test/cachedOne/x')",
    ).run();
    await expectError(await remote.request("GET", `${FED}/download/cachedOne`), 404, "M_NOT_FOUND");
  });

  it("refuses unsigned and wrongly signed requests (401)", async () => {
    const alice = await createUserDirect();
    const mediaId = (await uploadLocal(alice, "private", "text/plain")).split("/").pop()!;
    const unsigned = await request("GET", `${FED}/download/${mediaId}`);
    await expectError(unsigned, 401, "M_UNAUTHORIZED");
    await expectError(await request("GET", `${FED}/thumbnail/${mediaId}?width=8&height=8`), 401, "M_UNAUTHORIZED");
    // Signed for another path.
    const forged = await request("GET", `${FED}/download/${mediaId}`, {
      headers: { authorization: remote.authorization("GET", `${FED}/download/somethingElse`) },
    });
    await expectError(forged, 401, "M_UNAUTHORIZED");
  });
});

describe("fetching remote media (hand-built remotes)", () => {
  let remote: FakeServer;
  let restore: () => void;
  let seq = 0;
  beforeEach(() => {
    remote = new FakeServer(`mediasrc${++seq}-${Date.now().toString(36)}.test`);
    restore = installFakeServers(remote);
  });
  afterEach(() => restore());

  const downloads = () => remote.requestsTo(`${FED}/download/`);

  it("fetches with a signed request, serves, caches (a second download does not ask again)", async () => {
    const alice = await createUserDirect();
    const bytes = crypto.getRandomValues(new Uint8Array(2048));
    remote.routes.push((req) =>
      req.path === `${FED}/download/remoteOne`
        ? multipart({ headers: { "Content-Type": "image/webp", "Content-Disposition": "inline; filename=\"pic one.webp\"" }, body: bytes })
        : undefined,
    );
    for (let i = 0; i < 2; i++) {
      const res = await request("GET", `${V1}/download/${remote.name}/remoteOne`, { user: alice });
      expect(res.status).toBe(200);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
      expect(res.headers.get("content-type")).toBe("image/webp");
      expect(res.headers.get("content-disposition")).toBe("inline; filename*=utf-8''pic%20one.webp");
    }
    expect(downloads()).toHaveLength(1);
    expect(downloads()[0]!.query.get("timeout_ms")).toBe("20000");
    const row = await testEnv.DB.prepare("SELECT * FROM media WHERE origin = ? AND media_id = 'remoteOne'").bind(remote.name).first<Record<string, unknown>>();
    expect(row).toMatchObject({ uploader: null, size: 2048, content_type: "image/webp", upload_name: "pic one.webp" });
    expect(row!.object_key).toMatch(new RegExp(`^remote/${remote.name}/remoteOne/[0-9a-f]{64}$`));
  });

  it("follows a Location part (and does not cache the URL)", async () => {
    const alice = await createUserDirect();
    remote.routes.push((req) => {
      if (req.path === `${FED}/download/redirected`) return multipart({ headers: { Location: `http://${remote.name}/cdn/file` } });
      if (req.path === "/cdn/file") return new Response("from the cdn", { headers: { "content-type": "text/plain", "content-disposition": "attachment; filename=cdn.txt" } });
      return undefined;
    });
    const res = await request("GET", `${V1}/download/${remote.name}/redirected`, { user: alice });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("from the cdn");
    expect(res.headers.get("content-disposition")).toBe("inline; filename=cdn.txt");
    expect(remote.requestsTo("/cdn/")).toHaveLength(1);
  });

  it("falls back to the deprecated endpoint (allow_remote=false) when the federation one is unrecognized", async () => {
    const alice = await createUserDirect();
    remote.routes.push((req) => {
      if (req.path.startsWith(`${FED}/`)) return json({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" }, 404);
      if (req.path === `/_matrix/media/v3/download/${remote.name}/old`) {
        return new Response("old style", { headers: { "content-type": "text/csv" } });
      }
      return undefined;
    });
    const res = await request("GET", `${V1}/download/${remote.name}/old`, { user: alice });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("old style");
    expect(res.headers.get("content-type")).toBe("text/csv; charset=UTF-8");
    const legacy = remote.requestsTo("/_matrix/media/v3/download/");
    expect(legacy).toHaveLength(1);
    expect(legacy[0]!.query.get("allow_remote")).toBe("false");
  });

  it("thumbnails of remote media come from the fetched original", async () => {
    const alice = await createUserDirect();
    const image = png(20, 20);
    remote.routes.push((req) => (req.path === `${FED}/download/img` ? multipart({ headers: { "Content-Type": "image/png" }, body: image }) : undefined));
    const res = await request("GET", `${V1}/thumbnail/${remote.name}/img?width=32&height=32&method=crop`, { user: alice });
    expect(res.status).toBe(200);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(image);
    expect(remote.requestsTo(`${FED}/thumbnail/`)).toHaveLength(0);
  });

  it("the origin's 404 is 404; its other errors, garbage and unreachable servers are 502; nothing is cached", async () => {
    const alice = await createUserDirect();
    remote.routes.push((req: RecordedRequest) => {
      if (req.path === `${FED}/download/gone`) return json({ errcode: "M_NOT_FOUND", error: "nope" }, 404);
      if (req.path === `${FED}/download/broken`) return json({ errcode: "M_UNKNOWN", error: "boom" }, 500);
      if (req.path === `${FED}/download/garbage`) return new Response("not multipart", { headers: { "content-type": "text/plain" } });
      if (req.path === `${FED}/download/onepart`) {
        return new Response("--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n", { headers: { "content-type": "multipart/mixed; boundary=b" } });
      }
      return undefined;
    });
    await expectError(await request("GET", `${V1}/download/${remote.name}/gone`, { user: alice }), 404, "M_NOT_FOUND");
    await expectError(await request("GET", `${V1}/download/${remote.name}/broken`, { user: alice }), 502, "M_UNKNOWN");
    await expectError(await request("GET", `${V1}/download/${remote.name}/garbage`, { user: alice }), 502, "M_UNKNOWN");
    await expectError(await request("GET", `${V1}/download/${remote.name}/onepart`, { user: alice }), 502, "M_UNKNOWN");
    await expectError(await request("GET", `${V1}/download/unreachable.invalid/x`, { user: alice }), 502, "M_UNKNOWN");
    const rows = await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM media WHERE origin = ?").bind(remote.name).first<{ n: number }>();
    expect(rows!.n).toBe(0);
  });

  it("remote media over MAX_UPLOAD_SIZE is 502 M_TOO_LARGE", async () => {
    const alice = await createUserDirect();
    remote.routes.push((req) =>
      req.path === `${FED}/download/huge` ? multipart({ headers: { "Content-Type": "application/octet-stream" }, body: new Uint8Array(5000) }) : undefined,
    );
    await expectError(await withEnv({ MAX_UPLOAD_SIZE: "1000" }, `${V1}/download/${remote.name}/huge`, alice), 502, "M_TOO_LARGE");
  });

  it("allow_remote=false: cached media only, the origin is not asked", async () => {
    const alice = await createUserDirect();
    remote.routes.push((req) => (req.path === `${FED}/download/lazy` ? multipart({ headers: { "Content-Type": "text/plain" }, body: encoder.encode("hi") }) : undefined));
    await expectError(await request("GET", `${V1}/download/${remote.name}/lazy?allow_remote=false`, { user: alice }), 404, "M_NOT_FOUND");
    expect(downloads()).toHaveLength(0);
    expect((await request("GET", `${V1}/download/${remote.name}/lazy`, { user: alice })).status).toBe(200);
    const cached = await request("GET", `${V1}/download/${remote.name}/lazy?allow_remote=false`, { user: alice });
    expect(await cached.text()).toBe("hi");
    expect(downloads()).toHaveLength(1);
  });
});

describe("between real homeservers (test.local ⇄ hs2.test)", () => {
  beforeEach(() => {
    if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
  });

  async function uploadOnHs2(user: ScenarioUser, bytes: Uint8Array, contentType: string, filename: string): Promise<string> {
    const res = await e.HS2.fetch(`http://hs2.test/_matrix/media/v3/upload?filename=${enc(filename)}`, {
      method: "POST",
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": contentType },
      body: bytes,
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    return (JSON.parse(text) as { content_uri: string }).content_uri;
  }

  it("a test.local user downloads hs2.test media (signed fetch, verified by hs2), then from the cache", async () => {
    const bob = await newUser("hs2.test", "mediabob");
    const alice = await createUserDirect();
    const bytes = crypto.getRandomValues(new Uint8Array(10_000));
    const uri = await uploadOnHs2(bob, bytes, "video/mp4", "clip.mp4");
    expect(uri).toMatch(/^mxc:\/\/hs2\.test\//);
    const path = `${V1}/download/${uri.slice("mxc://".length)}`;
    const first = await request("GET", path, { user: alice });
    expect(first.status).toBe(200);
    expect(new Uint8Array(await first.arrayBuffer())).toEqual(bytes);
    expect(first.headers.get("content-type")).toBe("video/mp4");
    expect(first.headers.get("content-disposition")).toBe("inline; filename=clip.mp4");

    // Cached: hs2 cannot be reached any more, the bytes are still served.
    const restore = setFederationFetch(async () => {
      throw new Error("partitioned");
    });
    try {
      const second = await request("GET", path, { user: alice });
      expect(second.status).toBe(200);
      expect(new Uint8Array(await second.arrayBuffer())).toEqual(bytes);
    } finally {
      restore();
    }
  });

  it("an hs2.test user downloads test.local media once; hs2 serves its cached copy after that", async () => {
    const alice = await createUserDirect();
    const bob = await newUser("hs2.test", "mediabob");
    const image = png(48, 48);
    const uri = await uploadLocal(alice, image, "image/png", "avatar.png");
    await control("hs2.test").federationLog(); // start recording hs2's outbound requests
    const path = `${V1}/download/${uri.slice("mxc://".length)}`;
    for (let i = 0; i < 2; i++) {
      const res = await e.HS2.fetch(`http://hs2.test${path}`, { headers: { authorization: `Bearer ${bob.accessToken}` } });
      expect(res.status).toBe(200);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(image);
      expect(res.headers.get("content-disposition")).toBe("inline; filename=avatar.png");
    }
    const thumb = await e.HS2.fetch(`http://hs2.test${V1}/thumbnail/${uri.slice("mxc://".length)}?width=96&height=96`, {
      headers: { authorization: `Bearer ${bob.accessToken}` },
    });
    expect(thumb.status).toBe(200);
    expect(new Uint8Array(await thumb.arrayBuffer())).toEqual(image);
    const log = await control("hs2.test").federationLog();
    expect(log.filter((r) => r.path.includes("/media/"))).toEqual([
      { host: "test.local", method: "GET", path: `${FED}/download/${uri.split("/").pop()}` },
    ]);
  });
});
