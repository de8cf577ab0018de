/**
 * Read-only queries over a RoomDO's `Room` for the client-server API: history visibility, timeline pagination,
 * context, single events, state and members, plus the read-side checks that precede a membership change.
 *
 * Everything here is synchronous SQLite and never writes room data (the one exception is creating a read
 * index on first use, see `ensureIndexes`). Per-call memo tables only: nothing cached here survives a call,
 * so a rolled-back transaction can never leave stale entries behind.
 *
 * Responses for the Worker are `{status, body}` with the body already JSON-encoded, so that RPC results stay
 * plain and cheap to pass.
 */
import type { ClientEvent, JsonObject, PDU } from "../../src/protocol/events";
import type { Room } from "./room";
import { canonicalJson } from "../../src/protocol/canonical-json";
import { powerLevelsFromContent, requiredPowerLevel, roomCreators, userPowerLevel } from "../../src/protocol/auth";
import { toClientEvent, isHiddenFromClients } from "../../src/rooms/client-event";
import {
  isEventVisible,
  mayReadHistory,
  membershipOf,
  parseHistoryVisibility,
  type HistoryVisibility,
} from "../../src/rooms/visibility";
import { filterAllowsEvent, filterAllowsRoom, type RoomEventFilter } from "../../src/rooms/filter";
import {
  compareTopo,
  cutAfter,
  cutBefore,
  formatTopoToken,
  parseRoomToken,
  ROOM_START,
  type TopoPos,
} from "../../src/rooms/tokens";
// relations (docs/relations.md): /relations, /threads, bundled aggregations, send-side relation checks
import { RelationsView, relationSendError, type RelationsRequest, type ThreadsRequest } from "./relations";

/** The user (and device, for `unsigned.transaction_id`) a query is answered for. */
export interface Viewer {
  userId: string;
  deviceId?: string;
  /** Users whose non-state events are not shown to this viewer (`m.ignored_user_list`, src/rooms/ignored-users.ts). */
  ignoredUsers?: string[];
}

/** An HTTP answer for the Worker: status and JSON body. */
export interface QueryResponse {
  status: number;
  body: string;
}

/** The columns of `events` the client API reads. Only timeline events (stream_ordering set) are served. */
export type TimelineRow = {
  nid: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  stream_ordering: number;
  origin_server_ts: number;
  json: string;
  state_before: number | null;
  state_after: number | null;
  redacted_by: string | null;
  received_ts: number;
};

export const TIMELINE_COLUMNS =
  "nid, event_id, type, state_key, sender, depth, stream_ordering, origin_server_ts, json, state_before, state_after, redacted_by, received_ts";
const COLUMNS = TIMELINE_COLUMNS;

const MEMBER = "m.room.member";
const HISTORY_VISIBILITY = "m.room.history_visibility";

export function ok(body: unknown): QueryResponse {
  return { status: 200, body: JSON.stringify(body) };
}

export function fail(status: number, errcode: string, error: string): QueryResponse {
  return { status, body: JSON.stringify({ errcode, error }) };
}

/** Which state a user may read, and up to where. */
type ReadAccess =
  | { ok: true; joined: boolean; /** state group to read (current or when they left) */ group: number | null; current: boolean }
  | { ok: false; response: QueryResponse };

/** Per-call lookups of single state keys in state groups, memoised for the duration of one call. */
export class StateLookups {
  private readonly values = new Map<string, number | undefined>();
  private readonly bases = new Map<number, number | null>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly room: Room,
  ) {}

  /** The event nid at (type, state_key) in a state group, walking its skip deltas towards the root. */
  nidAt(group: number | null, type: string, stateKey: string): number | undefined {
    if (group === null) return undefined;
    const keyId = this.room.states.existingKeyId(type, stateKey);
    if (keyId === undefined) return undefined;
    const memoKey = `${group}:${keyId}`;
    if (this.values.has(memoKey)) return this.values.get(memoKey);
    let found: number | undefined;
    for (let g: number | null = group; g !== null; g = this.baseOf(g)) {
      const row = this.sql
        .exec<{ event_nid: number | null }>("SELECT event_nid FROM state_skip WHERE group_id = ? AND key_id = ?", g, keyId)
        .toArray()[0];
      if (row) {
        found = row.event_nid ?? undefined;
        break;
      }
    }
    this.values.set(memoKey, found);
    return found;
  }

  contentAt(group: number | null, type: string, stateKey: string): JsonObject | undefined {
    const nid = this.nidAt(group, type, stateKey);
    return nid === undefined ? undefined : this.room.events.authEvent(nid).content;
  }

  private baseOf(group: number): number | null {
    let base = this.bases.get(group);
    if (base === undefined) {
      base = this.sql.exec<{ base: number | null }>("SELECT base FROM state_groups WHERE id = ?", group).one().base;
      this.bases.set(group, base);
    }
    return base;
  }
}

