/**
 * The rooms a user has a relationship with, as announced by the rooms' outboxes: the latest event stream
 * position and the user's membership at that position, plus the latest ephemeral (typing/receipt) position.
 * Positions, not payloads: the events themselves are read from the RoomDO when a sync needs them.
 */
import type { UserStream } from "./stream";

export type Membership = "join" | "invite" | "knock" | "leave" | "ban";

export type RoomRow = {
  room_id: string;
  membership: Membership;
  room_pos: number;
  eph_pos: number;
  updated_pos: number;
};

/** Where a room stood at a user stream position. */
export type RoomAt = {
  room_pos: number;
  membership: Membership;
};

const MEMBERSHIPS = new Set(["join", "invite", "knock", "leave", "ban"]);

/** History older than this is thinned out (see `prune`). */
export const ROOM_LOG_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
/** `prune` runs once every this many stream positions. */
const PRUNE_EVERY = 512;

export function asMembership(m: string | null | undefined): Membership {
  return m && MEMBERSHIPS.has(m) ? (m as Membership) : "leave";
}

export class UserRooms {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {}

  /**
   * Records that `roomId` reached event position `roomPos`, where the user's membership is `membership`.
   * Older or repeated announcements are ignored. Returns whether anything changed. Call inside a transaction.
   */
  advance(roomId: string, roomPos: number, membership: Membership, now = Date.now()): boolean {
    const row = this.get(roomId);
    if (row && roomPos <= row.room_pos) return false;
    const pos = this.stream.next();
    this.sql.exec(
      `INSERT INTO rooms (room_id, membership, room_pos, updated_pos) VALUES (?, ?, ?, ?)
       ON CONFLICT (room_id) DO UPDATE SET membership = excluded.membership, room_pos = excluded.room_pos,
         updated_pos = excluded.updated_pos`,
      roomId, membership, roomPos, pos,
    );
    this.sql.exec(
      "INSERT INTO room_log (pos, room_id, kind, room_pos, membership, ts) VALUES (?, ?, 'events', ?, ?, ?)",
      pos, roomId, roomPos, membership, now,
    );
    if (pos % PRUNE_EVERY === 0) this.prune(now);
    return true;
  }

  /**
   * Thins out `room_log`: of the rows older than the retention period, only the newest per room and kind is
   * kept. Lookups for tokens newer than that horizon are unaffected (the newest row at or before any such
   * token is still there). For an older token a lookup may find an earlier row than the one it had, or none:
   * the sync then starts the room earlier (or afresh, with full state), repeating events the client may have
   * had but never skipping any. Returns how many rows went.
   */
  prune(now = Date.now()): number {
    const horizon = this.sql
      .exec<{ p: number | null }>("SELECT max(pos) AS p FROM room_log WHERE ts < ?", now - ROOM_LOG_RETENTION_MS)
      .one().p;
    if (horizon === null) return 0;
    this.sql.exec(
      "INSERT INTO meta (key, value) VALUES ('room_log_horizon', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      String(horizon),
    );
    return this.sql.exec(
      `DELETE FROM room_log WHERE pos < ? AND EXISTS (
         SELECT 1 FROM room_log newer WHERE newer.room_id = room_log.room_id AND newer.kind = room_log.kind
           AND newer.pos > room_log.pos AND newer.pos <= ?)`,
      horizon, horizon,
    ).rowsWritten;
  }

  /**
   * Faster joins: records that the room, joined with partial state, is now fully stated — an eager sync then
   * shows it as if newly joined (see sync-plan.ts). Room log kind 'full_state' (room_pos: the room position
   * then). A repeated notice with no room news in between is ignored. Returns whether anything changed.
   */
  markFullyStated(roomId: string, now = Date.now()): boolean {
    const row = this.get(roomId);
    if (!row) return false;
    const last = this.sql
      .exec<{ kind: string }>("SELECT kind FROM room_log WHERE room_id = ? AND kind IN ('events', 'full_state') ORDER BY pos DESC LIMIT 1", roomId)
      .toArray()[0];
    if (last?.kind === "full_state") return false;
    const pos = this.stream.next();
    this.sql.exec("UPDATE rooms SET updated_pos = ? WHERE room_id = ?", pos, roomId);
    this.sql.exec(
      "INSERT INTO room_log (pos, room_id, kind, room_pos, membership, ts) VALUES (?, ?, 'full_state', ?, ?, ?)",
      pos, roomId, row.room_pos, row.membership, now,
    );
    return true;
  }

  /** Faster joins: whether the room became fully stated after user stream position `since`. */
  fullyStatedSince(roomId: string, since: number): boolean {
    return this.sql.exec("SELECT 1 FROM room_log WHERE room_id = ? AND kind = 'full_state' AND pos > ? LIMIT 1", roomId, since).toArray().length > 0;
  }

  /** Records that the room's typing/receipts reached `ephPos`. Only for rooms already known. */
  advanceEphemeral(roomId: string, ephPos: number, now = Date.now()): boolean {
    const row = this.get(roomId);
    if (!row || ephPos <= row.eph_pos) return false;
    const pos = this.stream.next();
    this.sql.exec("UPDATE rooms SET eph_pos = ?, updated_pos = ? WHERE room_id = ?", ephPos, pos, roomId);
    this.sql.exec(
      "INSERT INTO room_log (pos, room_id, kind, room_pos, membership, ts) VALUES (?, ?, 'ephemeral', ?, ?, ?)",
      pos, roomId, ephPos, row.membership, now,
    );
    if (pos % PRUNE_EVERY === 0) this.prune(now);
    return true;
  }

  /** Lookups for tokens before this position may have lost history to `prune` (0: nothing pruned yet). */
  get prunedBefore(): number {
    return Number(this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'room_log_horizon'").toArray()[0]?.value ?? 0);
  }

  get(roomId: string): RoomRow | undefined {
    return this.sql.exec<RoomRow>("SELECT * FROM rooms WHERE room_id = ?", roomId).toArray()[0];
  }

  /** Rooms where the user's membership is `membership`, in no particular order. */
  withMembership(membership: Membership): string[] {
    return this.sql
      .exec<{ room_id: string }>("SELECT room_id FROM rooms WHERE membership = ?", membership)
      .toArray()
      .map((r) => r.room_id);
  }

  all(): RoomRow[] {
    return this.sql.exec<RoomRow>("SELECT * FROM rooms").toArray();
  }

  /** Rooms whose row changed after user stream position `since`. */
  changedSince(since: number): RoomRow[] {
    return this.sql.exec<RoomRow>("SELECT * FROM rooms WHERE updated_pos > ?", since).toArray();
  }

  /** Where the room's events stood at user stream position `at` (undefined: not known to the user then). */
  eventsAt(roomId: string, at: number): RoomAt | undefined {
    return this.sql
      .exec<RoomAt>(
        "SELECT room_pos, membership FROM room_log WHERE room_id = ? AND kind = 'events' AND pos <= ? ORDER BY pos DESC LIMIT 1",
        roomId, at,
      )
      .toArray()[0];
  }

  /** The room's ephemeral position at user stream position `at` (0 if none). */
  ephemeralAt(roomId: string, at: number): number {
    return (
      this.sql
        .exec<{ room_pos: number }>(
          "SELECT room_pos FROM room_log WHERE room_id = ? AND kind = 'ephemeral' AND pos <= ? ORDER BY pos DESC LIMIT 1",
          roomId, at,
        )
        .toArray()[0]?.room_pos ?? 0
    );
  }
}
