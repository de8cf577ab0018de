/**
 * GET /_matrix/client/v1/mutual_rooms?user_id=…[&from=…]: the rooms both the requester and another user are
 * joined to. https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mutual_rooms
 *
 * Answered from the D1 directory's joined members (`room_members`, written by each RoomDO after membership
 * changes), in pages of MUTUAL_ROOMS_PAGE ordered by room ID; `next_batch` is the last room ID of the page,
 * encoded. `count` is the total.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam, MatrixError } from "../../http/errors";
import { isValidUserId } from "../../protocol/identifiers";
import { decodeBase64, encodeBase64Url } from "../../protocol/base64";

export const mutualRoomRoutesV1 = new Hono<AppEnv>();

export const MUTUAL_ROOMS_PAGE = 100;

const PREFIX = "mr1_";

function decodeFrom(from: string): string {
  try {
    if (!from.startsWith(PREFIX)) throw new Error("prefix");
    const roomId = new TextDecoder().decode(decodeBase64(from.slice(PREFIX.length)));
    if (!roomId.startsWith("!")) throw new Error("not a room");
    return roomId;
  } catch {
    throw invalidParam("Invalid 'from' token");
  }
}

mutualRoomRoutesV1.get("/mutual_rooms", requireAuth, async (c) => {
  const me = c.get("requester").userId;
  const other = c.req.query("user_id");
  if (other === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'user_id'");
  if (!isValidUserId(other)) throw invalidParam("The user ID provided was invalid");
  if (other === me) throw invalidParam("You cannot ask for mutual rooms with yourself");
  const fromParam = c.req.query("from");
  const after = fromParam === undefined ? "" : decodeFrom(fromParam);

  const shared = `FROM room_members a JOIN room_members b ON b.room_id = a.room_id AND b.user_id = ?2 WHERE a.user_id = ?1`;
  const [page, total] = await c.env.DB.batch<{ room_id?: string; n?: number }>([
    c.env.DB.prepare(`SELECT a.room_id ${shared} AND a.room_id > ?3 ORDER BY a.room_id LIMIT ?4`).bind(me, other, after, MUTUAL_ROOMS_PAGE + 1),
    c.env.DB.prepare(`SELECT count(*) AS n ${shared}`).bind(me, other),
  ]);
  const rooms = page!.results.map((r) => r.room_id!);
  const joined = rooms.slice(0, MUTUAL_ROOMS_PAGE);
  return c.json({
    joined,
    count: total!.results[0]!.n!,
    ...(rooms.length > MUTUAL_ROOMS_PAGE ? { next_batch: PREFIX + encodeBase64Url(new TextEncoder().encode(joined[joined.length - 1]!)) } : {}),
  });
});
