/**
 * Media metadata (D1 table `media`, migrations/0008_media.sql) and bytes (R2 bucket MEDIA).
 *
 * Object keys: `local/<mediaId>/<sha256>` for our media, `remote/<origin>/<mediaId>/<sha256>` for cached remote
 * media. The bytes are written before the row that points at them, so a row with a `size` always has its
 * object; a failed or lost race leaves at most an unreferenced object, which is deleted on the spot.
 */
import type { Env } from "../env";
import { sniffImage, type ImageInfo } from "./image";
import { DEFAULT_CONTENT_TYPE } from "./headers";

export interface MediaRow {
  origin: string;
  media_id: string;
  uploader: string | null;
  created_ts: number;
  expires_ts: number | null;
  content_type: string | null;
  upload_name: string | null;
  size: number | null;
  sha256: string | null;
  object_key: string | null;
  uploaded_ts: number | null;
  image_type: string | null;
  image_width: number | null;
  image_height: number | null;
  animated: number | null;
}

/** A row whose bytes are there. */
export type StoredMedia = MediaRow & { size: number; object_key: string };

export function isUploaded(row: MediaRow): row is StoredMedia {
  return row.size !== null && row.object_key !== null;
}

/** How long a reserved (created, not uploaded) media ID stays usable: 24 hours, the spec's recommendation. */
export const UNUSED_EXPIRATION_MS = 24 * 3600 * 1000;
/** Reservations a user may hold at once (Synapse's default); more is 429 M_LIMIT_EXCEEDED. */
export const MAX_PENDING_UPLOADS = 5;

export async function getMedia(db: D1Database, origin: string, mediaId: string): Promise<MediaRow | null> {
  return db.prepare("SELECT * FROM media WHERE origin = ? AND media_id = ?").bind(origin, mediaId).first<MediaRow>();
}

/** The bytes about to be stored, described. */
export interface Content {
  bytes: Uint8Array;
  contentType: string;
  uploadName: string | null;
  sha256: string;
  image: ImageInfo | undefined;
}

export async function describeContent(bytes: Uint8Array, contentType: string | null, uploadName: string | null): Promise<Content> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const type = contentType && contentType.trim() !== "" ? contentType.trim() : DEFAULT_CONTENT_TYPE;
  return { bytes, contentType: type, uploadName: uploadName || null, sha256, image: sniffImage(bytes) };
}

export function objectKey(localServer: string, origin: string, mediaId: string, sha256: string): string {
  return origin === localServer ? `local/${mediaId}/${sha256}` : `remote/${origin}/${mediaId}/${sha256}`;
}

async function putObject(env: Env, key: string, content: Content): Promise<void> {
  await env.MEDIA.put(key, content.bytes, { sha256: content.sha256, httpMetadata: { contentType: content.contentType } });
}

/** Deletes an object nothing refers to (a lost race, a failed insert); failures only leave garbage behind. */
async function dropObject(env: Env, key: string): Promise<void> {
  try {
    await env.MEDIA.delete(key);
  } catch (e) {
    console.warn("media: could not delete unreferenced object", key, e);
  }
}

function contentColumns(content: Content, key: string, now: number): unknown[] {
  return [
    content.contentType, content.uploadName, content.bytes.length, content.sha256, key, now,
    content.image?.type ?? null, content.image?.width ?? null, content.image?.height ?? null,
    content.image ? (content.image.animated ? 1 : 0) : null,
  ];
}

