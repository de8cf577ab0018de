/**
 * Push notifications, the room's half (docs/push.md): a user's push rules against the room's new events, the
 * user's read mark, and what a notification (or GET /notifications) shows about an event.
 *
 * The UserDO asks (positions, not payloads): "evaluate for me what came after position P with these rules". The
 * room answers from its own storage in one synchronous read — the same context the /sync notification counts use
 * (sync-view.ts `unreadCounts`): the user's display name, the joined member count, the sender's power level and
 * the `notifications` power levels, all from the current state; only events the user may see (history
 * visibility) count, never the user's own, never events from before their current membership began.
 */
import type { PDU } from "../../src/protocol/events";
import type { Room } from "./room";
import type { Ephemeral } from "./ephemeral";
import { RoomQueries, TIMELINE_COLUMNS, type TimelineRow, type Viewer } from "./queries";
import { isHiddenFromClients } from "../../src/rooms/client-event";
import { evaluatePushRules, notificationPowerLevels, type PushContext, type PushMatch } from "../../src/push/evaluator";
import type { PushAction, Ruleset } from "../../src/push/types";
import type { NotifiedEvent } from "../../src/push/notify";
import { userPowerLevel } from "../../src/protocol/auth/power-levels";

const MEMBER = "m.room.member";

/** One event that notifies the user. */
export interface EvaluatedAction {
  event_id: string;
  stream_ordering: number;
  /** The event's origin_server_ts. */
  ts: number;
  actions: PushAction[];
  highlight: boolean;
}

export interface PushEvaluation {
  /** The room position evaluated up to (inclusive); ask again from here while it is behind. */
  position: number;
  /** Whether `position` is the room's head (nothing left to evaluate now). */
  done: boolean;
  /** The user's read mark: stream ordering of their latest unthreaded/main m.read or m.read.private receipt. */
  read_pos: number;
  actions: EvaluatedAction[];
}

/** What a notification shows about one event, plus where the event stands. */
export interface PushDetail extends NotifiedEvent {
  stream_ordering: number;
  /** The event in client format (for GET /notifications), as JSON text. */
  client_json: string;
}

