/**
 * Server-side search, the room's half (https://spec.matrix.org/v1.19/client-server-api/#server-side-search).
 *
 * Each RoomDO keeps an FTS5 index of its searchable events (`search_index`, RoomDO schema v3): one row per
 * event, rowid = the event's nid, one column per searchable key (`content.body` of m.room.message,
 * `content.name` of m.room.name, `content.topic` — or the text/plain `m.topic` body — of m.room.topic).
 * `Room.commit` queues each accepted searchable event in `search_pending` in the event's own transaction (rejected
 * and soft-failed ones never get there); the FTS5 rows are written in batches by `flushSearchIndex` — by the
 * room's `search_index` task a couple of seconds later, and always before a search runs, so a search sees every
 * event committed before it. An FTS5 insert in its own transaction writes a new index segment (and merges them
 * now and then): about 0.4 ms more per event than a plain insert, where a batch of 200 costs a few ms in all
 * (docs/search.md). A redaction deletes the event's row (and its queued entry). Queries
 * still join `events` and skip rows whose event has since become rejected, soft-failed or redacted (a faster-join
 * resync can change an event's fate after it was indexed).
 *
 * The Worker (src/search/) builds the FTS5 query, fans out to the user's rooms and merges; here a room
 * answers for one user with the matches that user may see (history visibility, as /messages) and the
 * search filter lets through.
 */
import type { ClientEvent, JsonObject, PDU } from "../../src/protocol/events";
import type { Room } from "./room";
import { RoomQueries, StateLookups, TIMELINE_COLUMNS, type TimelineRow, type Viewer } from "./queries";
import { filterAllowsEvent, type RoomEventFilter } from "../../src/rooms/filter";
import { isHiddenFromClients } from "../../src/rooms/client-event";
import { cutAfter, cutBefore, formatTopoToken } from "../../src/rooms/tokens";

/** The FTS5 columns, in order; the Worker's `keys` map onto them. */
export const SEARCH_COLUMNS = ["body", "name", "topic"] as const;
export type SearchColumn = (typeof SEARCH_COLUMNS)[number];

/** The searchable text of an event, by column; undefined when the event is not searchable. */
export function searchableText(pdu: { type: string; content: JsonObject }): Partial<Record<SearchColumn, string>> | undefined {
  const c = pdu.content;
  switch (pdu.type) {
    case "m.room.message":
      return typeof c.body === "string" && c.body !== "" ? { body: c.body } : undefined;
    case "m.room.name":
      return typeof c.name === "string" && c.name !== "" ? { name: c.name } : undefined;
    case "m.room.topic": {
      const parts: string[] = [];
      if (typeof c.topic === "string" && c.topic !== "") parts.push(c.topic);
      const rich = c["m.topic"];
      const texts = rich && typeof rich === "object" && !Array.isArray(rich) ? (rich as JsonObject)["m.text"] : undefined;
      if (Array.isArray(texts)) {
        for (const t of texts) {
          if (!t || typeof t !== "object" || Array.isArray(t)) continue;
          const { mimetype, body } = t as JsonObject;
          if ((mimetype === undefined || mimetype === "text/plain") && typeof body === "string" && !parts.includes(body)) parts.push(body);
        }
      }
      return parts.length ? { topic: parts.join("\n") } : undefined;
    }
    default:
      return undefined;
  }
}

/** How long after an event is queued the batch of queued events is indexed (unless a search comes first). */
export const SEARCH_INDEX_DELAY_MS = 2000;

/**
 * Queues an accepted timeline event for the index; false for unsearchable events. Call inside the event's
 * transaction, and have `flushSearchIndex` run later (the caller schedules the room's `search_index` task).
 */
export function indexEvent(sql: SqlStorage, nid: number, pdu: PDU): boolean {
  if (!searchableText(pdu)) return false;
  sql.exec("INSERT OR IGNORE INTO search_pending (nid) VALUES (?)", nid);
  return true;
}

