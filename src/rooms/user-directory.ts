/**
 * POST /user_directory/search (https://spec.matrix.org/v1.19/client-server-api/#user-directory).
 *
 * As Synapse by default: the searcher finds users who share a room with them, and users in public rooms
 * (join rule `public` or world-readable history). Data: D1 `room_members` (kept by each RoomDO) and `room_stats`;
 * local users' names come from their global profile, remote users' from their member events.
 */
import type { Env } from "../env";

export interface DirectoryUser {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

function likePattern(word: string): string {
  return `%${word.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
}

/** Every word of the term must appear (case-insensitively) in the user ID or the display name. */
export async function searchUserDirectory(
  env: Env,
  searcher: string,
  term: string,
  limit: number,
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const words = term.trim().split(/\s+/).filter(Boolean).slice(0, 8);
  const match = words.map(() => "(lower(user_id) LIKE ? ESCAPE '\\' OR lower(coalesce(displayname, '')) LIKE ? ESCAPE '\\')");
  const args: (string | number)[] = [searcher];
  for (const w of words) args.push(likePattern(w), likePattern(w));
  args.push(limit + 1);
  const rows = await env.DB.prepare(
    `WITH visible AS (
       SELECT m.user_id, m.displayname, m.avatar_url FROM room_members m
         JOIN room_stats s ON s.room_id = m.room_id
         WHERE s.join_rule = 'public' OR s.history_visibility = 'world_readable'
       UNION ALL
       SELECT m.user_id, m.displayname, m.avatar_url FROM room_members m
         WHERE m.room_id IN (SELECT room_id FROM room_members WHERE user_id = ?)
     ),
     users AS (
       SELECT v.user_id AS user_id,
              coalesce(p.displayname, max(v.displayname)) AS displayname,
              coalesce(p.avatar_url, max(v.avatar_url)) AS avatar_url
       FROM visible v LEFT JOIN profiles p ON p.user_id = v.user_id
       GROUP BY v.user_id
     )
     SELECT user_id, displayname, avatar_url FROM users
     ${match.length ? `WHERE ${match.join(" AND ")}` : ""}
     ORDER BY displayname IS NULL, avatar_url IS NULL, lower(coalesce(displayname, user_id)), user_id
     LIMIT ?`,
  )
    .bind(...args)
    .all<{ user_id: string; displayname: string | null; avatar_url: string | null }>();
  const results = rows.results.slice(0, limit).map((r) => {
    const u: DirectoryUser = { user_id: r.user_id };
    if (r.displayname !== null) u.display_name = r.displayname;
    if (r.avatar_url !== null) u.avatar_url = r.avatar_url;
    return u;
  });
  return { results, limited: rows.results.length > limit };
}
