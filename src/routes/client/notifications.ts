/**
 * GET /notifications (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3notifications): the
 * events that notified the user, newest first, as found by push rule evaluation (docs/push.md). Stored in the
 * user's UserDO (durable-objects/user/push-actions.ts); each event is read back from its room in client format
 * (an event the user can no longer see is left out), and `read` compares it with the user's read receipt there.
 *
 * `from` is an opaque token (the stored notification's id); `limit` defaults to 50 (at most 100); `only=highlight`
 * keeps the highlighted ones. `profile_tag` is not given: rules here have no profile tags.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam } from "../../http/errors";
import type { StoredNotification } from "../../../durable-objects/user/push-actions";
import type { PushDetail } from "../../../durable-objects/room/push-eval";

export const notificationRoutes = new Hono<AppEnv>();
notificationRoutes.use("/notifications", requireAuth);

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;

notificationRoutes.get("/notifications", async (c) => {
  const userId = c.get("requester").userId;
  const fromParam = c.req.query("from");
  const limitParam = c.req.query("limit");
  let from: number | null = null;
  if (fromParam !== undefined && fromParam !== "") {
    if (!/^[0-9]{1,15}$/.test(fromParam)) throw invalidParam("Invalid 'from' token");
    from = Number(fromParam);
  }
  let limit = DEFAULT_LIMIT;
  if (limitParam !== undefined) {
    if (!/^[0-9]{1,9}$/.test(limitParam)) throw invalidParam("'limit' must be a non-negative integer");
    limit = Math.min(Number(limitParam), MAX_LIMIT);
  }
  const onlyHighlight = c.req.query("only") === "highlight";

  const user = c.env.USERS.get(c.env.USERS.idFromName(userId));
  const { rows, more } = JSON.parse(await user.pushNotifications(from, limit, onlyHighlight)) as {
    rows: StoredNotification[];
    more: boolean;
  };

  // One call per room: the events in client format and the user's read mark there.
  const byRoom = new Map<string, string[]>();
  for (const r of rows) byRoom.set(r.room_id, [...(byRoom.get(r.room_id) ?? []), r.event_id]);
  const views = new Map<string, { read_pos: number; events: Map<string, PushDetail> }>();
  await Promise.all(
    [...byRoom].map(async ([roomId, ids]) => {
      const res = JSON.parse(await c.env.ROOMS.get(c.env.ROOMS.idFromName(roomId)).pushDetails(userId, ids)) as {
        read_pos: number;
        events: PushDetail[];
      };
      views.set(roomId, { read_pos: res.read_pos, events: new Map(res.events.map((e) => [e.event_id, e])) });
    }),
  );

  const notifications = [];
  for (const r of rows) {
    const view = views.get(r.room_id);
    const detail = view?.events.get(r.event_id);
    if (!view || !detail) continue;
    notifications.push({
      actions: r.actions,
      event: JSON.parse(detail.client_json) as unknown,
      read: detail.stream_ordering <= view.read_pos,
      room_id: r.room_id,
      ts: r.ts,
    });
  }
  const last = rows[rows.length - 1];
  return c.json({ notifications, ...(more && last ? { next_token: String(last.id) } : {}) });
});
