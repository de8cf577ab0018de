/**
 * Event relationships in the RoomDO (docs/relations.md): the `event_relations` index and the `threads` table
 * (schema v3), the client endpoints `/relations` and `/threads`, and bundled aggregations (`unsigned.m.relations`:
 * `m.thread`, `m.replace`, `m.reference`; annotations are not aggregated, as the spec says since v1.7).
 *
 * Write side: `indexRelation` runs inside the transaction that accepts an event (Room.commit); `unindexRelation`
 * inside the one that redacts it; `reindexRelation` when faster joins' resync changes an event's rejection.
 * Readers still check each child's status (served = in the timeline, not rejected, not soft-failed).
 *
 * Read side: synchronous SQLite, never writes. Aggregations are computed per page with a few batched queries
 * (thread summaries, latest thread events, edits, references), not per event.
 */
import type { ClientEvent, JsonObject, PDU } from "../../src/protocol/events";
import type { Room } from "./room";
import type { QueryResponse, RoomQueries, TimelineRow, Viewer } from "./queries";
import { isHiddenFromClients } from "../../src/rooms/client-event";
import {
  REL_REFERENCE, REL_REPLACE, REL_THREAD, isNewerReplacement, isValidReplacement, relationOf, takesNoAggregations,
  type Relation,
} from "../../src/rooms/relations";
import { cutAfter, cutBefore, formatTopoToken, parseRoomToken, type TopoPos } from "../../src/rooms/tokens";

/** The `events` columns of TimelineRow, qualified with the alias `e`. */
const E_COLUMNS =
  "e.nid, e.event_id, e.type, e.state_key, e.sender, e.depth, e.stream_ordering, e.origin_server_ts, e.json, e.state_before, e.state_after, e.redacted_by, e.received_ts";
/** A child that clients may be served: in the timeline, neither rejected nor soft-failed. */
const SERVED = "e.stream_ordering IS NOT NULL AND e.outlier = 0 AND e.rejected IS NULL AND e.soft_failed = 0";
/** How many relationship hops `recurse=true` follows (the spec asks for at least 3). */
export const RECURSION_DEPTH = 3;
/** Bound parameters per IN list (the DO's SQLite takes at most 100 per statement). */
const CHUNK = 50;

// =============================================================================================================
// Write side (inside the RoomDO's transactions)

/** Indexes an accepted event's relation, if it has one, and moves its thread's latest event forward. */
export function indexRelation(sql: SqlStorage, nid: number, pdu: PDU): void {
  const rel = relationOf(pdu.content);
  if (!rel) return;
  sql.exec(
    "INSERT OR REPLACE INTO event_relations (event_nid, parent_id, rel_type, aggregation_key) VALUES (?, ?, ?, ?)",
    nid, rel.event_id, rel.rel_type, rel.key ?? null,
  );
  if (rel.rel_type !== REL_THREAD) return;
  const row = sql
    .exec<{ depth: number; s: number | null }>("SELECT depth, stream_ordering AS s FROM events WHERE nid = ?", nid)
    .one();
  if (row.s === null) return;
  sql.exec(
    `INSERT INTO threads (root_id, latest_nid, latest_depth, latest_stream) VALUES (?, ?, ?, ?)
     ON CONFLICT (root_id) DO UPDATE SET latest_nid = excluded.latest_nid, latest_depth = excluded.latest_depth,
       latest_stream = excluded.latest_stream
     WHERE (excluded.latest_depth, excluded.latest_stream) > (threads.latest_depth, threads.latest_stream)`,
    rel.event_id, nid, row.depth, row.s,
  );
}

/** Drops an event from the index (it was redacted: its relation is gone), recomputing its thread. */
export function unindexRelation(sql: SqlStorage, nid: number): void {
  const row = sql
    .exec<{ parent_id: string; rel_type: string }>("SELECT parent_id, rel_type FROM event_relations WHERE event_nid = ?", nid)
    .toArray()[0];
  if (!row) return;
  sql.exec("DELETE FROM event_relations WHERE event_nid = ?", nid);
  if (row.rel_type === REL_THREAD) refreshThread(sql, row.parent_id);
}

