/**
 * Presence in the UserDO (docs/presence.md). The user's UserDO owns the user's presence: one row (`presence`),
 * changed by PUT /presence, by syncing (`set_presence`), by activity (sending, typing, receipts) and by its timers.
 * It also records, as positions of the user's own stream, whose presence changed for this user to see
 * (`presence_seen`, fed by `UserDO.presenceChanged`): /sync reports those users, reading their presence from D1.
 *
 * Timers (one alarm, shared with the E2EE outbox; an early alarm is harmless, each side re-arms itself):
 * - online with no activity for IDLE_TIMEOUT_MS → unavailable (`source = 'idle'`);
 * - `currently_active` ends ACTIVE_GRANULARITY_MS after the last activity;
 * - not syncing, and neither active nor synced for SYNC_ONLINE_TIMEOUT_MS → offline;
 * - not offline: other servers are pinged every FEDERATION_PING_MS;
 * - a fan-out that failed is retried.
 *
 * Who may override whom: PUT sets the state explicitly. A sync with `set_presence` (default online) changes the
 * state only when the user is offline or when the current state came from a sync or from activity — it does not
 * override a state set with PUT, nor the idle timer (activity ends idleness). Activity brings an unavailable
 * user back online (as the reference server does) and leaves an offline one offline.
 */
import {
  ACTIVE_GRANULARITY_MS,
  FEDERATION_PING_MS,
  IDLE_TIMEOUT_MS,
  SYNC_ONLINE_TIMEOUT_MS,
  isPresenceState,
  presenceNews,
  type PresenceRecord,
  type PresenceState,
} from "../../src/presence/model";
import type { UserStream } from "./stream";

export const PRESENCE_TABLES = `
  -- The user's own presence (one row). source: how the state was last set: none | put | sync | activity | idle | timeout.
  CREATE TABLE presence (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    state            TEXT NOT NULL DEFAULT 'offline',
    source           TEXT NOT NULL DEFAULT 'none',
    status_msg       TEXT,
    last_active_ts   INTEGER NOT NULL DEFAULT 0,
    last_sync_ts     INTEGER NOT NULL DEFAULT 0,
    currently_active INTEGER NOT NULL DEFAULT 0,
    serial           INTEGER NOT NULL DEFAULT 0, -- bumped by every change others must hear of
    published        INTEGER NOT NULL DEFAULT 0, -- the serial whose fan-out completed
    fed_ts           INTEGER NOT NULL DEFAULT 0, -- when other servers were last told
    retry_ts         INTEGER                     -- a failed fan-out is retried at this time
  );
  INSERT INTO presence (id) VALUES (1);

  -- Users whose presence changed for this user to see, at the user stream position of the newest change.
  CREATE TABLE presence_seen (
    user_id TEXT PRIMARY KEY,
    pos     INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX presence_seen_pos ON presence_seen(pos);
`;

type SelfRow = {
  state: string;
  source: string;
  status_msg: string | null;
  last_active_ts: number;
  last_sync_ts: number;
  currently_active: number;
  serial: number;
  published: number;
  fed_ts: number;
  retry_ts: number | null;
};

/** The presence part of a sync plan. */
export interface PlannedPresence {
  /** The user's own presence when it changed since the token (always on an initial sync). */
  self: PresenceRecord | null;
  /** Other users whose presence changed since the token; null on an initial sync (everyone sharing a room). */
  changed: string[] | null;
}

/** What the timers decided. */
export interface PresenceTimeoutResult {
  /** The state changed: publish everywhere. */
  news: boolean;
  /** Only other servers need a reminder. */
  ping: boolean;
}

const RETRY_MS = 10_000;

export class UserPresence {
  /** Presence-affecting long polls in flight (memory: a long poll keeps the object alive). */
  syncing = 0;

  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {}

  private row(): SelfRow {
    return this.sql.exec<SelfRow>("SELECT * FROM presence WHERE id = 1").one();
  }

  /** The user's presence as others see it. */
  record(userId: string): PresenceRecord {
    return toRecord(userId, this.row());
  }

  /** The serial of the current state and whether its fan-out is still due. */
  publishing(): { serial: number; pending: boolean } {
    const r = this.row();
    return { serial: r.serial, pending: r.published < r.serial };
  }

  /** PUT /presence: the state and status message, explicitly. Returns whether it is news. Call in a transaction. */
  put(userId: string, state: PresenceState, statusMsg: string | null, now: number): boolean {
    const r = this.row();
    // A client setting presence is there: it counts as a sync for the offline timer (SYNC_ONLINE_TIMEOUT_MS).
    const next: Partial<SelfRow> = { state, source: "put", status_msg: statusMsg, last_sync_ts: now };
    if (state === "online") {
      next.last_active_ts = now;
      next.currently_active = 1;
    } else next.currently_active = 0;
    return this.apply(userId, r, next);
  }

  /**
   * A sync started (or planned) with `set_presence` (not offline: such a sync does not touch presence). Records
   * the sync time and, where the rules above allow, sets the state. Returns whether it is news.
   */
  syncStarted(userId: string, setPresence: PresenceState, now: number): boolean {
    const r = this.row();
    const next: Partial<SelfRow> = { last_sync_ts: now };
    const overridable = r.state === "offline" || r.source === "sync" || r.source === "activity" || r.source === "none";
    if (overridable && r.state !== setPresence) {
      next.state = setPresence;
      next.source = "sync";
      if (setPresence === "online") {
        next.last_active_ts = now;
        next.currently_active = 1;
      } else next.currently_active = 0;
    }
    return this.apply(userId, r, next);
  }

