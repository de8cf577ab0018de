/**
 * POST /search (https://spec.matrix.org/v1.19/client-server-api/#server-side-search), the Worker's half.
 *
 * The request is parsed and checked here; each room the user is or was in answers for itself
 * (RoomDO.searchRoom: its FTS5 index, the filter, the user's history visibility), a bounded number of rooms
 * at a time; the answers are merged, and context / state are fetched afterwards for the results kept only.
 *
 * Ordering and pagination:
 * - `recent`: newest first by (origin_server_ts, room ID, stream ordering), a total order every room can
 *   continue from, so `next_batch` (opaque: base64url JSON of that position plus the batch's group) returns
 *   each result exactly once.
 * - `rank`: most relevant first (FTS5's bm25, negated so that higher is better). Like the reference server,
 *   rank-ordered results are the best `limit` ones, without `next_batch` (the spec allows this).
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import { MatrixError, badJson } from "../http/errors";
import { roomEventFilterFrom, type RoomEventFilter } from "../rooms/filter";
import { roomStub } from "../rooms/common";
import type { ClientEvent } from "../protocol/events";
import type { RecentCursor, RoomSearchAnswer, RoomSearchHit, RoomSearchRequest, SearchContext } from "../../durable-objects/room/search-index";
import { ALL_SEARCH_KEYS, SEARCH_KEYS, buildMatch, type SearchKey } from "./query";
import { requesterViewer } from "../rooms/ignored-users";

/** Rooms asked at once. */
const FAN_OUT = 8;
const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 100;
const DEFAULT_CONTEXT = 5;
const MAX_CONTEXT = 100;
/** Predecessor rooms followed per room of `filter.rooms` (upgraded rooms are searched with their past). */
const MAX_PREDECESSORS = 20;

type GroupKey = "room_id" | "sender";

export interface SearchRequest {
  term: string;
  keys: SearchKey[];
  filter: RoomEventFilter;
  limit: number;
  order: "rank" | "recent";
  context: { before: number; after: number; profile: boolean } | null;
  includeState: boolean;
  groupBy: GroupKey[];
}

interface Batch {
  group: "all" | GroupKey;
  key: string;
  cursor: RecentCursor | null;
}

/** Synapse answers a malformed query with 400 M_UNKNOWN. */
const invalid = (msg: string) => new MatrixError(400, "M_UNKNOWN", msg);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function boundedInt(v: unknown, name: string, dflt: number, max: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw badJson(`'${name}' must be a non-negative integer`);
  return Math.min(v, max);
}

