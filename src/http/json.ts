/** Request bodies: JSON objects only, with the spec's error codes for everything else. */
import type { AppContext } from "./app";
import { badJson, notJson, tooLarge } from "./errors";

/** The largest request body a JSON endpoint reads (events are limited to 64 KiB separately). */
export const MAX_JSON_BODY_BYTES = 1024 * 1024;

/**
 * Parses the body as a JSON object. `M_NOT_JSON` when it is not JSON, `M_BAD_JSON` when it is JSON but not an
 * object, `M_TOO_LARGE` past the limit. An empty body counts as `{}` (several endpoints allow that).
 */
export async function readJsonObject(c: AppContext, maxBytes = MAX_JSON_BODY_BYTES): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (new TextEncoder().encode(text).length > maxBytes) throw tooLarge("Request body too large");
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw notJson("Content not JSON.");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badJson("Body must be a JSON object");
  return value as Record<string, unknown>;
}