/** Indexes every queued event, in one batch. Returns how many rows were written. */
export function flushSearchIndex(sql: SqlStorage): number {
  const queued = sql
    .exec<{ nid: number; json: string }>("SELECT p.nid, e.json FROM search_pending p JOIN events e ON e.nid = p.nid")
    .toArray();
  let written = 0;
  for (const { nid, json } of queued) {
    const text = searchableText(JSON.parse(json) as PDU);
    if (!text) continue;
    sql.exec(
      "INSERT OR REPLACE INTO search_index (rowid, body, name, topic) VALUES (?, ?, ?, ?)",
      nid, text.body ?? null, text.name ?? null, text.topic ?? null,
    );
    written++;
  }
  if (queued.length > 0) sql.exec("DELETE FROM search_pending");
  return written;
}

/** Drops an event from the index (a redaction applied to it), queued or written. */
export function unindexEvent(sql: SqlStorage, nid: number): void {
  sql.exec("DELETE FROM search_pending WHERE nid = ?", nid);
  sql.exec("DELETE FROM search_index WHERE rowid = ?", nid);
}

// ---------------------------------------------------------------------------------------------------------
// Queries

/** Position in the "recent" order: newest first by (origin_server_ts, room ID, stream ordering). */
export interface RecentCursor {
  ts: number;
  room_id: string;
  stream: number;
}

/** One room's part of a search, for one user. Plain data (crosses RPC). */
export interface RoomSearchRequest {
  viewer: Viewer;
  /** FTS5 MATCH expression, column filter included (built by src/search/query.ts). */
  match: string;
  order: "rank" | "recent";
  limit: number;
  /** Recent order: only results strictly after this position (pagination). */
  after?: RecentCursor;
  /** types, not_types, senders, not_senders, contains_url (rooms are chosen by the Worker). */
  filter?: RoomEventFilter;
}

export interface RoomSearchHit {
  event_id: string;
  rank: number;
  ts: number;
  stream: number;
  sender: string;
  /** The client event (JSON text of a ClientEvent). */
  event: string;
}

export interface RoomSearchAnswer {
  hits: RoomSearchHit[];
  /** Visible matches in the room (estimated past COUNT_SCAN matches). */
  count: number;
  /** Words the matches contain for the query (stemming: "run" finds "running"). */
  highlights: string[];
  /**
   * Recent order: the walk stopped at its scan bound before finding `limit` hits or reaching the end. Every
   * match after this position in the order is still unexamined.
   */
  stopped_at?: RecentCursor;
}

/** Rows examined per call at most (a long invisible stretch returns fewer hits rather than scanning forever). */
const MAX_SCAN = 2000;
/** Matches checked for visibility to count them; past that the count is extrapolated. */
const COUNT_SCAN = 500;
const HL_OPEN = "\u0001";
const HL_CLOSE = "\u0002";

type MatchRow = TimelineRow & { score: number; hl_body: string | null; hl_name: string | null; hl_topic: string | null };