export function parseSearchBody(body: Record<string, unknown>): SearchRequest {
  const categories = body.search_categories;
  if (categories === undefined) throw invalid("Invalid search query: missing 'search_categories'");
  if (!isObject(categories)) throw badJson("'search_categories' must be an object");
  const cat = categories.room_events;
  // room_events is the only category the spec defines; asking for none of it is a query we cannot answer.
  if (cat === undefined) throw invalid("Invalid search query: 'room_events' is the only supported category");
  if (!isObject(cat)) throw badJson("'room_events' must be an object");
  if (cat.search_term === undefined) throw invalid("Invalid search query: missing 'search_term'");
  if (typeof cat.search_term !== "string") throw badJson("'search_term' must be a string");

  let keys = ALL_SEARCH_KEYS;
  if (cat.keys !== undefined && cat.keys !== null) {
    if (!Array.isArray(cat.keys) || !cat.keys.every((k) => typeof k === "string" && Object.hasOwn(SEARCH_KEYS, k))) {
      throw badJson(`'keys' must be a list of ${ALL_SEARCH_KEYS.join(", ")}`);
    }
    keys = cat.keys as SearchKey[];
  }
  const filter = cat.filter === undefined || cat.filter === null ? {} : roomEventFilterFrom(cat.filter);
  const order = cat.order_by ?? "rank";
  if (order !== "rank" && order !== "recent") throw invalid(`Invalid order by: ${JSON.stringify(order)}`);

  let context: SearchRequest["context"] = null;
  if (cat.event_context !== undefined && cat.event_context !== null) {
    const ec = cat.event_context;
    if (!isObject(ec)) throw badJson("'event_context' must be an object");
    if (ec.include_profile !== undefined && typeof ec.include_profile !== "boolean") throw badJson("'include_profile' must be a boolean");
    context = {
      before: boundedInt(ec.before_limit, "before_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
      after: boundedInt(ec.after_limit, "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
      profile: ec.include_profile === true,
    };
  }
  if (cat.include_state !== undefined && typeof cat.include_state !== "boolean") throw badJson("'include_state' must be a boolean");

  const groupBy: GroupKey[] = [];
  if (cat.groupings !== undefined && cat.groupings !== null) {
    if (!isObject(cat.groupings)) throw badJson("'groupings' must be an object");
    const list = cat.groupings.group_by ?? [];
    if (!Array.isArray(list)) throw badJson("'group_by' must be a list");
    for (const g of list) {
      if (!isObject(g) || typeof g.key !== "string") throw badJson("each of 'group_by' needs a string 'key'");
      if (g.key !== "room_id" && g.key !== "sender") throw invalid(`Invalid group by keys: ${JSON.stringify(g.key)}`);
      if (!groupBy.includes(g.key)) groupBy.push(g.key);
    }
  }
  return {
    term: cat.search_term,
    keys,
    filter,
    limit: Math.min(filter.limit ?? DEFAULT_LIMIT, MAX_LIMIT),
    order,
    context,
    includeState: cat.include_state === true,
    groupBy,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Pagination tokens

function encodeBatch(b: Batch): string {
  const json = JSON.stringify({ g: b.group, k: b.key, c: b.cursor ? [b.cursor.ts, b.cursor.room_id, b.cursor.stream] : null });
  return btoa(String.fromCharCode(...new TextEncoder().encode(json))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeBatch(token: string): Batch {
  try {
    const bin = atob(token.replace(/-/g, "+").replace(/_/g, "/"));
    const v = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)))) as { g: unknown; k: unknown; c: unknown };
    if (!["all", "room_id", "sender"].includes(v.g as string) || typeof v.k !== "string") throw new Error("bad group");
    let cursor: RecentCursor | null = null;
    if (v.c !== null) {
      const c = v.c as unknown[];
      if (!Array.isArray(c) || typeof c[0] !== "number" || typeof c[1] !== "string" || typeof c[2] !== "number") throw new Error("bad cursor");
      cursor = { ts: c[0], room_id: c[1], stream: c[2] };
    }
    return { group: v.g as Batch["group"], key: v.k, cursor };
  } catch {
    throw invalid("Invalid batch");
  }
}

/** Descending "recent" order: negative when `a` comes first. */
function compareRecent(a: RecentCursor, b: RecentCursor): number {
  if (a.ts !== b.ts) return b.ts - a.ts;
  if (a.room_id !== b.room_id) return a.room_id < b.room_id ? 1 : -1;
  return b.stream - a.stream;
}

// ---------------------------------------------------------------------------------------------------------

/** Runs `fn` over `items`, at most `n` at a time, keeping the order of the results. */
async function pool<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** The rooms to search: those the user is or was in, narrowed by the filter (with upgraded rooms' predecessors). */
async function roomsToSearch(env: Env, userId: string, filter: RoomEventFilter, batch: Batch | null): Promise<string[]> {
  const memberships = await env.USERS.get(env.USERS.idFromName(userId)).memberships();
  // Invited or knocking users have not been in the room; each room also checks that the user ever joined.
  let rooms = memberships.filter((m) => m.membership === "join" || m.membership === "leave" || m.membership === "ban").map((m) => m.room_id);
  if (filter.rooms) {
    const wanted = new Set(filter.rooms);
    for (const start of filter.rooms) {
      let id: string | null = start;
      for (let hop = 0; hop < MAX_PREDECESSORS && id; hop++) {
        id = await roomStub(env, id).roomPredecessor();
        if (id === null || wanted.has(id)) break;
        wanted.add(id);
      }
    }
    rooms = rooms.filter((r) => wanted.has(r));
  }
  if (filter.not_rooms) rooms = rooms.filter((r) => !filter.not_rooms!.includes(r));
  if (batch?.group === "room_id") rooms = rooms.filter((r) => r === batch.key);
  return rooms;
}

type Hit = RoomSearchHit & { room_id: string };

export async function search(env: Env, requester: Requester, body: Record<string, unknown>, nextBatch: string | undefined): Promise<unknown> {
  const req = parseSearchBody(body);
  const batch = nextBatch === undefined ? null : decodeBatch(nextBatch);
  const empty = { search_categories: { room_events: { results: [], count: 0, highlights: [] } } };

  const filter: RoomEventFilter = { ...req.filter };
  if (batch?.group === "sender") {
    if (filter.senders && !filter.senders.includes(batch.key)) return empty;
    filter.senders = [batch.key];
  }
  const { match, highlights: termHighlights } = buildMatch(req.term, req.keys);
  if (match === null) return empty;
  const rooms = await roomsToSearch(env, requester.userId, filter, batch);
  if (rooms.length === 0) return empty;

  const viewer = await requesterViewer(env, requester); // with the users they ignore (src/rooms/ignored-users.ts)
  const roomFilter: RoomEventFilter = {};
  for (const k of ["types", "not_types", "senders", "not_senders", "contains_url"] as const) {
    if (filter[k] !== undefined) (roomFilter as Record<string, unknown>)[k] = filter[k];
  }
  const after = req.order === "recent" ? batch?.cursor ?? undefined : undefined;
  const answers = await pool(rooms, FAN_OUT, async (roomId) => {
    const r: RoomSearchRequest = { viewer, match, order: req.order, limit: req.limit, filter: roomFilter };
    if (after) r.after = after;
    const answer = JSON.parse(await roomStub(env, roomId).searchRoom(JSON.stringify(r))) as RoomSearchAnswer;
    return { roomId, answer };
  });

  let hits: Hit[] = answers.flatMap(({ roomId, answer }) => answer.hits.map((h) => ({ ...h, room_id: roomId })));
  const keyOf = (h: Hit): RecentCursor => ({ ts: h.ts, room_id: h.room_id, stream: h.stream });
  let next: RecentCursor | null = null;
  if (req.order === "rank") {
    hits.sort((a, b) => b.rank - a.rank || compareRecent(keyOf(a), keyOf(b)));
    hits = hits.slice(0, req.limit);
  } else {
    // A room that stopped at its scan bound has not looked past `stopped_at`: results beyond the furthest-back
    // such point wait for the next page, so that nothing is skipped.
    let frontier: RecentCursor | null = null;
    for (const { answer } of answers) {
      if (answer.stopped_at && (!frontier || compareRecent(answer.stopped_at, frontier) < 0)) frontier = answer.stopped_at;
    }
    hits.sort((a, b) => compareRecent(keyOf(a), keyOf(b)));
    if (frontier) hits = hits.filter((h) => compareRecent(keyOf(h), frontier!) <= 0);
    const more = hits.length > req.limit || frontier !== null || answers.some(({ answer }) => answer.hits.length >= req.limit);
    hits = hits.slice(0, req.limit);
    if (more) next = hits.length === req.limit ? keyOf(hits.at(-1)!) : frontier;
  }

  // Context and state, for the results kept only.
  const contexts = new Map<string, SearchContext>();
  const state: Record<string, ClientEvent[]> = {};
  if (req.context || req.includeState) {
    const byRoom = new Map<string, string[]>();
    for (const h of hits) byRoom.set(h.room_id, [...(byRoom.get(h.room_id) ?? []), h.event_id]);
    await pool([...byRoom], FAN_OUT, async ([roomId, ids]) => {
      const d = JSON.parse(await roomStub(env, roomId).searchDetails(viewer, ids, req.context, req.includeState)) as {
        contexts: Record<string, SearchContext>;
        state?: ClientEvent[];
      };
      for (const [id, ctx] of Object.entries(d.contexts)) contexts.set(id, ctx);
      if (d.state) state[roomId] = d.state;
    });
  }

  const highlights = new Set(termHighlights);
  for (const { answer } of answers) for (const h of answer.highlights) highlights.add(h);
  const out: Record<string, unknown> = {
    results: hits.map((h) => ({ rank: h.rank, result: JSON.parse(h.event) as ClientEvent, context: contexts.get(h.event_id) ?? {} })),
    count: answers.reduce((n, { answer }) => n + answer.count, 0),
    highlights: [...highlights],
  };
  const tokenFor = (group: Batch["group"], key: string) => (next ? encodeBatch({ group, key, cursor: next }) : undefined);
  // The top-level token keeps the batch's group, so following it stays within that group (as the reference server).
  const top = tokenFor(batch?.group ?? "all", batch?.key ?? "");
  if (top) out.next_batch = top;
  if (req.includeState) out.state = state;
  if (req.groupBy.length) {
    const groups: Record<string, Record<string, { results: string[]; order: number; next_batch?: string }>> = {};
    for (const g of req.groupBy) {
      const entries: Record<string, { results: string[]; order: number; next_batch?: string }> = {};
      for (const h of hits) {
        const value = g === "room_id" ? h.room_id : h.sender;
        const entry = (entries[value] ??= { results: [], order: Object.keys(entries).length + 1 });
        entry.results.push(h.event_id);
      }
      for (const [value, entry] of Object.entries(entries)) {
        const t = tokenFor(g, value);
        if (t) entry.next_batch = t;
      }
      groups[g] = entries;
    }
    out.groups = groups;
  }
  return { search_categories: { room_events: out } };
}