/** Re-derives an event's index entry after its status changed (faster joins: resync may accept or reject it). */
export function reindexRelation(sql: SqlStorage, nid: number): void {
  unindexRelation(sql, nid);
  const row = sql
    .exec<{ json: string; served: number }>(
      `SELECT e.json, (${SERVED} AND e.redacted_by IS NULL) AS served FROM events e WHERE e.nid = ?`,
      nid,
    )
    .toArray()[0];
  if (row?.served) indexRelation(sql, nid, JSON.parse(row.json) as PDU);
}

/** Recomputes a thread's latest event from its served children (or forgets the thread if none is left). */
function refreshThread(sql: SqlStorage, rootId: string): void {
  const latest = sql
    .exec<{ nid: number; depth: number; stream_ordering: number }>(
      `SELECT e.nid, e.depth, e.stream_ordering FROM event_relations r JOIN events e ON e.nid = r.event_nid
       WHERE r.parent_id = ? AND r.rel_type = 'm.thread' AND ${SERVED}
       ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT 1`,
      rootId,
    )
    .toArray()[0];
  if (!latest) {
    sql.exec("DELETE FROM threads WHERE root_id = ?", rootId);
    return;
  }
  sql.exec(
    `INSERT INTO threads (root_id, latest_nid, latest_depth, latest_stream) VALUES (?, ?, ?, ?)
     ON CONFLICT (root_id) DO UPDATE SET latest_nid = excluded.latest_nid, latest_depth = excluded.latest_depth,
       latest_stream = excluded.latest_stream`,
    rootId, latest.nid, latest.depth, latest.stream_ordering,
  );
}

// =============================================================================================================
// Send-side checks (ClientChecks.precheck)

/**
 * Checks a local client's new event's relation the way the spec asks servers to: no thread off an event that
 * itself has a relation (400 M_UNKNOWN), no second identical annotation by the same user (400
 * M_DUPLICATE_ANNOTATION). Returns the error, or undefined when the event may be sent.
 */
export function relationSendError(
  sql: SqlStorage,
  event: { type: string; sender: string; content: JsonObject },
): { status: number; errcode: string; error: string } | undefined {
  const rel = relationOf(event.content);
  if (!rel) return undefined;
  if (rel.rel_type === REL_THREAD) {
    const parent = sql
      .exec<{ json: string }>("SELECT json FROM events WHERE event_id = ? AND stream_ordering IS NOT NULL", rel.event_id)
      .toArray()[0];
    if (parent && relationOf((JSON.parse(parent.json) as PDU).content)) {
      return { status: 400, errcode: "M_UNKNOWN", error: "Cannot start threads from an event with a relation" };
    }
  }
  if (rel.rel_type === "m.annotation" && rel.key !== undefined) {
    const dup = sql
      .exec(
        `SELECT 1 FROM event_relations r JOIN events e ON e.nid = r.event_nid
         WHERE r.parent_id = ? AND r.rel_type = 'm.annotation' AND r.aggregation_key = ? AND e.sender = ? AND e.type = ?
           AND ${SERVED} LIMIT 1`,
        rel.event_id, rel.key, event.sender, event.type,
      )
      .toArray().length > 0;
    if (dup) return { status: 400, errcode: "M_DUPLICATE_ANNOTATION", error: "Can't send same reaction twice" };
  }
  return undefined;
}

// =============================================================================================================
// Read side

export interface RelationsRequest {
  event_id: string;
  rel_type?: string;
  event_type?: string;
  dir: "b" | "f";
  from?: string;
  to?: string;
  limit: number;
  /** Absent when the client did not pass `recurse` (then `recursion_depth` is absent too). */
  recurse?: boolean;
}

export interface ThreadsRequest {
  include: "all" | "participated";
  from?: string;
  limit: number;
}

type Lookups = Parameters<RoomQueries["visibleTo"]>[2];

function ok(body: unknown): QueryResponse {
  return { status: 200, body: JSON.stringify(body) };
}

function fail(status: number, errcode: string, error: string): QueryResponse {
  return { status, body: JSON.stringify({ errcode, error }) };
}

function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(",");
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
  return out;
}

function contentOf(row: TimelineRow): JsonObject {
  return (JSON.parse(row.json) as PDU).content;
}

/** The per-event aggregations before serialisation. */
interface Bundle {
  thread?: { latest: TimelineRow; count: number; participated: boolean };
  replace?: TimelineRow;
  references?: string[];
}

