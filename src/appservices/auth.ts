/**
 * Client-server API authentication for application services
 * (https://spec.matrix.org/v1.19/application-service-api/#client-server-api-extensions).
 *
 * `appserviceAuth` runs before every client route (src/index.ts). When the access token is a registered
 * `as_token` it builds the requester itself — requireAuth then leaves it alone:
 * - `?user_id=`: act as that user (masquerading). Allowed for the appservice's sender and for registered local
 *   users in its user namespaces; otherwise 403 M_FORBIDDEN, as Synapse ("cannot masquerade as this user" /
 *   "has not registered this user"). Without it, the sender (registered on first use).
 * - `?device_id=` (or the unstable `org.matrix.msc3202.device_id`): act as that device of the user; 400
 *   `M_UNKNOWN_DEVICE` if the user has no such device. Without it the request has no device (deviceId "").
 * - `?ts=`: timestamp massaging for `PUT /send` and `PUT /state` (Requester.timestamp); must be a
 *   non-negative integer, else 400 `M_INVALID_PARAM`.
 * `/register` and `/login` only identify the appservice (as Synapse's get_appservice_by_req): bridges send
 * `?user_id=` of the user they are about to register, so it is not checked there.
 * Other tokens pass through untouched to requireAuth.
 */
import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv, Requester } from "../http/app";
import { getConfig } from "../config";
import { MatrixError, forbidden, invalidParam, type ErrorCode } from "../http/errors";
import { accessTokenOf } from "../http/auth";
import type { AppService } from "./registration";

/** The requester of a request authenticated with an `as_token`, or undefined for any other token. */
export const appserviceAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const registry = getConfig(c.env).appservices;
  if (registry.size > 0 && !c.get("requester")) {
    const token = accessTokenOf(c);
    const as = token === undefined ? undefined : registry.forToken(token);
    if (as) {
      if (/\/(register|login)$/.test(c.req.path)) {
        const requester: Requester = { userId: as.sender, deviceId: "", isGuest: false, appserviceId: as.id };
        tokenOnly.add(requester);
        c.set("requester", requester);
      } else {
        c.set("requester", await appserviceRequester(c, as));
      }
    }
  }
  await next();
};

/** Requesters of /register and /login: the appservice itself, not a user it acts as. */
const tokenOnly = new WeakSet<Requester>();

/** Senders known to be registered in this isolate (the row is created on first use). */
const registeredSenders = new Set<string>();

async function ensureSender(db: D1Database, as: AppService): Promise<void> {
  if (registeredSenders.has(as.sender)) return;
  await db
    .prepare(
      `INSERT INTO users (user_id, localpart, password_hash, created_ts, appservice_id) VALUES (?, ?, NULL, ?, ?)
       ON CONFLICT DO NOTHING`,
    )
    .bind(as.sender, as.senderLocalpart, Date.now(), as.id)
    .run();
  registeredSenders.add(as.sender);
}

async function appserviceRequester(c: AppContext, as: AppService): Promise<Requester> {
  const registry = getConfig(c.env).appservices;
  const db = c.env.DB;
  const userId = c.req.query("user_id") || as.sender;
  if (userId === as.sender) {
    await ensureSender(db, as);
  } else {
    if (!registry.controlsUser(as, userId)) throw forbidden(`Application service cannot masquerade as this user (${userId}).`);
    const row = await db.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(userId).first<{ deactivated: number }>();
    if (!row) throw forbidden(`Application service has not registered this user (${userId})`);
    if (row.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", `${userId} has been deactivated`);
  }

  let deviceId = "";
  const device = c.req.query("device_id") ?? c.req.query("org.matrix.msc3202.device_id");
  if (device !== undefined && device !== "") {
    const known = await db.prepare("SELECT 1 AS x FROM devices WHERE user_id = ? AND device_id = ?").bind(userId, device).first();
    if (!known) {
      throw new MatrixError(
        400,
        "M_UNKNOWN_DEVICE" as ErrorCode,
        `Application service trying to use a device that doesn't exist ('${device}' for ${userId})`,
      );
    }
    deviceId = device;
  }

  const requester: Requester = { userId, deviceId, isGuest: false, appserviceId: as.id };
  const ts = c.req.query("ts");
  if (ts !== undefined) requester.timestamp = parseTimestamp(ts);
  return requester;
}

/** `?ts=`: what `origin_server_ts` accepts (a non-negative safe integer, in ms). */
export function parseTimestamp(ts: string): number {
  const n = /^\d{1,16}$/.test(ts) ? Number(ts) : NaN;
  if (!Number.isSafeInteger(n)) throw invalidParam(`'ts' must be a timestamp in milliseconds, got ${JSON.stringify(ts)}`);
  return n;
}

/** The appservice behind an authenticated request, if any. */
export function requestingAppservice(c: AppContext): AppService | undefined {
  const id = c.get("requester")?.appserviceId;
  return id === undefined ? undefined : getConfig(c.env).appservices.get(id);
}

/**
 * Whether rate limits skip this request: an appservice registered with `rate_limited: false`, or the
 * appservice acting as its own sender (the spec: "the sender is excluded"). /register and /login are limited
 * by the appservice's flag alone (as Synapse).
 */
export function rateLimitExempt(c: AppContext | { env: AppContext["env"] }): boolean {
  if (!("get" in c)) return false;
  const requester = c.get("requester");
  if (!requester?.appserviceId) return false;
  const as = getConfig(c.env).appservices.get(requester.appserviceId);
  return as !== undefined && (!as.rateLimited || (requester.userId === as.sender && !tokenOnly.has(requester)));
}
