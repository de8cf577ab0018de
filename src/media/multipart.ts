/**
 * The `multipart/mixed` body of the federation media endpoints
 * (https://spec.matrix.org/v1.19/server-server-api/#content-repository): exactly two parts, a JSON metadata
 * object (currently always `{}`), then either the bytes with their Content-Type and Content-Disposition or a
 * `Location` header naming where the bytes are. RFC 2046 §5.1 framing, CRLF line ends.
 */
import { randomAlphanumeric } from "../protocol/event-id";

const encoder = new TextEncoder();

export interface MultipartMedia {
  /** Content-Type of the whole answer (carries the boundary). */
  contentType: string;
  body: ReadableStream<Uint8Array>;
  /** Total length in bytes. */
  length: number;
}

/** Builds the two-part answer around `bytes` (a stream of `size` bytes), with the media part's headers. */
export function buildMultipartMedia(
  bytes: ReadableStream<Uint8Array>,
  size: number,
  mediaHeaders: { contentType: string; contentDisposition: string },
): MultipartMedia {
  const boundary = randomAlphanumeric(32);
  const head = encoder.encode(
    `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n` +
      `--${boundary}\r\nContent-Type: ${mediaHeaders.contentType}\r\nContent-Disposition: ${mediaHeaders.contentDisposition}\r\n\r\n`,
  );
  const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
  return {
    contentType: `multipart/mixed; boundary=${boundary}`,
    body: concatStreams([head, bytes, tail]),
    length: head.length + size + tail.length,
  };
}

function concatStreams(parts: (Uint8Array | ReadableStream<Uint8Array>)[]): ReadableStream<Uint8Array> {
  let index = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (index >= parts.length) {
          controller.close();
          return;
        }
        const part = parts[index]!;
        if (part instanceof Uint8Array) {
          index++;
          controller.enqueue(part);
          return;
        }
        reader ??= part.getReader();
        const { done, value } = await reader.read();
        if (!done) {
          controller.enqueue(value);
          return;
        }
        reader = undefined;
        index++;
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
      for (const p of parts.slice(index + 1)) if (!(p instanceof Uint8Array)) await p.cancel(reason);
    },
  });
}

/** The media part of a federation answer: bytes with their headers, or a redirect. */
export type ParsedMediaPart =
  | { kind: "bytes"; bytes: Uint8Array; contentType: string | null; contentDisposition: string | null }
  | { kind: "location"; location: string };

export class MultipartError extends Error {
  override readonly name = "MultipartError";
}

/** The boundary parameter of a `multipart/mixed` Content-Type, or undefined when it is something else. */
export function multipartBoundary(contentType: string | null): string | undefined {
  if (!contentType) return undefined;
  const [type, ...params] = contentType.split(";");
  if (type!.trim().toLowerCase() !== "multipart/mixed") return undefined;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0) continue;
    if (p.slice(0, eq).trim().toLowerCase() !== "boundary") continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    return v.length > 0 && v.length <= 70 ? v : undefined;
  }
  return undefined;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  outer: for (let i = hay.indexOf(first!, from); i >= 0 && i + needle.length <= hay.length; i = hay.indexOf(first!, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

interface Part {
  headers: Headers;
  body: Uint8Array;
}

/** Splits a multipart body into its parts (preamble and epilogue ignored). Throws {@link MultipartError}. */
export function parseMultipart(body: Uint8Array, boundary: string): Part[] {
  const delimiter = encoder.encode(`--${boundary}`);
  // The first delimiter may open the body; later ones follow a line break (CRLF, or a bare LF from lax senders).
  let at = indexOf(body, delimiter, 0);
  if (at < 0) throw new MultipartError("no boundary in body");
  const parts: Part[] = [];
  for (;;) {
    let cursor = at + delimiter.length;
    if (body[cursor] === 0x2d && body[cursor + 1] === 0x2d) return parts; // closing delimiter
    // Rest of the delimiter line (transport padding), then the line break.
    while (cursor < body.length && (body[cursor] === 0x20 || body[cursor] === 0x09)) cursor++;
    if (body[cursor] === 0x0d) cursor++;
    if (body[cursor] !== 0x0a) throw new MultipartError("malformed boundary line");
    cursor++;
    const next = indexOf(body, encoder.encode(`\n--${boundary}`), cursor - 1);
    if (next < 0) throw new MultipartError("unterminated part");
    let end = next;
    if (end > 0 && body[end - 1] === 0x0d) end--;
    parts.push(parsePart(body.subarray(cursor, Math.max(cursor, end))));
    at = next + 1;
  }
}

function parsePart(raw: Uint8Array): Part {
  // Headers end at the first empty line; a part may have no headers at all (the body starts with a line break).
  let split = -1;
  let bodyStart = 0;
  if (raw[0] === 0x0a) bodyStart = 1;
  else if (raw[0] === 0x0d && raw[1] === 0x0a) bodyStart = 2;
  else {
    for (let i = 0; i < raw.length; i++) {
      if (raw[i] !== 0x0a) continue;
      if (raw[i + 1] === 0x0a) {
        split = i;
        bodyStart = i + 2;
        break;
      }
      if (raw[i + 1] === 0x0d && raw[i + 2] === 0x0a) {
        split = i;
        bodyStart = i + 3;
        break;
      }
    }
    if (split < 0) throw new MultipartError("part without a header terminator");
  }
  const headers = new Headers();
  if (split >= 0) {
    const text = new TextDecoder().decode(raw.subarray(0, split));
    for (const line of text.split(/\r?\n/)) {
      if (line.trim() === "") continue;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new MultipartError(`malformed part header ${JSON.stringify(line.slice(0, 80))}`);
      try {
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      } catch {
        throw new MultipartError(`invalid part header ${JSON.stringify(line.slice(0, 80))}`);
      }
    }
  }
  return { headers, body: raw.subarray(bodyStart) };
}

/**
 * Reads a federation media answer: the first part must be a JSON object, the second holds the media or a
 * `Location`. Throws {@link MultipartError} for anything else.
 */
export function parseMediaAnswer(body: Uint8Array, boundary: string): ParsedMediaPart {
  const parts = parseMultipart(body, boundary);
  if (parts.length !== 2) throw new MultipartError(`expected 2 parts, got ${parts.length}`);
  const [meta, media] = parts as [Part, Part];
  const metaType = meta.headers.get("content-type");
  if (metaType !== null && !metaType.toLowerCase().startsWith("application/json")) {
    throw new MultipartError("first part is not JSON");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(meta.body));
  } catch {
    throw new MultipartError("first part is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new MultipartError("metadata is not a JSON object");
  const location = media.headers.get("location");
  if (location !== null) return { kind: "location", location };
  return {
    kind: "bytes",
    bytes: media.body,
    contentType: media.headers.get("content-type"),
    contentDisposition: media.headers.get("content-disposition"),
  };
}
