/**
 * Push notifications, the user's half (docs/push.md): which events notify this user (the reference server's
 * event_push_actions), and delivery to the user's `http` pushers.
 *
 * - Evaluation: `roomAdvanced` records the room's new position in `push_rooms` (one small write in the
 *   transaction the UserDO already makes; nothing awaited there, so the sender's send is not slowed). A
 *   background pass then asks each room that moved (RoomDO.pushEvaluate: positions, not payloads) to evaluate
 *   the events after the last evaluated position with the user's current push rules, and stores the notifying
 *   ones in `push_actions` (bounded: 30 days, at most MAX_ACTIONS rows).
 * - Read marks: when a room with unread notifications reports a receipt change (`ephemeralAdvanced`), the pass
 *   asks the room for the user's read mark, so read notifications are neither pushed nor counted.
 * - Delivery: one cursor per pusher in `push_deliveries` (the id of the last notification handled). A pusher's
 *   notifications go one request at a time, in order; a failure (network, timeout, non-2xx) waits 1 s, then
 *   2 s, 4 s … up to an hour (by alarm), and a notification that keeps failing for a day is given up; a pushkey
 *   the gateway answers as `rejected` deletes that pusher. When the user reads and the unread count drops, each
 *   pusher gets one count-only notification (best effort, not retried).
 *
 * Only one pass runs at a time per user (so at most one request is in flight per pusher); everything it needs
 * is in storage, so an eviction loses nothing: the alarm (a safety net set when a pass starts) resumes it.
 */
import type { Env } from "../../src/env";
import type { RoomDO } from "../room/RoomDO";
import type { PushEvaluation, PushDetail } from "../room/push-eval";
import type { PushAction } from "../../src/push/types";
import { pushRuleset } from "./push-rules";
import { deletePusher, httpPushers, type HttpPusher } from "../../src/push/pushers";
import { badgeNotification, eventNotification } from "../../src/push/notify";
import { postToGateway } from "../../src/push/gateway";
import { IGNORED_USER_LIST, ignoredUsersOf } from "../../src/rooms/ignored-users";
import { CoalescingRunner } from "../shared/coalescing-runner";

/** UserDO schema entry (schema.ts MIGRATIONS). */
export const PUSH_TABLES = `
  -- Rooms whose events are evaluated for push: the position announced, the position evaluated up to, the
  -- user's read mark there (stream ordering of their latest main/unthreaded read receipt), and whether a
  -- receipt change must be looked at.
  CREATE TABLE push_rooms (
    room_id       TEXT PRIMARY KEY,
    membership    TEXT NOT NULL,
    target_pos    INTEGER NOT NULL,
    evaluated_pos INTEGER NOT NULL DEFAULT 0,
    read_pos      INTEGER NOT NULL DEFAULT 0,
    read_dirty    INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;

  -- Events that notify the user (GET /notifications, pushes). id orders them as they were found.
  CREATE TABLE push_actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    ts              INTEGER NOT NULL,      -- the event's origin_server_ts
    actions         TEXT NOT NULL,         -- JSON array of the matching rule's actions
    highlight       INTEGER NOT NULL,
    inserted_ts     INTEGER NOT NULL,
    UNIQUE (room_id, event_id)
  );
  CREATE INDEX push_actions_room ON push_actions(room_id, stream_ordering);
  CREATE INDEX push_actions_highlight ON push_actions(highlight, id);
  CREATE INDEX push_actions_inserted ON push_actions(inserted_ts);

  -- Delivery state per http pusher (the pushers themselves live in D1): cursor, backoff, last badge sent.
  CREATE TABLE push_deliveries (
    app_id          TEXT NOT NULL,
    pushkey         TEXT NOT NULL,
    last_id         INTEGER NOT NULL,
    failing_since   INTEGER,
    backoff_ms      INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts INTEGER NOT NULL DEFAULT 0,
    badge           INTEGER,
    PRIMARY KEY (app_id, pushkey)
  ) WITHOUT ROWID;
`;

