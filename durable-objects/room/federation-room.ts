/**
 * The RoomDO's side of the federation endpoints that serve room data and of the membership handshakes
 * (docs/federation.md, "Serving room data" and "Joining, inviting, leaving"). Synchronous SQLite over the
 * room's `Room`: the RoomDO calls these inside or between its transactions, never across an await.
 *
 * Reads for other servers
 * - what a server may see: history visibility from the point of view of the server's users (an event is
 *   visible when the room was `world_readable` or `shared` at it, or one of the server's users was joined — or
 *   invited, under `invited`). Events a server may not see are served redacted, as the spec says for servers.
 * - state and auth chains at an event (`/state`, `/state_ids`, `/event_auth`, send_join's answer), single
 *   events (`/event`, outliers included), `/backfill` (a walk back over prev events, newest first) and
 *   `/get_missing_events` (breadth-first from the latest events back to the earliest ones, oldest first).
 *
 * Membership handshakes
 * - templates for make_join / make_leave / make_knock, checked against the current state;
 * - out-of-band memberships: an invite received over `/invite`, or our own leave or knock sent through another
 *   server, for a room this server is not in. They are stored as outliers that carry a stream position, so the
 *   user's UserDO hears of them like of any event (and /sync shows them); they never touch the room's state.
 * - the bookkeeping around a remote join: stale forward extremities are dropped (the join's state supersedes
 *   whatever we held from before), out-of-band memberships leave the timeline, and the join's missing prev
 *   events become backward extremities (where `/messages` backfills from).
 *
 * Tables (created if missing, no RoomDO schema version taken): `fed_backward_extremities` — events we know of
 * only as prev events of timeline events; `fed_forwarded` — remote events we accepted through send_join /
 * send_leave / send_knock and must pass on to the other servers in the room (the resident's duty).
 */
import type { JsonObject, PDU } from "../../src/protocol/events";
import { eventRefIds, isStateEvent } from "../../src/protocol/events";
import type { AuthEvent } from "../../src/protocol/auth/types";
import { toFederationPdu } from "../../src/protocol/event-id";
import { redactEvent } from "../../src/protocol/redaction";
import { serverNameOf } from "../../src/protocol/identifiers";
import { parseHistoryVisibility, type HistoryVisibility } from "../../src/rooms/visibility";
import { serverAllowedByAcl } from "../../src/federation/acl";
import { selectPartialJoinState, type StateEntry } from "../../src/federation/partial-join-state"; // faster joins
import type { Room } from "./room";
import type { Outbox } from "./outbox";

export const FEDERATION_TABLES = `
  CREATE TABLE IF NOT EXISTS fed_backward_extremities (
    event_id TEXT PRIMARY KEY,
    depth    INTEGER NOT NULL            -- the depth of the child that references it, minus one
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS fed_forwarded (
    stream_ordering INTEGER PRIMARY KEY
  );
`;

/** The state events shown (stripped) with invites and knocks. */
export const STRIPPED_STATE_TYPES = [
  "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.canonical_alias", "m.room.encryption",
] as const;

/** An answer for a federation endpoint: HTTP status and JSON body text. */
export interface FedAnswer {
  status: number;
  body: string;
}

/** A value, an error or ready JSON text as a {@link FedAnswer}. */
export function fedAnswer(v: unknown): FedAnswer {
  if (isFedError(v)) return { status: v.error.status, body: JSON.stringify({ ...v.error.extra, errcode: v.error.errcode, error: v.error.message }) };
  return { status: 200, body: typeof v === "string" ? v : JSON.stringify(v) };
}

/** Most events one `/backfill` answer holds. */
export const MAX_BACKFILL = 100;
/** Most events one `/get_missing_events` answer holds. */
export const MAX_MISSING_EVENTS = 50;

/** A federation answer that is an error: HTTP status, Matrix error code, message. */
export interface FedError {
  error: { status: number; errcode: string; message: string; extra?: Record<string, unknown> };
}

export function fedError(status: number, errcode: string, message: string, extra?: Record<string, unknown>): FedError {
  return { error: extra ? { status, errcode, message, extra } : { status, errcode, message } };
}

export function isFedError(v: unknown): v is FedError {
  return typeof v === "object" && v !== null && "error" in v && typeof (v as FedError).error === "object";
}

