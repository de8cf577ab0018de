/**
 * The `/_matrix/media/*` endpoints (https://spec.matrix.org/v1.19/client-server-api/#content-repository):
 * uploads (`POST /upload` under r0, v1 and v3, `POST /v1/create`, `PUT /v3/upload/{serverName}/{mediaId}`),
 * which have no authenticated replacement yet, and the deprecated download, thumbnail, config and preview_url.
 *
 * Frozen downloads: every piece of media Axon holds was uploaded or cached after authenticated media existed,
 * so — as Synapse does with `enable_authenticated_media` for media uploaded or cached after it was turned on —
 * the unauthenticated download and thumbnail endpoints answer 404 M_NOT_FOUND for all of it (the spec's "freeze").
 * `config` keeps working (it always required authentication); `preview_url` is disabled as on the v1 path.
 * See docs/media.md.
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { getConfig } from "../../config";
import { MatrixError, notFound, unrecognized } from "../../http/errors";
import { boolParam, checkMxcParts, createReservation, timeoutParam, uploadNew, uploadToReservation } from "../../media/repository";
import { parseThumbnailQuery } from "../../media/thumbnail";

export const legacyMediaRoutes = new Hono<AppEnv>();
const VERSIONS = ["r0", "v1", "v3"] as const;

for (const v of VERSIONS) {
  const base = `/_matrix/media/${v}`;
  legacyMediaRoutes.post(`${base}/upload`, requireAuth, async (c) => {
    refuseGuests(c);
    const uri = await uploadNew(c.env, c.req.raw, c.get("requester").userId, c.req.query("filename"));
    return c.json({ content_uri: uri });
  });
  legacyMediaRoutes.get(`${base}/config`, requireAuth, (c) => c.json({ "m.upload.size": getConfig(c.env).maxUploadSize }));
  legacyMediaRoutes.get(`${base}/preview_url`, requireAuth, () => {
    throw unrecognized("URL previews are disabled on this server");
  });
  legacyMediaRoutes.get(`${base}/download/:serverName/:mediaId`, frozen);
  legacyMediaRoutes.get(`${base}/download/:serverName/:mediaId/:fileName`, frozen);
  legacyMediaRoutes.get(`${base}/thumbnail/:serverName/:mediaId`, (c) => {
    parseThumbnailQuery((name) => c.req.query(name));
    return frozen(c);
  });
}

legacyMediaRoutes.post("/_matrix/media/v1/create", requireAuth, async (c) => {
  refuseGuests(c);
  return c.json(await createReservation(c.env, c.get("requester").userId));
});

legacyMediaRoutes.put("/_matrix/media/v3/upload/:serverName/:mediaId", requireAuth, async (c) => {
  refuseGuests(c);
  await uploadToReservation(c.env, c.req.raw, c.req.param("serverName"), c.req.param("mediaId"), c.get("requester").userId, c.req.query("filename"));
  return c.json({});
});

/** Guests may download but not upload (as Synapse). */
function refuseGuests(c: AppContext): void {
  if (c.get("requester").isGuest) throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
}

/** Deprecated unauthenticated download or thumbnail: parameters checked, then not found (frozen, see above). */
function frozen(c: AppContext): Response {
  checkMxcParts(c.req.param("serverName")!, c.req.param("mediaId")!);
  timeoutParam(c.req.query("timeout_ms"));
  boolParam(c.req.query("allow_remote"), "allow_remote", true);
  throw notFound("Not found: unauthenticated media access is frozen; use /_matrix/client/v1/media/download or /thumbnail");
}