export class RoomSearch {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly queries: RoomQueries,
  ) {}

  /** Whether the user is or ever was joined (only such users search a room; see the spec's "rooms you have been in"). */
  private mayAnswer(userId: string): boolean {
    return this.queries.currentMember(userId)?.membership === "join" || this.queries.lastJoinStream(userId) !== null;
  }

  search(req: RoomSearchRequest): RoomSearchAnswer {
    const empty: RoomSearchAnswer = { hits: [], count: 0, highlights: [] };
    if (!this.room.exists || !this.mayAnswer(req.viewer.userId)) return empty;
    flushSearchIndex(this.sql); // events committed before this search are found
    const roomId = this.room.roomId;
    const lookups = new StateLookups(this.sql, this.room);
    const passes = (rows: MatchRow[]) => {
      const candidates = rows.filter((r) => {
        if (isHiddenFromClients(r.type)) return false;
        if (!req.filter) return true;
        const pdu = JSON.parse(r.json) as PDU;
        return filterAllowsEvent(req.filter, { type: r.type, sender: r.sender, content: pdu.content });
      });
      return this.queries.visibleTo(req.viewer, candidates, lookups) as MatchRow[];
    };

    const base = `FROM search_index JOIN events ON events.nid = search_index.rowid
      WHERE search_index MATCH ? AND events.stream_ordering IS NOT NULL AND events.rejected IS NULL
        AND events.soft_failed = 0 AND events.redacted_by IS NULL`;
    const select = `SELECT ${TIMELINE_COLUMNS.split(", ").map((c) => `events.${c}`).join(", ")}, -bm25(search_index) AS score,
      highlight(search_index, 0, '${HL_OPEN}', '${HL_CLOSE}') AS hl_body,
      highlight(search_index, 1, '${HL_OPEN}', '${HL_CLOSE}') AS hl_name,
      highlight(search_index, 2, '${HL_OPEN}', '${HL_CLOSE}') AS hl_topic ${base}`;

    const hits: MatchRow[] = [];
    let stoppedAt: RecentCursor | undefined;
    const batch = Math.min(500, Math.max(50, req.limit * 2));
    if (req.order === "rank") {
      for (let offset = 0; hits.length < req.limit && offset < MAX_SCAN; offset += batch) {
        const page = this.sql.exec<MatchRow>(`${select} ORDER BY score DESC, events.stream_ordering DESC LIMIT ? OFFSET ?`, req.match, batch, offset).toArray();
        hits.push(...passes(page));
        if (page.length < batch) break;
      }
    } else {
      // Keyset walk, newest first. Within one room the order is (ts, stream); the room ID only matters
      // against a cursor from another room.
      // Strictly after (T, R, S) in descending (ts, room, stream) order, for this room r: ts <= T when r < R,
      // ts < T when r > R, (ts, stream) < (T, S) when r = R.
      let cursor: { ts: number; stream: number; mode: "le" | "lt" | "tuple" } | undefined;
      if (req.after) {
        const a = req.after;
        cursor = { ts: a.ts, stream: a.stream, mode: a.room_id === roomId ? "tuple" : roomId < a.room_id ? "le" : "lt" };
      }
      let scanned = 0;
      for (;;) {
        let where = "";
        const args: unknown[] = [req.match];
        if (cursor?.mode === "le") {
          where = "AND events.origin_server_ts <= ?";
          args.push(cursor.ts);
        } else if (cursor?.mode === "lt") {
          where = "AND events.origin_server_ts < ?";
          args.push(cursor.ts);
        } else if (cursor) {
          where = "AND (events.origin_server_ts < ? OR (events.origin_server_ts = ? AND events.stream_ordering < ?))";
          args.push(cursor.ts, cursor.ts, cursor.stream);
        }
        const page = this.sql
          .exec<MatchRow>(`${select} ${where} ORDER BY events.origin_server_ts DESC, events.stream_ordering DESC LIMIT ?`, ...args, batch)
          .toArray();
        const visible = new Set(passes(page).map((r) => r.nid));
        let full = false;
        for (const row of page) {
          cursor = { ts: row.origin_server_ts, stream: row.stream_ordering, mode: "tuple" };
          if (visible.has(row.nid)) hits.push(row);
          if (hits.length >= req.limit) {
            full = true;
            break;
          }
        }
        if (full || page.length < batch) break;
        scanned += page.length;
        if (scanned >= MAX_SCAN) {
          stoppedAt = { ts: cursor!.ts, room_id: roomId, stream: cursor!.stream };
          break;
        }
      }
    }
    const taken = hits.slice(0, req.limit);
    const events = this.queries.toClientBundled(taken, req.viewer, lookups); // with bundled aggregations, as /messages
    const highlights = new Set<string>();
    for (const row of taken) {
      for (const hl of [row.hl_body, row.hl_name, row.hl_topic]) {
        if (!hl) continue;
        for (const m of hl.matchAll(/\u0001([^\u0002]*)\u0002/g)) if (m[1]) highlights.add(m[1]);
      }
    }
    const answer: RoomSearchAnswer = {
      hits: taken.map((row, i) => ({
        event_id: row.event_id,
        rank: row.score,
        ts: row.origin_server_ts,
        stream: row.stream_ordering,
        sender: row.sender,
        event: JSON.stringify(events[i]),
      })),
      count: this.count(select, req.match, passes),
      highlights: [...highlights],
    };
    if (stoppedAt) answer.stopped_at = stoppedAt;
    return answer;
  }

  /** Matches the user may see: exact up to COUNT_SCAN matches, extrapolated past that. */
  private count(select: string, match: string, passes: (rows: MatchRow[]) => MatchRow[]): number {
    const total = this.sql
      .exec<{ n: number }>(
        `SELECT count(*) AS n FROM search_index JOIN events ON events.nid = search_index.rowid
         WHERE search_index MATCH ? AND events.stream_ordering IS NOT NULL AND events.rejected IS NULL
           AND events.soft_failed = 0 AND events.redacted_by IS NULL`,
        match,
      )
      .one().n;
    if (total === 0) return 0;
    const sample = this.sql.exec<MatchRow>(`${select} ORDER BY events.origin_server_ts DESC LIMIT ?`, match, COUNT_SCAN).toArray();
    const visible = passes(sample).length;
    return sample.length >= total ? visible : Math.round((visible * total) / sample.length);
  }

  /**
   * Context of results (`event_context`) and the room's state (`include_state`) for the hits the Worker kept.
   * Context events pass history visibility only (not the search filter), as the reference server does.
   */
  details(
    viewer: Viewer,
    eventIds: string[],
    context: { before: number; after: number; profile: boolean } | null,
    includeState: boolean,
  ): { contexts: Record<string, SearchContext>; state?: ClientEvent[] } {
    const out: { contexts: Record<string, SearchContext>; state?: ClientEvent[] } = { contexts: {} };
    if (!this.room.exists || !this.mayAnswer(viewer.userId)) return out;
    const lookups = new StateLookups(this.sql, this.room);
    if (context) {
      for (const id of eventIds) {
        const row = this.queries.timelineRow(id);
        if (!row) continue;
        const before = this.queries.scan(viewer, "b", cutBefore(row), context.before, { lookups });
        const after = this.queries.scan(viewer, "f", cutAfter(row), context.after, { lookups });
        const earliest = before.rows.at(-1) ?? row;
        const latest = after.rows.at(-1) ?? row;
        const ctx: SearchContext = {
          events_before: this.queries.toClientBundled(before.rows, viewer, lookups),
          events_after: this.queries.toClientBundled(after.rows, viewer, lookups),
          start: formatTopoToken(before.next ?? cutBefore(earliest)),
          end: formatTopoToken(after.next ?? cutAfter(latest)),
        };
        if (context.profile) {
          const profiles: Record<string, { displayname: string | null; avatar_url: string | null }> = {};
          for (const sender of new Set([row, ...before.rows, ...after.rows].map((r) => r.sender))) {
            const content = lookups.contentAt(latest.state_after, "m.room.member", sender);
            if (!content) continue;
            profiles[sender] = {
              displayname: typeof content.displayname === "string" ? content.displayname : null,
              avatar_url: typeof content.avatar_url === "string" ? content.avatar_url : null,
            };
          }
          ctx.profile_info = profiles;
        }
        out.contexts[id] = ctx;
      }
    }
    if (includeState) {
      // The current state, or the state when the user left (never what happened after).
      const r = this.queries.state(viewer);
      if (r.status === 200) out.state = JSON.parse(r.body) as ClientEvent[];
    }
    return out;
  }
}

export interface SearchContext {
  events_before: ClientEvent[];
  events_after: ClientEvent[];
  start: string;
  end: string;
  profile_info?: Record<string, { displayname: string | null; avatar_url: string | null }>;
}
