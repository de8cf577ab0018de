/**
 * The authenticated media endpoints of the client-server API (spec v1.11+):
 * `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`, `…/thumbnail/{serverName}/{mediaId}`,
 * `…/config` and `…/preview_url`. https://spec.matrix.org/v1.19/client-server-api/#content-repository
 * Uploads stay under /_matrix/media (legacy.ts). How media is stored and served: docs/media.md.
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { getConfig } from "../../config";
import { unrecognized } from "../../http/errors";
import {
  findMedia, mediaHeaders, mediaResponse, openMedia, timeoutParam, type FindOptions,
} from "../../media/repository";
import { originalAsThumbnail, parseThumbnailQuery, thumbnailFileName } from "../../media/thumbnail";

export const clientMediaRoutes = new Hono<AppEnv>();
const V1 = "/_matrix/client/v1/media";

clientMediaRoutes.use(`${V1}/*`, requireAuth);

function findOptions(c: AppContext): FindOptions {
  // allow_remote is not a parameter of these endpoints; honouring it anyway costs nothing (Synapse does too on /_matrix/media).
  return {
    timeoutMs: timeoutParam(c.req.query("timeout_ms")),
    allowRemote: c.req.query("allow_remote") !== "false",
    signal: c.req.raw.signal,
  };
}

async function download(c: AppContext, fileName?: string): Promise<Response> {
  const opts = findOptions(c);
  const found = await findMedia(c.env, c.req.param("serverName")!, c.req.param("mediaId")!, opts);
  const { media, object } = await openMedia(c.env, found, opts);
  return mediaResponse(media, object, fileName);
}

clientMediaRoutes.get(`${V1}/download/:serverName/:mediaId`, (c) => download(c));
clientMediaRoutes.get(`${V1}/download/:serverName/:mediaId/:fileName`, (c) => download(c, c.req.param("fileName")));

/** A thumbnail: the original itself when it can serve as one, else 400 (src/media/thumbnail.ts). */
clientMediaRoutes.get(`${V1}/thumbnail/:serverName/:mediaId`, async (c) => {
  const req = parseThumbnailQuery((name) => c.req.query(name));
  const opts = findOptions(c);
  const found = await findMedia(c.env, c.req.param("serverName")!, c.req.param("mediaId")!, opts);
  const type = originalAsThumbnail(found, req);
  const { media, object } = await openMedia(c.env, found, opts);
  return new Response(object.body, { headers: mediaHeaders(type, thumbnailFileName(type), media.size, true) });
});

clientMediaRoutes.get(`${V1}/config`, (c) => c.json({ "m.upload.size": getConfig(c.env).maxUploadSize }));

/**
 * URL previews are not offered (Axon has no policy for fetching arbitrary URLs on users' behalf): the answer
 * is Synapse's with `url_preview_enabled: false` — authentication first, then 404 M_UNRECOGNIZED.
 */
clientMediaRoutes.get(`${V1}/preview_url`, () => {
  throw unrecognized("URL previews are disabled on this server");
});
