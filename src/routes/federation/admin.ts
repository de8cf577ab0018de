/**
 * Admin view of outbound federation, Synapse-compatible paths:
 * GET  /_synapse/admin/v1/federation/destinations/{destination}                 delivery state of one server
 * POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection  clear its backoff and retry now
 * Server admins only (403 M_FORBIDDEN otherwise).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { forbidden, invalidParam } from "../../http/errors";
import { isValidServerName } from "../../protocol/identifiers";
import { destinationStub } from "../../federation/destinations";

export const federationAdmin = new Hono<AppEnv>();

async function requireAdmin(c: AppContext): Promise<void> {
  const row = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?")
    .bind(c.get("requester").userId)
    .first<{ admin: number }>();
  if (row?.admin !== 1) throw forbidden("You are not a server admin");
}

function destinationParam(c: AppContext): string {
  const destination = c.req.param("destination") ?? "";
  if (!isValidServerName(destination)) throw invalidParam("destination is not a server name");
  return destination;
}

federationAdmin.get("/_synapse/admin/v1/federation/destinations/:destination", requireAuth, async (c) => {
  await requireAdmin(c);
  const destination = destinationParam(c);
  const s = await destinationStub(c.env, destination).status();
  return c.json({
    destination,
    // Synapse's fields
    retry_last_ts: s.failures > 0 && s.next_retry_ts !== null ? s.next_retry_ts : 0,
    retry_interval: s.failures > 0 && s.next_retry_ts !== null ? Math.max(0, s.next_retry_ts - Date.now()) : 0,
    failure_ts: s.first_failure_ts,
    last_successful_stream_ordering: null,
    // Axon's details
    state: s.state,
    catching_up: s.catching_up,
    failures: s.failures,
    next_retry_ts: s.next_retry_ts,
    last_error: s.last_error,
    last_success_ts: s.last_success_ts,
    last_seen_alive_ts: s.last_seen_alive_ts,
    transactions_sent: s.transactions_sent,
    backlog: s.backlog,
    in_flight: s.in_flight,
  });
});

federationAdmin.post("/_synapse/admin/v1/federation/destinations/:destination/reset_connection", requireAuth, async (c) => {
  await requireAdmin(c);
  const destination = destinationParam(c);
  await destinationStub(c.env, destination).retryNow();
  return c.json({});
});