/** Events evaluated per RoomDO call. */
const EVAL_BATCH = 100;
/** Notifications read per delivery step. */
const DELIVERY_BATCH = 20;
export const INITIAL_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 60 * 60 * 1000;
export const GIVE_UP_AFTER_MS = 24 * 60 * 60 * 1000;
/** Notifications are kept this long, and at most MAX_ACTIONS of them. */
const KEEP_MS = 30 * 24 * 60 * 60 * 1000;
const MAX_ACTIONS = 10_000;
/** The alarm set when a pass starts, in case the object is evicted in the middle. */
const SAFETY_NET_MS = 30_000;
/** How long after an event is announced its push pass runs (notifications go out that much later, batched). */
const PASS_DELAY_MS = 1000;
/** A room that could not be asked (evaluation or read mark) is asked again after this. */
const ROOM_RETRY_MS = 5_000;

export interface PushHost {
  ctx: DurableObjectState;
  env: Env;
  sql: SqlStorage;
  userId(): string | undefined;
}

type ActionRow = {
  id: number;
  room_id: string;
  event_id: string;
  stream_ordering: number;
  ts: number;
  actions: string;
  highlight: number;
};

type DeliveryRow = {
  app_id: string;
  pushkey: string;
  last_id: number;
  failing_since: number | null;
  backoff_ms: number;
  next_attempt_ts: number;
  badge: number | null;
};

/** One stored notification as GET /notifications reads it. */
export interface StoredNotification {
  id: number;
  room_id: string;
  event_id: string;
  ts: number;
  actions: PushAction[];
  highlight: boolean;
}

export class PushService {
  private readonly passes = new CoalescingRunner(() => this.pass());

  constructor(private readonly host: PushHost) {}

  private get sql(): SqlStorage {
    return this.host.sql;
  }

