/**
 * Media for other servers: `GET /_matrix/federation/v1/media/download/{mediaId}` and `…/thumbnail/{mediaId}`
 * (https://spec.matrix.org/v1.19/server-server-api/#content-repository). X-Matrix authentication as every
 * federation route (index.ts); only our own media is served, never media we cached from elsewhere. The answer
 * is multipart/mixed: `{}` then the bytes (src/media/multipart.ts). Thumbnails follow the client rules
 * (src/media/thumbnail.ts).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { awaitLocalMedia, openMedia, timeoutParam } from "../../media/repository";
import { contentDisposition, servedContentType } from "../../media/headers";
import { buildMultipartMedia } from "../../media/multipart";
import { originalAsThumbnail, parseThumbnailQuery, thumbnailFileName } from "../../media/thumbnail";
import type { StoredMedia } from "../../media/store";

export const federationMedia = new Hono<AppEnv>();

async function multipartAnswer(c: AppContext, found: StoredMedia, type: string, fileName: string | null, inline: boolean): Promise<Response> {
  const { media, object } = await openMedia(c.env, found, { timeoutMs: 0, allowRemote: false });
  const multipart = buildMultipartMedia(object.body, media.size, {
    contentType: servedContentType(type),
    contentDisposition: contentDisposition(type, fileName, inline),
  });
  return new Response(multipart.body, {
    headers: { "Content-Type": multipart.contentType, "Content-Length": String(multipart.length) },
  });
}

federationMedia.get("/_matrix/federation/v1/media/download/:mediaId", async (c) => {
  const media = await awaitLocalMedia(c.env, c.req.param("mediaId"), timeoutParam(c.req.query("timeout_ms")), c.req.raw.signal);
  return multipartAnswer(c, media, media.content_type ?? "", media.upload_name, false);
});

federationMedia.get("/_matrix/federation/v1/media/thumbnail/:mediaId", async (c) => {
  const req = parseThumbnailQuery((name) => c.req.query(name));
  const media = await awaitLocalMedia(c.env, c.req.param("mediaId"), timeoutParam(c.req.query("timeout_ms")), c.req.raw.signal);
  const type = originalAsThumbnail(media, req);
  return multipartAnswer(c, media, type, thumbnailFileName(type), true);
});