export class RoomQueries {
  private indexed = false;

  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
  ) {}

  /**
   * The topological order needs an index on (depth, stream_ordering). It is created on first use so that this
   * module does not need its own schema version; it belongs in the RoomDO schema proper eventually.
   */
  private ensureIndexes(): void {
    if (this.indexed) return;
    this.sql.exec(
      "CREATE INDEX IF NOT EXISTS events_topological ON events(depth, stream_ordering) WHERE stream_ordering IS NOT NULL",
    );
    this.indexed = true;
  }

  get exists(): boolean {
    return this.room.exists;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Rows and state

  timelineRow(eventId: string): TimelineRow | undefined {
    return this.sql
      .exec<TimelineRow>(`SELECT ${COLUMNS} FROM events WHERE event_id = ? AND stream_ordering IS NOT NULL`, eventId)
      .toArray()[0];
  }

  private rowByNid(nid: number): TimelineRow | undefined {
    return this.sql.exec<TimelineRow>(`SELECT ${COLUMNS} FROM events WHERE nid = ?`, nid).toArray()[0];
  }

  /** The current membership of a user and the event that set it. */
  currentMember(userId: string): { membership: string; event_nid: number } | undefined {
    return this.sql
      .exec<{ membership: string; event_nid: number }>("SELECT membership, event_nid FROM members WHERE user_id = ?", userId)
      .toArray()[0];
  }

  /** A state event of the current state. */
  currentStateNid(type: string, stateKey: string): number | undefined {
    const keyId = this.room.states.existingKeyId(type, stateKey);
    if (keyId === undefined) return undefined;
    return this.sql.exec<{ event_nid: number }>("SELECT event_nid FROM current_state WHERE key_id = ?", keyId).toArray()[0]
      ?.event_nid;
  }

  currentStateContent(type: string, stateKey: string): JsonObject | undefined {
    const nid = this.currentStateNid(type, stateKey);
    return nid === undefined ? undefined : this.room.events.authEvent(nid).content;
  }

  currentHistoryVisibility(): HistoryVisibility {
    return parseHistoryVisibility(this.currentStateContent(HISTORY_VISIBILITY, ""));
  }

  /** The stream ordering of the user's latest join, if they ever joined. */
  lastJoinStream(userId: string): number | null {
    return this.sql
      .exec<{ s: number | null }>(
        `SELECT max(stream_ordering) AS s FROM events
         WHERE type = 'm.room.member' AND state_key = ? AND membership = 'join' AND stream_ordering IS NOT NULL`,
        userId,
      )
      .one().s;
  }

  // ---------------------------------------------------------------------------------------------------------
  // History visibility

  /**
   * The rows `who` may see, in the given order. Facts come from the state after each event (and before it,
   * for history-visibility events and the user's own membership events); see src/rooms/visibility.ts. A viewer's
   * ignored users' non-state events are left out too.
   */
  visibleTo(who: string | Viewer, rows: readonly TimelineRow[], lookups = new StateLookups(this.sql, this.room)): TimelineRow[] {
    const userId = typeof who === "string" ? who : who.userId;
    const ignored = typeof who === "string" || !who.ignoredUsers?.length ? null : new Set(who.ignoredUsers);
    if (ignored) rows = rows.filter((row) => row.state_key !== null || !ignored.has(row.sender));
    const lastJoin = this.lastJoinStream(userId);
    // A user joined now has "joined since" any event they were not joined at (VisibilityFacts.joinedSince) — also
    // one that arrived after their join without following it (faster joins: an event concurrent with a remote
    // join, brought in by the resident's dummy event), as the reference server shows `shared` history.
    const joinedNow = this.currentMember(userId)?.membership === "join";
    const visibility = (group: number | null) => parseHistoryVisibility(lookups.contentAt(group, HISTORY_VISIBILITY, ""));
    const membership = (group: number | null) => membershipOf(lookups.contentAt(group, MEMBER, userId));
    return rows.filter((row) => {
      const facts = {
        visibility: visibility(row.state_after),
        membership: membership(row.state_after),
        joinedSince: lastJoin !== null && (joinedNow || lastJoin > row.stream_ordering),
      } as Parameters<typeof isEventVisible>[0];
      if (row.type === HISTORY_VISIBILITY && row.state_key === "") facts.visibilityBefore = visibility(row.state_before);
      if (row.type === MEMBER && row.state_key === userId) facts.membershipBefore = membership(row.state_before);
      return isEventVisible(facts);
    });
  }

  /** The IDs among `eventIds` that `userId` may see (unknown and non-timeline events are dropped). */
  filterVisibleIds(userId: string, eventIds: readonly string[]): string[] {
    const rows = eventIds.map((id) => this.timelineRow(id)).filter((r): r is TimelineRow => r !== undefined);
    return this.visibleTo(userId, rows).map((r) => r.event_id);
  }

  /**
   * Whether, and from which state, a user may read the room: the current state if joined (or the room is
   * world-readable and they never joined); the state when they left if they have left after having joined.
   */
  readAccess(userId: string): ReadAccess {
    if (!this.room.exists) return { ok: false, response: notInRoom(userId) };
    const member = this.currentMember(userId);
    if (member?.membership === "join") return { ok: true, joined: true, group: this.room.currentStateGroup, current: true };
    const everJoined = this.lastJoinStream(userId) !== null;
    if (everJoined && member && (member.membership === "leave" || member.membership === "ban")) {
      const row = this.rowByNid(member.event_nid);
      return { ok: true, joined: false, group: row?.state_after ?? null, current: false };
    }
    if (mayReadHistory(false, this.currentHistoryVisibility())) {
      return { ok: true, joined: false, group: this.room.currentStateGroup, current: true };
    }
    return { ok: false, response: notInRoom(userId) };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Client format

  /** Converts rows to client events: redaction info, previous state content, the viewer's transaction IDs. */
  toClient(rows: readonly TimelineRow[], viewer?: Viewer, lookups = new StateLookups(this.sql, this.room)): ClientEvent[] {
    const roomId = this.room.roomId;
    const version = this.room.version;
    const txnIds = this.transactionIds(rows, viewer);
    return rows.map((row) => {
      const pdu = JSON.parse(row.json) as PDU;
      const extras: Parameters<typeof toClientEvent>[4] = { receivedTs: row.received_ts };
      const txn = txnIds.get(row.event_id);
      if (txn !== undefined) extras.transactionId = txn;
      if (row.redacted_by) {
        const redaction = this.sql
          .exec<TimelineRow>(`SELECT ${COLUMNS} FROM events WHERE event_id = ?`, row.redacted_by)
          .toArray()[0];
        if (redaction) {
          extras.redactedBecause = toClientEvent(JSON.parse(redaction.json) as PDU, redaction.event_id, roomId, version, {
            receivedTs: redaction.received_ts,
          });
        }
      }
      if (row.state_key !== null) {
        const prevNid = lookups.nidAt(row.state_before, row.type, row.state_key);
        if (prevNid !== undefined) {
          const prev = this.room.events.authEvent(prevNid);
          extras.prevContent = prev.content;
          extras.replacesState = prev.event_id;
        }
      }
      return toClientEvent(pdu, row.event_id, roomId, version, extras);
    });
  }

  // Relations (docs/relations.md): client events with their bundled aggregations (unsigned.m.relations).
  private relationsView: RelationsView | undefined;
  get relations(): RelationsView {
    return (this.relationsView ??= new RelationsView(this.room, this.sql, this));
  }

  /** `toClient` plus bundled aggregations (for the endpoints the spec lists: /messages, /context, /event …). */
  toClientBundled(rows: readonly TimelineRow[], viewer: Viewer, lookups = new StateLookups(this.sql, this.room)): ClientEvent[] {
    const events = this.toClient(rows, viewer, lookups);
    this.relations.bundle(rows, events, viewer, lookups);
    return events;
  }

  private transactionIds(rows: readonly TimelineRow[], viewer?: Viewer): Map<string, string> {
    const out = new Map<string, string>();
    if (!viewer?.deviceId) return out;
    const own = rows.filter((r) => r.sender === viewer.userId).map((r) => r.event_id);
    for (let i = 0; i < own.length; i += 50) {
      const chunk = own.slice(i, i + 50);
      for (const r of this.sql.exec<{ event_id: string; txn_id: string }>(
        `SELECT event_id, txn_id FROM txn_ids WHERE user_id = ? AND device_id = ? AND event_id IN (${chunk.map(() => "?").join(",")})`,
        viewer.userId,
        viewer.deviceId,
        ...chunk,
      )) {
        out.set(r.event_id, r.txn_id);
      }
    }
    return out;
  }

  /** The client events of a whole state group (or only its member events). */
  private stateEvents(group: number | null, onlyType?: string): TimelineRow[] {
    const nids: number[] = [];
    for (const [keyId, nid] of this.room.states.load(group)) {
      if (onlyType !== undefined && this.room.keyOf(keyId)[0] !== onlyType) continue;
      nids.push(nid);
    }
    return nids.map((nid) => this.rowByNid(nid)!).filter((r) => r !== undefined);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Timeline positions

  /** Resolves a pagination token to a cut; undefined for tokens that are not ours. */
  resolveToken(token: string): TopoPos | undefined {
    const parsed = parseRoomToken(token);
    if (!parsed) return undefined;
    if (parsed.kind === "topo") return parsed.pos;
    const row = this.sql
      .exec<{ depth: number; stream_ordering: number }>(
        `SELECT depth, stream_ordering FROM events WHERE stream_ordering IS NOT NULL AND stream_ordering <= ?
         ORDER BY stream_ordering DESC LIMIT 1`,
        parsed.stream,
      )
      .toArray()[0];
    return row ? cutAfter(row) : ROOM_START;
  }

  /** The cut after the last event of the timeline. */
  endPosition(): TopoPos {
    this.ensureIndexes();
    const row = this.sql
      .exec<{ depth: number; stream_ordering: number }>(
        `SELECT depth, stream_ordering FROM events WHERE stream_ordering IS NOT NULL
         ORDER BY depth DESC, stream_ordering DESC LIMIT 1`,
      )
      .toArray()[0];
    return row ? cutAfter(row) : ROOM_START;
  }

  /**
   * Walks the timeline from a cut in one direction, returning up to `limit` events that pass the filter and the
   * viewer's history visibility. `next` is the cut to continue from, or undefined when nothing is left in that
   * direction (before `to`, if given). At most `maxScan` rows are examined per call, so a long invisible
   * stretch returns a short (even empty) chunk with a `next` rather than scanning the whole room.
   */
  scan(
    viewer: Viewer,
    dir: "b" | "f",
    from: TopoPos,
    limit: number,
    opts: { to?: TopoPos; filter?: RoomEventFilter; lookups?: StateLookups } = {},
  ): { rows: TimelineRow[]; next: TopoPos | undefined } {
    this.ensureIndexes();
    const lookups = opts.lookups ?? new StateLookups(this.sql, this.room);
    const rows: TimelineRow[] = [];
    if (limit <= 0) return { rows, next: from };
    const batch = Math.min(500, Math.max(50, limit * 2));
    const maxScan = Math.max(1000, limit * 20);
    let cursor = from;
    let scanned = 0;
    for (;;) {
      const page = this.page(dir, cursor, opts.to, batch);
      if (page.length === 0) return { rows, next: undefined };
      const candidates = page.filter((r) => {
        if (isHiddenFromClients(r.type)) return false;
        if (!opts.filter) return true;
        const pdu = JSON.parse(r.json) as PDU;
        return filterAllowsEvent(opts.filter, { type: r.type, sender: r.sender, content: pdu.content });
      });
      const visible = new Set(this.visibleTo(viewer, candidates, lookups).map((r) => r.nid));
      for (let i = 0; i < page.length; i++) {
        const row = page[i]!;
        cursor = dir === "b" ? cutBefore(row) : cutAfter(row);
        if (visible.has(row.nid)) rows.push(row);
        if (rows.length >= limit) {
          const drained = i === page.length - 1 && page.length < batch;
          return { rows, next: drained ? undefined : cursor };
        }
      }
      if (page.length < batch) return { rows, next: undefined };
      scanned += page.length;
      if (scanned >= maxScan) return { rows, next: cursor };
    }
  }

  private page(dir: "b" | "f", from: TopoPos, to: TopoPos | undefined, n: number): TimelineRow[] {
    if (dir === "b") {
      const bound = to ? "AND (depth, stream_ordering) > (?, ?)" : "";
      const args = to ? [from.depth, from.stream, to.depth, to.stream, n] : [from.depth, from.stream, n];
      return this.sql
        .exec<TimelineRow>(
          `SELECT ${COLUMNS} FROM events WHERE stream_ordering IS NOT NULL AND (depth, stream_ordering) <= (?, ?) ${bound}
           ORDER BY depth DESC, stream_ordering DESC LIMIT ?`,
          ...args,
        )
        .toArray();
    }
    const bound = to ? "AND (depth, stream_ordering) <= (?, ?)" : "";
    const args = to ? [from.depth, from.stream, to.depth, to.stream, n] : [from.depth, from.stream, n];
    return this.sql
      .exec<TimelineRow>(
        `SELECT ${COLUMNS} FROM events WHERE stream_ordering IS NOT NULL AND (depth, stream_ordering) > (?, ?) ${bound}
         ORDER BY depth ASC, stream_ordering ASC LIMIT ?`,
        ...args,
      )
      .toArray();
  }

  /** Member events of `senders` in a state group (lazy-loading members). */
  private membersFor(group: number | null, senders: Iterable<string>, lookups: StateLookups): TimelineRow[] {
    const out: TimelineRow[] = [];
    for (const sender of new Set(senders)) {
      const nid = lookups.nidAt(group, MEMBER, sender);
      if (nid === undefined) continue;
      const row = this.rowByNid(nid);
      if (row) out.push(row);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Endpoints

  /** GET /rooms/{roomId}/messages */
  messages(
    viewer: Viewer,
    req: { dir: "b" | "f"; from?: string; to?: string; limit: number; filter?: RoomEventFilter },
  ): QueryResponse {
    const access = this.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    const from = req.from === undefined ? (req.dir === "b" ? this.endPosition() : ROOM_START) : this.resolveToken(req.from);
    if (!from) return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'from'");
    const to = req.to === undefined ? undefined : this.resolveToken(req.to);
    if (req.to !== undefined && !to) return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'to'");
    const start = req.from ?? formatTopoToken(from);
    if (!filterAllowsRoom(req.filter, this.room.roomId)) return ok({ chunk: [], start });

    const lookups = new StateLookups(this.sql, this.room);
    const opts: { to?: TopoPos; filter?: RoomEventFilter; lookups: StateLookups } = { lookups };
    if (to) opts.to = to;
    if (req.filter) opts.filter = req.filter;
    // A user who left sees nothing after their leave (visibility says so event by event); starting the walk
    // there instead of at the live end saves scanning everything that happened since (as Synapse does).
    let walkFrom = from;
    if (!access.current) {
      const member = this.currentMember(viewer.userId);
      const leave = member ? this.rowByNid(member.event_nid) : undefined;
      if (leave && leave.stream_ordering !== null) {
        const leaveCut = cutAfter(leave);
        if (req.dir === "b" && compareTopo(walkFrom, leaveCut) > 0) walkFrom = leaveCut;
        if (req.dir === "f" && (!opts.to || compareTopo(opts.to, leaveCut) > 0)) opts.to = leaveCut;
      }
    }
    const { rows, next } = this.scan(viewer, req.dir, walkFrom, req.limit, opts);
    const body: Record<string, unknown> = { chunk: this.toClientBundled(rows, viewer, lookups), start };
    if (next) body.end = formatTopoToken(next);
    if (req.filter?.lazy_load_members && rows.length > 0) {
      const members = this.membersFor(rows[0]!.state_after, rows.map((r) => r.sender), lookups);
      body.state = this.toClient(members, viewer, lookups);
    }
    return ok(body);
  }

  /** GET /rooms/{roomId}/context/{eventId} */
  context(viewer: Viewer, eventId: string, limit: number, filter?: RoomEventFilter): QueryResponse {
    if (!this.room.exists) return notInRoom(viewer.userId);
    const lookups = new StateLookups(this.sql, this.room);
    const row = this.timelineRow(eventId);
    if (!row || isHiddenFromClients(row.type) || this.visibleTo(viewer, [row], lookups).length === 0) {
      return fail(404, "M_NOT_FOUND", "Event not found.");
    }
    const beforeLimit = Math.floor(limit / 2);
    const afterLimit = limit - beforeLimit;
    const opts = filter ? { filter, lookups } : { lookups };
    const before = this.scan(viewer, "b", cutBefore(row), beforeLimit, opts);
    const after = this.scan(viewer, "f", cutAfter(row), afterLimit, opts);
    const earliest = before.rows.at(-1) ?? row;
    const latest = after.rows.at(-1) ?? row;
    const body: Record<string, unknown> = {
      event: this.toClientBundled([row], viewer, lookups)[0],
      events_before: this.toClientBundled(before.rows, viewer, lookups),
      events_after: this.toClientBundled(after.rows, viewer, lookups),
      start: formatTopoToken(before.next ?? cutBefore(earliest)),
      end: formatTopoToken(after.next ?? cutAfter(latest)),
    };
    const stateRows = filter?.lazy_load_members
      ? this.membersFor(latest.state_after, [row, ...before.rows, ...after.rows].map((r) => r.sender), lookups)
      : this.stateEvents(latest.state_after);
    body.state = this.toClient(stateRows, viewer, lookups);
    return ok(body);
  }

  /** GET /rooms/{roomId}/event/{eventId}: 404 when unknown or not visible; redacted events carry `redacted_because`. */
  event(viewer: Viewer, eventId: string): QueryResponse {
    if (!this.room.exists) return notInRoom(viewer.userId);
    const row = this.timelineRow(eventId);
    if (!row || isHiddenFromClients(row.type) || this.visibleTo(viewer, [row]).length === 0) {
      return fail(404, "M_NOT_FOUND", "Event not found.");
    }
    return ok(this.toClientBundled([row], viewer)[0]);
  }

  /** GET /rooms/{roomId}/state */
  state(viewer: Viewer): QueryResponse {
    const access = this.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    return ok(this.toClient(this.stateEvents(access.group), viewer));
  }

  /** GET /rooms/{roomId}/state/{type}/{stateKey} (`format=event` for the whole event) */
  stateEvent(viewer: Viewer, type: string, stateKey: string, format: "content" | "event"): QueryResponse {
    const access = this.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    const lookups = new StateLookups(this.sql, this.room);
    const nid = access.current ? this.currentStateNid(type, stateKey) : lookups.nidAt(access.group, type, stateKey);
    if (nid === undefined) return fail(404, "M_NOT_FOUND", `No ${type} state with key ${JSON.stringify(stateKey)} in the room`);
    const row = this.rowByNid(nid)!;
    if (format === "event") return ok(this.toClient([row], viewer, lookups)[0]);
    return ok((JSON.parse(row.json) as PDU).content);
  }

  /**
   * GET /rooms/{roomId}/members. `at` is a pagination token (the state after the last event before that cut);
   * for a user who has left, never later than when they left. `membership` / `not_membership` combine with
   * "or" when both are given, as the spec says.
   */
  members(viewer: Viewer, req: { at?: string; membership?: string; notMembership?: string }): QueryResponse {
    const access = this.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    let group = access.group;
    if (req.at !== undefined) {
      const cut = this.resolveToken(req.at);
      if (!cut) return fail(400, "M_INVALID_PARAM", "Unknown pagination token in 'at'");
      const atRow = this.scanRaw(cut);
      const atGroup = atRow ? atRow.state_after : null;
      if (access.current) group = atGroup;
      else {
        // Departed users see at most the state when they left.
        const member = this.currentMember(viewer.userId);
        const leave = member ? this.rowByNid(member.event_nid) : undefined;
        if (atRow && leave && compareTopo(cutAfter(atRow), cutAfter(leave)) < 0) group = atGroup;
      }
    }
    const rows = this.stateEvents(group, MEMBER).filter((row) => {
      const m = membershipOf((JSON.parse(row.json) as PDU).content);
      if (req.membership === undefined && req.notMembership === undefined) return true;
      if (req.membership !== undefined && m === req.membership) return true;
      if (req.notMembership !== undefined && m !== req.notMembership) return true;
      return false;
    });
    return ok({ chunk: this.toClient(rows, viewer) });
  }

  /** The last timeline event at or before a cut (hidden events included: they carry state too). */
  private scanRaw(cut: TopoPos): TimelineRow | undefined {
    this.ensureIndexes();
    return this.sql
      .exec<TimelineRow>(
        `SELECT ${COLUMNS} FROM events WHERE stream_ordering IS NOT NULL AND (depth, stream_ordering) <= (?, ?)
         ORDER BY depth DESC, stream_ordering DESC LIMIT 1`,
        cut.depth,
        cut.stream,
      )
      .toArray()[0];
  }

  /** GET /rooms/{roomId}/joined_members: joined users only, as Synapse does for non-appservice users. */
  joinedMembers(viewer: Viewer): QueryResponse {
    if (!this.room.exists || this.currentMember(viewer.userId)?.membership !== "join") return notInRoom(viewer.userId);
    const joined: Record<string, { display_name?: string; avatar_url?: string }> = {};
    for (const r of this.sql.exec<{ user_id: string; event_nid: number }>(
      "SELECT user_id, event_nid FROM members WHERE membership = 'join' ORDER BY user_id",
    )) {
      const content = this.room.events.authEvent(r.event_nid).content;
      const info: { display_name?: string; avatar_url?: string } = {};
      if (typeof content.displayname === "string") info.display_name = content.displayname;
      if (typeof content.avatar_url === "string") info.avatar_url = content.avatar_url;
      joined[r.user_id] = info;
    }
    return ok({ joined });
  }

  /** GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event: the closest visible event in a direction. */
  timestampToEvent(viewer: Viewer, ts: number, dir: "b" | "f"): QueryResponse {
    const access = this.readAccess(viewer.userId);
    if (!access.ok) return access.response;
    const lookups = new StateLookups(this.sql, this.room);
    const order = dir === "f" ? "ASC" : "DESC";
    const cmp = dir === "f" ? ">=" : "<=";
    let offset = 0;
    for (;;) {
      const page = this.sql
        .exec<TimelineRow>(
          `SELECT ${COLUMNS} FROM events WHERE stream_ordering IS NOT NULL AND origin_server_ts ${cmp} ?
           ORDER BY origin_server_ts ${order}, stream_ordering ${order} LIMIT 200 OFFSET ?`,
          ts,
          offset,
        )
        .toArray();
      const candidates = page.filter((r) => !isHiddenFromClients(r.type));
      const hit = this.visibleTo(viewer, candidates, lookups)[0];
      if (hit) return ok({ event_id: hit.event_id, origin_server_ts: hit.origin_server_ts });
      if (page.length < 200) return fail(404, "M_NOT_FOUND", `Unable to find event from ${ts} in direction ${dir}`);
      offset += page.length;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Room metadata for the Worker

  /** Servers with joined members, this server first (alias lookups). */
  joinedServers(ownServer: string): string[] {
    const servers = this.sql
      .exec<{ server: string }>("SELECT DISTINCT server FROM members WHERE membership = 'join' ORDER BY server")
      .toArray()
      .map((r) => r.server);
    return servers.includes(ownServer) ? [ownServer, ...servers.filter((s) => s !== ownServer)] : servers;
  }

  /**
   * The stripped state shown with an invite or knock (https://spec.matrix.org/v1.19/client-server-api/#stripped-state):
   * create, join rules, name, avatar, topic, canonical alias, encryption, and the room type's create content.
   */
  strippedState(): { type: string; state_key: string; sender: string; content: JsonObject }[] {
    const out: { type: string; state_key: string; sender: string; content: JsonObject }[] = [];
    for (const type of [
      "m.room.create",
      "m.room.join_rules",
      "m.room.name",
      "m.room.avatar",
      "m.room.topic",
      "m.room.canonical_alias",
      "m.room.encryption",
    ]) {
      const nid = this.currentStateNid(type, "");
      if (nid === undefined) continue;
      const e = this.room.events.authEvent(nid);
      out.push({ type, state_key: "", sender: e.sender, content: e.content });
    }
    return out;
  }

  /** Current membership event content and sender of a user (for membership prechecks). */
  memberEvent(userId: string): { event_id: string; stream_ordering: number | null; sender: string; content: JsonObject } | undefined {
    const m = this.currentMember(userId);
    if (!m) return undefined;
    const row = this.rowByNid(m.event_nid);
    const e = this.room.events.authEvent(m.event_nid);
    return { event_id: e.event_id, stream_ordering: row?.stream_ordering ?? null, sender: e.sender, content: e.content };
  }
}

/** What the Worker needs to know about a room before acting on a user's behalf. */
export interface ClientRoomInfo {
  room_id: string;
  room_version: string;
  /** The user's current membership, if any. */
  membership: string | null;
  /** The event that set it. */
  membership_event_id: string | null;
  join_rule: string;
  /** Room IDs named by `m.room_membership` entries of a restricted join rule's `allow`. */
  allow_rooms: string[];
  guest_can_join: boolean;
  history_visibility: HistoryVisibility;
  /** Local users joined (this server can act in the room as a resident only while some are). */
  local_joined: number;
  /** Servers other than this one with joined members. */
  remote_servers: string[];
  /** Whether the user may change the room's directory entries (joined, and may send m.room.canonical_alias). */
  can_edit_aliases: boolean;
}

/** A write the client API asks for; checked read-only first, then sent with `RoomDO.send`. */
export type ClientWriteRequest =
  | {
      kind: "membership";
      action: "join" | "invite" | "leave" | "kick" | "ban" | "unban" | "knock";
      sender: string;
      target: string;
      /** The complete content (membership, reason, profile, is_direct …) prepared by the Worker. */
      content: JsonObject;
      /** Add `join_authorised_via_users_server` (restricted rooms; the Worker checked the allow rule). */
      authorise?: boolean;
    }
  // origin_server_ts: application services' timestamp massaging (`?ts=`); now when absent.
  | { kind: "state"; sender: string; type: string; state_key: string; content: JsonObject; txn?: TxnRef; origin_server_ts?: number }
  | { kind: "message"; sender: string; type: string; content: JsonObject; txn?: TxnRef; origin_server_ts?: number }
  | { kind: "redaction"; sender: string; redacts: string; content: JsonObject; txn?: TxnRef };

export interface TxnRef {
  userId: string;
  deviceId: string;
  txnId: string;
}

/** The event to send, or why not, or the existing event that already says the same thing. */
export type Precheck =
  | { kind: "send"; template: { type: string; state_key?: string; sender: string; content: JsonObject; redacts?: string; origin_server_ts?: number } }
  | { kind: "existing"; event_id: string; stream_ordering: number }
  | { kind: "error"; status: number; errcode: string; error: string };

/** Application services' `?ts=`: the template's origin_server_ts, when one was given. */
function massagedTs(req: { origin_server_ts?: number }): { origin_server_ts?: number } {
  return req.origin_server_ts === undefined ? {} : { origin_server_ts: req.origin_server_ts };
}

/** The directory summary of a room (D1 `room_stats`). */
export interface RoomStats {
  room_id: string;
  room_version: string;
  creator: string | null;
  name: string | null;
  topic: string | null;
  avatar_url: string | null;
  canonical_alias: string | null;
  join_rule: string | null;
  history_visibility: string;
  guest_can_join: boolean;
  room_type: string | null;
  encryption: string | null;
  joined_members: number;
}

/** A change of a user's joined-ness since the last directory sync. */
export interface MemberChange {
  user_id: string;
  joined: boolean;
  displayname: string | null;
  avatar_url: string | null;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}

/** The plain-text topic: an `m.topic` text/plain (or mimetype-less) body, else the legacy `topic`. */
export function plainTopic(content: JsonObject | undefined): string | null {
  if (!content) return null;
  const rich = content["m.topic"];
  if (rich && typeof rich === "object" && !Array.isArray(rich)) {
    const texts = (rich as JsonObject)["m.text"];
    if (Array.isArray(texts)) {
      for (const t of texts) {
        if (!t || typeof t !== "object" || Array.isArray(t)) continue;
        const mimetype = (t as JsonObject).mimetype;
        const body = (t as JsonObject).body;
        if ((mimetype === undefined || mimetype === "text/plain") && typeof body === "string") return body;
      }
    }
  }
  return str(content.topic);
}

export class ClientChecks {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly q: RoomQueries,
    private readonly serverName: string,
  ) {}

  private lookup() {
    return this.room.lookupIn(this.room.currentState());
  }

  powerLevel(userId: string): number {
    return userPowerLevel(userId, this.lookup(), this.room.version);
  }

  private levels() {
    return powerLevelsFromContent(this.q.currentStateContent("m.room.power_levels", ""), this.room.version);
  }

  /** Joined, and allowed to send the given state event type (the "room admin" test Synapse uses for aliases). */
  canSendState(userId: string, type: string): boolean {
    if (this.q.currentMember(userId)?.membership !== "join") return false;
    return this.powerLevel(userId) >= requiredPowerLevel(type, true, this.levels());
  }

  info(userId: string): ClientRoomInfo {
    const joinRules = this.q.currentStateContent("m.room.join_rules", "");
    const allow = Array.isArray(joinRules?.allow) ? joinRules.allow : [];
    const allowRooms: string[] = [];
    for (const a of allow) {
      if (a && typeof a === "object" && !Array.isArray(a) && a.type === "m.room_membership" && typeof a.room_id === "string") {
        allowRooms.push(a.room_id);
      }
    }
    const servers = this.q.joinedServers(this.serverName);
    const localJoined = this.sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = 'join' AND server = ?", this.serverName)
      .one().n;
    return {
      room_id: this.room.roomId,
      room_version: this.room.version.id,
      membership: this.q.currentMember(userId)?.membership ?? null,
      membership_event_id: this.q.memberEvent(userId)?.event_id ?? null,
      join_rule: str(joinRules?.join_rule) ?? "invite",
      allow_rooms: allowRooms,
      guest_can_join: this.q.currentStateContent("m.room.guest_access", "")?.guest_access === "can_join",
      history_visibility: this.q.currentHistoryVisibility(),
      local_joined: localJoined,
      remote_servers: servers.filter((s) => s !== this.serverName),
      can_edit_aliases: this.canSendState(userId, "m.room.canonical_alias"),
    };
  }

  /** The event already sent under this transaction ID, if any. */
  private txnEvent(txn: TxnRef | undefined): { event_id: string; stream_ordering: number } | undefined {
    if (!txn) return undefined;
    const row = this.sql
      .exec<{ event_id: string }>(
        "SELECT event_id FROM txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
        txn.userId, txn.deviceId, txn.txnId,
      )
      .toArray()[0];
    if (!row) return undefined;
    const ev = this.q.timelineRow(row.event_id);
    return ev ? { event_id: ev.event_id, stream_ordering: ev.stream_ordering } : undefined;
  }

  /**
   * Read-only checks the auth rules do not make (or make with a less helpful message), following Synapse:
   * unban only the banned, kick only members, nothing but (un)ban/leave on the banned, no redacting others'
   * events without the redact level, no redacting the create event; a change identical to the current state
   * (same sender, same content) returns the existing event instead of sending a duplicate.
   */
  precheck(req: ClientWriteRequest): Precheck {
    if (req.kind !== "membership") {
      const seen = this.txnEvent(req.txn);
      if (seen) return { kind: "existing", ...seen };
    }
    switch (req.kind) {
      case "membership":
        return this.membershipPrecheck(req);
      case "state": {
        const nid = this.q.currentStateNid(req.type, req.state_key);
        if (nid !== undefined) {
          const current = this.room.events.authEvent(nid);
          const row = this.q.timelineRow(current.event_id);
          if (row && current.sender === req.sender && sameJson(current.content, req.content)) {
            return { kind: "existing", event_id: row.event_id, stream_ordering: row.stream_ordering };
          }
        }
        return { kind: "send", template: { type: req.type, state_key: req.state_key, sender: req.sender, content: req.content, ...massagedTs(req) } };
      }
      case "message": {
        // Relations (docs/relations.md): no thread off a relation, no duplicate annotation.
        const relError = relationSendError(this.sql, req);
        if (relError) return { kind: "error", ...relError };
        return { kind: "send", template: { type: req.type, sender: req.sender, content: req.content, ...massagedTs(req) } };
      }
      case "redaction": {
        const target = this.room.events.byId(req.redacts);
        if (!target || target.outlier) return { kind: "error", status: 404, errcode: "M_NOT_FOUND", error: "Event not found" };
        if (target.type === "m.room.create") {
          return { kind: "error", status: 403, errcode: "M_FORBIDDEN", error: "Redacting create events is not permitted" };
        }
        if (target.sender !== req.sender && this.powerLevel(req.sender) < this.levels().redact) {
          return { kind: "error", status: 403, errcode: "M_FORBIDDEN", error: "You don't have permission to redact events" };
        }
        return {
          kind: "send",
          template: { type: "m.room.redaction", sender: req.sender, content: req.content, redacts: req.redacts },
        };
      }
    }
  }

  private membershipPrecheck(req: Extract<ClientWriteRequest, { kind: "membership" }>): Precheck {
    const effective = req.action === "kick" || req.action === "unban" ? "leave" : req.action;
    const old = this.q.memberEvent(req.target);
    const oldMembership = old ? membershipOf(old.content) : null;
    if (req.action === "unban" && oldMembership !== "ban") {
      return { kind: "error", status: 403, errcode: "M_BAD_STATE", error: `Cannot unban user who was not banned (membership=${oldMembership})` };
    }
    if (oldMembership === "ban" && !["ban", "unban", "leave"].includes(req.action)) {
      return { kind: "error", status: 403, errcode: "M_BAD_STATE", error: `Cannot ${req.action} user who was banned` };
    }
    if (req.action === "kick" && !["join", "invite", "knock"].includes(oldMembership ?? "")) {
      return { kind: "error", status: 403, errcode: "M_FORBIDDEN", error: "The target user is not in the room" };
    }
    const content: JsonObject = { ...req.content, membership: effective };
    if (old && old.stream_ordering !== null && old.sender === req.sender && oldMembership === effective && sameJson(old.content, content)) {
      return { kind: "existing", event_id: old.event_id, stream_ordering: old.stream_ordering };
    }
    if (req.action === "join" && req.authorise && oldMembership !== "join" && oldMembership !== "invite") {
      const authoriser = this.restrictedAuthoriser(req.target);
      if (authoriser) content.join_authorised_via_users_server = authoriser;
    }
    return { kind: "send", template: { type: "m.room.member", state_key: req.target, sender: req.sender, content } };
  }

  /** A local joined member who may invite: the user a restricted join names as its authoriser. */
  private restrictedAuthoriser(joiner: string): string | undefined {
    const invite = this.levels().invite;
    for (const { user_id } of this.sql.exec<{ user_id: string }>(
      "SELECT user_id FROM members WHERE membership = 'join' AND server = ? ORDER BY user_id",
      this.serverName,
    )) {
      if (user_id !== joiner && this.powerLevel(user_id) >= invite) return user_id;
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Directory

  directoryStats(): RoomStats {
    const q = this.q;
    const create = this.room.createEvent();
    const creators = [...roomCreators(create, this.room.version)];
    return {
      room_id: this.room.roomId,
      room_version: this.room.version.id,
      creator: creators[0] ?? create?.sender ?? null,
      name: str(q.currentStateContent("m.room.name", "")?.name),
      topic: plainTopic(q.currentStateContent("m.room.topic", "")),
      avatar_url: str(q.currentStateContent("m.room.avatar", "")?.url),
      canonical_alias: str(q.currentStateContent("m.room.canonical_alias", "")?.alias),
      join_rule: str(q.currentStateContent("m.room.join_rules", "")?.join_rule),
      history_visibility: q.currentHistoryVisibility(),
      guest_can_join: q.currentStateContent("m.room.guest_access", "")?.guest_access === "can_join",
      room_type: str(create?.content.type),
      encryption: str(q.currentStateContent("m.room.encryption", "")?.algorithm),
      joined_members: this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = 'join'").one().n,
    };
  }

  /** Users whose membership events arrived after stream position `since`, with their current joined-ness. */
  memberChangesSince(since: number): { position: number; changes: MemberChange[] } {
    const position = this.room.streamPosition;
    const users = this.sql
      .exec<{ state_key: string }>(
        `SELECT DISTINCT state_key FROM events
         WHERE type = 'm.room.member' AND stream_ordering > ? AND stream_ordering <= ?`,
        since,
        position,
      )
      .toArray()
      .map((r) => r.state_key);
    const changes = users.map((user_id): MemberChange => {
      const m = this.q.currentMember(user_id);
      if (m?.membership !== "join") return { user_id, joined: false, displayname: null, avatar_url: null };
      const content = this.room.events.authEvent(m.event_nid).content;
      return { user_id, joined: true, displayname: str(content.displayname), avatar_url: str(content.avatar_url) };
    });
    return { position, changes };
  }
}

/** A read the client API asks for (one RPC, dispatched here). */
export type ClientReadRequest =
  | { kind: "messages"; dir: "b" | "f"; from?: string; to?: string; limit: number; filter?: RoomEventFilter }
  | { kind: "context"; event_id: string; limit: number; filter?: RoomEventFilter }
  | { kind: "event"; event_id: string }
  | { kind: "state" }
  | { kind: "state_event"; type: string; state_key: string; format: "content" | "event" }
  | { kind: "members"; at?: string; membership?: string; not_membership?: string }
  | { kind: "joined_members" }
  | { kind: "timestamp_to_event"; ts: number; dir: "b" | "f" }
  // relations (docs/relations.md)
  | ({ kind: "relations" } & RelationsRequest)
  | ({ kind: "threads" } & ThreadsRequest);

export function runClientRead(q: RoomQueries, viewer: Viewer, req: ClientReadRequest): QueryResponse {
  switch (req.kind) {
    case "messages": {
      const m: Parameters<RoomQueries["messages"]>[1] = { dir: req.dir, limit: req.limit };
      if (req.from !== undefined) m.from = req.from;
      if (req.to !== undefined) m.to = req.to;
      if (req.filter !== undefined) m.filter = req.filter;
      return q.messages(viewer, m);
    }
    case "context":
      return q.context(viewer, req.event_id, req.limit, req.filter);
    case "event":
      return q.event(viewer, req.event_id);
    case "state":
      return q.state(viewer);
    case "state_event":
      return q.stateEvent(viewer, req.type, req.state_key, req.format);
    case "members": {
      const m: Parameters<RoomQueries["members"]>[1] = {};
      if (req.at !== undefined) m.at = req.at;
      if (req.membership !== undefined) m.membership = req.membership;
      if (req.not_membership !== undefined) m.notMembership = req.not_membership;
      return q.members(viewer, m);
    }
    case "joined_members":
      return q.joinedMembers(viewer);
    case "timestamp_to_event":
      return q.timestampToEvent(viewer, req.ts, req.dir);
    case "relations": // relations (docs/relations.md)
      return q.relations.relations(viewer, req);
    case "threads":
      return q.relations.threads(viewer, req);
  }
}

function notInRoom(userId: string): QueryResponse {
  return fail(403, "M_FORBIDDEN", `User ${userId} not in room, and the room's history is not world-readable`);
}
