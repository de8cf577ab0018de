/**
 * The media repository through the client API (docs/media.md): uploads (plain and asynchronous), authenticated
 * downloads with their headers, thumbnails from originals, the frozen legacy endpoints, config, preview_url,
 * limits, and that rejected uploads leave nothing behind.
 */
import { describe, expect, it } from "vitest";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import app from "../../src/index";
import type { Env } from "../../src/env";
import { SERVER, call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { sniffImage } from "../../src/media/image";
import { contentDisposition, fileNameFromDisposition } from "../../src/media/headers";

const V1 = "/_matrix/client/v1/media";
const MEDIA = "/_matrix/media/v3";
const enc = encodeURIComponent;

/** A request with a raw body, optionally with environment overrides (a fresh configuration). */
async function raw(
  method: string,
  path: string,
  opts: { user?: TestUser; body?: BodyInit; headers?: Record<string, string>; env?: Partial<Env>; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.user) headers.authorization = `Bearer ${opts.user.accessToken}`;
  const env = Object.assign(Object.create(null), testEnv, opts.env ?? {}) as Env;
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`http://${SERVER}${path}`, { method, headers, body: opts.body, signal: opts.signal }), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function upload(user: TestUser, bytes: Uint8Array | string, contentType?: string, filename?: string, version = "v3"): Promise<string> {
  const q = filename !== undefined ? `?filename=${enc(filename)}` : "";
  const res = await raw("POST", `/_matrix/media/${version}/upload${q}`, {
    user,
    body: bytes,
    headers: contentType ? { "content-type": contentType } : {},
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const uri = (JSON.parse(text) as { content_uri: string }).content_uri;
  expect(uri).toMatch(new RegExp(`^mxc://${SERVER}/[A-Za-z0-9_-]+$`));
  return uri;
}

function mxcPath(uri: string): string {
  return uri.slice("mxc://".length);
}

async function expectError(res: Response, status: number, errcode: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect((JSON.parse(text) as { errcode: string }).errcode).toBe(errcode);
}

async function mediaCount(): Promise<number> {
  return (await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM media").first<{ n: number }>())!.n;
}
async function objectCount(): Promise<number> {
  return (await testEnv.MEDIA.list()).objects.length;
}

// --- tiny images, built by hand ---

function be32(n: number): number[] {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}
function chunk(type: string, data: number[]): number[] {
  return [...be32(data.length), ...[...type].map((c) => c.charCodeAt(0)), ...data, 0, 0, 0, 0];
}
/** A PNG header with the given size (enough for sniffing; not decodable pixels). */
function png(width: number, height: number, animated = false, padding = 0): Uint8Array {
  return new Uint8Array([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
    ...chunk("IHDR", [...be32(width), ...be32(height), 8, 6, 0, 0, 0]),
    ...(animated ? chunk("acTL", [...be32(2), ...be32(0)]) : []),
    ...chunk("IDAT", new Array(padding).fill(0)),
    ...chunk("IEND", []),
  ]);
}
/** A GIF with `frames` 1×1 images. */
function gif(width: number, height: number, frames: number): Uint8Array {
  const frame = [0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00];
  return new Uint8Array([
    ...[..."GIF89a"].map((c) => c.charCodeAt(0)), width & 255, width >> 8, height & 255, height >> 8, 0, 0, 0,
    ...Array.from({ length: frames }, () => frame).flat(),
    0x3b,
  ]);
}

describe("image sniffing", () => {
  it("reads PNG, APNG and GIF sizes and animation; rejects other bytes", () => {
    expect(sniffImage(png(64, 48))).toEqual({ type: "image/png", width: 64, height: 48, animated: false });
    expect(sniffImage(png(64, 48, true))).toMatchObject({ type: "image/png", animated: true });
    expect(sniffImage(gif(10, 20, 1))).toEqual({ type: "image/gif", width: 10, height: 20, animated: false });
    expect(sniffImage(gif(10, 20, 3))).toMatchObject({ animated: true });
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0, 30, 0, 40, 3, 0, 0, 0, 0xff, 0xd9]);
    expect(sniffImage(jpeg)).toEqual({ type: "image/jpeg", width: 40, height: 30, animated: false });
    expect(sniffImage(new TextEncoder().encode("<html>not an image</html>"))).toBeUndefined();
    expect(sniffImage(png(64, 48).subarray(0, 20))).toBeUndefined();
  });
});

describe("Content-Disposition", () => {
  it("inline only for safe types; token names plain, others RFC 5987-encoded; parsed back", () => {
    expect(contentDisposition("image/png", "cat.png")).toBe("inline; filename=cat.png");
    expect(contentDisposition("text/html", "page.html")).toBe("attachment; filename=page.html");
    expect(contentDisposition("image/svg+xml", null)).toBe("attachment");
    expect(contentDisposition("text/plain; charset=utf-8", "a b.txt")).toBe("inline; filename*=utf-8''a%20b.txt");
    expect(contentDisposition("application/pdf", "résumé (1).pdf")).toBe("attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%281%29.pdf");
    expect(fileNameFromDisposition("inline; filename*=utf-8''r%C3%A9sum%C3%A9.pdf")).toBe("résumé.pdf");
    expect(fileNameFromDisposition('attachment; filename="quoted \\"name\\".txt"')).toBe('quoted "name".txt');
    expect(fileNameFromDisposition("attachment; filename=plain.txt")).toBe("plain.txt");
    expect(fileNameFromDisposition("attachment")).toBeUndefined();
  });
});

describe("upload and download", () => {
  it("round-trips the bytes with their type, name and the sandboxing headers", async () => {
    const alice = await createUserDirect();
    const bytes = crypto.getRandomValues(new Uint8Array(5000));
    const uri = await upload(alice, bytes, "application/x-custom", "data.bin");
    const res = await raw("GET", `${V1}/download/${mxcPath(uri)}`, { user: alice });
    expect(res.status).toBe(200);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
    expect(res.headers.get("content-type")).toBe("application/x-custom");
    expect(res.headers.get("content-disposition")).toBe("attachment; filename=data.bin");
    expect(res.headers.get("content-length")).toBe("5000");
    expect(res.headers.get("content-security-policy")).toMatch(/^sandbox; default-src 'none'; script-src 'none';/);
    expect(res.headers.get("cross-origin-resource-policy")).toBe("cross-origin");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");

    // The metadata row.
    const row = await testEnv.DB.prepare("SELECT * FROM media WHERE media_id = ?").bind(uri.split("/").pop()).first<Record<string, unknown>>();
    expect(row).toMatchObject({ origin: SERVER, uploader: alice.userId, size: 5000, upload_name: "data.bin", content_type: "application/x-custom" });
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    expect(row!.sha256).toBe(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
  });

  it("another user downloads it too; a file name in the path overrides the uploaded one", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const uri = await upload(alice, "hello, world", "text/plain", "greeting.txt");
    const res = await raw("GET", `${V1}/download/${mxcPath(uri)}/${enc("other name.txt")}`, { user: bob });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello, world");
    expect(res.headers.get("content-type")).toBe("text/plain; charset=UTF-8");
    expect(res.headers.get("content-disposition")).toBe("inline; filename*=utf-8''other%20name.txt");
  });

  it("serves risky types as attachments and untyped uploads as application/octet-stream without a name", async () => {
    const alice = await createUserDirect();
    const html = await upload(alice, "<script>alert(1)</script>", "text/html");
    let res = await raw("GET", `${V1}/download/${mxcPath(html)}`, { user: alice });
    expect(res.headers.get("content-type")).toBe("text/html; charset=UTF-8");
    expect(res.headers.get("content-disposition")).toBe("attachment");
    await res.arrayBuffer();

    const untyped = await upload(alice, new Uint8Array([1, 2, 3]));
    res = await raw("GET", `${V1}/download/${mxcPath(untyped)}`, { user: alice });
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("content-disposition")).toBe("attachment");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));

    const image = await upload(alice, png(10, 10), "image/png", "pic.png");
    res = await raw("GET", `${V1}/download/${mxcPath(image)}`, { user: alice });
    expect(res.headers.get("content-disposition")).toBe("inline; filename=pic.png");
    await res.arrayBuffer();
  });

  it("accepts uploads on r0 and v1 too, and an empty file", async () => {
    const alice = await createUserDirect();
    for (const v of ["r0", "v1"]) {
      const uri = await upload(alice, `via ${v}`, "text/plain", undefined, v);
      const res = await raw("GET", `${V1}/download/${mxcPath(uri)}`, { user: alice });
      expect(await res.text()).toBe(`via ${v}`);
    }
    const empty = await upload(alice, new Uint8Array(0), "application/octet-stream");
    const res = await raw("GET", `${V1}/download/${mxcPath(empty)}`, { user: alice });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it("requires authentication for uploads and for every v1 endpoint", async () => {
    const alice = await createUserDirect();
    const uri = await upload(alice, "secret", "text/plain");
    await expectError(await raw("POST", `${MEDIA}/upload`, { body: "x" }), 401, "M_MISSING_TOKEN");
    await expectError(await raw("POST", "/_matrix/media/v1/create"), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${V1}/download/${mxcPath(uri)}`), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${V1}/thumbnail/${mxcPath(uri)}?width=1&height=1`), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${V1}/config`), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${V1}/preview_url?url=https://example.org`), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${V1}/download/${mxcPath(uri)}`, { headers: { authorization: "Bearer nope" } }), 401, "M_UNKNOWN_TOKEN");
  });

  it("guests download but cannot upload (403 M_GUEST_ACCESS_FORBIDDEN)", async () => {
    const alice = await createUserDirect();
    const guest = await createUserDirect();
    await testEnv.DB.prepare("UPDATE users SET is_guest = 1 WHERE user_id = ?").bind(guest.userId).run();
    const uri = await upload(alice, "for everyone", "text/plain");
    expect(await (await raw("GET", `${V1}/download/${mxcPath(uri)}`, { user: guest })).text()).toBe("for everyone");
    const rows = await mediaCount();
    await expectError(await raw("POST", `${MEDIA}/upload`, { user: guest, body: "x" }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    await expectError(await raw("POST", "/_matrix/media/v1/create", { user: guest }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    expect(await mediaCount()).toBe(rows);
  });

  it("an application service uploads with its as_token (as its sender)", async () => {
    const res = await raw("POST", `${MEDIA}/upload`, { body: "bridged", headers: { authorization: "Bearer as-token-bridge", "content-type": "text/plain" } });
    const { content_uri } = (await res.json()) as { content_uri: string };
    expect(res.status).toBe(200);
    const row = await testEnv.DB.prepare("SELECT uploader FROM media WHERE media_id = ?").bind(content_uri.split("/").pop()).first<{ uploader: string }>();
    expect(row!.uploader).toBe(`@_asb_bot:${SERVER}`);
  });

  it("bad server names and media IDs are 400; unknown media is 404", async () => {
    const alice = await createUserDirect();
    await expectError(await raw("GET", `${V1}/download/${SERVER}/bad.id`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${V1}/download/${SERVER}/${enc("../../etc")}`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${V1}/download/${enc("bad server!")}/abc`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${V1}/download/${SERVER}/doesNotExist123`, { user: alice }), 404, "M_NOT_FOUND");
    await expectError(await raw("GET", `${V1}/download/${SERVER}/abc?timeout_ms=soon`, { user: alice }), 400, "M_INVALID_PARAM");
  });
});

