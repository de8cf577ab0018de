/**
 * The room's ephemeral stream: typing notifications and receipts (spec v1.19 "Typing Notifications",
 * "Receipts"). Not events of the DAG, but positions all the same: every change takes the next ephemeral
 * position (meta `eph_pos`) and writes a `user_ephemeral` outbox row for each local user who must hear of it, in
 * the same transaction. UserDOs record the position; a /sync reads typing and receipts back from here.
 *
 * Typing expires: each typing user has an expiry time, and the `typing` timer (one alarm, many timers) removes
 * whoever has expired. The same functions serve local users (client API) and remote ones (federation EDUs).
 */
import type { Outbox, Timers } from "./outbox";
import { serverNameOf } from "../../src/protocol/identifiers";

export const TYPING_TASK = "typing";
/** The longest typing timeout honoured, and the default (both as the reference server). */
export const MAX_TYPING_TIMEOUT_MS = 120_000;
export const DEFAULT_TYPING_TIMEOUT_MS = 30_000;

export type ReceiptRow = {
  user_id: string;
  receipt_type: string;
  thread_id: string;
  event_id: string;
  data: string;
  eph_pos: number;
};

export class Ephemeral {
  /** Application services: called with each new ephemeral position, inside the change's transaction (RoomDO). */
  appserviceHook: ((position: number) => void) | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly timers: Timers,
    private readonly outbox: Outbox,
    private readonly serverName: string,
  ) {}

  /** The latest ephemeral position (0 before any typing or receipt). */
  get position(): number {
    return Number(this.meta("eph_pos") ?? 0);
  }

  /** The ephemeral position of the last change to the set of typing users. */
  get typingPosition(): number {
    return Number(this.meta("typing_pos") ?? 0);
  }

  /** Users typing now (as of the last expiry sweep). */
  typingUsers(): string[] {
    return this.sql.exec<{ user_id: string }>("SELECT user_id FROM typing ORDER BY user_id").toArray().map((r) => r.user_id);
  }

  /**
   * Starts (for `timeoutMs`) or stops `userId` typing. Returns whether the set of typing users changed; a
   * renewal only moves the expiry. Call inside a transaction.
   */
  setTyping(userId: string, typing: boolean, timeoutMs: number, now = Date.now()): boolean {
    const was = this.sql.exec("SELECT 1 FROM typing WHERE user_id = ?", userId).toArray().length > 0;
    if (typing) {
      const expires = now + Math.max(0, Math.min(timeoutMs, MAX_TYPING_TIMEOUT_MS));
      this.sql.exec(
        "INSERT INTO typing (user_id, expires_ts) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET expires_ts = excluded.expires_ts",
        userId, expires,
      );
      this.scheduleExpiry();
    } else if (was) {
      this.sql.exec("DELETE FROM typing WHERE user_id = ?", userId);
    }
    if (was === typing) return false;
    this.typingChanged();
    return true;
  }

  /** Removes expired typing users (the `typing` timer). Returns whether anyone stopped typing. */
  expireTyping(now = Date.now()): boolean {
    const expired = this.sql.exec("DELETE FROM typing WHERE expires_ts <= ? RETURNING user_id", now).toArray().length;
    this.timers.done(TYPING_TASK);
    this.scheduleExpiry();
    if (expired === 0) return false;
    this.typingChanged();
    return true;
  }

  private scheduleExpiry(): void {
    const next = this.sql.exec<{ t: number | null }>("SELECT min(expires_ts) AS t FROM typing").one().t;
    if (next !== null) this.timers.schedule(TYPING_TASK, next);
  }

  private typingChanged(): void {
    const pos = this.bump();
    this.setMeta("typing_pos", String(pos));
    this.notifyMembers(pos);
  }

  /**
   * Records a receipt. `threadId` null is unthreaded. A receipt never moves backwards: one for an event older
   * (in stream order) than the event of the existing receipt of the same kind is ignored. Returns whether it
   * was stored. Call inside a transaction; the caller has checked that the event exists.
   */
  putReceipt(
    userId: string,
    receiptType: string,
    threadId: string | null,
    eventId: string,
    ts: number,
  ): boolean {
    const thread = threadId ?? "";
    const existing = this.sql
      .exec<{ event_id: string }>(
        "SELECT event_id FROM receipts WHERE user_id = ? AND receipt_type = ? AND thread_id = ?",
        userId, receiptType, thread,
      )
      .toArray()[0];
    if (existing) {
      if (existing.event_id === eventId) return false;
      const order = (id: string) =>
        this.sql.exec<{ s: number | null }>("SELECT stream_ordering AS s FROM events WHERE event_id = ?", id).toArray()[0]?.s ?? null;
      const before = order(existing.event_id);
      const after = order(eventId);
      if (before !== null && after !== null && after < before) return false;
    }
    const data: Record<string, unknown> = { ts };
    if (threadId !== null) data.thread_id = threadId;
    const pos = this.bump();
    this.sql.exec(
      `INSERT INTO receipts (user_id, receipt_type, thread_id, event_id, data, eph_pos) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id,
         data = excluded.data, eph_pos = excluded.eph_pos`,
      userId, receiptType, thread, eventId, JSON.stringify(data), pos,
    );
    // A private receipt is only ever shown to its owner.
    if (receiptType === "m.read.private") {
      if (serverNameOf(userId) === this.serverName) this.outbox.add("user_ephemeral", userId, pos);
    } else {
      this.notifyMembers(pos, userId);
    }
    return true;
  }

  /** Receipts changed in (from, to], as the content of one `m.receipt` event for `viewer` (null if none). */
  receiptContent(from: number, to: number, viewer: string): Record<string, Record<string, Record<string, unknown>>> | null {
    const rows = this.sql
      .exec<ReceiptRow>(
        `SELECT * FROM receipts WHERE eph_pos > ? AND eph_pos <= ? AND (receipt_type != 'm.read.private' OR user_id = ?)
         ORDER BY eph_pos`,
        from, to, viewer,
      )
      .toArray();
    if (rows.length === 0) return null;
    const content: Record<string, Record<string, Record<string, unknown>>> = {};
    for (const r of rows) {
      const byType = (content[r.event_id] ??= {});
      const byUser = (byType[r.receipt_type] ??= {});
      byUser[r.user_id] = JSON.parse(r.data) as unknown;
    }
    return content;
  }

  /** The user's receipts (all types and threads), for notification counts and federation. */
  receiptsOf(userId: string): ReceiptRow[] {
    return this.sql.exec<ReceiptRow>("SELECT * FROM receipts WHERE user_id = ?", userId).toArray();
  }

  /** Local joined members hear about the change; so does `also` (the local user who made it), for read-your-writes. */
  private notifyMembers(pos: number, also?: string): void {
    const users = new Set(
      this.sql
        .exec<{ user_id: string }>("SELECT user_id FROM members WHERE server = ? AND membership = 'join'", this.serverName)
        .toArray()
        .map((r) => r.user_id),
    );
    if (also !== undefined && serverNameOf(also) === this.serverName) users.add(also);
    for (const user of users) this.outbox.add("user_ephemeral", user, pos);
  }

  private bump(): number {
    const pos = this.position + 1;
    this.setMeta("eph_pos", String(pos));
    this.appserviceHook?.(pos);
    return pos;
  }

  private meta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }
}
