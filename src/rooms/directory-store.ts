/**
 * D1 tables of the room directory (migrations/0004): local aliases, published rooms, room summaries and
 * joined members. Room summaries and members are written only by each room's RoomDO (`syncDirectory`).
 */
import { badJson } from "../http/errors";
import type { MemberChange, RoomStats } from "../../durable-objects/room/queries";

// ---------------------------------------------------------------------------------------------------------
// Written by the RoomDO

/** Upserts the room's summary (if changed) and applies membership changes, in batches. */
export async function writeRoomDirectoryData(
  db: D1Database,
  stats: RoomStats,
  changes: MemberChange[],
  writeStats: boolean,
): Promise<void> {
  const statements: D1PreparedStatement[] = [];
  if (writeStats) {
    statements.push(
      db
        .prepare(
          `INSERT INTO room_stats (room_id, room_version, creator, name, topic, avatar_url, canonical_alias, join_rule,
             history_visibility, guest_can_join, room_type, encryption, joined_members, updated_ts)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (room_id) DO UPDATE SET room_version = excluded.room_version, creator = excluded.creator,
             name = excluded.name, topic = excluded.topic, avatar_url = excluded.avatar_url,
             canonical_alias = excluded.canonical_alias, join_rule = excluded.join_rule,
             history_visibility = excluded.history_visibility, guest_can_join = excluded.guest_can_join,
             room_type = excluded.room_type, encryption = excluded.encryption,
             joined_members = excluded.joined_members, updated_ts = excluded.updated_ts`,
        )
        .bind(
          stats.room_id, stats.room_version, stats.creator, stats.name, stats.topic, stats.avatar_url,
          stats.canonical_alias, stats.join_rule, stats.history_visibility, stats.guest_can_join ? 1 : 0,
          stats.room_type, stats.encryption, stats.joined_members, Date.now(),
        ),
    );
  }
  for (const c of changes) {
    statements.push(
      c.joined
        ? db
            .prepare(
              `INSERT INTO room_members (room_id, user_id, displayname, avatar_url) VALUES (?, ?, ?, ?)
               ON CONFLICT (room_id, user_id) DO UPDATE SET displayname = excluded.displayname, avatar_url = excluded.avatar_url`,
            )
            .bind(stats.room_id, c.user_id, c.displayname, c.avatar_url)
        : db.prepare("DELETE FROM room_members WHERE room_id = ? AND user_id = ?").bind(stats.room_id, c.user_id),
    );
  }
  for (let i = 0; i < statements.length; i += 50) await db.batch(statements.slice(i, i + 50));
}

// ---------------------------------------------------------------------------------------------------------
// Aliases

export interface AliasRow {
  alias: string;
  room_id: string;
  creator: string;
}

export async function getAlias(db: D1Database, alias: string): Promise<AliasRow | null> {
  return db.prepare("SELECT alias, room_id, creator FROM room_aliases WHERE alias = ?").bind(alias).first<AliasRow>();
}

/** Creates an alias; false if it already exists. */
export async function insertAlias(db: D1Database, alias: string, roomId: string, creator: string): Promise<boolean> {
  const r = await db
    .prepare("INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?) ON CONFLICT (alias) DO NOTHING")
    .bind(alias, roomId, creator, Date.now())
    .run();
  return r.meta.changes > 0;
}

export async function deleteAlias(db: D1Database, alias: string): Promise<void> {
  await db.prepare("DELETE FROM room_aliases WHERE alias = ?").bind(alias).run();
}

export async function aliasesOfRoom(db: D1Database, roomId: string): Promise<string[]> {
  const rows = await db.prepare("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, alias").bind(roomId).all<{ alias: string }>();
  return rows.results.map((r) => r.alias);
}

// ---------------------------------------------------------------------------------------------------------
// Published rooms

export async function isPublished(db: D1Database, roomId: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS x FROM room_directory WHERE room_id = ?").bind(roomId).first()) !== null;
}

