/**
 * RoomEventFilter (https://spec.matrix.org/v1.19/client-server-api/#filtering) as `/messages` and `/context`
 * use it: parsing with the spec's error codes, and matching one event.
 */
import { invalidParam } from "../http/errors";

/** The parts of a RoomEventFilter that apply to one room's events. Plain data (crosses RPC boundaries). */
export interface RoomEventFilter {
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  limit?: number;
}

function stringList(obj: Record<string, unknown>, key: string): string[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw invalidParam(`filter.${key} must be a list of strings`);
  return v as string[];
}

function bool(obj: Record<string, unknown>, key: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalidParam(`filter.${key} must be a boolean`);
  return v;
}

/** Parses the `filter` query parameter (a JSON RoomEventFilter). 400 `M_INVALID_PARAM` when malformed. */
export function parseRoomEventFilter(raw: string | undefined): RoomEventFilter | undefined {
  if (raw === undefined || raw === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw invalidParam("filter is not valid JSON");
  }
  return roomEventFilterFrom(value);
}

/** Validates an already-parsed RoomEventFilter object. */
export function roomEventFilterFrom(value: unknown): RoomEventFilter {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalidParam("filter must be a JSON object");
  const obj = value as Record<string, unknown>;
  const f: RoomEventFilter = {};
  for (const key of ["types", "not_types", "senders", "not_senders", "rooms", "not_rooms"] as const) {
    const list = stringList(obj, key);
    if (list) f[key] = list;
  }
  for (const key of ["contains_url", "lazy_load_members", "include_redundant_members"] as const) {
    const b = bool(obj, key);
    if (b !== undefined) f[key] = b;
  }
  if (obj.limit !== undefined && obj.limit !== null) {
    if (typeof obj.limit !== "number" || !Number.isInteger(obj.limit) || obj.limit < 1) {
      throw invalidParam("filter.limit must be a positive integer");
    }
    f.limit = obj.limit;
  }
  return f;
}

/** `*` matches any sequence of characters (as in Synapse); everything else is literal. */
export function matchesPattern(pattern: string, value: string): boolean {
  if (!pattern.includes("*")) return pattern === value;
  const re = new RegExp("^" + pattern.split("*").map(escapeRegExp).join(".*") + "$");
  return re.test(value);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Whether the filter lets the room's events through at all (`rooms` / `not_rooms`). */
export function filterAllowsRoom(f: RoomEventFilter | undefined, roomId: string): boolean {
  if (!f) return true;
  if (f.not_rooms?.includes(roomId)) return false;
  if (f.rooms && !f.rooms.includes(roomId)) return false;
  return true;
}

/** Whether one event passes the filter. `not_*` lists win over the inclusive lists. */
export function filterAllowsEvent(
  f: RoomEventFilter | undefined,
  event: { type: string; sender: string; content: Record<string, unknown> },
): boolean {
  if (!f) return true;
  if (f.not_types?.some((p) => matchesPattern(p, event.type))) return false;
  if (f.types && !f.types.some((p) => matchesPattern(p, event.type))) return false;
  if (f.not_senders?.includes(event.sender)) return false;
  if (f.senders && !f.senders.includes(event.sender)) return false;
  if (f.contains_url !== undefined) {
    const hasUrl = typeof event.content.url === "string";
    if (hasUrl !== f.contains_url) return false;
  }
  return true;
}
