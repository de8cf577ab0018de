/** Typed reads of optional request-body fields; a field of the wrong type is 400 `M_BAD_JSON`. */
import { badJson, invalidParam } from "../http/errors";

export function optString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badJson(`'${field}' must be a string`);
  return v;
}

export function optBool(body: Record<string, unknown>, field: string): boolean | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badJson(`'${field}' must be true or false`);
  return v;
}

/** A client-chosen device ID: 1–255 characters, no control characters. */
export function optDeviceId(body: Record<string, unknown>, field = "device_id"): string | undefined {
  const v = optString(body, field);
  if (v === undefined) return undefined;
  if (v.length === 0 || v.length > 255 || /[\u0000-\u001f]/.test(v)) throw invalidParam(`'${field}' is not a valid device ID`);
  return v;
}