export async function setPublished(db: D1Database, roomId: string, published: boolean): Promise<void> {
  if (published) {
    await db.prepare("INSERT INTO room_directory (room_id, published_ts) VALUES (?, ?) ON CONFLICT (room_id) DO NOTHING")
      .bind(roomId, Date.now())
      .run();
  } else {
    await db.prepare("DELETE FROM room_directory WHERE room_id = ?").bind(roomId).run();
  }
}

export interface PublicRoomsQuery {
  limit: number | undefined;
  since: string | undefined;
  searchTerm: string | undefined;
  /** `null` entries mean "rooms without a type". Undefined: any type. */
  roomTypes: (string | null)[] | undefined;
}

/**
 * The body of `POST /publicRooms` (client and federation alike): `limit`, `since`, `filter.generic_search_term`,
 * `filter.room_types`. Throws `M_BAD_JSON` for values of the wrong type; `parseLimit` validates the limit.
 */
export function publicRoomsQueryFromBody(body: Record<string, unknown>, parseLimit: (v: unknown) => number | undefined): PublicRoomsQuery {
  if (body.since !== undefined && body.since !== null && typeof body.since !== "string") throw badJson("'since' must be a string");
  const filter = body.filter ?? {};
  if (typeof filter !== "object" || filter === null || Array.isArray(filter)) throw badJson("'filter' must be an object");
  const f = filter as Record<string, unknown>;
  const term = f.generic_search_term;
  if (term !== undefined && term !== null && typeof term !== "string") throw badJson("'generic_search_term' must be a string");
  const types = f.room_types;
  if (types !== undefined && types !== null && (!Array.isArray(types) || !types.every((t) => t === null || typeof t === "string"))) {
    throw badJson("'room_types' must be a list of strings or nulls");
  }
  return {
    limit: parseLimit(body.limit),
    since: typeof body.since === "string" ? body.since : undefined,
    searchTerm: typeof term === "string" && term.trim() !== "" ? term.trim() : undefined,
    roomTypes: Array.isArray(types) ? (types as (string | null)[]) : undefined,
  };
}

interface StatsRow {
  room_id: string;
  name: string | null;
  topic: string | null;
  avatar_url: string | null;
  canonical_alias: string | null;
  join_rule: string | null;
  history_visibility: string;
  guest_can_join: number;
  room_type: string | null;
  joined_members: number;
}

/** The most rooms one page returns, whatever the client asks. */
export const MAX_PUBLIC_ROOMS_PAGE = 500;

type Cursor = { dir: "f" | "b"; joined: number; roomId: string };

function encodeCursor(c: Cursor): string {
  const raw = JSON.stringify([c.dir, c.joined, c.roomId]);
  return btoa(String.fromCharCode(...new TextEncoder().encode(raw))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Parses a `since` token; undefined when it is not one of ours. */
export function decodeCursor(token: string): Cursor | undefined {
  try {
    const bin = atob(token.replace(/-/g, "+").replace(/_/g, "/"));
    const v = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)))) as unknown;
    if (!Array.isArray(v) || v.length !== 3) return undefined;
    const [dir, joined, roomId] = v as unknown[];
    if ((dir !== "f" && dir !== "b") || typeof joined !== "number" || typeof roomId !== "string") return undefined;
    return { dir, joined, roomId };
  } catch {
    return undefined;
  }
}