describe("limits", () => {
  it("config advertises MAX_UPLOAD_SIZE (default 50 MiB)", async () => {
    const alice = await createUserDirect();
    expect(await call("GET", `${V1}/config`, { user: alice })).toEqual({ "m.upload.size": 50 * 1024 * 1024 });
    expect(await call("GET", `${MEDIA}/config`, { user: alice })).toEqual({ "m.upload.size": 50 * 1024 * 1024 });
    const res = await raw("GET", `${V1}/config`, { user: alice, env: { MAX_UPLOAD_SIZE: "1234" } });
    expect(await res.json()).toEqual({ "m.upload.size": 1234 });
  });

  it("an upload over MAX_UPLOAD_SIZE is 413 M_TOO_LARGE and stores nothing (declared or streamed)", async () => {
    const alice = await createUserDirect();
    const [rows, objects] = [await mediaCount(), await objectCount()];
    const env = { MAX_UPLOAD_SIZE: "100" };
    await expectError(await raw("POST", `${MEDIA}/upload`, { user: alice, body: new Uint8Array(101), env }), 413, "M_TOO_LARGE");
    // A body without a Content-Length (streamed): counted while read.
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(30));
        controller.close();
      },
    });
    await expectError(await raw("POST", `${MEDIA}/upload`, { user: alice, body: stream, env }), 413, "M_TOO_LARGE");
    expect([await mediaCount(), await objectCount()]).toEqual([rows, objects]);
    // Exactly the limit is fine.
    const res = await raw("POST", `${MEDIA}/upload`, { user: alice, body: new Uint8Array(100), env });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });
});