export class PushView {
  private readonly queries: RoomQueries;

  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly ephemeral: Ephemeral,
  ) {
    this.queries = new RoomQueries(room, sql);
  }

  /** The user's read mark (0: no receipt). */
  readMark(userId: string): number {
    let readUpTo = 0;
    for (const r of this.ephemeral.receiptsOf(userId)) {
      if (r.receipt_type !== "m.read" && r.receipt_type !== "m.read.private") continue;
      if (r.thread_id !== "" && r.thread_id !== "main") continue;
      const s = this.sql.exec<{ s: number | null }>("SELECT stream_ordering AS s FROM events WHERE event_id = ?", r.event_id).toArray()[0]?.s;
      if (s != null && s > readUpTo) readUpTo = s;
    }
    return readUpTo;
  }

  /**
   * The rows among `rows` that notify `viewer` under `rules`, with their matches: only rows the viewer may see
   * (history visibility, ignored users), evaluated in the room's current context (the viewer's display name, the
   * member count, each sender's power level). Shared with the sync's notification counts (sync-view.ts).
   */
  notifying(viewer: Viewer, rows: TimelineRow[], rules: Ruleset): { row: TimelineRow; match: PushMatch }[] {
    const lookup = (type: string, sk: string) => {
      const nid = this.queries.currentStateNid(type, sk);
      return nid === undefined ? undefined : this.room.events.authEvent(nid);
    };
    const own = this.queries.currentStateContent(MEMBER, viewer.userId);
    const ctx: PushContext = {
      userId: viewer.userId,
      displayName: typeof own?.displayname === "string" ? own.displayname : null,
      memberCount: this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = 'join'").one().n,
      senderPowerLevel: 0,
      notificationPowerLevels: notificationPowerLevels(this.queries.currentStateContent("m.room.power_levels", "")),
    };
    const levels = new Map<string, number>();
    const out: { row: TimelineRow; match: PushMatch }[] = [];
    for (const row of this.queries.visibleTo(viewer, rows)) {
      let level = levels.get(row.sender);
      if (level === undefined) levels.set(row.sender, (level = userPowerLevel(row.sender, lookup, this.room.version)));
      const pdu = JSON.parse(row.json) as PDU;
      const event = { ...pdu, event_id: row.event_id, room_id: this.room.roomId } as Record<string, unknown>;
      const match = evaluatePushRules(rules, event, { ...ctx, senderPowerLevel: level });
      if (match?.notify) out.push({ row, match });
    }
    return out;
  }

  /**
   * Evaluates the user's rules against at most `limit` events after `after`. Joined users: every visible event
   * after their join; invited users: their invite only; anyone else: nothing.
   */
  evaluate(userId: string, after: number, rules: Ruleset, limit: number, ignoredUsers: string[] = []): PushEvaluation {
    const head = this.room.exists ? this.room.streamPosition : 0;
    const result: PushEvaluation = { position: head, done: true, read_pos: 0, actions: [] };
    if (!this.room.exists) return result;
    result.read_pos = this.readMark(userId);
    const member = this.queries.currentMember(userId);
    const memberRow = member && this.sql
      .exec<TimelineRow>(`SELECT ${TIMELINE_COLUMNS} FROM events WHERE nid = ?`, member.event_nid).toArray()[0];
    if (!member || !memberRow || memberRow.stream_ordering === null) return result;

    let rows: TimelineRow[];
    if (member.membership === "invite") {
      rows = memberRow.stream_ordering > after ? [memberRow] : [];
    } else if (member.membership === "join") {
      const start = Math.max(after, memberRow.stream_ordering);
      rows = this.sql
        .exec<TimelineRow>(
          `SELECT ${TIMELINE_COLUMNS} FROM events WHERE stream_ordering > ? AND stream_ordering <= ?
           AND rejected IS NULL AND soft_failed = 0 ORDER BY stream_ordering LIMIT ?`,
          start, head, limit,
        )
        .toArray();
      if (rows.length === limit) {
        result.position = rows[rows.length - 1]!.stream_ordering;
        result.done = result.position >= head;
      }
    } else {
      return result;
    }
    rows = rows.filter((r) => r.sender !== userId && !isHiddenFromClients(r.type));
    if (rows.length === 0) return result;

    // Ignored users' non-state events never notify (m.ignored_user_list).
    for (const { row, match } of this.notifying({ userId, ignoredUsers }, rows, rules)) {
      result.actions.push({
        event_id: row.event_id,
        stream_ordering: row.stream_ordering,
        ts: row.origin_server_ts,
        actions: match.actions,
        highlight: match.highlight,
      });
    }
    return result;
  }

  /**
   * What notifications show about `eventIds` for `userId`: events the user may (still) see, in client format,
   * with the sender's display name and the room's name and canonical alias. Unknown or invisible events are
   * left out.
   */
  details(userId: string, eventIds: readonly string[]): { read_pos: number; events: PushDetail[] } {
    if (!this.room.exists) return { read_pos: 0, events: [] };
    const rows = eventIds.map((id) => this.queries.timelineRow(id)).filter((r): r is TimelineRow => r !== undefined);
    const visible = this.queries.visibleTo(userId, rows);
    const clients = this.queries.toClient(visible, { userId });
    const nameContent = this.queries.currentStateContent("m.room.name", "");
    const aliasContent = this.queries.currentStateContent("m.room.canonical_alias", "");
    const roomName = typeof nameContent?.name === "string" && nameContent.name !== "" ? nameContent.name : undefined;
    const roomAlias = typeof aliasContent?.alias === "string" && aliasContent.alias !== "" ? aliasContent.alias : undefined;
    const names = new Map<string, string | undefined>();
    const events = visible.map((row, i): PushDetail => {
      if (!names.has(row.sender)) {
        const m = this.queries.currentStateContent(MEMBER, row.sender);
        names.set(row.sender, typeof m?.displayname === "string" && m.displayname !== "" ? m.displayname : undefined);
      }
      const client = clients[i]!;
      const detail: PushDetail = {
        event_id: row.event_id,
        room_id: this.room.roomId,
        type: row.type,
        sender: row.sender,
        content: (client.content ?? {}) as Record<string, unknown>,
        stream_ordering: row.stream_ordering,
        client_json: JSON.stringify(client),
      };
      if (row.state_key !== null) detail.state_key = row.state_key;
      const senderName = names.get(row.sender);
      if (senderName) detail.sender_display_name = senderName;
      if (roomName ?? roomAlias) detail.room_name = roomName ?? roomAlias;
      if (roomAlias) detail.room_alias = roomAlias;
      return detail;
    });
    return { read_pos: this.readMark(userId), events };
  }
}