function likePattern(term: string): string {
  return `%${term.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
}

/**
 * The published rooms, largest first (joined members, then room ID), as Synapse lists them: only rooms that
 * someone could join or peek into (join rule public / knock / knock_restricted, or world-readable history)
 * and that still have joined members. Pagination is by keyset, in both directions.
 */
export async function listPublicRooms(db: D1Database, q: PublicRoomsQuery, since: Cursor | undefined) {
  const where: string[] = [
    "s.joined_members > 0",
    "(s.join_rule IN ('public', 'knock', 'knock_restricted') OR s.history_visibility = 'world_readable')",
  ];
  const args: (string | number)[] = [];
  if (q.searchTerm) {
    where.push(
      "(lower(coalesce(s.name, '')) LIKE ? ESCAPE '\\' OR lower(coalesce(s.topic, '')) LIKE ? ESCAPE '\\' OR lower(coalesce(s.canonical_alias, '')) LIKE ? ESCAPE '\\' OR s.room_id = ?)",
    );
    const p = likePattern(q.searchTerm);
    args.push(p, p, p, q.searchTerm);
  }
  if (q.roomTypes) {
    const named = q.roomTypes.filter((t): t is string => typeof t === "string");
    const parts: string[] = [];
    if (named.length) {
      parts.push(`s.room_type IN (${named.map(() => "?").join(",")})`);
      args.push(...named);
    }
    if (q.roomTypes.includes(null)) parts.push("s.room_type IS NULL");
    where.push(parts.length ? `(${parts.join(" OR ")})` : "0");
  }
  const base = `FROM room_directory d JOIN room_stats s ON s.room_id = d.room_id WHERE ${where.join(" AND ")}`;
  const total = (await db.prepare(`SELECT count(*) AS n ${base}`).bind(...args).first<{ n: number }>())?.n ?? 0;

  const limit = Math.min(q.limit ?? MAX_PUBLIC_ROOMS_PAGE, MAX_PUBLIC_ROOMS_PAGE);
  const cols = "s.room_id, s.name, s.topic, s.avatar_url, s.canonical_alias, s.join_rule, s.history_visibility, s.guest_can_join, s.room_type, s.joined_members";
  let rows: StatsRow[];
  let more: boolean;
  if (since?.dir === "b") {
    const r = await db
      .prepare(
        `SELECT ${cols} ${base} AND (s.joined_members > ? OR (s.joined_members = ? AND s.room_id < ?))
         ORDER BY s.joined_members ASC, s.room_id DESC LIMIT ?`,
      )
      .bind(...args, since.joined, since.joined, since.roomId, limit + 1)
      .all<StatsRow>();
    more = r.results.length > limit;
    rows = r.results.slice(0, limit).reverse();
  } else {
    const keyset = since ? "AND (s.joined_members < ? OR (s.joined_members = ? AND s.room_id > ?))" : "";
    const keyArgs = since ? [since.joined, since.joined, since.roomId] : [];
    const r = await db
      .prepare(`SELECT ${cols} ${base} ${keyset} ORDER BY s.joined_members DESC, s.room_id ASC LIMIT ?`)
      .bind(...args, ...keyArgs, limit + 1)
      .all<StatsRow>();
    more = r.results.length > limit;
    rows = r.results.slice(0, limit);
  }

  const chunk = rows.map((s) => {
    const room: Record<string, unknown> = {
      room_id: s.room_id,
      num_joined_members: s.joined_members,
      world_readable: s.history_visibility === "world_readable",
      guest_can_join: s.guest_can_join === 1,
      join_rule: s.join_rule ?? "public",
    };
    if (s.name !== null) room.name = s.name;
    if (s.topic !== null) room.topic = s.topic;
    if (s.avatar_url !== null) room.avatar_url = s.avatar_url;
    if (s.canonical_alias !== null) room.canonical_alias = s.canonical_alias;
    if (s.room_type !== null) room.room_type = s.room_type;
    return room;
  });
  const body: Record<string, unknown> = { chunk, total_room_count_estimate: total };
  const first = rows[0];
  const last = rows.at(-1);
  // Going forwards: more after the page means a next_batch; having come from somewhere means a prev_batch.
  // Going backwards: the reverse.
  const hasNext = since?.dir === "b" ? rows.length > 0 : more;
  const hasPrev = since?.dir === "b" ? more : since !== undefined && rows.length > 0;
  if (hasNext && last) body.next_batch = encodeCursor({ dir: "f", joined: last.joined_members, roomId: last.room_id });
  if (hasPrev && first) body.prev_batch = encodeCursor({ dir: "b", joined: first.joined_members, roomId: first.room_id });
  return body;
}
