/**
 * POST /_matrix/client/v1/appservice/{appserviceId}/ping: the appservice asks the homeserver to call its
 * `POST /_matrix/app/v1/ping` (https://spec.matrix.org/v1.19/application-service-api/#pinging).
 *
 * Only the appservice itself may ask (its as_token, the same id in the path): otherwise 403 M_FORBIDDEN. No URL
 * registered: 400 M_URL_NOT_SET. The appservice answering non-2xx: 502 M_BAD_STATUS with `status` and `body`;
 * no connection: 502 M_CONNECTION_FAILED; no answer in time: 504 M_CONNECTION_TIMEOUT.
 *
 * A successful ping also tells the appservice's AppServiceDO that it is reachable: if delivery was DOWN, the
 * oldest stored transaction is retried at once instead of at the end of the backoff (bridges ping on start).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { forbidden, MatrixError, type ErrorCode } from "../../http/errors";
import { requestingAppservice } from "../../appservices/auth";
import { callAppservice, type AppserviceResponse } from "../../appservices/transport";

export const appservicePingRoutes = new Hono<AppEnv>();

/** How long the homeserver waits for the appservice's answer. */
export const PING_TIMEOUT_MS = 10_000;

const error = (status: number, errcode: string, message: string, extra: Record<string, unknown> = {}) =>
  new MatrixError(status, errcode as ErrorCode, message, extra);

appservicePingRoutes.post("/appservice/:appserviceId/ping", requireAuth, async (c) => {
  const as = requestingAppservice(c);
  if (!as) throw forbidden("Only application services can use this endpoint");
  if (as.id !== c.req.param("appserviceId")) throw forbidden("Provided access token is not the appservice's as_token");
  const body = await readJsonObject(c);
  const txnId = body.transaction_id;
  if (txnId !== undefined && typeof txnId !== "string") throw error(400, "M_INVALID_PARAM", "'transaction_id' must be a string");
  if (as.url === null) throw error(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured");

  const started = Date.now();
  let res: AppserviceResponse;
  try {
    res = await callAppservice(as, {
      method: "POST",
      path: "/_matrix/app/v1/ping",
      body: txnId === undefined ? {} : { transaction_id: txnId },
      timeoutMs: PING_TIMEOUT_MS,
    });
  } catch (e) {
    if ((e as Error)?.name === "TimeoutError") throw error(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out");
    throw error(502, "M_CONNECTION_FAILED", "Connection to application service failed");
  }
  if (!res.ok) throw error(502, "M_BAD_STATUS", `Ping returned status ${res.status}`, { status: res.status, body: res.text });
  const duration = Date.now() - started;
  // It is reachable: if its delivery is DOWN, retry now rather than at the end of the backoff.
  await c.env.APPSERVICES.get(c.env.APPSERVICES.idFromName(as.id)).reachable(as.id);
  return c.json({ duration_ms: duration });
});