export class RelationsView {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly q: RoomQueries,
  ) {}

  // -----------------------------------------------------------------------------------------------------------
  // GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]

  relations(viewer: Viewer, req: RelationsRequest): QueryResponse {
    const access = this.q.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    const parent = this.q.timelineRow(req.event_id);
    if (!parent || isHiddenFromClients(parent.type) || this.q.visibleTo(viewer, [parent]).length === 0) {
      return fail(404, "M_NOT_FOUND", "Event not found.");
    }
    const from = req.from === undefined ? undefined : this.q.resolveToken(req.from);
    if (req.from !== undefined && !from) return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'from'");
    const to = req.to === undefined ? undefined : this.q.resolveToken(req.to);
    if (req.to !== undefined && !to) return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'to'");

    const levels = req.recurse ? RECURSION_DEPTH : 1;
    const rows: TimelineRow[] = [];
    let cursor = from;
    let next: TopoPos | undefined;
    const batch = Math.min(500, req.limit + 1);
    let scanned = 0;
    while (req.limit > 0) {
      const page = this.childPage(req, levels, cursor, to, batch);
      if (page.length === 0) break;
      const visible = new Set(this.q.visibleTo(viewer, page.filter((r) => !isHiddenFromClients(r.type))).map((r) => r.nid));
      let full = false;
      for (let i = 0; i < page.length; i++) {
        const row = page[i]!;
        cursor = req.dir === "b" ? cutBefore(row) : cutAfter(row);
        if (visible.has(row.nid)) rows.push(row);
        if (rows.length >= req.limit) {
          full = true;
          if (i < page.length - 1 || page.length === batch) next = cursor;
          break;
        }
      }
      if (full || page.length < batch) break;
      scanned += page.length;
      if (scanned >= 5000) {
        next = cursor; // a long stretch of invisible children: hand back a token rather than scan on
        break;
      }
    }
    const body: Record<string, unknown> = { chunk: this.q.toClientBundled(rows, viewer) };
    if (next) body.next_batch = formatTopoToken(next);
    if (req.from !== undefined) body.prev_batch = req.from;
    if (req.recurse !== undefined) body.recursion_depth = levels;
    return ok(body);
  }

  /**
   * Served children of the parent (and, recursing, their children, up to `levels` hops; the rel_type and event
   * type filters apply at every hop) past a cut, in topological order in the direction asked.
   */
  private childPage(req: RelationsRequest, levels: number, from: TopoPos | undefined, to: TopoPos | undefined, n: number): TimelineRow[] {
    const hop: string[] = [SERVED];
    const hopArgs: unknown[] = [];
    if (req.rel_type !== undefined) {
      hop.push("r.rel_type = ?");
      hopArgs.push(req.rel_type);
    }
    if (req.event_type !== undefined) {
      hop.push("e.type = ?");
      hopArgs.push(req.event_type);
    }
    const where = hop.join(" AND ");
    const bounds: string[] = [];
    const boundArgs: unknown[] = [];
    const [after, before] = req.dir === "b" ? [to, from] : [from, to];
    if (before) {
      bounds.push("(e.depth, e.stream_ordering) <= (?, ?)");
      boundArgs.push(before.depth, before.stream);
    }
    if (after) {
      bounds.push("(e.depth, e.stream_ordering) > (?, ?)");
      boundArgs.push(after.depth, after.stream);
    }
    const order = req.dir === "b" ? "DESC" : "ASC";
    return this.sql
      .exec<TimelineRow>(
        `WITH RECURSIVE related(nid, lvl) AS (
           SELECT r.event_nid, 1 FROM event_relations r JOIN events e ON e.nid = r.event_nid WHERE r.parent_id = ? AND ${where}
           UNION
           SELECT r.event_nid, related.lvl + 1 FROM related JOIN events p ON p.nid = related.nid
             JOIN event_relations r ON r.parent_id = p.event_id JOIN events e ON e.nid = r.event_nid
           WHERE related.lvl < ? AND ${where}
         )
         SELECT ${E_COLUMNS} FROM events e WHERE e.nid IN (SELECT nid FROM related) ${bounds.map((b) => `AND ${b}`).join(" ")}
         ORDER BY e.depth ${order}, e.stream_ordering ${order} LIMIT ?`,
        req.event_id, ...hopArgs, levels, ...hopArgs, ...boundArgs, n,
      )
      .toArray();
  }

  // -----------------------------------------------------------------------------------------------------------
  // GET /_matrix/client/v1/rooms/{roomId}/threads

  threads(viewer: Viewer, req: ThreadsRequest): QueryResponse {
    const access = this.q.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    let cursor: TopoPos | undefined;
    if (req.from !== undefined) {
      const parsed = parseRoomToken(req.from);
      if (parsed?.kind !== "topo") return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'from'");
      cursor = parsed.pos;
    }
    const roots: TimelineRow[] = [];
    let next: TopoPos | undefined;
    const batch = Math.min(200, req.limit + 1);
    let scanned = 0;
    while (req.limit > 0) {
      const page = this.sql
        .exec<{ root_id: string; latest_depth: number; latest_stream: number }>(
          `SELECT root_id, latest_depth, latest_stream FROM threads
           ${cursor ? "WHERE (latest_depth, latest_stream) < (?, ?)" : ""}
           ORDER BY latest_depth DESC, latest_stream DESC LIMIT ?`,
          ...(cursor ? [cursor.depth, cursor.stream] : []), batch,
        )
        .toArray();
      if (page.length === 0) break;
      const candidates = new Map<string, TimelineRow>();
      for (const t of page) {
        const row = this.q.timelineRow(t.root_id);
        if (row && !isHiddenFromClients(row.type) && row.state_key === null) candidates.set(row.event_id, row);
      }
      if (req.include === "participated") {
        const mine = this.participated([...candidates.keys()], viewer.userId);
        for (const [id, row] of candidates) if (row.sender !== viewer.userId && !mine.has(id)) candidates.delete(id);
      }
      const visible = new Set(this.q.visibleTo(viewer, [...candidates.values()]).map((r) => r.event_id));
      let full = false;
      for (let i = 0; i < page.length; i++) {
        const t = page[i]!;
        cursor = { depth: t.latest_depth, stream: t.latest_stream };
        if (visible.has(t.root_id)) roots.push(candidates.get(t.root_id)!);
        if (roots.length >= req.limit) {
          full = true;
          if (i < page.length - 1 || page.length === batch) next = cursor;
          break;
        }
      }
      if (full || page.length < batch) break;
      scanned += page.length;
      if (scanned >= 2000) {
        next = cursor;
        break;
      }
    }
    const body: Record<string, unknown> = { chunk: this.q.toClientBundled(roots, viewer) };
    if (next) body.next_batch = formatTopoToken(next);
    return ok(body);
  }

  /** Which of the roots have a served m.thread child sent by `userId`. */
  private participated(rootIds: readonly string[], userId: string): Set<string> {
    const out = new Set<string>();
    for (const ids of chunks(rootIds)) {
      for (const r of this.sql.exec<{ parent_id: string }>(
        `SELECT DISTINCT r.parent_id FROM event_relations r JOIN events e ON e.nid = r.event_nid
         WHERE r.rel_type = 'm.thread' AND r.parent_id IN (${placeholders(ids.length)}) AND e.sender = ? AND ${SERVED}`,
        ...ids, userId,
      )) {
        out.add(r.parent_id);
      }
    }
    return out;
  }

  // -----------------------------------------------------------------------------------------------------------
  // Bundled aggregations

  /**
   * Adds `unsigned.m.relations` to client events (`events[i]` renders `rows[i]`): the thread summary of thread
   * roots, the most recent valid edit, and the references. State events, edits and annotations get none.
   */
  bundle(rows: readonly TimelineRow[], events: readonly ClientEvent[], viewer: Viewer, lookups?: Lookups): void {
    const bundles = this.compute(rows, viewer, true, lookups);
    if (bundles.size === 0) return;
    // The latest event of each thread is served in full, with its own edits and references.
    const latestRows = [...bundles.values()].flatMap((b) => (b.thread ? [b.thread.latest] : []));
    const latestEvents = latestRows.length > 0 ? this.q.toClient(latestRows, viewer, lookups) : [];
    const latestBundles = latestRows.length > 0 ? this.compute(latestRows, viewer, false, lookups) : new Map<string, Bundle>();
    const latestById = new Map<string, ClientEvent>();
    latestRows.forEach((row, i) => {
      const event = latestEvents[i]!;
      this.attach(event, latestBundles.get(row.event_id), viewer, lookups);
      latestById.set(row.event_id, event);
    });
    rows.forEach((row, i) => {
      const b = bundles.get(row.event_id);
      if (b) this.attach(events[i]!, b, viewer, lookups, latestById);
    });
  }

  private attach(event: ClientEvent, b: Bundle | undefined, viewer: Viewer, lookups: Lookups | undefined, latest?: Map<string, ClientEvent>): void {
    if (!b) return;
    const relations: JsonObject = {};
    if (b.thread) {
      relations[REL_THREAD] = {
        latest_event: (latest?.get(b.thread.latest.event_id) ?? this.q.toClient([b.thread.latest], viewer, lookups)[0]!) as unknown as JsonObject,
        count: b.thread.count,
        current_user_participated: b.thread.participated,
      };
    }
    if (b.replace) relations[REL_REPLACE] = this.q.toClient([b.replace], viewer, lookups)[0] as unknown as JsonObject;
    if (b.references) relations[REL_REFERENCE] = { chunk: b.references.map((event_id) => ({ event_id })) };
    if (Object.keys(relations).length === 0) return;
    const unsigned = (event.unsigned ??= {}) as JsonObject;
    unsigned["m.relations"] = relations;
  }

  /** The aggregations of the given rows, by event ID (only events that have some). */
  private compute(rows: readonly TimelineRow[], viewer: Viewer, withThreads: boolean, lookups?: Lookups): Map<string, Bundle> {
    const out = new Map<string, Bundle>();
    const parents = new Map<string, { row: TimelineRow; content: JsonObject; rel: Relation | undefined }>();
    for (const row of rows) {
      if (row.state_key !== null || isHiddenFromClients(row.type)) continue;
      const content = contentOf(row);
      const rel = relationOf(content);
      if (takesNoAggregations(rel)) continue;
      parents.set(row.event_id, { row, content, rel });
    }
    if (parents.size === 0) return out;
    const get = (id: string) => {
      let b = out.get(id);
      if (!b) out.set(id, (b = {}));
      return b;
    };
    const ids = [...parents.keys()];
    const children = this.servedChildren(ids, [REL_REPLACE, REL_REFERENCE]);

    // m.replace: the most recent valid replacement the viewer may see; none for redacted originals.
    const edits = children.filter((c) => c.rel_type === REL_REPLACE);
    const visibleEdits = new Set(this.q.visibleTo(viewer, edits.map((c) => c.row), lookups).map((r) => r.nid));
    for (const c of edits) {
      const parent = parents.get(c.parent_id)!;
      if (parent.row.redacted_by !== null || !visibleEdits.has(c.row.nid)) continue;
      const original = { ...parent.row, content: parent.content };
      const edit = { ...c.row, content: contentOf(c.row) };
      if (!isValidReplacement(original, edit)) continue;
      const b = get(c.parent_id);
      if (!b.replace || isNewerReplacement(c.row, b.replace)) b.replace = c.row;
    }

    // m.reference: the IDs of visible referencing events, oldest first.
    const refs = children.filter((c) => c.rel_type === REL_REFERENCE);
    const visibleRefs = new Set(this.q.visibleTo(viewer, refs.map((c) => c.row), lookups).map((r) => r.nid));
    for (const c of refs) if (visibleRefs.has(c.row.nid)) (get(c.parent_id).references ??= []).push(c.row.event_id);

    // m.thread: only for events that are not themselves relations (a thread cannot start from one).
    if (withThreads) {
      const roots = ids.filter((id) => parents.get(id)!.rel === undefined);
      for (const [rootId, t] of this.threadSummaries(roots, viewer, lookups)) {
        const root = parents.get(rootId)!;
        get(rootId).thread = { ...t, participated: t.participated || root.row.sender === viewer.userId };
      }
    }
    return out;
  }

  /** Served children of the given parents with the given rel_types (rows ordered topologically). */
  private servedChildren(parentIds: readonly string[], relTypes: readonly string[]): { parent_id: string; rel_type: string; row: TimelineRow }[] {
    const out: { parent_id: string; rel_type: string; row: TimelineRow }[] = [];
    for (const ids of chunks(parentIds)) {
      for (const r of this.sql.exec<TimelineRow & { parent_id: string; rel_type: string }>(
        `SELECT r.parent_id, r.rel_type, ${E_COLUMNS} FROM event_relations r JOIN events e ON e.nid = r.event_nid
         WHERE r.parent_id IN (${placeholders(ids.length)}) AND r.rel_type IN (${placeholders(relTypes.length)}) AND ${SERVED}
         ORDER BY e.depth, e.stream_ordering`,
        ...ids, ...relTypes,
      )) {
        const { parent_id, rel_type, ...row } = r;
        out.push({ parent_id, rel_type, row: row as TimelineRow });
      }
    }
    return out;
  }

  /**
   * Thread summaries: count of served m.thread children, whether the viewer sent one, and the latest one the
   * viewer may see (the `threads` table's latest, or — when that one is hidden from the viewer — the newest
   * visible one found walking back).
   */
  private threadSummaries(rootIds: readonly string[], viewer: Viewer, lookups?: Lookups): Map<string, { latest: TimelineRow; count: number; participated: boolean }> {
    const out = new Map<string, { latest: TimelineRow; count: number; participated: boolean }>();
    for (const ids of chunks(rootIds)) {
      const rows = this.sql
        .exec<TimelineRow & { root_id: string; n: number; mine: number }>(
          `SELECT t.root_id,
             (SELECT count(*) FROM event_relations r JOIN events e ON e.nid = r.event_nid
               WHERE r.parent_id = t.root_id AND r.rel_type = 'm.thread' AND ${SERVED}) AS n,
             (SELECT count(*) FROM event_relations r JOIN events e ON e.nid = r.event_nid
               WHERE r.parent_id = t.root_id AND r.rel_type = 'm.thread' AND e.sender = ? AND ${SERVED}) AS mine,
             ${E_COLUMNS}
           FROM threads t JOIN events e ON e.nid = t.latest_nid WHERE t.root_id IN (${placeholders(ids.length)})`,
          viewer.userId, ...ids,
        )
        .toArray();
      const latestRows = rows.map(({ root_id: _r, n: _n, mine: _m, ...row }) => row as TimelineRow);
      const visible = new Set(this.q.visibleTo(viewer, latestRows, lookups).map((r) => r.nid));
      // Replies by users the viewer ignores do not count (spec: "It does not include events sent by ignored users").
      const ignoredCounts = new Map<string, number>();
      for (const senders of chunks(viewer.ignoredUsers ?? [])) {
        for (const c of this.sql.exec<{ parent_id: string; n: number }>(
          `SELECT r.parent_id, count(*) AS n FROM event_relations r JOIN events e ON e.nid = r.event_nid
           WHERE r.rel_type = 'm.thread' AND r.parent_id IN (${placeholders(ids.length)})
             AND e.sender IN (${placeholders(senders.length)}) AND ${SERVED} GROUP BY r.parent_id`,
          ...ids, ...senders,
        )) {
          ignoredCounts.set(c.parent_id, (ignoredCounts.get(c.parent_id) ?? 0) + c.n);
        }
      }
      rows.forEach((r, i) => {
        r.n -= ignoredCounts.get(r.root_id) ?? 0;
        if (r.n <= 0) return;
        const latest = visible.has(latestRows[i]!.nid) ? latestRows[i]! : this.latestVisible(r.root_id, viewer, lookups);
        if (latest) out.set(r.root_id, { latest, count: r.n, participated: r.mine > 0 });
      });
    }
    return out;
  }

  /** The topologically latest m.thread child of a root that the viewer may see (bounded walk). */
  private latestVisible(rootId: string, viewer: Viewer, lookups?: Lookups): TimelineRow | undefined {
    let cursor: TopoPos | undefined;
    for (let scanned = 0; scanned < 1000; scanned += 100) {
      const page = this.sql
        .exec<TimelineRow>(
          `SELECT ${E_COLUMNS} FROM event_relations r JOIN events e ON e.nid = r.event_nid
           WHERE r.parent_id = ? AND r.rel_type = 'm.thread' AND ${SERVED}
             ${cursor ? "AND (e.depth, e.stream_ordering) < (?, ?)" : ""}
           ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT 100`,
          rootId, ...(cursor ? [cursor.depth, cursor.stream] : []),
        )
        .toArray();
      const hit = this.q.visibleTo(viewer, page, lookups)[0];
      if (hit) return hit;
      if (page.length < 100) return undefined;
      const last = page[page.length - 1]!;
      cursor = { depth: last.depth, stream: last.stream_ordering };
    }
    return undefined;
  }
}
