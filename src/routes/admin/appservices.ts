/**
 * GET /_axon/admin/v1/appservices: each registered application service and where its delivery stands — UP or
 * DOWN, backlog (queued items, events in stored transactions, rooms not yet pulled), the last acknowledged
 * transaction id and, while DOWN, when the next retry is due. Server admins only (users.admin = 1).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { forbidden } from "../../http/errors";
import { getConfig } from "../../config";

export const appserviceAdmin = new Hono<AppEnv>();

appserviceAdmin.get("/_axon/admin/v1/appservices", requireAuth, async (c) => {
  const { userId } = c.get("requester");
  const row = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(userId).first<{ admin: number }>();
  if (row?.admin !== 1) throw forbidden("You are not a server admin");
  const services = getConfig(c.env).appservices.all;
  const appservices = await Promise.all(
    services.map(async (as) => {
      const status = await c.env.APPSERVICES.get(c.env.APPSERVICES.idFromName(as.id)).status(as.id);
      return {
        id: as.id,
        url: as.url,
        sender: as.sender,
        state: status.state,
        backlog: { queued: status.queued, in_transactions: status.in_transactions, rooms_behind: status.rooms_behind },
        stored_transactions: status.stored_transactions,
        last_txn_id: status.last_txn_id,
        next_txn_id: status.next_txn_id,
        next_retry_ts: status.next_retry_ts,
        backoff_exponent: status.backoff_exponent,
        last_error: status.last_error,
        sent_transactions: status.sent_transactions,
        sent_events: status.sent_events,
      };
    }),
  );
  return c.json({ appservices });
});
