/**
 * Filters (https://spec.matrix.org/v1.19/client-server-api/#filtering): validation of uploaded or inline
 * filters, and the matching rules (`types`/`not_types` with `*` wildcards, senders, rooms, `contains_url`).
 * Pure functions: used by the filter endpoints, by /sync in the Worker and by the RoomDO's sync view.
 */
import { badJson } from "../http/errors";

export interface EventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

export interface RoomFilter {
  rooms?: string[];
  not_rooms?: string[];
  include_leave?: boolean;
  timeline?: RoomEventFilter;
  state?: RoomEventFilter;
  ephemeral?: RoomEventFilter;
  account_data?: RoomEventFilter;
}

export interface Filter {
  event_fields?: string[];
  event_format?: "client" | "federation";
  presence?: EventFilter;
  account_data?: EventFilter;
  room?: RoomFilter;
}

/** The timeline limit when a filter sets none, and the most a sync returns per room. */
export const DEFAULT_TIMELINE_LIMIT = 10;
export const MAX_TIMELINE_LIMIT = 1000;

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringList(where: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) throw badJson(`${where} must be an array of strings`);
  return v as string[];
}

function bool(where: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw badJson(`${where} must be a boolean`);
  return v;
}

function eventFilter(where: string, v: unknown, room: boolean): RoomEventFilter {
  if (!isObject(v)) throw badJson(`${where} must be an object`);
  const out: RoomEventFilter = {};
  for (const [k, value] of Object.entries(v)) {
    const at = `${where}.${k}`;
    switch (k) {
      case "limit":
        // The spec asks for an integer > 0; 0 is tolerated (some clients ask for no timeline at all).
        if (typeof value !== "number" || !Number.isInteger(value) || value < 0) throw badJson(`${at} must be a non-negative integer`);
        out.limit = value;
        break;
      case "types":
      case "not_types":
      case "senders":
      case "not_senders":
        out[k] = stringList(at, value);
        break;
      case "rooms":
      case "not_rooms":
        if (!room) break;
        out[k] = stringList(at, value);
        break;
      case "contains_url":
      case "lazy_load_members":
      case "include_redundant_members":
      case "unread_thread_notifications":
        if (!room) break;
        out[k] = bool(at, value);
        break;
      default:
      // Unknown keys are ignored (forward compatibility), as the reference server does.
    }
  }
  return out;
}

/** Validates a filter definition, throwing 400 `M_BAD_JSON` on a malformed one, and returns its normal form. */
export function parseFilter(v: unknown): Filter {
  if (!isObject(v)) throw badJson("filter must be a JSON object");
  const out: Filter = {};
  for (const [k, value] of Object.entries(v)) {
    switch (k) {
      case "event_fields":
        out.event_fields = stringList(k, value);
        break;
      case "event_format":
        if (value !== "client" && value !== "federation") throw badJson("event_format must be 'client' or 'federation'");
        out.event_format = value;
        break;
      case "presence":
      case "account_data":
        out[k] = eventFilter(k, value, false);
        break;
      case "room": {
        if (!isObject(value)) throw badJson("room must be an object");
        const room: RoomFilter = {};
        for (const [rk, rv] of Object.entries(value)) {
          const at = `room.${rk}`;
          switch (rk) {
            case "rooms":
            case "not_rooms":
              room[rk] = stringList(at, rv);
              break;
            case "include_leave":
              room.include_leave = bool(at, rv);
              break;
            case "timeline":
            case "state":
            case "ephemeral":
            case "account_data":
              room[rk] = eventFilter(at, rv, true);
              break;
            default:
          }
        }
        out.room = room;
        break;
      }
      default:
    }
  }
  return out;
}

/** Whether `value` matches a pattern where `*` stands for any sequence of characters. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes("*")) return pattern === value;
  const parts = pattern.split("*");
  if (!value.startsWith(parts[0]!)) return false;
  let at = parts[0]!.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const idx = value.indexOf(parts[i]!, at);
    if (idx < 0) return false;
    at = idx + parts[i]!.length;
  }
  const last = parts[parts.length - 1]!;
  return value.length - last.length >= at && value.endsWith(last);
}

/** The event-level checks of an EventFilter / RoomEventFilter (not `limit`, not rooms). */
export function matchesEvent(
  f: RoomEventFilter | undefined,
  e: { type: string; sender: string; content?: unknown },
): boolean {
  if (!f) return true;
  if (f.not_types?.some((p) => globMatch(p, e.type))) return false;
  if (f.types && !f.types.some((p) => globMatch(p, e.type))) return false;
  if (f.not_senders?.includes(e.sender)) return false;
  if (f.senders && !f.senders.includes(e.sender)) return false;
  if (f.contains_url !== undefined) {
    const hasUrl = isObject(e.content) && typeof e.content.url === "string";
    if (hasUrl !== f.contains_url) return false;
  }
  return true;
}

/** Whether a room passes a `rooms` / `not_rooms` pair. */
export function matchesRoom(f: { rooms?: string[]; not_rooms?: string[] } | undefined, roomId: string): boolean {
  if (!f) return true;
  if (f.not_rooms?.includes(roomId)) return false;
  if (f.rooms && !f.rooms.includes(roomId)) return false;
  return true;
}

/** Whether a filter lets nothing through (an empty `types` list), so the section can be skipped entirely. */
export function excludesAll(f: EventFilter | undefined): boolean {
  return !!f?.types && f.types.length === 0;
}

/** The timeline limit a filter asks for, bounded. */
export function timelineLimit(f: RoomFilter | undefined): number {
  return Math.min(f?.timeline?.limit ?? DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
}

/**
 * Keeps only the listed dot-separated fields of an event (`event_fields`). `\.` escapes a dot inside a key.
 * Servers may include more than asked; we keep exactly what was asked.
 */
export function selectFields<T extends Obj>(event: T, fields: string[] | undefined): Obj {
  if (!fields) return event;
  const out: Obj = {};
  for (const field of fields) {
    const path = splitPath(field);
    let src: unknown = event;
    for (const key of path) src = isObject(src) ? src[key] : undefined;
    if (src === undefined) continue;
    let dst = out;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i]!;
      if (!isObject(dst[key])) dst[key] = {};
      dst = dst[key] as Obj;
    }
    dst[path[path.length - 1]!] = src;
  }
  return out;
}

function splitPath(field: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < field.length; i++) {
    const ch = field[i]!;
    if (ch === "\\" && (field[i + 1] === "." || field[i + 1] === "\\")) {
      cur += field[++i];
    } else if (ch === ".") {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}