  private room(roomId: string): DurableObjectStub<RoomDO> {
    return this.host.env.ROOMS.get(this.host.env.ROOMS.idFromName(roomId)) as DurableObjectStub<RoomDO>;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Inside the UserDO's transactions (cheap, synchronous)

  /** The room reached `position` where the user's membership is `membership`. */
  noteAdvance(roomId: string, position: number, membership: string): void {
    this.sql.exec(
      `INSERT INTO push_rooms (room_id, membership, target_pos) VALUES (?, ?, ?)
       ON CONFLICT (room_id) DO UPDATE SET target_pos = max(target_pos, excluded.target_pos), membership = excluded.membership`,
      roomId, membership, position,
    );
  }

  /** Receipts (or typing) changed in the room: true when the user has unread notifications there to re-check. */
  noteEphemeral(roomId: string): boolean {
    this.sql.exec(
      `UPDATE push_rooms SET read_dirty = 1 WHERE room_id = ? AND read_dirty = 0 AND EXISTS
         (SELECT 1 FROM push_actions a WHERE a.room_id = push_rooms.room_id AND a.stream_ordering > push_rooms.read_pos)`,
      roomId,
    );
    return this.sql.exec<{ n: number }>("SELECT read_dirty AS n FROM push_rooms WHERE room_id = ?", roomId).toArray()[0]?.n === 1;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Background

  /**
   * Asks for a pass PASS_DELAY_MS from now, by alarm: the events of a burst are evaluated together, and the pass
   * never competes with the request that announced them (a send's read-your-writes hop, in a local runtime that
   * runs every object on one thread).
   */
  kick(): void {
    this.armAt(Date.now() + PASS_DELAY_MS).catch((e) => console.warn("push: arming the pass", e));
  }

  /** The alarm fired. */
  async alarm(): Promise<void> {
    await this.run();
  }

  private run(): Promise<void> {
    return this.passes.run();
  }

  private async pass(): Promise<void> {
    const userId = this.host.userId();
    if (!userId) return;
    const start = Date.now();
    await this.armAt(start + SAFETY_NET_MS);
    let due: number | null = null;
    const retry = (t: number) => (due = due === null ? t : Math.min(due, t));

    for (const { room_id } of this.sql
      .exec<{ room_id: string }>("SELECT room_id FROM push_rooms WHERE evaluated_pos < target_pos").toArray()) {
      try {
        await this.evaluateRoom(userId, room_id);
      } catch (e) {
        console.warn(`push: evaluating ${room_id} failed: ${String((e as Error)?.message ?? e)}`);
        retry(Date.now() + ROOM_RETRY_MS);
      }
    }

    let readMoved = false;
    for (const { room_id, read_pos } of this.sql
      .exec<{ room_id: string; read_pos: number }>("SELECT room_id, read_pos FROM push_rooms WHERE read_dirty = 1").toArray()) {
      this.sql.exec("UPDATE push_rooms SET read_dirty = 0 WHERE room_id = ?", room_id);
      try {
        const mark = await this.room(room_id).pushReadMark(userId);
        if (mark > read_pos) {
          this.sql.exec("UPDATE push_rooms SET read_pos = max(read_pos, ?) WHERE room_id = ?", mark, room_id);
          readMoved = true;
        }
      } catch (e) {
        this.sql.exec("UPDATE push_rooms SET read_dirty = 1 WHERE room_id = ?", room_id);
        retry(Date.now() + ROOM_RETRY_MS);
      }
    }

    this.prune(Date.now());
    const next = await this.deliver(userId, readMoved);
    if (next !== null) retry(next);
    if (due !== null) await this.armAt(due);
  }

  /** Evaluates the room's events after the evaluated position, batch by batch, until caught up. */
  private async evaluateRoom(userId: string, roomId: string): Promise<void> {
    for (;;) {
      const row = this.sql
        .exec<{ membership: string; target_pos: number; evaluated_pos: number }>(
          "SELECT membership, target_pos, evaluated_pos FROM push_rooms WHERE room_id = ?", roomId,
        )
        .toArray()[0];
      if (!row || row.evaluated_pos >= row.target_pos) return;
      if (row.membership !== "join" && row.membership !== "invite") {
        this.sql.exec("UPDATE push_rooms SET evaluated_pos = target_pos WHERE room_id = ?", roomId);
        return;
      }
      const rules = JSON.stringify(pushRuleset(this.sql, userId));
      const ignored = ignoredUsersOf(
        this.sql.exec<{ content: string }>("SELECT content FROM account_data WHERE room_id = '' AND type = ?", IGNORED_USER_LIST).toArray()[0]?.content ?? null,
      );
      const res = JSON.parse(await this.room(roomId).pushEvaluate(userId, row.evaluated_pos, rules, EVAL_BATCH, ignored)) as PushEvaluation;
      const now = Date.now();
      this.host.ctx.storage.transactionSync(() => {
        for (const a of res.actions) {
          this.sql.exec(
            `INSERT OR IGNORE INTO push_actions (room_id, event_id, stream_ordering, ts, actions, highlight, inserted_ts)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
            roomId, a.event_id, a.stream_ordering, a.ts, JSON.stringify(a.actions), a.highlight ? 1 : 0, now,
          );
        }
        const reached = res.done ? Math.max(res.position, row.target_pos) : res.position;
        this.sql.exec(
          "UPDATE push_rooms SET evaluated_pos = max(evaluated_pos, ?), read_pos = max(read_pos, ?) WHERE room_id = ?",
          reached, res.read_pos, roomId,
        );
      });
      if (!res.done && res.position <= row.evaluated_pos) return; // no progress: never loop forever
    }
  }

  /** Forgets notifications older than KEEP_MS and beyond the newest MAX_ACTIONS. */
  private prune(now: number): void {
    this.sql.exec("DELETE FROM push_actions WHERE inserted_ts < ?", now - KEEP_MS);
    this.sql.exec("DELETE FROM push_actions WHERE id <= (SELECT max(id) FROM push_actions) - ?", MAX_ACTIONS);
  }

  /** The badge: rooms (joined or invited) with unread notifications, as the reference server counts by default. */
  unreadCount(): number {
    return this.sql
      .exec<{ n: number }>(
        `SELECT count(DISTINCT a.room_id) AS n FROM push_actions a JOIN push_rooms r ON r.room_id = a.room_id
         WHERE a.stream_ordering > r.read_pos AND r.membership IN ('join', 'invite')`,
      )
      .one().n;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Delivery

  /** Delivers to every http pusher; returns when the next retry is due (null: nothing waiting). */
  private async deliver(userId: string, readMoved: boolean): Promise<number | null> {
    const pushers = await httpPushers(this.host.env.DB, userId);
    const keep = new Set(pushers.map((p) => `${p.app_id}\u0000${p.pushkey}`));
    for (const r of this.sql.exec<{ app_id: string; pushkey: string }>("SELECT app_id, pushkey FROM push_deliveries").toArray()) {
      if (!keep.has(`${r.app_id}\u0000${r.pushkey}`)) this.sql.exec("DELETE FROM push_deliveries WHERE app_id = ? AND pushkey = ?", r.app_id, r.pushkey);
    }
    if (pushers.length === 0) return null;
    const details = new Map<string, PushDetail | null>();
    const dues = await Promise.all(pushers.map((p) => this.deliverTo(userId, p, readMoved, details)));
    const times = dues.filter((t): t is number => t !== null);
    return times.length === 0 ? null : Math.min(...times);
  }

  private state(p: HttpPusher): DeliveryRow {
    const row = this.sql
      .exec<DeliveryRow>("SELECT * FROM push_deliveries WHERE app_id = ? AND pushkey = ?", p.app_id, p.pushkey)
      .toArray()[0];
    if (row) return row;
    // A new pusher gets the notifications found since it was set, not the older ones.
    const lastId = this.sql
      .exec<{ id: number | null }>("SELECT max(id) AS id FROM push_actions WHERE inserted_ts < ?", p.created_ts)
      .one().id ?? 0;
    this.sql.exec("INSERT INTO push_deliveries (app_id, pushkey, last_id) VALUES (?, ?, ?)", p.app_id, p.pushkey, lastId);
    return { app_id: p.app_id, pushkey: p.pushkey, last_id: lastId, failing_since: null, backoff_ms: 0, next_attempt_ts: 0, badge: null };
  }

  private save(s: DeliveryRow): void {
    this.sql.exec(
      `UPDATE push_deliveries SET last_id = ?, failing_since = ?, backoff_ms = ?, next_attempt_ts = ?, badge = ?
       WHERE app_id = ? AND pushkey = ?`,
      s.last_id, s.failing_since, s.backoff_ms, s.next_attempt_ts, s.badge, s.app_id, s.pushkey,
    );
  }

  /** The pusher's pending notifications, one request at a time; returns its next retry time, if waiting. */
  private async deliverTo(userId: string, p: HttpPusher, readMoved: boolean, details: Map<string, PushDetail | null>): Promise<number | null> {
    const s = this.state(p);
    if (s.next_attempt_ts > Date.now()) return s.next_attempt_ts;
    for (;;) {
      // Unread notifications only: one the user has read meanwhile is skipped (as the reference server does).
      const rows = this.sql
        .exec<ActionRow>(
          `SELECT a.id, a.room_id, a.event_id, a.stream_ordering, a.ts, a.actions, a.highlight
           FROM push_actions a JOIN push_rooms r ON r.room_id = a.room_id
           WHERE a.id > ? AND a.stream_ordering > r.read_pos ORDER BY a.id LIMIT ?`,
          s.last_id, DELIVERY_BATCH,
        )
        .toArray();
      if (rows.length === 0) break;
      await this.loadDetails(userId, rows, details);
      for (const row of rows) {
        const detail = details.get(row.event_id) ?? null;
        if (!detail) {
          // Gone or no longer visible: nothing to show.
          s.last_id = row.id;
          this.save(s);
          continue;
        }
        const badge = this.unreadCount();
        const now0 = Date.now();
        const out = await postToGateway(p.url, eventNotification(userId, p, detail, JSON.parse(row.actions) as PushAction[], badge));
        if (!this.stillThere(p)) return null; // deleted meanwhile
        const now = Date.now();
        if (out.ok) {
          if (out.rejected.includes(p.pushkey)) {
            await this.rejected(userId, p);
            return null;
          }
          Object.assign(s, { last_id: row.id, failing_since: null, backoff_ms: 0, next_attempt_ts: 0, badge });
          this.save(s);
          continue;
        }
        console.warn(`push: ${p.app_id} ${row.event_id}: ${out.error}`);
        s.failing_since ??= now0;
        if (now - s.failing_since >= GIVE_UP_AFTER_MS) {
          // Give up on this one, so that a gateway that comes back is not flooded with day-old notifications.
          Object.assign(s, { last_id: row.id, failing_since: null, backoff_ms: 0, next_attempt_ts: 0 });
          this.save(s);
          continue;
        }
        s.backoff_ms = s.backoff_ms > 0 ? Math.min(s.backoff_ms * 2, MAX_BACKOFF_MS) : INITIAL_BACKOFF_MS;
        s.next_attempt_ts = now + s.backoff_ms;
        this.save(s);
        return s.next_attempt_ts;
      }
    }
    if (readMoved) {
      const badge = this.unreadCount();
      if (badge !== s.badge) {
        s.badge = badge;
        this.save(s);
        const out = await postToGateway(p.url, badgeNotification(p, badge));
        if (out.ok && out.rejected.includes(p.pushkey) && this.stillThere(p)) await this.rejected(userId, p);
        else if (!out.ok) console.warn(`push: badge for ${p.app_id}: ${out.error}`);
      }
    }
    return null;
  }

  private stillThere(p: HttpPusher): boolean {
    return this.sql.exec("SELECT 1 FROM push_deliveries WHERE app_id = ? AND pushkey = ?", p.app_id, p.pushkey).toArray().length > 0;
  }

  /** The gateway rejected the pushkey: the pusher goes (spec: "the homeserver must remove the pusher"). */
  private async rejected(userId: string, p: HttpPusher): Promise<void> {
    this.sql.exec("DELETE FROM push_deliveries WHERE app_id = ? AND pushkey = ?", p.app_id, p.pushkey);
    await deletePusher(this.host.env.DB, userId, p.app_id, p.pushkey);
  }

  /** Fetches what the notifications show, one RoomDO call per room, for the events not fetched yet in this pass. */
  private async loadDetails(userId: string, rows: ActionRow[], details: Map<string, PushDetail | null>): Promise<void> {
    const byRoom = new Map<string, string[]>();
    for (const r of rows) {
      if (details.has(r.event_id)) continue;
      const list = byRoom.get(r.room_id) ?? [];
      list.push(r.event_id);
      byRoom.set(r.room_id, list);
    }
    for (const [roomId, ids] of byRoom) {
      const res = JSON.parse(await this.room(roomId).pushDetails(userId, ids)) as { events: PushDetail[] };
      for (const id of ids) details.set(id, null);
      for (const e of res.events) details.set(e.event_id, e);
    }
  }

  /** Points the alarm at `t` unless it is already set earlier (presence and the E2EE outbox share it). */
  private async armAt(t: number): Promise<void> {
    const current = await this.host.ctx.storage.getAlarm();
    if (current === null || current > t) await this.host.ctx.storage.setAlarm(t);
  }

  // ---------------------------------------------------------------------------------------------------------
  // GET /notifications

  /** Stored notifications older than `from` (an id; null: the newest), newest first; `more` when others follow. */
  list(from: number | null, limit: number, onlyHighlight: boolean): { rows: StoredNotification[]; more: boolean } {
    const rows = this.sql
      .exec<ActionRow>(
        `SELECT id, room_id, event_id, stream_ordering, ts, actions, highlight FROM push_actions
         WHERE id < ? ${onlyHighlight ? "AND highlight = 1" : ""} ORDER BY id DESC LIMIT ?`,
        from ?? Number.MAX_SAFE_INTEGER, limit + 1,
      )
      .toArray();
    return {
      more: rows.length > limit,
      rows: rows.slice(0, limit).map((r) => ({
        id: r.id, room_id: r.room_id, event_id: r.event_id, ts: r.ts,
        actions: JSON.parse(r.actions) as PushAction[], highlight: r.highlight === 1,
      })),
    };
  }
}