  /** A presence-affecting sync ended (the client may come back within SYNC_ONLINE_TIMEOUT_MS). */
  syncEnded(now: number): void {
    this.sql.exec("UPDATE presence SET last_sync_ts = max(last_sync_ts, ?) WHERE id = 1", now);
  }

  /** The user did something (sent, typed, read): last active now; unavailable becomes online. */
  active(userId: string, now: number): boolean {
    const r = this.row();
    const next: Partial<SelfRow> = { last_active_ts: now };
    if (r.state === "unavailable") {
      next.state = "online";
      next.source = "activity";
    }
    if ((next.state ?? r.state) === "online") next.currently_active = 1;
    return this.apply(userId, r, next);
  }

  /** Runs the timers due at `now`. Call in a transaction. */
  timeout(userId: string, now: number): PresenceTimeoutResult {
    const r = this.row();
    if (r.state === "offline") return { news: false, ping: false };
    const next: Partial<SelfRow> = {};
    if (r.state === "online" && r.currently_active === 1 && now - r.last_active_ts >= ACTIVE_GRANULARITY_MS) next.currently_active = 0;
    if (r.state === "online" && now - r.last_active_ts >= IDLE_TIMEOUT_MS) {
      next.state = "unavailable";
      next.source = "idle";
      next.currently_active = 0;
    }
    if (this.syncing === 0 && now - Math.max(r.last_sync_ts, r.last_active_ts) >= SYNC_ONLINE_TIMEOUT_MS) {
      next.state = "offline";
      next.source = "timeout";
      next.currently_active = 0;
    }
    const news = Object.keys(next).length > 0 && this.apply(userId, r, next);
    const ping = !news && r.fed_ts > 0 && now - r.fed_ts >= FEDERATION_PING_MS;
    return { news, ping };
  }

  /** When the timers next need to run (null: nothing to do until something happens). */
  nextDue(now: number): number | null {
    const r = this.row();
    const due: number[] = [];
    if (r.published < r.serial) due.push(r.retry_ts ?? now);
    if (r.state !== "offline") {
      if (r.state === "online" && r.currently_active === 1) due.push(r.last_active_ts + ACTIVE_GRANULARITY_MS);
      if (r.state === "online") due.push(r.last_active_ts + IDLE_TIMEOUT_MS);
      // While a long poll is in flight, look again after the timeout (it will have ended or still be running).
      due.push(this.syncing > 0 ? now + SYNC_ONLINE_TIMEOUT_MS : Math.max(r.last_sync_ts, r.last_active_ts) + SYNC_ONLINE_TIMEOUT_MS);
      // The first announcement is the fan-out's; reminders follow it.
      if (r.fed_ts > 0) due.push(r.fed_ts + FEDERATION_PING_MS);
    }
    return due.length ? Math.max(now, Math.min(...due)) : null;
  }

  /** The fan-out of `serial` completed (`federated`: other servers were told at `now`). */
  published(serial: number, federated: boolean, now: number): void {
    this.sql.exec(
      "UPDATE presence SET published = max(published, ?), retry_ts = NULL, fed_ts = CASE WHEN ? THEN ? ELSE fed_ts END WHERE id = 1",
      serial, federated ? 1 : 0, now,
    );
  }

  /** Other servers were reminded at `now`. */
  pinged(now: number): void {
    this.sql.exec("UPDATE presence SET fed_ts = ? WHERE id = 1", now);
  }

  /** A fan-out failed: try again later. */
  failed(now: number): void {
    this.sql.exec("UPDATE presence SET retry_ts = ? WHERE id = 1", now + RETRY_MS);
  }

  /** Others' presence changed: each takes the next stream position. Call in a transaction. */
  markSeen(userIds: readonly string[]): void {
    for (const u of new Set(userIds)) {
      this.sql.exec(
        "INSERT INTO presence_seen (user_id, pos) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET pos = excluded.pos",
        u, this.stream.next(),
      );
    }
  }

  /** The presence part of a plan for the token `since` (null: initial) up to `head`. */
  plan(userId: string, since: number | null, head: number): PlannedPresence {
    if (since === null) return { self: this.record(userId), changed: null };
    const rows = this.sql
      .exec<{ user_id: string }>("SELECT user_id FROM presence_seen WHERE pos > ? AND pos <= ? ORDER BY pos", since, head)
      .toArray()
      .map((r) => r.user_id);
    return { self: rows.includes(userId) ? this.record(userId) : null, changed: rows.filter((u) => u !== userId) };
  }

  /** Writes `next` over `r`; a change worth telling takes a serial and a stream position (own syncs see it). */
  private apply(userId: string, r: SelfRow, next: Partial<SelfRow>): boolean {
    const merged: SelfRow = { ...r, ...next };
    const news = presenceNews(toRecord(userId, r), toRecord(userId, merged)) || (r.serial === 0 && merged.state !== "offline");
    if (news) {
      merged.serial = r.serial + 1;
      this.markSeen([userId]);
    }
    this.sql.exec(
      `UPDATE presence SET state = ?, source = ?, status_msg = ?, last_active_ts = ?, last_sync_ts = ?, currently_active = ?,
         serial = ? WHERE id = 1`,
      merged.state, merged.source, merged.status_msg, merged.last_active_ts, merged.last_sync_ts, merged.currently_active, merged.serial,
    );
    return news;
  }
}

function toRecord(userId: string, r: SelfRow): PresenceRecord {
  const state: PresenceState = isPresenceState(r.state) ? r.state : "offline";
  return {
    user_id: userId,
    state,
    status_msg: r.status_msg,
    last_active_ts: r.last_active_ts,
    currently_active: state === "online" && r.currently_active === 1,
  };
}
