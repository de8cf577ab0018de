/**
 * GET /_axon/admin/v1/rooms/{roomId}/partial_state: where a faster join's resync stands (docs/faster-joins.md).
 * `partial_state: false` once the room is fully stated (or for a room joined with its full state); while
 * partial: the join, the servers asked (servers_in_room, the one joined through first), events still to
 * complete, events completed, state events fetched, consecutive failures, the last error and when the next
 * step is due. Server admins only (users.admin = 1); 404 for a room this server does not hold.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { forbidden, notFound } from "../../http/errors";
import { requireRoomId, roomStub } from "../../rooms/common";

export const partialStateAdmin = new Hono<AppEnv>();

partialStateAdmin.get("/_axon/admin/v1/rooms/:roomId/partial_state", requireAuth, async (c) => {
  const { userId } = c.get("requester");
  const row = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(userId).first<{ admin: number }>();
  if (row?.admin !== 1) throw forbidden("You are not a server admin");
  const roomId = requireRoomId(c.req.param("roomId"));
  const stub = roomStub(c.env, roomId);
  const room = await stub.federationInfo();
  if (!room) throw notFound(`Unknown room ${roomId}`);
  const info = await stub.partialStateInfo();
  if (!info) return c.json({ room_id: roomId, partial_state: false });
  return c.json({
    room_id: roomId,
    partial_state: true,
    join_event_id: info.join_event_id,
    joined_via: info.joined_via,
    servers_in_room: info.servers_in_room,
    started_ts: info.started_ts,
    elapsed_ms: Date.now() - info.started_ts,
    events_left: info.events_left,
    events_completed: info.events_completed,
    state_events_fetched: info.state_events_fetched,
    failures: info.failures,
    last_error: info.last_error ?? null,
    next_server: info.servers_in_room.length > 0 ? info.servers_in_room[info.next_server % info.servers_in_room.length] : null,
    resync_due_ts: info.resync_due_ts,
  });
});
