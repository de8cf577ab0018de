/**
 * The media repository's operations shared by the client, legacy and federation routes: checking mxc://
 * parts, uploads, waiting for a reserved ID to be uploaded to (`timeout_ms`), finding local or remote media,
 * and building the answers (docs/media.md).
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { MatrixError, forbidden, invalidParam, limitExceeded, notFound, tooLarge } from "../http/errors";
import { isValidServerName } from "../protocol/identifiers";
import { randomAlphanumeric } from "../protocol/event-id";
import { BodyTooLargeError, contentLength, readLimited } from "./body";
import { contentDisposition, mediaSecurityHeaders, servedContentType } from "./headers";
import { fetchRemoteMedia } from "./remote";
import {
  describeContent, fillReservation, getMedia, isUploaded, reserve, storeNewLocal, type MediaRow, type StoredMedia,
} from "./store";

/** `timeout_ms`: 20 s unless given, at most 60 s (Synapse's bounds). */
export const DEFAULT_TIMEOUT_MS = 20_000;
export const MAX_TIMEOUT_MS = 60_000;
/** How often a download waiting for an upload looks again. */
const POLL_INTERVAL_MS = 500;

const MEDIA_ID = /^[A-Za-z0-9_-]+$/;

/** Checks the server name and media ID of an mxc:// URI taken from a path (400 M_INVALID_PARAM). */
export function checkMxcParts(serverName: string, mediaId: string): void {
  if (!isValidServerName(serverName)) throw invalidParam(`Invalid server name ${JSON.stringify(serverName)}`);
  checkMediaId(mediaId);
}

export function checkMediaId(mediaId: string): void {
  if (!MEDIA_ID.test(mediaId) || mediaId.length > 255) throw invalidParam("Media ID may only contain A-Z, a-z, 0-9, _ and -");
}

/** The `timeout_ms` query parameter, bounded (400 M_INVALID_PARAM when not a non-negative integer). */
export function timeoutParam(raw: string | undefined): number {
  if (raw === undefined || raw === "") return DEFAULT_TIMEOUT_MS;
  if (!/^\d{1,15}$/.test(raw)) throw invalidParam("timeout_ms must be a non-negative integer");
  return Math.min(Number(raw), MAX_TIMEOUT_MS);
}

/** `allow_remote` (default true). */
export function boolParam(raw: string | undefined, name: string, fallback: boolean): boolean {
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true") return true;
  if (raw === "false") return false;
  throw invalidParam(`${name} must be true or false`);
}

// --- uploads ---

/** Reads an upload's body: 413 M_TOO_LARGE past MAX_UPLOAD_SIZE (declared or actual). */
async function readUpload(env: Env, request: Request): Promise<Uint8Array> {
  const max = getConfig(env).maxUploadSize;
  try {
    return await readLimited(request.body, max, contentLength(request.headers));
  } catch (e) {
    if (e instanceof BodyTooLargeError) throw tooLarge(`Cannot upload files larger than ${max} bytes`);
    throw e;
  }
}

/** POST /upload: stores the body under a new media ID; returns the mxc:// URI. */
export async function uploadNew(env: Env, request: Request, uploader: string, fileName: string | undefined): Promise<string> {
  const { serverName } = getConfig(env);
  const bytes = await readUpload(env, request);
  const content = await describeContent(bytes, request.headers.get("content-type"), fileName || null);
  const mediaId = randomAlphanumeric(24);
  await storeNewLocal(env, serverName, mediaId, uploader, content);
  return `mxc://${serverName}/${mediaId}`;
}

/** POST /create: reserves a media ID; 429 when the user holds too many unused reservations. */
export async function createReservation(env: Env, uploader: string): Promise<{ content_uri: string; unused_expires_at: number }> {
  const { serverName } = getConfig(env);
  const mediaId = randomAlphanumeric(24);
  const now = Date.now();
  const r = await reserve(env.DB, serverName, mediaId, uploader, now);
  if ("limitedUntil" in r) throw limitExceeded(Math.max(0, r.limitedUntil - now));
  return { content_uri: `mxc://${serverName}/${mediaId}`, unused_expires_at: r.expiresTs };
}

/** Why `uploader` cannot upload to `row` (checked before the body is read, and again after a lost race). */
function reservationProblem(row: MediaRow | null, uploader: string, now: number): MatrixError | undefined {
  if (!row) return notFound("Unknown media ID");
  if (row.uploader !== uploader) return forbidden("Only the creator of the media ID can upload to it");
  if (row.size !== null) return new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
  if (row.expires_ts === null || row.expires_ts <= now) return notFound("Media ID has expired");
  return undefined;
}