/** Stores a new local upload under a fresh media ID. */
export async function storeNewLocal(env: Env, serverName: string, mediaId: string, uploader: string, content: Content): Promise<void> {
  const key = objectKey(serverName, serverName, mediaId, content.sha256);
  const now = Date.now();
  await putObject(env, key, content);
  try {
    await env.DB.prepare(
      `INSERT INTO media (origin, media_id, uploader, created_ts, content_type, upload_name, size, sha256, object_key,
         uploaded_ts, image_type, image_width, image_height, animated)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
      .bind(serverName, mediaId, uploader, now, ...contentColumns(content, key, now))
      .run();
  } catch (e) {
    await dropObject(env, key);
    throw e;
  }
}

/**
 * Reserves a media ID for `uploader` (POST /create), unless they already hold MAX_PENDING_UPLOADS unexpired
 * reservations: then returns the time the earliest of them expires. The count and the insert are one statement.
 */
export async function reserve(
  db: D1Database,
  serverName: string,
  mediaId: string,
  uploader: string,
  now: number,
): Promise<{ expiresTs: number } | { limitedUntil: number }> {
  const expiresTs = now + UNUSED_EXPIRATION_MS;
  // Reservations that expired unused are gone for good.
  await db.prepare("DELETE FROM media WHERE uploader = ? AND size IS NULL AND expires_ts <= ?").bind(uploader, now).run();
  const res = await db
    .prepare(
      `INSERT INTO media (origin, media_id, uploader, created_ts, expires_ts)
       SELECT ?, ?, ?, ?, ?
       WHERE (SELECT COUNT(*) FROM media WHERE uploader = ? AND size IS NULL AND expires_ts > ?) < ?`,
    )
    .bind(serverName, mediaId, uploader, now, expiresTs, uploader, now, MAX_PENDING_UPLOADS)
    .run();
  if (res.meta.changes === 1) return { expiresTs };
  const first = await db
    .prepare("SELECT MIN(expires_ts) AS t FROM media WHERE uploader = ? AND size IS NULL AND expires_ts > ?")
    .bind(uploader, now)
    .first<{ t: number | null }>();
  return { limitedUntil: first?.t ?? now + UNUSED_EXPIRATION_MS };
}

/**
 * Fills a reservation with its bytes (PUT /upload/{serverName}/{mediaId}). Returns false when the reservation
 * was filled, or expired, meanwhile (the caller re-reads the row to say which); the bytes are then not kept.
 */
export async function fillReservation(env: Env, serverName: string, mediaId: string, uploader: string, content: Content): Promise<boolean> {
  const key = objectKey(serverName, serverName, mediaId, content.sha256);
  const now = Date.now();
  await putObject(env, key, content);
  const res = await env.DB.prepare(
    `UPDATE media SET content_type = ?, upload_name = ?, size = ?, sha256 = ?, object_key = ?, uploaded_ts = ?,
       image_type = ?, image_width = ?, image_height = ?, animated = ?, expires_ts = NULL
     WHERE origin = ? AND media_id = ? AND uploader = ? AND size IS NULL AND expires_ts > ?`,
  )
    .bind(...contentColumns(content, key, now), serverName, mediaId, uploader, now)
    .run();
  if (res.meta.changes === 1) return true;
  // Someone else's identical bytes may sit under the same key: only drop ours when nothing points at it.
  const row = await getMedia(env.DB, serverName, mediaId);
  if (row?.object_key !== key) await dropObject(env, key);
  return false;
}

/** Caches remote media; when another request cached it first, keeps theirs. Returns the row now stored. */
export async function storeRemote(env: Env, serverName: string, origin: string, mediaId: string, content: Content): Promise<StoredMedia> {
  const key = objectKey(serverName, origin, mediaId, content.sha256);
  const now = Date.now();
  await putObject(env, key, content);
  const res = await env.DB.prepare(
    `INSERT INTO media (origin, media_id, uploader, created_ts, content_type, upload_name, size, sha256, object_key,
       uploaded_ts, image_type, image_width, image_height, animated)
     VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (origin, media_id) DO NOTHING`,
  )
    .bind(origin, mediaId, now, ...contentColumns(content, key, now))
    .run();
  const row = await getMedia(env.DB, origin, mediaId);
  if (res.meta.changes !== 1 && row?.object_key !== key) await dropObject(env, key);
  if (!row || !isUploaded(row)) throw new Error(`media ${origin}/${mediaId} vanished after caching`);
  return row;
}
