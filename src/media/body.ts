/** Reading a body of bytes with an upper bound, without ever holding more than the bound. */

export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
}

/**
 * All the bytes of `body` (null: none), or {@link BodyTooLargeError} as soon as more than `max` arrive (the rest
 * is cancelled). A `declaredLength` (Content-Length) above `max` fails before anything is read.
 */
export async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  declaredLength?: number,
): Promise<Uint8Array> {
  if (declaredLength !== undefined && declaredLength > max) {
    await body?.cancel().catch(() => {});
    throw new BodyTooLargeError(`${declaredLength} bytes is more than ${max}`);
  }
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLargeError(`more than ${max} bytes`);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A Content-Length header as a number; undefined when absent or not a plain non-negative integer. */
export function contentLength(headers: Headers): number | undefined {
  const raw = headers.get("content-length");
  if (raw === null || !/^\d{1,15}$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}
