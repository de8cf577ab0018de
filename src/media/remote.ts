/**
 * Remote media: fetching `mxc://<other server>/<id>` from its origin over federation and caching it
 * (https://spec.matrix.org/v1.19/server-server-api/#content-repository).
 *
 * The signed `GET /_matrix/federation/v1/media/download/{mediaId}` comes first; its multipart answer carries the
 * bytes or a `Location` to fetch them from (followed, never cached). A server that does not know the endpoint
 * (404 `M_UNRECOGNIZED`) is asked the deprecated `/_matrix/media/v3/download/...?allow_remote=false` instead.
 * As Synapse: the origin's 404 is ours, any other failure is 502; media above MAX_UPLOAD_SIZE is 502
 * `M_TOO_LARGE`. One fetch per (origin, media ID) at a time in an isolate; concurrent requests share it.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { MatrixError, notFound } from "../http/errors";
import { FederationClient, FederationRequestError, DEFAULT_TIMEOUT_MS, seg } from "../federation/client";
import { federationFetch } from "../federation/fetch";
import { BodyTooLargeError, contentLength, readLimited } from "./body";
import { fileNameFromDisposition } from "./headers";
import { multipartBoundary, MultipartError, parseMediaAnswer } from "./multipart";
import { describeContent, storeRemote, type StoredMedia } from "./store";

/** Room for the multipart framing and the JSON part around the media bytes. */
const MULTIPART_OVERHEAD = 64 * 1024;

const fetchFailed = () => new MatrixError(502, "M_UNKNOWN", "Failed to fetch remote media");
const remoteTooLarge = () => new MatrixError(502, "M_TOO_LARGE", "Remote media is too large");

const inflight = new Map<string, Promise<StoredMedia>>();

/** Fetches and caches remote media (shared with concurrent requests for the same media in this isolate). */
export function fetchRemoteMedia(env: Env, origin: string, mediaId: string, timeoutMs: number): Promise<StoredMedia> {
  const key = `${origin}/${mediaId}`;
  let p = inflight.get(key);
  if (!p) {
    p = download(env, origin, mediaId, timeoutMs).finally(() => inflight.delete(key));
    inflight.set(key, p);
  }
  return p;
}

interface Fetched {
  bytes: Uint8Array;
  contentType: string | null;
  contentDisposition: string | null;
}

async function download(env: Env, origin: string, mediaId: string, timeoutMs: number): Promise<StoredMedia> {
  const config = getConfig(env);
  const max = config.maxUploadSize;
  const client = new FederationClient(env);
  const opts = { query: { timeout_ms: timeoutMs }, timeoutMs: DEFAULT_TIMEOUT_MS + timeoutMs };
  let fetched: Fetched;
  try {
    const res = await client.send(origin, "GET", `/_matrix/federation/v1/media/download/${seg(mediaId)}`, undefined, opts);
    if (res.ok) {
      fetched = await fromMultipart(res, max);
    } else if (await isUnrecognized(res)) {
      // An older server: the deprecated endpoint, told not to fetch from anywhere else.
      const legacy = await client.send(
        origin,
        "GET",
        `/_matrix/media/v3/download/${seg(origin)}/${seg(mediaId)}`,
        undefined,
        { ...opts, query: { ...opts.query, allow_remote: "false", allow_redirect: "true" } },
      );
      fetched = await fromPlainAnswer(legacy, max);
    } else {
      throw failureFor(res.status);
    }
  } catch (e) {
    if (e instanceof MatrixError) throw e;
    if (e instanceof BodyTooLargeError) throw remoteTooLarge();
    if (e instanceof FederationRequestError || e instanceof MultipartError) {
      console.warn(`media: fetching mxc://${origin}/${mediaId} failed: ${e.message}`);
      throw fetchFailed();
    }
    throw e;
  }
  const content = await describeContent(fetched.bytes, fetched.contentType, fileNameFromDisposition(fetched.contentDisposition) ?? null);
  return storeRemote(env, config.serverName, origin, mediaId, content);
}

/** The origin's 404 is a 404 here; anything else it says is a 502. */
function failureFor(status: number): MatrixError {
  return status === 404 ? notFound("Remote media not found") : fetchFailed();
}

/** A 404 (or 400, as older servers answer) `M_UNRECOGNIZED`: the origin does not have the endpoint. */
async function isUnrecognized(res: Response): Promise<boolean> {
  const text = await res.text().catch(() => "");
  if (res.status !== 404 && res.status !== 400) return false;
  try {
    return (JSON.parse(text) as { errcode?: unknown }).errcode === "M_UNRECOGNIZED";
  } catch {
    return false;
  }
}

async function fromMultipart(res: Response, max: number): Promise<Fetched> {
  const boundary = multipartBoundary(res.headers.get("content-type"));
  if (!boundary) {
    await res.body?.cancel();
    throw new MultipartError(`answer is ${res.headers.get("content-type") ?? "untyped"}, not multipart/mixed`);
  }
  const body = await readLimited(res.body, max + MULTIPART_OVERHEAD, contentLength(res.headers));
  const part = parseMediaAnswer(body, boundary);
  if (part.kind === "bytes") {
    if (part.bytes.length > max) throw new BodyTooLargeError("media part too large");
    return { bytes: part.bytes, contentType: part.contentType, contentDisposition: part.contentDisposition };
  }
  // A redirect: the bytes are elsewhere (a CDN, say); its answer's headers describe them.
  let located: Response;
  try {
    located = await federationFetch(part.location, { redirect: "follow", signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS) });
  } catch (e) {
    throw new MultipartError(`fetching Location ${part.location}: ${(e as Error).message}`);
  }
  return fromPlainAnswer(located, max);
}

async function fromPlainAnswer(res: Response, max: number): Promise<Fetched> {
  if (!res.ok) {
    await res.body?.cancel();
    throw failureFor(res.status);
  }
  const bytes = await readLimited(res.body, max, contentLength(res.headers));
  return { bytes, contentType: res.headers.get("content-type"), contentDisposition: res.headers.get("content-disposition") };
}
