/**
 * The RoomDO's half of /sync: one room's section for one user, between two room positions the user's UserDO
 * recorded (`from` exclusive, `to` inclusive). The UserDO says where the user stands; the room answers from
 * its own storage ("catch up from the source").
 *
 * - timeline: the newest visible events of (from, to] in stream order (arrival order, as the spec's /sync),
 *   at most `limit`; `limited` when any older visible event of the range was left out, and then `prev_batch`
 *   (a room pagination token, src/rooms/tokens.ts) lets /messages fetch the gap.
 * - state: the whole state at the start of the timeline (initial sync, newly joined, full_state), or the
 *   changes between the state at `from` and the state at the start of the timeline (incremental).
 * - lazy-loading members: only the member events of the timeline's senders, the heroes and (on a full state)
 *   the user's own; in incremental syncs every membership change of the gap is kept, as the spec requires.
 *   Redundant member events are not tracked per device: a sender's member event may be sent again, which the
 *   spec allows, so `include_redundant_members` is always honoured.
 * - left rooms end at the user's leave (or ban): nothing after it is shown.
 *
 * Synchronous and read-only: it runs between the RoomDO's write transactions and never waits.
 */
import type { ClientEvent, JsonObject, PDU } from "../../src/protocol/events";
import type { Room } from "./room";
import type { Ephemeral } from "./ephemeral";
import { RoomQueries, TIMELINE_COLUMNS, type TimelineRow, type Viewer } from "./queries";
import { isHiddenFromClients } from "../../src/rooms/client-event";
import { tokenBefore, formatTopoToken, cutAfter, ROOM_START } from "../../src/rooms/tokens";
import { excludesAll, matchesEvent, selectFields, timelineLimit, type Filter, type RoomEventFilter } from "../../src/sync/filter";
import { PushView } from "./push-eval";
import type { Ruleset } from "../../src/push/types";

/** What the UserDO planned for this room (see durable-objects/user/sync-plan.ts). */
export interface SyncRoomRequest {
  userId: string;
  deviceId: string;
  membership: string;
  from: number | null;
  to: number;
  fullState: boolean;
  ephFrom: number;
  ephTo: number;
  /** The validated sync filter, as JSON text. */
  filter: string;
  /** The user's push ruleset (JSON text of a Ruleset) for notification counts; null: counts are 0. */
  pushRules: string | null;
  /** Users the syncing user ignores: their non-state events are neither shown nor counted (src/rooms/ignored-users.ts). */
  ignoredUsers?: string[];
}

/** The room's entry for the /sync response, under `rooms[section][roomId]`. */
export interface SyncRoomResult {
  section: "join" | "invite" | "knock" | "leave";
  body: Record<string, unknown>;
  /** Whether this entry carries anything new (an incremental sync omits rooms without news). */
  news: boolean;
}

/** Whom a room's sync answers for: the user, with the users they ignore. */
function viewerOf(req: SyncRoomRequest): Viewer {
  return req.ignoredUsers?.length ? { userId: req.userId, ignoredUsers: req.ignoredUsers } : { userId: req.userId };
}

/** The `events` columns the client API reads (shared with queries.ts). */
type Row = TimelineRow;
const COLUMNS = TIMELINE_COLUMNS;
const MEMBER = "m.room.member";
/** Rows examined at most when looking for the timeline; past it the timeline is reported limited. */
const MAX_SCAN = 2000;
/** Rows read per page when looking for the timeline (after a first page sized by the limit). */
const PAGE = 200;
const HEROES = 5;
/** Unread events examined at most for notification counts (older unread events are not counted). */
const MAX_UNREAD_SCAN = 1000;