/** PUT /upload/{serverName}/{mediaId}: fills a reservation made by `uploader`. */
export async function uploadToReservation(
  env: Env,
  request: Request,
  serverName: string,
  mediaId: string,
  uploader: string,
  fileName: string | undefined,
): Promise<void> {
  const config = getConfig(env);
  if (serverName !== config.serverName) throw notFound("Non-local server name specified");
  checkMediaId(mediaId);
  const problem = reservationProblem(await getMedia(env.DB, serverName, mediaId), uploader, Date.now());
  if (problem) throw problem;
  const bytes = await readUpload(env, request);
  const content = await describeContent(bytes, request.headers.get("content-type"), fileName || null);
  if (await fillReservation(env, serverName, mediaId, uploader, content)) return;
  throw reservationProblem(await getMedia(env.DB, serverName, mediaId), uploader, Date.now()) ??
    new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
}

// --- finding media ---

/**
 * Local media, waiting up to `timeoutMs` for a reserved ID to be uploaded to: 404 when unknown or expired,
 * 504 M_NOT_YET_UPLOADED when still empty at the deadline. Read-only: `signal` (the client going away) ends it.
 */
export async function awaitLocalMedia(env: Env, mediaId: string, timeoutMs: number, signal?: AbortSignal): Promise<StoredMedia> {
  checkMediaId(mediaId);
  const { serverName } = getConfig(env);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await getMedia(env.DB, serverName, mediaId);
    if (!row) throw notFound("Media not found");
    if (isUploaded(row)) return row;
    const now = Date.now();
    if (row.expires_ts === null || row.expires_ts <= now) throw notFound("Media not found");
    if (now >= deadline) throw new MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
    await sleep(Math.min(POLL_INTERVAL_MS, deadline - now), signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface FindOptions {
  timeoutMs: number;
  /** false: never contact another server (the media must be local or cached). */
  allowRemote: boolean;
  signal?: AbortSignal;
}

/** Media by mxc:// parts: local (waiting for an upload), or remote (cached, else fetched from its origin). */
export async function findMedia(env: Env, serverName: string, mediaId: string, opts: FindOptions): Promise<StoredMedia> {
  checkMxcParts(serverName, mediaId);
  if (serverName === getConfig(env).serverName) return awaitLocalMedia(env, mediaId, opts.timeoutMs, opts.signal);
  const cached = await getMedia(env.DB, serverName, mediaId);
  if (cached && isUploaded(cached)) return cached;
  if (!opts.allowRemote) throw notFound("Media not found (remote media not requested: allow_remote=false)");
  return fetchRemoteMedia(env, serverName, mediaId, opts.timeoutMs);
}

/** The bytes of stored media; a cached remote copy whose object went missing is fetched again once. */
export async function openMedia(env: Env, media: StoredMedia, opts: FindOptions): Promise<{ media: StoredMedia; object: R2ObjectBody }> {
  const object = await env.MEDIA.get(media.object_key);
  if (object) return { media, object };
  console.error(`media: object ${media.object_key} of ${media.origin}/${media.media_id} is missing`);
  if (media.origin !== getConfig(env).serverName && opts.allowRemote) {
    await env.DB.prepare("DELETE FROM media WHERE origin = ? AND media_id = ? AND object_key = ?")
      .bind(media.origin, media.media_id, media.object_key)
      .run();
    const again = await fetchRemoteMedia(env, media.origin, media.media_id, opts.timeoutMs);
    const retried = await env.MEDIA.get(again.object_key);
    if (retried) return { media: again, object: retried };
  }
  throw notFound("Media not found");
}

// --- answers ---

/** The headers of a media answer: type, disposition (with `fileName`, else the upload's name), length, sandboxing. */
export function mediaHeaders(contentType: string, fileName: string | null, size: number, forceInline = false): Headers {
  const h = new Headers();
  mediaSecurityHeaders(h);
  h.set("Content-Type", servedContentType(contentType));
  h.set("Content-Disposition", contentDisposition(contentType, fileName, forceInline));
  h.set("Content-Length", String(size));
  return h;
}

export function mediaResponse(media: StoredMedia, object: R2ObjectBody, fileName?: string): Response {
  return new Response(object.body, { status: 200, headers: mediaHeaders(media.content_type ?? "", fileName || media.upload_name, media.size) });
}