describe("asynchronous upload (create, then PUT)", () => {
  async function create(user: TestUser): Promise<{ uri: string; mediaId: string; expires: number }> {
    const body = await call<{ content_uri: string; unused_expires_at: number }>("POST", "/_matrix/media/v1/create", { user });
    expect(body.content_uri).toMatch(new RegExp(`^mxc://${SERVER}/[A-Za-z0-9_-]+$`));
    return { uri: body.content_uri, mediaId: body.content_uri.split("/").pop()!, expires: body.unused_expires_at };
  }

  it("creates an ID that expires in 24 h, uploads to it once, then serves it", async () => {
    const alice = await createUserDirect();
    const before = Date.now();
    const { mediaId, expires } = await create(alice);
    expect(expires).toBeGreaterThanOrEqual(before + 24 * 3600 * 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 24 * 3600 * 1000);

    const put = await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}?filename=late.txt`, {
      user: alice, body: "arrived later", headers: { "content-type": "text/plain" },
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({});
    const res = await raw("GET", `${V1}/download/${SERVER}/${mediaId}`, { user: alice });
    expect(await res.text()).toBe("arrived later");
    expect(res.headers.get("content-disposition")).toBe("inline; filename=late.txt");

    const again = await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: alice, body: "overwrite" });
    await expectError(again, 409, "M_CANNOT_OVERWRITE_MEDIA");
    expect(await (await raw("GET", `${V1}/download/${SERVER}/${mediaId}`, { user: alice })).text()).toBe("arrived later");
  });

  it("only the creator may upload; unknown, foreign and expired IDs are refused", async () => {
    const alice = await createUserDirect();
    const mallory = await createUserDirect();
    const { mediaId } = await create(alice);
    await expectError(await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: mallory, body: "x" }), 403, "M_FORBIDDEN");
    await expectError(await raw("PUT", `${MEDIA}/upload/${SERVER}/neverCreated1`, { user: alice, body: "x" }), 404, "M_NOT_FOUND");
    await expectError(await raw("PUT", `${MEDIA}/upload/other.example/${mediaId}`, { user: alice, body: "x" }), 404, "M_NOT_FOUND");
    await expectError(await raw("PUT", `${MEDIA}/upload/${SERVER}/bad.id`, { user: alice, body: "x" }), 400, "M_INVALID_PARAM");
    await testEnv.DB.prepare("UPDATE media SET expires_ts = ? WHERE media_id = ?").bind(Date.now() - 1, mediaId).run();
    await expectError(await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: alice, body: "x" }), 404, "M_NOT_FOUND");
    await expectError(await raw("GET", `${V1}/download/${SERVER}/${mediaId}?timeout_ms=0`, { user: alice }), 404, "M_NOT_FOUND");
  });

  it("a too-large PUT is refused and the ID stays uploadable", async () => {
    const alice = await createUserDirect();
    const { mediaId } = await create(alice);
    const objects = await objectCount();
    const env = { MAX_UPLOAD_SIZE: "10" };
    await expectError(await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: alice, body: "more than ten bytes", env }), 413, "M_TOO_LARGE");
    expect(await objectCount()).toBe(objects);
    const ok = await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: alice, body: "ten bytes!", env });
    expect(ok.status).toBe(200);
  });

  it("download of a not-yet-uploaded ID: 504 M_NOT_YET_UPLOADED after timeout_ms, or the bytes once they arrive", async () => {
    const alice = await createUserDirect();
    const { mediaId } = await create(alice);
    const t0 = Date.now();
    await expectError(await raw("GET", `${V1}/download/${SERVER}/${mediaId}?timeout_ms=600`, { user: alice }), 504, "M_NOT_YET_UPLOADED");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    await expectError(await raw("GET", `${V1}/thumbnail/${SERVER}/${mediaId}?width=8&height=8&timeout_ms=0`, { user: alice }), 504, "M_NOT_YET_UPLOADED");

    const waiting = raw("GET", `${V1}/download/${SERVER}/${mediaId}?timeout_ms=10000`, { user: alice });
    await new Promise((r) => setTimeout(r, 300));
    const put = await raw("PUT", `${MEDIA}/upload/${SERVER}/${mediaId}`, { user: alice, body: "worth the wait", headers: { "content-type": "text/plain" } });
    expect(put.status).toBe(200);
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("worth the wait");
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it("a user holds at most 5 pending IDs (429 M_LIMIT_EXCEEDED with retry_after_ms); uploading frees one", async () => {
    const alice = await createUserDirect();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await create(alice)).mediaId);
    const res = await raw("POST", "/_matrix/media/v1/create", { user: alice });
    const body = (await res.json()) as { errcode: string; retry_after_ms: number };
    expect(res.status).toBe(429);
    expect(body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toBeGreaterThan(23 * 3600 * 1000);
    // Another user is not affected.
    await create(await createUserDirect());
    expect((await raw("PUT", `${MEDIA}/upload/${SERVER}/${ids[0]}`, { user: alice, body: "done" })).status).toBe(200);
    await create(alice);
  });
});

describe("thumbnails (no resizing: the original when it can serve as one)", () => {
  it("returns a small image itself, inline with an image type", async () => {
    const alice = await createUserDirect();
    const bytes = png(32, 32);
    const uri = await upload(alice, bytes, "image/png", "avatar.png");
    for (const method of ["crop", "scale"]) {
      const res = await raw("GET", `${V1}/thumbnail/${mxcPath(uri)}?width=96&height=96&method=${method}`, { user: alice });
      expect(res.status).toBe(200);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
      expect(res.headers.get("content-type")).toBe("image/png");
      expect(res.headers.get("content-disposition")).toBe("inline; filename=thumbnail.png");
    }
  });

  it("serves the sniffed type, not the declared one", async () => {
    const alice = await createUserDirect();
    const uri = await upload(alice, gif(16, 16, 1), "application/octet-stream");
    const res = await raw("GET", `${V1}/thumbnail/${mxcPath(uri)}?width=32&height=32`, { user: alice });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/gif");
    await res.arrayBuffer();
  });

  it("a larger image is returned only while it is small in bytes; otherwise 400 M_UNKNOWN", async () => {
    const alice = await createUserDirect();
    const modest = await upload(alice, png(800, 600), "image/png");
    const ok = await raw("GET", `${V1}/thumbnail/${mxcPath(modest)}?width=32&height=32&method=crop`, { user: alice });
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
    const heavy = await upload(alice, png(4000, 3000, false, 1024 * 1024 + 1), "image/png");
    await expectError(await raw("GET", `${V1}/thumbnail/${mxcPath(heavy)}?width=320&height=240`, { user: alice }), 400, "M_UNKNOWN");
    // Within the requested bounds, size does not matter: the spec says to return the original.
    const big = await raw("GET", `${V1}/thumbnail/${mxcPath(heavy)}?width=4000&height=3000`, { user: alice });
    expect(big.status).toBe(200);
    await big.arrayBuffer();
  });

  it("non-images, and animated images with animated=false, cannot be thumbnailed (400 M_UNKNOWN)", async () => {
    const alice = await createUserDirect();
    const text = await upload(alice, "plain text", "text/plain");
    await expectError(await raw("GET", `${V1}/thumbnail/${mxcPath(text)}?width=32&height=32`, { user: alice }), 400, "M_UNKNOWN");
    const fake = await upload(alice, "<svg/>", "image/png"); // declared an image, is not one
    await expectError(await raw("GET", `${V1}/thumbnail/${mxcPath(fake)}?width=32&height=32`, { user: alice }), 400, "M_UNKNOWN");
    const anim = await upload(alice, gif(16, 16, 2), "image/gif");
    await expectError(await raw("GET", `${V1}/thumbnail/${mxcPath(anim)}?width=32&height=32&animated=false`, { user: alice }), 400, "M_UNKNOWN");
    for (const q of ["animated=true", ""]) {
      const res = await raw("GET", `${V1}/thumbnail/${mxcPath(anim)}?width=32&height=32&${q}`, { user: alice });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
  });

  it("checks its parameters", async () => {
    const alice = await createUserDirect();
    const uri = await upload(alice, png(8, 8), "image/png");
    const p = `${V1}/thumbnail/${mxcPath(uri)}`;
    await expectError(await raw("GET", `${p}?height=8`, { user: alice }), 400, "M_MISSING_PARAM");
    await expectError(await raw("GET", `${p}?width=-1&height=8`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${p}?width=8&height=8&method=stretch`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${p}?width=8&height=8&animated=maybe`, { user: alice }), 400, "M_INVALID_PARAM");
    await expectError(await raw("GET", `${V1}/thumbnail/${SERVER}/nope0000?width=8&height=8`, { user: alice }), 404, "M_NOT_FOUND");
  });
});

describe("deprecated unauthenticated endpoints and URL previews", () => {
  it("download and thumbnail are frozen: 404 M_NOT_FOUND for media that exists", async () => {
    const alice = await createUserDirect();
    const uri = await upload(alice, png(8, 8), "image/png", "x.png");
    for (const v of ["r0", "v1", "v3"]) {
      await expectError(await raw("GET", `/_matrix/media/${v}/download/${mxcPath(uri)}`), 404, "M_NOT_FOUND");
      await expectError(await raw("GET", `/_matrix/media/${v}/download/${mxcPath(uri)}/x.png`, { user: alice }), 404, "M_NOT_FOUND");
      await expectError(await raw("GET", `/_matrix/media/${v}/thumbnail/${mxcPath(uri)}?width=8&height=8`), 404, "M_NOT_FOUND");
    }
    await expectError(await raw("GET", `${MEDIA}/download/${SERVER}/bad.id`), 400, "M_INVALID_PARAM");
  });

  it("preview_url: authentication, then 404 M_UNRECOGNIZED (previews disabled), on both paths", async () => {
    const alice = await createUserDirect();
    await expectError(await raw("GET", `${MEDIA}/preview_url?url=https://example.org`), 401, "M_MISSING_TOKEN");
    await expectError(await raw("GET", `${MEDIA}/preview_url?url=https://example.org`, { user: alice }), 404, "M_UNRECOGNIZED");
    await expectError(await raw("GET", `${V1}/preview_url?url=https://example.org`, { user: alice }), 404, "M_UNRECOGNIZED");
  });
});

describe("avatars", () => {
  it("upload → set avatar_url → everyone downloads it", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const bytes = png(64, 64);
    const uri = await upload(alice, bytes, "image/png", "me.png");
    await call("PUT", `/_matrix/client/v3/profile/${enc(alice.userId)}/avatar_url`, { user: alice, body: { avatar_url: uri } });
    const profile = await call<{ avatar_url: string }>("GET", `/_matrix/client/v3/profile/${enc(alice.userId)}`, { user: bob });
    expect(profile.avatar_url).toBe(uri);
    const res = await request("GET", `${V1}/download/${mxcPath(profile.avatar_url)}`, { user: bob });
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
    const thumb = await request("GET", `${V1}/thumbnail/${mxcPath(profile.avatar_url)}?width=96&height=96&method=crop`, { user: bob });
    expect(thumb.status).toBe(200);
    expect(new Uint8Array(await thumb.arrayBuffer())).toEqual(bytes);
  });
});