export class SyncView {
  private readonly queries: RoomQueries;
  /** Push-rule evaluation and read marks, shared with push delivery (push-eval.ts). */
  private readonly push: PushView;

  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly ephemeral: Ephemeral,
  ) {
    this.queries = new RoomQueries(room, sql);
    this.push = new PushView(room, sql, ephemeral);
  }

  /**
   * The user's membership now, for the outbox deliverer: from the current state, or — for a room this server
   * only knows from an invite or knock over federation (an outlier) — from that event.
   */
  membershipOf(userId: string): string {
    const row = this.sql
      .exec<{ membership: string; s: number | null }>(
        "SELECT m.membership, e.stream_ordering AS s FROM members m JOIN events e ON e.nid = m.event_nid WHERE m.user_id = ?",
        userId,
      )
      .toArray()[0];
    // Federation: an out-of-band membership (remote invite, or a leave/knock made through another server) newer
    // than what the room's (possibly stale) state says wins.
    const oob = this.outlierMembership(userId);
    if (row && !(oob && oob.stream_ordering > (row.s ?? 0))) return row.membership;
    return oob?.membership ?? "leave";
  }

  /** The newest out-of-band membership event of a user: an outlier that carries a stream position (federation). */
  private outlierMembership(userId: string): { membership: string; nid: number; stream_ordering: number } | undefined {
    return this.sql
      .exec<{ membership: string; nid: number; stream_ordering: number }>(
        `SELECT membership, nid, stream_ordering FROM events WHERE type = 'm.room.member' AND state_key = ? AND outlier = 1
           AND rejected IS NULL AND stream_ordering IS NOT NULL ORDER BY stream_ordering DESC LIMIT 1`,
        userId,
      )
      .toArray()[0];
  }

  /** Whether `userId` may see `eventId`, a timeline event of this room (receipts point at such events). */
  canSee(userId: string, eventId: string): boolean {
    const row = this.sql
      .exec<Row>(`SELECT ${COLUMNS} FROM events WHERE event_id = ? AND stream_ordering IS NOT NULL`, eventId)
      .toArray()[0];
    if (!row || isHiddenFromClients(row.type)) return false;
    return this.queries.visibleTo(userId, [row]).length === 1;
  }

  sync(req: SyncRoomRequest): SyncRoomResult | null {
    if (!this.room.exists) return null;
    const filter = JSON.parse(req.filter) as Filter;
    switch (req.membership) {
      case "invite":
      case "knock":
        return this.strippedSection(req, req.membership);
      case "join":
        // Faster joins: an eager (non-lazy-loading) sync leaves a partially stated room out until its resync is
        // done; the UserDO then has the room start afresh (sync-plan.ts). A lazy-loading sync shows it at once.
        if (this.room.meta("partial_state") !== undefined && filter.room?.state?.lazy_load_members !== true) return null;
        return this.timelineSection(req, filter, "join");
      default:
        return this.timelineSection(req, filter, "leave");
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Invites and knocks

  private strippedSection(req: SyncRoomRequest, membership: "invite" | "knock"): SyncRoomResult | null {
    const current = this.sql
      .exec<{ membership: string; event_nid: number }>("SELECT membership, event_nid FROM members WHERE user_id = ?", req.userId)
      .toArray()[0];
    const oob = this.outlierMembership(req.userId);
    const nid = oob?.membership === membership ? oob.nid : current?.membership === membership ? current.event_nid : undefined;
    if (nid === undefined) return null;
    const row = this.sql.exec<Row>(`SELECT ${COLUMNS} FROM events WHERE nid = ?`, nid).one();
    const pdu = JSON.parse(row.json) as PDU;
    const unsignedKey = membership === "invite" ? "invite_room_state" : "knock_room_state";
    // Remote invites carry the inviting server's stripped state; for rooms held here, build it.
    const given = (pdu.unsigned as JsonObject | undefined)?.[unsignedKey];
    const events: unknown[] = Array.isArray(given) ? [...given] : this.strippedState(pdu.sender, req.userId);
    const own = this.clientEvents([row], req)[0] as Record<string, unknown>;
    const unsigned = own.unsigned as Record<string, unknown> | undefined;
    if (unsigned) delete unsigned[unsignedKey];
    events.push(own);
    const key = membership === "invite" ? "invite_state" : "knock_state";
    return { section: membership, body: { [key]: { events } }, news: true };
  }

  /** Stripped state from the current state, plus the inviter's member event. */
  private strippedState(inviter: string, userId: string): JsonObject[] {
    const out: JsonObject[] = this.queries.strippedState().map((e) => ({ ...e }));
    if (inviter !== userId) {
      const nid = this.queries.currentStateNid(MEMBER, inviter);
      if (nid !== undefined) {
        const e = this.room.events.authEvent(nid);
        out.push({ type: MEMBER, state_key: inviter, sender: e.sender, content: e.content });
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Joined and left rooms

  private timelineSection(req: SyncRoomRequest, filter: Filter, section: "join" | "leave"): SyncRoomResult {
    const roomFilter = filter.room ?? {};
    const initial = req.from === null;
    let end = req.to;
    if (section === "leave") {
      // Nothing after the user's departure is theirs to see.
      const left = this.sql
        .exec<{ s: number }>(
          `SELECT stream_ordering AS s FROM events WHERE type = 'm.room.member' AND state_key = ?
             AND stream_ordering IS NOT NULL AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1`,
          req.userId, req.to,
        )
        .toArray()[0];
      if (left) end = left.s;
    }
    const start = req.from ?? 0;

    // Timeline: newest first, then reversed.
    const limit = timelineLimit(roomFilter);
    const timelineFilter = roomFilter.timeline;
    const picked: Row[] = [];
    let limited = false;
    let scanned = 0;
    let cursor = end;
    const skipTimeline = excludesAll(timelineFilter);
    // The first page is just big enough to fill the timeline and tell whether it is limited (every row read is
    // parsed and checked for visibility, so reading 200 for a timeline of 10 made an initial sync over many rooms
    // several times slower); later pages, needed when a filter or the history visibility hid events, are bigger.
    let pageSize = Math.min(PAGE, limit + 1);
    while (!skipTimeline && cursor > start) {
      const page = this.sql
        .exec<Row>(
          `SELECT ${COLUMNS} FROM events WHERE stream_ordering > ? AND stream_ordering <= ?
           ORDER BY stream_ordering DESC LIMIT ?`,
          start, cursor, pageSize,
        )
        .toArray();
      pageSize = PAGE;
      if (page.length === 0) break;
      cursor = page[page.length - 1]!.stream_ordering - 1;
      scanned += page.length;
      const candidates = page.filter(
        (r) => !isHiddenFromClients(r.type) && matchesEvent(timelineFilter, { type: r.type, sender: r.sender, content: contentOf(r) }),
      );
      // The user's own membership events always show (a rejected invite or a kick must reach the client even
      // where the history visibility would hide them), as the reference server does.
      const shown = new Set(this.queries.visibleTo(viewerOf(req), candidates).map((r) => r.nid));
      const visible = candidates.filter((r) => shown.has(r.nid) || (r.type === MEMBER && r.state_key === req.userId));
      for (const row of visible) {
        if (picked.length >= limit) {
          limited = true;
          break;
        }
        picked.push(row);
      }
      if (limited) break;
      if (scanned >= MAX_SCAN && cursor > start) {
        // Too much to look through (invisible history, a narrow filter): report a gap rather than scan on.
        limited = true;
        break;
      }
    }
    picked.reverse();

    const body: Record<string, unknown> = {};
    const timeline: Record<string, unknown> = {
      // Relations (docs/relations.md): bundled aggregations when the client cannot aggregate the timeline itself
      // (limited, or a whole-state sync), as the spec asks and the reference server does.
      events: this.clientEvents(picked, req, filter, limited || initial || req.fullState),
      limited,
    };
    const first = picked[0];
    if (first) timeline.prev_batch = tokenBefore(first);
    else timeline.prev_batch = formatTopoToken(this.cutAt(end));
    body.timeline = timeline;

    // State at the start of the timeline, whole or as a delta against the state at `from`.
    const startGroup = first ? first.state_before : this.groupAt(end);
    const startState = this.room.states.load(startGroup);
    const stateFilter = roomFilter.state;
    const lazy = stateFilter?.lazy_load_members === true;
    const whole = initial || req.fullState;
    let stateNids: number[];
    if (whole) {
      stateNids = [...startState.values()];
    } else {
      const fromState = this.room.states.load(this.groupAt(start));
      stateNids = [];
      for (const [key, nid] of startState) if (fromState.get(key) !== nid) stateNids.push(nid);
    }
    const timelineIds = new Set(picked.map((r) => r.event_id));
    let heroes: string[] | undefined;
    const summary = section === "join" ? this.summary(req, start, end, whole) : undefined;
    if (summary) {
      heroes = summary["m.heroes"] as string[] | undefined;
      body.summary = summary;
    }
    const wantedMembers = new Set<string>(picked.map((r) => r.sender));
    if (whole) wantedMembers.add(req.userId);
    for (const h of heroes ?? []) wantedMembers.add(h);
    const deltaMembers = whole ? new Set<number>() : new Set(stateNids);
    const stateRows: Row[] = [];
    if (!excludesAll(stateFilter)) {
      for (const row of this.rowsByNid(stateNids)) {
        const nid = row.nid;
        if (timelineIds.has(row.event_id)) continue;
        if (!matchesEvent(stateFilter, { type: row.type, sender: row.sender, content: contentOf(row) })) continue;
        if (lazy && row.type === MEMBER && !deltaMembers.has(nid) && !wantedMembers.has(row.state_key!)) continue;
        stateRows.push(row);
      }
      // Lazy loading on an incremental sync: senders whose membership did not change in the gap still need theirs.
      if (lazy && !whole) {
        const have = new Set(stateRows.filter((r) => r.type === MEMBER).map((r) => r.state_key));
        for (const user of wantedMembers) {
          if (have.has(user)) continue;
          const keyId = this.room.states.existingKeyId(MEMBER, user);
          const nid = keyId === undefined ? undefined : startState.get(keyId);
          const row = nid === undefined ? undefined : this.rowByNid(nid);
          if (row && !timelineIds.has(row.event_id)) stateRows.push(row);
        }
      }
      // Faster joins: a partial state lacks most members. A timeline sender's membership then comes from their
      // event's auth events (which name the sender's member event).
      if (lazy && this.room.meta("partial_state") !== undefined) {
        const have = new Set(stateRows.filter((r) => r.type === MEMBER).map((r) => r.state_key));
        for (const row of picked) {
          if (have.has(row.sender) || (row.type === MEMBER && row.state_key === row.sender)) continue;
          const member = this.sql
            .exec<Row>(
              `SELECT ${COLUMNS.split(", ").map((c) => `e.${c}`).join(", ")} FROM auth_edges a JOIN events e ON e.event_id = a.auth_id
               WHERE a.event_nid = ? AND e.type = 'm.room.member' AND e.state_key = ? AND e.rejected IS NULL LIMIT 1`,
              row.nid, row.sender,
            )
            .toArray()[0];
          if (member && !timelineIds.has(member.event_id) && matchesEvent(stateFilter, { type: MEMBER, sender: member.sender, content: contentOf(member) })) {
            stateRows.push(member);
            have.add(row.sender);
          }
        }
      }
    }
    body.state = { events: this.clientEvents(stateRows, req, filter) };

    let news = whole || picked.length > 0 || stateRows.length > 0 || section === "leave";
    if (section === "join") {
      const ephemeral = this.ephemeralEvents(req, roomFilter.ephemeral, initial);
      body.ephemeral = { events: ephemeral };
      if (ephemeral.length > 0) news = true;
      body.unread_notifications = this.unreadCounts(req, end);
    }
    return { section, body, news };
  }

  /**
   * Notification counts: the events after the user's read-up-to mark (the later of their unthreaded or `main`
   * m.read / m.read.private receipts) up to `end`, evaluated against the user's push rules. Computed when the
   * sync asks, not stored per event: at most MAX_UNREAD_SCAN events are examined.
   */
  private unreadCounts(req: SyncRoomRequest, end: number): { notification_count: number; highlight_count: number } {
    const counts = { notification_count: 0, highlight_count: 0 };
    if (req.pushRules === null) return counts;
    const rules = JSON.parse(req.pushRules) as Ruleset;
    const readUpTo = this.push.readMark(req.userId);
    if (readUpTo >= end) return counts;
    const rows = this.sql
      .exec<Row>(
        `SELECT ${COLUMNS} FROM events WHERE stream_ordering > ? AND stream_ordering <= ? AND sender != ?
         ORDER BY stream_ordering DESC LIMIT ?`,
        readUpTo, end, req.userId, MAX_UNREAD_SCAN,
      )
      .toArray()
      .filter((r) => !isHiddenFromClients(r.type));
    for (const { match } of this.push.notifying(viewerOf(req), rows, rules)) {
      counts.notification_count++;
      if (match.highlight) counts.highlight_count++;
    }
    return counts;
  }

  /** Heroes and member counts (m.heroes, m.joined_member_count, m.invited_member_count). */
  private summary(req: SyncRoomRequest, start: number, end: number, whole: boolean): Record<string, unknown> | undefined {
    if (!whole) {
      const changed = this.sql
        .exec("SELECT 1 FROM events WHERE type = 'm.room.member' AND stream_ordering > ? AND stream_ordering <= ? LIMIT 1", start, end)
        .toArray().length > 0;
      if (!changed) return undefined;
    }
    const count = (m: string) =>
      this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = ?", m).one().n;
    const byOrder = (memberships: string) =>
      this.sql
        .exec<{ user_id: string }>(
          `SELECT m.user_id FROM members m JOIN events e ON e.nid = m.event_nid
           WHERE m.user_id != ? AND m.membership IN (${memberships}) ORDER BY e.stream_ordering, m.user_id LIMIT ?`,
          req.userId, HEROES,
        )
        .toArray()
        .map((r) => r.user_id);
    const summary: Record<string, unknown> = { "m.joined_member_count": count("join"), "m.invited_member_count": count("invite") };
    // Heroes name a room that has no name of its own (as the reference server, only then).
    const named = ["m.room.name", "m.room.canonical_alias"].some((type) => {
      const content = this.queries.currentStateContent(type, "");
      return typeof content?.name === "string" && content.name !== "" || typeof content?.alias === "string" && content.alias !== "";
    });
    if (!named) {
      let heroes = byOrder("'join', 'invite'");
      if (heroes.length === 0) heroes = byOrder("'leave', 'ban'");
      summary["m.heroes"] = heroes;
    }
    return summary;
  }

  /** Typing and receipts of (ephFrom, ephTo], as `m.typing` / `m.receipt` events. */
  private ephemeralEvents(req: SyncRoomRequest, f: RoomEventFilter | undefined, initial: boolean): JsonObject[] {
    const out: JsonObject[] = [];
    if (excludesAll(f)) return out;
    // Ephemeral events have no single sender: only the type lists apply.
    const types: RoomEventFilter = {};
    if (f?.types) types.types = f.types;
    if (f?.not_types) types.not_types = f.not_types;
    const allow = (type: string) => matchesEvent(types, { type, sender: "" });
    if (allow("m.typing")) {
      const changed = this.ephemeral.typingPosition > req.ephFrom;
      const users = this.ephemeral.typingUsers();
      if ((initial || req.ephFrom === 0) ? users.length > 0 : changed) out.push({ type: "m.typing", content: { user_ids: users } });
    }
    if (allow("m.receipt")) {
      const content = this.ephemeral.receiptContent(req.ephFrom, req.ephTo, req.userId);
      if (content) out.push({ type: "m.receipt", content: content as unknown as JsonObject });
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Helpers

  /** The state group after the last event at or before room position `pos` (null: before the room). */
  private groupAt(pos: number): number | null {
    if (pos <= 0) return null;
    return (
      this.sql
        .exec<{ g: number | null }>(
          "SELECT state_after AS g FROM events WHERE stream_ordering IS NOT NULL AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
          pos,
        )
        .toArray()[0]?.g ?? null
    );
  }

  /** The pagination cut just after the last event at or before `pos`. */
  private cutAt(pos: number) {
    const row = this.sql
      .exec<{ depth: number; stream_ordering: number }>(
        "SELECT depth, stream_ordering FROM events WHERE stream_ordering IS NOT NULL AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
        pos,
      )
      .toArray()[0];
    return row ? cutAfter(row) : ROOM_START;
  }

  /** Rows by nid, in batches (a whole state can be large). */
  private rowsByNid(nids: number[]): Row[] {
    const out: Row[] = [];
    for (let i = 0; i < nids.length; i += 100) {
      const chunk = nids.slice(i, i + 100);
      out.push(
        ...this.sql.exec<Row>(`SELECT ${COLUMNS} FROM events WHERE nid IN (${chunk.map(() => "?").join(",")})`, ...chunk).toArray(),
      );
    }
    return out;
  }

  private rowByNid(nid: number): Row | undefined {
    return this.sql.exec<Row>(`SELECT ${COLUMNS} FROM events WHERE nid = ?`, nid).toArray()[0];
  }

  /** The client form of events for /sync: no `room_id`, `event_fields` applied, or the PDUs on request. */
  private clientEvents(rows: Row[], req: SyncRoomRequest, filter?: Filter, bundle = false): (ClientEvent | JsonObject)[] {
    if (filter?.event_format === "federation") return rows.map((r) => JSON.parse(r.json) as JsonObject);
    // One call for the batch, so state lookups (prev_content) are shared.
    const viewer = { userId: req.userId, deviceId: req.deviceId };
    return (bundle ? this.queries.toClientBundled(rows, viewer) : this.queries.toClient(rows, viewer)).map((event) => {
      const out = event as unknown as Record<string, unknown>;
      delete out.room_id;
      return selectFields(out, filter?.event_fields) as JsonObject;
    });
  }
}

function contentOf(row: Row): JsonObject {
  return (JSON.parse(row.json) as PDU).content;
}
