/**
 * Presence in D1 (migrations/0009_presence.sql), and who shares a room with whom (the `room_members` directory
 * kept by each RoomDO). The Worker's /sync and GET /presence read presence here; UserDOs (local users) and the
 * inbound EDU handler (remote users) write it.
 */
import type { Env } from "../env";
import { serverNameOf } from "../protocol/identifiers";
import { isPresenceState, remoteAsSeen, type PresenceRecord } from "./model";

/** D1 allows 100 bound parameters per statement. */
const CHUNK = 90;

function chunks<T>(list: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

interface Row {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  currently_active: number;
  updated_ts: number;
}

function toRecord(r: Row, ours: string, now: number): PresenceRecord {
  const rec: PresenceRecord = {
    user_id: r.user_id,
    state: isPresenceState(r.state) ? r.state : "offline",
    status_msg: r.status_msg,
    last_active_ts: r.last_active_ts,
    currently_active: r.currently_active === 1,
  };
  return safeServer(r.user_id) === ours ? rec : remoteAsSeen(rec, r.updated_ts, now);
}

function safeServer(userId: string): string | undefined {
  try {
    return serverNameOf(userId);
  } catch {
    return undefined;
  }
}

const COLUMNS = "user_id, state, status_msg, last_active_ts, currently_active, updated_ts";

/** Presence of the listed users that have a row (others are offline and never active). */
export async function readPresence(env: Env, ours: string, userIds: readonly string[], now = Date.now()): Promise<PresenceRecord[]> {
  const unique = [...new Set(userIds)];
  const out: PresenceRecord[] = [];
  for (const part of chunks(unique)) {
    const { results } = await env.DB.prepare(`SELECT ${COLUMNS} FROM presence WHERE user_id IN (${part.map(() => "?").join(",")})`)
      .bind(...part)
      .all<Row>();
    for (const r of results) out.push(toRecord(r, ours, now));
  }
  return out;
}

/** Presence of every user who shares a joined room with `userId` (not `userId` itself). */
export async function readPresenceOfRoomPeers(env: Env, ours: string, userId: string, now = Date.now()): Promise<PresenceRecord[]> {
  const { results } = await env.DB.prepare(
    `SELECT ${COLUMNS} FROM presence WHERE user_id IN (
       SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
       WHERE a.user_id = ? AND b.user_id != ?)`,
  )
    .bind(userId, userId)
    .all<Row>();
  return results.map((r) => toRecord(r, ours, now));
}

/** Presence of the joined members of the listed rooms. */
export async function readPresenceOfRooms(env: Env, ours: string, roomIds: readonly string[], now = Date.now()): Promise<PresenceRecord[]> {
  const out: PresenceRecord[] = [];
  for (const part of chunks([...new Set(roomIds)])) {
    const { results } = await env.DB.prepare(
      `SELECT ${COLUMNS} FROM presence WHERE user_id IN (
         SELECT DISTINCT user_id FROM room_members WHERE room_id IN (${part.map(() => "?").join(",")}))`,
    )
      .bind(...part)
      .all<Row>();
    for (const r of results) out.push(toRecord(r, ours, now));
  }
  return out;
}

/** The joined members of the listed rooms, with the room each was found in (the D1 directory). */
export async function membersOfRooms(env: Env, roomIds: readonly string[]): Promise<{ room_id: string; user_id: string }[]> {
  const out: { room_id: string; user_id: string }[] = [];
  for (const part of chunks([...new Set(roomIds)])) {
    const { results } = await env.DB.prepare(
      `SELECT room_id, user_id FROM room_members WHERE room_id IN (${part.map(() => "?").join(",")})`,
    )
      .bind(...part)
      .all<{ room_id: string; user_id: string }>();
    out.push(...results);
  }
  return out;
}

/** Rooms `userId` is joined to, per the D1 directory (for remote users, whom no UserDO tracks). */
export async function roomsOf(env: Env, userId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT room_id FROM room_members WHERE user_id = ?").bind(userId).all<{ room_id: string }>();
  return results.map((r) => r.room_id);
}

/** Whether `a` and `b` share a joined room. */
export async function shareRoom(env: Env, a: string, b: string): Promise<boolean> {
  const row = await env.DB.prepare(
    `SELECT 1 AS x FROM room_members m1 JOIN room_members m2 ON m1.room_id = m2.room_id
     WHERE m1.user_id = ? AND m2.user_id = ? LIMIT 1`,
  )
    .bind(a, b)
    .first<{ x: number }>();
  return row !== null;
}

/**
 * Writes a user's presence. Local users' rows come from their UserDO with its serial (a write older than the
 * stored one is ignored); remote users' rows are stamped with the time they were received (`serial` = `now`).
 */
export async function writePresence(env: Env, r: PresenceRecord, serial: number, now = Date.now()): Promise<void> {
  await env.DB.prepare(
    `INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, updated_ts, serial)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
       last_active_ts = excluded.last_active_ts, currently_active = excluded.currently_active,
       updated_ts = excluded.updated_ts, serial = excluded.serial
     WHERE excluded.serial >= presence.serial`,
  )
    .bind(r.user_id, r.state, r.status_msg, r.last_active_ts, r.currently_active ? 1 : 0, now, serial)
    .run();
}

/** The stored row of a remote user, as stored (no timeout applied), with when it was last heard of. */
export async function readRemoteRow(env: Env, userId: string): Promise<{ record: PresenceRecord; updated_ts: number } | null> {
  const r = await env.DB.prepare(`SELECT ${COLUMNS} FROM presence WHERE user_id = ?`).bind(userId).first<Row>();
  if (!r) return null;
  return {
    record: {
      user_id: r.user_id,
      state: isPresenceState(r.state) ? r.state : "offline",
      status_msg: r.status_msg,
      last_active_ts: r.last_active_ts,
      currently_active: r.currently_active === 1,
    },
    updated_ts: r.updated_ts,
  };
}