type Row = {
  nid: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  stream_ordering: number | null;
  json: string;
  outlier: number;
  rejected: string | null;
  partial_state: number;
  state_before: number | null;
  state_after: number | null;
};
const COLUMNS = "nid, event_id, type, state_key, sender, depth, stream_ordering, json, outlier, rejected, partial_state, state_before, state_after";

/** The membership template a resident hands out (make_join / make_leave / make_knock). */
export interface MembershipTemplate {
  room_version: string;
  event: Record<string, unknown>;
}

/**
 * History visibility as one server sees it: per state group, the room's visibility and the best membership any
 * of the server's users has there. Lookups walk the group's skip deltas for single keys (no whole-state loads).
 */
class ServerView {
  private readonly memberKeys: number[];
  private readonly visKey: number | undefined;
  private readonly memo = new Map<number, { visibility: HistoryVisibility; membership: "join" | "invite" | null }>();
  private readonly bases = new Map<number, number | null>();

  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    server: string,
  ) {
    const suffix = `:${server}`;
    this.memberKeys = sql
      .exec<{ id: number }>("SELECT id FROM state_keys WHERE type = 'm.room.member' AND substr(state_key, -?) = ?", suffix.length, suffix)
      .toArray()
      .map((r) => r.id);
    this.visKey = room.states.existingKeyId("m.room.history_visibility", "");
  }

  private base(group: number): number | null {
    let b = this.bases.get(group);
    if (b === undefined) {
      b = this.sql.exec<{ base: number | null }>("SELECT base FROM state_groups WHERE id = ?", group).one().base;
      this.bases.set(group, b);
    }
    return b;
  }

  private nidAt(group: number | null, keyId: number): number | undefined {
    for (let g = group; g !== null; g = this.base(g)) {
      const row = this.sql
        .exec<{ event_nid: number | null }>("SELECT event_nid FROM state_skip WHERE group_id = ? AND key_id = ?", g, keyId)
        .toArray()[0];
      if (row) return row.event_nid ?? undefined;
    }
    return undefined;
  }

  private facts(group: number | null) {
    if (group === null) return { visibility: "shared" as HistoryVisibility, membership: null };
    let f = this.memo.get(group);
    if (!f) {
      const visNid = this.visKey === undefined ? undefined : this.nidAt(group, this.visKey);
      const visibility = parseHistoryVisibility(visNid === undefined ? undefined : this.room.events.authEvent(visNid).content);
      let membership: "join" | "invite" | null = null;
      for (const key of this.memberKeys) {
        const nid = this.nidAt(group, key);
        if (nid === undefined) continue;
        const m = this.room.events.authEvent(nid).content.membership;
        if (m === "join") {
          membership = "join";
          break;
        }
        if (m === "invite") membership = "invite";
      }
      f = { visibility, membership };
      this.memo.set(group, f);
    }
    return f;
  }

  /**
   * Whether the server may see the event unredacted. Outliers (auth and state events fetched for a state) have
   * no state of their own and are shared knowledge of the room: visible.
   */
  visible(row: Row): boolean {
    if (row.stream_ordering === null || row.outlier === 1) return true;
    const after = this.facts(row.state_after);
    const visibilities = [after.visibility];
    // A history visibility change is judged by the more permissive of the settings before and after it.
    if (row.type === "m.room.history_visibility" && row.state_key === "") visibilities.push(this.facts(row.state_before).visibility);
    for (const v of visibilities) {
      if (v === "world_readable" || v === "shared") return true;
      if (after.membership === "join") return true;
      if (v === "invited" && after.membership === "invite") return true;
    }
    return false;
  }
}

