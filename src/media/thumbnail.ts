/**
 * Thumbnails without an image library (docs/media.md, "Thumbnails").
 *
 * Workers cannot decode or resize images here, so Axon never generates a thumbnail. What it can do honestly is
 * what the spec asks for when the content is no bigger than requested: "servers should return the original
 * content rather than thumbnail it". It also returns the original when it is larger than requested but small
 * enough to be a sensible stand-in (the spec lets a thumbnail be larger than asked, never smaller and never
 * upscaled, and the original is neither). Everything else is the spec's 400 "cannot thumbnail" answer, as
 * Synapse gives when it has no thumbnail for the media.
 */
import { MatrixError } from "../http/errors";
import type { StoredMedia } from "./store";

/** An original larger than requested is served as its own thumbnail only up to this many bytes… */
export const PASSTHROUGH_MAX_BYTES = 1024 * 1024;
/** …and this many pixels (Synapse's default max_image_pixels), so that no client decodes a huge image. */
export const PASSTHROUGH_MAX_PIXELS = 32 * 1000 * 1000;

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: "crop" | "scale";
  /** `animated` query parameter; undefined when absent. */
  animated: boolean | undefined;
}

const cannotThumbnail = (why: string) =>
  new MatrixError(400, "M_UNKNOWN", `Cannot generate thumbnails for the requested content: ${why}`);

/** Checks that `media` can answer `req` as it is; returns the image type to serve it as, or throws 400. */
export function originalAsThumbnail(media: StoredMedia, req: ThumbnailRequest): string {
  const { image_type: type, image_width: width, image_height: height } = media;
  if (!type || !width || !height) {
    throw cannotThumbnail("it is not a PNG, JPEG, GIF or WebP image, and this server does not generate thumbnails");
  }
  // `animated=false` forbids an animated answer (absent only discourages it: see docs/media.md).
  if (media.animated === 1 && req.animated === false) {
    throw cannotThumbnail("the image is animated and this server cannot produce a still frame");
  }
  const withinRequest = width <= req.width && height <= req.height;
  const smallEnough = media.size <= PASSTHROUGH_MAX_BYTES && width * height <= PASSTHROUGH_MAX_PIXELS;
  if (!withinRequest && !smallEnough) {
    throw cannotThumbnail("the image is larger than requested and this server does not resize images");
  }
  return type;
}

/** Parses and checks the thumbnail query parameters (400 M_INVALID_PARAM / M_MISSING_PARAM). */
export function parseThumbnailQuery(query: (name: string) => string | undefined): ThumbnailRequest {
  const dim = (name: string): number => {
    const raw = query(name);
    if (raw === undefined || raw === "") throw new MatrixError(400, "M_MISSING_PARAM", `Missing integer query parameter '${name}'`);
    if (!/^\d{1,9}$/.test(raw) || Number(raw) <= 0) {
      throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter '${name}' must be a positive integer`);
    }
    return Number(raw);
  };
  const width = dim("width");
  const height = dim("height");
  const method = query("method") ?? "scale";
  if (method !== "crop" && method !== "scale") {
    throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter 'method' must be 'crop' or 'scale'");
  }
  const rawAnimated = query("animated");
  let animated: boolean | undefined;
  if (rawAnimated === "true") animated = true;
  else if (rawAnimated === "false") animated = false;
  else if (rawAnimated !== undefined) throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter 'animated' must be true or false");
  return { width, height, method, animated };
}

/** File extension for the thumbnail's Content-Disposition name. */
export function thumbnailFileName(type: string): string {
  const ext = { "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp" }[type] ?? "bin";
  return `thumbnail.${ext}`;
}
