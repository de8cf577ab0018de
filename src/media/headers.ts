/**
 * Response headers for served media (https://spec.matrix.org/v1.19/client-server-api/#serving-inline-content):
 * the Content-Type as uploaded (a UTF-8 charset added to text types that have none, as Synapse does), a
 * Content-Disposition that is `inline` only for the spec's safe types and `attachment` otherwise, with the file
 * name encoded per RFC 6266, and the sandboxing headers (CSP, CORP) the spec recommends.
 */

/** Types a browser may render inline without scripting risk (the spec's list; SVG deliberately absent). */
export const INLINE_CONTENT_TYPES: ReadonlySet<string> = new Set([
  "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
  "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
  "video/mp4", "video/webm", "video/ogg", "video/quicktime",
  "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav", "audio/x-wav",
  "audio/x-pn-wav", "audio/flac", "audio/x-flac",
]);

/** Text types served with `; charset=UTF-8` when uploaded without a parameter. */
const TEXT_CONTENT_TYPES: ReadonlySet<string> = new Set([
  "text/css", "text/csv", "text/html", "text/calendar", "text/plain", "text/javascript", "application/json",
  "application/ld+json", "application/rtf", "image/svg+xml", "text/xml",
]);

export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

/** The bare `type/subtype` of a Content-Type, lower-cased. */
export function essence(contentType: string): string {
  return contentType.split(";", 1)[0]!.trim().toLowerCase();
}

/** The Content-Type to serve for media stored with `stored` (null: unknown). */
export function servedContentType(stored: string | null): string {
  const type = stored && stored.trim() !== "" ? stored.trim() : DEFAULT_CONTENT_TYPE;
  return TEXT_CONTENT_TYPES.has(type.toLowerCase()) ? `${type}; charset=UTF-8` : type;
}

/** RFC 2616 separators: a file name containing one (or a control, space or non-ASCII character) is not a token. */
const SEPARATORS = new Set(`()<>@,;:\\"/[]?={}`);

function isToken(s: string): boolean {
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (code <= 32 || code >= 127 || SEPARATORS.has(ch)) return false;
  }
  return s.length > 0;
}

/** RFC 5987 `value-chars`: percent-encoded UTF-8, keeping only attr-chars. */
function extValue(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * `inline` for safe types, `attachment` otherwise, plus the file name: as a plain token when it is one,
 * otherwise as `filename*=utf-8''<percent-encoded>` (RFC 6266 §4.1). No name, no parameter.
 */
export function contentDisposition(contentType: string, fileName: string | null | undefined, forceInline = false): string {
  const disposition = forceInline || INLINE_CONTENT_TYPES.has(essence(contentType)) ? "inline" : "attachment";
  if (!fileName) return disposition;
  return isToken(fileName) ? `${disposition}; filename=${fileName}` : `${disposition}; filename*=utf-8''${extValue(fileName)}`;
}

/**
 * The file name of a Content-Disposition header (a remote server's answer), preferring `filename*` (RFC 5987,
 * UTF-8 or ISO-8859-1) over `filename` (token or quoted-string). Undefined when there is none or it is garbled.
 */
export function fileNameFromDisposition(header: string | null): string | undefined {
  if (!header) return undefined;
  const params = new Map<string, string>();
  // Parameters after the disposition type: name=token or name="quoted \"string\"".
  const re = /;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  for (let m = re.exec(header); m; m = re.exec(header)) {
    let value = m[2]!.trim();
    if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(m[1]!.toLowerCase(), value);
  }
  const ext = params.get("filename*");
  if (ext !== undefined) {
    const m = /^([A-Za-z0-9!#$&+^`{}~_-]+)'[^']*'(.*)$/.exec(ext);
    if (m) {
      const charset = m[1]!.toLowerCase();
      try {
        if (charset === "utf-8") return decodeURIComponent(m[2]!) || undefined;
        if (charset === "iso-8859-1") return unescape(m[2]!) || undefined;
      } catch {
        // malformed percent-encoding: fall back to `filename`
      }
    }
  }
  const plain = params.get("filename");
  return plain ? plain : undefined;
}

/** Headers every media answer carries: sandboxing (the spec's recommended CSP), cross-origin use, caching. */
export function mediaSecurityHeaders(h: Headers): void {
  h.set(
    "Content-Security-Policy",
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
  );
  h.set("X-Content-Security-Policy", "sandbox;");
  h.set("Cross-Origin-Resource-Policy", "cross-origin");
  h.set("Referrer-Policy", "no-referrer");
  h.set("X-Content-Type-Options", "nosniff");
  h.set("X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex");
  // Media is immutable; authenticated media must not be shared by intermediaries without revalidation.
  h.set("Cache-Control", "private, max-age=86400");
}