export class FederationRoom {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly outbox: Outbox,
    private readonly serverName: string,
  ) {}

  /** Creates the tables if missing (RoomDO constructor, inside blockConcurrencyWhile). */
  migrate(): void {
    this.sql.exec(FEDERATION_TABLES);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Access

  /** The room's server ACL content (undefined without one). */
  acl(): unknown {
    return this.room.lookupIn(this.room.currentState())("m.room.server_acl", "")?.content;
  }

  /** Whether `server` has a user joined to the room now. */
  serverJoined(server: string): boolean {
    return this.sql.exec("SELECT 1 FROM members WHERE server = ? AND membership = 'join' LIMIT 1", server).toArray().length > 0;
  }

  /** Local users joined now. */
  localJoined(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE server = ? AND membership = 'join'", this.serverName).one().n;
  }

  /**
   * Why `server` may not use a room-scoped endpoint: the room is unknown here (404), its server ACL denies the
   * server (403), or — with `requireJoined` — none of its users is joined (403). Undefined when it may.
   */
  accessProblem(server: string, requireJoined: boolean): FedError | undefined {
    if (!this.room.exists || this.room.currentStateGroup === null) return fedError(404, "M_NOT_FOUND", "Unknown room");
    if (!serverAllowedByAcl(server, this.acl())) return fedError(403, "M_FORBIDDEN", `Server ${server} is banned from this room by its server ACL`);
    if (requireJoined && !this.serverJoined(server)) return fedError(403, "M_FORBIDDEN", `Server ${server} is not in the room`);
    return undefined;
  }

  /** Whether this server can act as a resident of the room (make_join and friends). */
  residentProblem(): FedError | undefined {
    if (!this.room.exists || this.room.currentStateGroup === null || this.localJoined() === 0) {
      return fedError(404, "M_NOT_FOUND", "This server is not in the room");
    }
    // Faster joins: a partially stated room cannot vouch for its state.
    if (this.room.meta("partial_state") !== undefined) return fedError(404, "M_NOT_FOUND", "This server is still joining the room");
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Events in federation format

  private rowById(eventId: string): Row | undefined {
    return this.sql.exec<Row>(`SELECT ${COLUMNS} FROM events WHERE event_id = ?`, eventId).toArray()[0];
  }

  private rowsByNid(nids: readonly number[]): Row[] {
    const out: Row[] = [];
    for (let i = 0; i < nids.length; i += 100) {
      const chunk = nids.slice(i, i + 100);
      out.push(...this.sql.exec<Row>(`SELECT ${COLUMNS} FROM events WHERE nid IN (${chunk.map(() => "?").join(",")})`, ...chunk).toArray());
    }
    return out;
  }

  /** The stored PDU as sent over federation: no local fields, no `unsigned`; redacted when `redact`. */
  pduOf(json: string, redact = false): PDU {
    const version = this.room.version;
    let pdu = JSON.parse(json) as PDU;
    delete pdu.unsigned;
    if (redact) pdu = redactEvent(pdu, version) as unknown as PDU;
    return toFederationPdu(pdu, version);
  }

  private pdus(rows: readonly Row[], view?: ServerView): PDU[] {
    return rows.map((r) => this.pduOf(r.json, view ? !view.visible(r) : false));
  }

  /** `GET /event/{eventId}`: any non-rejected event of the room (outliers too), redacted if the server may not see it. */
  event(server: string, eventId: string): PDU | FedError {
    const row = this.rowById(eventId);
    if (!row || row.rejected !== null) return fedError(404, "M_NOT_FOUND", `Event ${eventId} not found`);
    return this.pdus([row], new ServerView(this.room, this.sql, server))[0]!;
  }

  // ---------------------------------------------------------------------------------------------------------
  // State and auth chains

  /** Auth chain (nids) of a set of events (not including them, unless one is in another's chain). */
  private authChainOf(nids: readonly number[]): number[] {
    const chain = new Set<number>();
    const indexed = new Set<number>();
    for (let i = 0; i < nids.length; i += 100) {
      const chunk = nids.slice(i, i + 100);
      for (const r of this.sql.exec<{ e: number; a: number }>(
        `SELECT event_nid AS e, ancestor_nid AS a FROM auth_chain WHERE event_nid IN (${chunk.map(() => "?").join(",")})`,
        ...chunk,
      )) {
        indexed.add(r.e);
        chain.add(r.a);
      }
    }
    // Events the index does not cover (non-state events; the create event has no chain at all): walk them.
    for (const nid of nids) {
      if (!indexed.has(nid)) for (const a of this.room.events.authChainNids(nid)) chain.add(a);
    }
    return [...chain];
  }

  /**
   * The state before an event (a timeline event of this room) and the auth chain of that state, as nids.
   * Partial-state events are refused (their state is incomplete).
   */
  private stateBefore(eventId: string): { state: number[]; authChain: number[] } | FedError {
    const row = this.rowById(eventId);
    if (!row || row.stream_ordering === null || row.outlier === 1) return fedError(404, "M_NOT_FOUND", `Could not find event ${eventId}`);
    if (row.partial_state === 1) return fedError(403, "M_FORBIDDEN", `The state at ${eventId} is not fully known here yet`);
    const state = [...this.room.states.load(row.state_before).values()];
    return { state, authChain: this.authChainOf(state) };
  }

  /** `GET /state_ids/{roomId}?event_id=` */
  stateIds(eventId: string): { pdu_ids: string[]; auth_chain_ids: string[] } | FedError {
    const s = this.stateBefore(eventId);
    if (isFedError(s)) return s;
    const ids = (nids: number[]) => nids.map((n) => this.room.events.eventIdOf(n));
    return { pdu_ids: ids(s.state), auth_chain_ids: ids(s.authChain) };
  }

  /** `GET /state/{roomId}?event_id=` (JSON text: rooms can be large). */
  stateJson(eventId: string): string | FedError {
    const s = this.stateBefore(eventId);
    if (isFedError(s)) return s;
    return JSON.stringify({ pdus: this.pdus(this.rowsByNid(s.state)), auth_chain: this.pdus(this.rowsByNid(s.authChain)) });
  }

  /** `GET /event_auth/{roomId}/{eventId}`: the event's auth chain. */
  eventAuth(eventId: string): PDU[] | FedError {
    const row = this.rowById(eventId);
    if (!row || row.rejected !== null) return fedError(404, "M_NOT_FOUND", `Could not find event ${eventId}`);
    return this.pdus(this.rowsByNid(this.room.events.authChainNids(row.nid)));
  }

  /**
   * The send_join answer for an accepted join: the state before it and the auth chain of that state and of the
   * join (JSON text). `servers_in_room`: servers with joined members before the join.
   *
   * Faster joins (`omitMembers`, src/federation/partial-join-state.ts): member events are left out of `state`
   * except those the joiner needs, the auth chain leaves out what `state` already holds, and the answer says
   * `members_omitted` (and the MSC3706 names).
   */
  sendJoinAnswerJson(joinEventId: string, extra: Record<string, unknown>, omitMembers = false): string | FedError {
    const row = this.rowById(joinEventId);
    if (!row || row.stream_ordering === null) return fedError(404, "M_NOT_FOUND", `Could not find event ${joinEventId}`);
    if (omitMembers) return this.partialSendJoinAnswerJson(row, extra); // faster joins
    const state = [...this.room.states.load(row.state_before).values()];
    const chain = new Set([...this.authChainOf(state), ...this.room.events.authChainNids(row.nid)]);
    const servers = new Set<string>();
    for (const nid of state) {
      const e = this.room.events.authEvent(nid);
      if (e.type === "m.room.member" && e.content.membership === "join" && e.state_key !== undefined) servers.add(serverNameOf(e.state_key));
    }
    return JSON.stringify({
      ...extra,
      origin: this.serverName,
      state: this.pdus(this.rowsByNid(state)),
      auth_chain: this.pdus(this.rowsByNid([...chain])),
      servers_in_room: [...servers].sort(),
    });
  }

  /**
   * Faster joins: the partial send_join answer (see `selectPartialJoinState`). Reads one small row per state
   * event (the membership column, no JSON) and parses only the power levels, name and canonical alias.
   */
  private partialSendJoinAnswerJson(join: Row, extra: Record<string, unknown>): string {
    const full = [...this.room.states.load(join.state_before).values()];
    const entries: StateEntry[] = [];
    for (let i = 0; i < full.length; i += 100) {
      const chunk = full.slice(i, i + 100);
      entries.push(
        ...this.sql.exec<StateEntry>(
          `SELECT nid, type, state_key, sender, membership, stream_ordering FROM events WHERE nid IN (${chunk.map(() => "?").join(",")})`,
          ...chunk,
        ).toArray(),
      );
    }
    const lookup = this.room.lookupIn(this.room.states.load(join.state_before));
    const nonEmpty = (v: unknown) => typeof v === "string" && v !== "";
    const named = nonEmpty(lookup("m.room.name", "")?.content.name) || nonEmpty(lookup("m.room.canonical_alias", "")?.content.alias);
    const users = lookup("m.room.power_levels", "")?.content.users;
    const selection = selectPartialJoinState(entries, join.state_key ?? join.sender, {
      named,
      powerUsers: users && typeof users === "object" && !Array.isArray(users) ? (users as Record<string, unknown>) : undefined,
      serverOf: (userId) => {
        try {
          return serverNameOf(userId);
        } catch {
          return undefined;
        }
      },
    });
    const kept = new Set(selection.state);
    const chain = new Set([...this.authChainOf(selection.state), ...this.room.events.authChainNids(join.nid)]);
    for (const nid of kept) chain.delete(nid);
    return JSON.stringify({
      ...extra,
      origin: this.serverName,
      members_omitted: true,
      "org.matrix.msc3706.partial_state": true,
      state: this.pdus(this.rowsByNid(selection.state)),
      auth_chain: this.pdus(this.rowsByNid([...chain])),
      servers_in_room: selection.servers_in_room,
      "org.matrix.msc3706.servers_in_room": selection.servers_in_room,
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // History: backfill, missing events, timestamps

  private timelineRow(eventId: string): Row | undefined {
    return this.sql
      .exec<Row>(`SELECT ${COLUMNS} FROM events WHERE event_id = ? AND stream_ordering IS NOT NULL AND outlier = 0 AND rejected IS NULL`, eventId)
      .toArray()[0];
  }

  private prevIdsOf(nid: number): string[] {
    return this.sql.exec<{ prev_id: string }>("SELECT prev_id FROM prev_edges WHERE event_nid = ?", nid).toArray().map((r) => r.prev_id);
  }

  /**
   * `GET /backfill/{roomId}?v=…&limit=`: the given events and those before them, walking prev events newest
   * (deepest) first, at most `limit` (capped at MAX_BACKFILL). Redacted where the server may not see them.
   */
  backfill(server: string, from: readonly string[], limit: number): PDU[] {
    const max = Math.max(0, Math.min(limit, MAX_BACKFILL));
    const seen = new Set<string>();
    const queue: Row[] = [];
    const push = (id: string) => {
      if (seen.has(id)) return;
      seen.add(id);
      const row = this.timelineRow(id);
      if (row) queue.push(row);
    };
    for (const id of from) push(id);
    const out: Row[] = [];
    while (queue.length > 0 && out.length < max) {
      // Deepest first (then newest), like a walk back through time over every branch at once.
      let best = 0;
      for (let i = 1; i < queue.length; i++) {
        const a = queue[i]!;
        const b = queue[best]!;
        if (a.depth > b.depth || (a.depth === b.depth && a.stream_ordering! > b.stream_ordering!)) best = i;
      }
      const row = queue.splice(best, 1)[0]!;
      out.push(row);
      for (const prev of this.prevIdsOf(row.nid)) push(prev);
    }
    return this.pdus(out, new ServerView(this.room, this.sql, server));
  }

  /**
   * `POST /get_missing_events/{roomId}`: the events before `latest` (not including them) back to `earliest`
   * (not including them either), breadth first, at most `limit` (capped at MAX_MISSING_EVENTS), none shallower
   * than `minDepth`; returned oldest first, redacted where the server may not see them.
   */
  missingEvents(server: string, earliest: readonly string[], latest: readonly string[], limit: number, minDepth: number): PDU[] {
    const max = Math.max(0, Math.min(limit, MAX_MISSING_EVENTS));
    const seen = new Set<string>([...earliest, ...latest]);
    let front: Row[] = latest.map((id) => this.timelineRow(id)).filter((r): r is Row => r !== undefined);
    const found: Row[] = [];
    while (front.length > 0 && found.length < max) {
      const next: Row[] = [];
      for (const row of front) {
        for (const prev of this.prevIdsOf(row.nid)) {
          if (seen.has(prev) || found.length >= max) continue;
          seen.add(prev);
          const p = this.timelineRow(prev);
          if (!p || p.depth < minDepth) continue;
          found.push(p);
          next.push(p);
        }
      }
      front = next;
    }
    found.sort((a, b) => a.depth - b.depth || a.stream_ordering! - b.stream_ordering!);
    return this.pdus(found, new ServerView(this.room, this.sql, server));
  }

  /** `GET /timestamp_to_event/{roomId}`: the closest event the server may see at or after/before `ts`. */
  timestampToEvent(server: string, ts: number, dir: "f" | "b"): { event_id: string; origin_server_ts: number } | FedError {
    const view = new ServerView(this.room, this.sql, server);
    const order = dir === "f" ? "ASC" : "DESC";
    const cmp = dir === "f" ? ">=" : "<=";
    for (let offset = 0; ; offset += 200) {
      const page = this.sql
        .exec<Row & { origin_server_ts: number }>(
          `SELECT ${COLUMNS}, origin_server_ts FROM events WHERE stream_ordering IS NOT NULL AND outlier = 0 AND rejected IS NULL
             AND soft_failed = 0 AND origin_server_ts ${cmp} ? ORDER BY origin_server_ts ${order}, depth ${order}, stream_ordering ${order}
           LIMIT 200 OFFSET ?`,
          ts,
          offset,
        )
        .toArray();
      const hit = page.find((r) => r.type !== "org.matrix.dummy_event" && view.visible(r));
      if (hit) return { event_id: hit.event_id, origin_server_ts: hit.origin_server_ts };
      if (page.length < 200) return fedError(404, "M_NOT_FOUND", `Unable to find event from ${ts} in direction ${dir}`);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Backward extremities (where /messages backfills from)

  /** Records the prev events of a timeline event that the room does not hold in its timeline. */
  recordBackwardExtremities(pdu: PDU): void {
    for (const prev of eventRefIds(pdu.prev_events)) {
      if (this.timelineRow(prev)) continue;
      this.sql.exec(
        "INSERT INTO fed_backward_extremities (event_id, depth) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET depth = max(depth, excluded.depth)",
        prev,
        Math.max(0, pdu.depth - 1),
      );
    }
  }

  /** The backward extremities at or below `maxDepth`, deepest first (those filled meanwhile are forgotten). */
  backwardExtremities(maxDepth: number): { event_id: string; depth: number }[] {
    const rows = this.sql
      .exec<{ event_id: string; depth: number }>("SELECT event_id, depth FROM fed_backward_extremities ORDER BY depth DESC")
      .toArray();
    const out: { event_id: string; depth: number }[] = [];
    for (const r of rows) {
      // Placed meanwhile (accepted, or rejected: either way nothing more to fetch there).
      if (this.sql.exec("SELECT 1 FROM events WHERE event_id = ? AND outlier = 0", r.event_id).toArray().length > 0) {
        this.sql.exec("DELETE FROM fed_backward_extremities WHERE event_id = ?", r.event_id);
        continue;
      }
      if (r.depth <= maxDepth) out.push(r);
    }
    return out;
  }

  /** Timeline events with depth in [fromDepth, cut]: how much history lies between a pagination point and a gap. */
  eventsDownTo(fromDepth: number, cut: { depth: number; stream: number }, max: number): number {
    return this.sql
      .exec<{ n: number }>(
        `SELECT count(*) AS n FROM (SELECT 1 FROM events WHERE stream_ordering IS NOT NULL AND depth >= ?
           AND (depth, stream_ordering) <= (?, ?) LIMIT ?)`,
        fromDepth,
        cut.depth,
        cut.stream,
        max,
      )
      .one().n;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Membership handshakes: templates

  /**
   * A template for a remote user's membership event (make_join / make_leave / make_knock): prev events (the
   * forward extremities, as a local event would have), auth events from the state before it, depth. The event
   * is checked against that state; a refusal is a 403. `authoriser`: the restricted-join authorising user.
   * Call inside a transaction (resolving many extremities stores a state group).
   */
  membershipTemplate(userId: string, membership: "join" | "leave" | "knock", authoriser?: string): MembershipTemplate | FedError {
    const room = this.room;
    const version = room.version;
    const content: JsonObject = { membership };
    if (authoriser !== undefined) content.join_authorised_via_users_server = authoriser;
    const place = room.placeNewEvent({ type: "m.room.member", state_key: userId, sender: userId, content });
    const event: Record<string, unknown> = {
      room_id: room.roomId,
      type: "m.room.member",
      state_key: userId,
      sender: userId,
      content,
      origin: this.serverName,
      origin_server_ts: Date.now(),
      depth: place.depth,
      prev_events: place.prev_events,
      auth_events: place.auth_events,
    };
    // The event as the auth rules would see it (its ID is not known yet).
    const probe: AuthEvent = {
      event_id: "$template",
      room_id: room.roomId,
      type: "m.room.member",
      state_key: userId,
      sender: userId,
      content,
      origin_server_ts: event.origin_server_ts as number,
      prev_events: place.prevIds,
      auth_events: place.authIds,
      depth: place.depth,
    };
    // A restricted join is signed by the authorising server (us) at send_join: count that signature as made.
    if (authoriser !== undefined) probe.signatures = { [serverNameOf(authoriser)]: { "ed25519:pending": "" } };
    const check = room.checkAuthAgainst(probe, place.stateBefore);
    if (!check.allowed) return fedError(403, "M_FORBIDDEN", `You may not ${membership === "leave" ? "leave" : membership} this room: ${check.reason}`);
    return { room_version: version.id, event };
  }

  /** The current join rule and, for restricted rules, the rooms whose members may join. */
  joinRules(): { join_rule: string; allow_rooms: string[] } {
    const content = this.room.lookupIn(this.room.currentState())("m.room.join_rules", "")?.content;
    const allow = Array.isArray(content?.allow) ? content.allow : [];
    const allowRooms: string[] = [];
    for (const a of allow) {
      if (a && typeof a === "object" && !Array.isArray(a) && a.type === "m.room_membership" && typeof a.room_id === "string") allowRooms.push(a.room_id);
    }
    return { join_rule: typeof content?.join_rule === "string" ? content.join_rule : "invite", allow_rooms: allowRooms };
  }

  /** A user's current membership ("leave" when none). */
  membershipOf(userId: string): string {
    return this.sql.exec<{ membership: string }>("SELECT membership FROM members WHERE user_id = ?", userId).toArray()[0]?.membership ?? "leave";
  }

  /** A local joined member who may invite (a restricted join's authoriser), or undefined. */
  restrictedAuthoriser(): string | undefined {
    const state = this.room.currentState();
    for (const { user_id } of this.sql.exec<{ user_id: string }>(
      "SELECT user_id FROM members WHERE membership = 'join' AND server = ? ORDER BY user_id",
      this.serverName,
    )) {
      // Probe: an invite by this user of a stranger would pass the auth rules if they may invite.
      const probe: AuthEvent = {
        event_id: "$probe",
        room_id: this.room.roomId,
        type: "m.room.member",
        state_key: `@probe:${this.serverName}.invalid`,
        sender: user_id,
        content: { membership: "invite" },
        origin_server_ts: Date.now(),
        prev_events: [],
        auth_events: [],
        depth: 1,
      };
      if (this.room.checkAuthAgainst(probe, state).allowed) return user_id;
    }
    return undefined;
  }

  /**
   * The stripped state shown with an invite or a knock, as full PDUs of the current state (spec v1.16+: the
   * create event, join rules, name, avatar, topic, canonical alias, encryption), plus `memberOf`'s member event
   * (the inviter's, for invites).
   */
  strippedStatePdus(memberOf?: string): PDU[] {
    const lookup = this.room.lookupIn(this.room.currentState());
    const ids: string[] = [];
    for (const type of STRIPPED_STATE_TYPES) {
      const e = lookup(type, "");
      if (e) ids.push(e.event_id);
    }
    if (memberOf !== undefined) {
      const e = lookup("m.room.member", memberOf);
      if (e) ids.push(e.event_id);
    }
    return ids.map((id) => this.pduOf(this.room.events.byId(id)!.json));
  }

  /**
   * Spaces (`/hierarchy`): the room's `m.space.child` state events (stripped, with `origin_server_ts`) that name
   * servers to join through, and whether `server` has users joined or invited here.
   */
  spaceChildren(server: string): { children_state: Record<string, unknown>[]; server_member: boolean } {
    const out: Record<string, unknown>[] = [];
    for (const [keyId, nid] of this.room.currentState()) {
      const [type] = this.room.keyOf(keyId);
      if (type !== "m.space.child") continue;
      const e = this.room.events.authEvent(nid);
      const via = e.content.via;
      if (!Array.isArray(via) || via.length === 0) continue;
      out.push({ type, state_key: e.state_key, sender: e.sender, content: e.content, origin_server_ts: e.origin_server_ts });
    }
    const member = this.sql
      .exec("SELECT 1 FROM members WHERE server = ? AND membership IN ('join', 'invite') LIMIT 1", server)
      .toArray().length > 0;
    return { children_state: out, server_member: member };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Events accepted for others (send_join / send_leave / send_knock): forwarded to the room's other servers

  /** After accepting a remote membership event as resident: queue it for every other server in the room. */
  forward(position: number, origin: string): void {
    this.sql.exec("INSERT OR IGNORE INTO fed_forwarded (stream_ordering) VALUES (?)", position);
    const servers = this.sql
      .exec<{ server: string }>("SELECT DISTINCT server FROM members WHERE membership = 'join'")
      .toArray()
      .map((r) => r.server);
    for (const s of servers) if (s !== this.serverName && s !== origin) this.outbox.add("destination", s, position);
  }

  /** Whether an event at `position` is a remote event this server passes on (see `forward`). */
  isForwarded(position: number): boolean {
    return this.sql.exec("SELECT 1 FROM fed_forwarded WHERE stream_ordering = ?", position).toArray().length > 0;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Out-of-band memberships and remote joins

  /**
   * Stores an out-of-band membership event (a remote invite, or our own leave or knock made through another
   * server) for a room whose state this server does not follow: an outlier with the next stream position, so
   * that the user's sync stream hears of it (the RoomDO delivers the outbox row). `unsigned` extras
   * (`invite_room_state`, `knock_room_state`) are kept with it. Call inside a transaction, after
   * `Room.initialise`. Returns the event ID and position.
   */
  storeOutOfBand(pdu: PDU, eventId: string, unsigned: JsonObject): { event_id: string; stream_ordering: number } {
    const room = this.room;
    const existing = room.events.statusById(eventId);
    if (existing) {
      if (existing.stream_ordering !== null) return { event_id: eventId, stream_ordering: existing.stream_ordering };
      // Held as a plain outlier (part of a state we fetched): give it a position now.
    }
    const position = room.streamPosition + 1;
    const stored = { ...pdu, unsigned: { ...(pdu.unsigned ?? {}), ...unsigned } } as PDU;
    if (existing) {
      this.sql.exec("UPDATE events SET stream_ordering = ?, json = ? WHERE nid = ?", position, JSON.stringify(stored), existing.nid);
      room.events.forget(existing.nid);
    } else {
      room.events.insert({
        eventId, pdu: stored, streamOrdering: position, outlier: true, rejected: null, softFailed: false, partialState: false,
        stateBefore: null, stateAfter: null,
      });
    }
    if (isStateEvent(pdu) && serverNameOf(pdu.state_key) === this.serverName) this.outbox.add("user", pdu.state_key, position);
    return { event_id: eventId, stream_ordering: position };
  }

  /** The newest out-of-band membership event of a user (JSON as stored), if any. */
  outOfBandMembership(userId: string): { event_id: string; membership: string; json: string } | undefined {
    return this.sql
      .exec<{ event_id: string; membership: string; json: string }>(
        `SELECT event_id, membership, json FROM events WHERE type = 'm.room.member' AND state_key = ? AND outlier = 1
           AND stream_ordering IS NOT NULL ORDER BY stream_ordering DESC LIMIT 1`,
        userId,
      )
      .toArray()[0];
  }

  /**
   * Before accepting a join made through another server: whatever forward extremities we still hold from an
   * earlier stay in the room are stale (the join's state supersedes them).
   */
  beforeRemoteJoin(): void {
    this.sql.exec("DELETE FROM forward_extremities");
  }

  /** After accepting it: out-of-band memberships leave the timeline; the join's unknown prev events are where history resumes. */
  afterRemoteJoin(join: PDU): void {
    this.sql.exec("UPDATE events SET stream_ordering = NULL WHERE outlier = 1 AND stream_ordering IS NOT NULL");
    this.recordBackwardExtremities(join);
  }
}
