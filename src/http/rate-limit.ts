/**
 * Rate limiting: token buckets per (action, key), each held by one RateLimiterDO, so the count is shared by every
 * isolate. Refusals are 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` and a `Retry-After` header.
 *
 * Use from any route:
 *
 *     await rateLimit(c, "my_action", requester.userId);                      // counts one action, or throws 429
 *     await rateLimit(c, "my_action", ip, { consume: false });                // only checks
 *     app.post("/thing", rateLimitByIp("my_action", { perSecond: 1, burst: 10 }), handler);
 *
 * The rule for an action is, in order: `RATE_LIMITS[action]` from the environment (null there disables it), the
 * `fallback` passed by the caller, then DEFAULT_RATE_LIMITS. An action with no rule is not limited.
 */
import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv } from "./app";
import type { Env } from "../env";
import { getConfig, type RateLimitRule } from "../config";
import { MatrixError } from "./errors";
import { rateLimitExempt } from "../appservices/auth";

/** Defaults, as Synapse's (rc_login.*, rc_registration). */
export const DEFAULT_RATE_LIMITS: Readonly<Record<string, RateLimitRule>> = {
  /** Every /login attempt, per client IP. */
  login_address: { perSecond: 0.003, burst: 5 },
  /** Successful logins, per account. */
  login_account: { perSecond: 0.003, burst: 5 },
  /** Failed password checks (login and user-interactive auth), per account. */
  login_failed: { perSecond: 0.17, burst: 3 },
  /** Accounts created through /register, per client IP. */
  registration: { perSecond: 0.17, burst: 3 },
  /** /register/available, per client IP. */
  registration_available: { perSecond: 1, burst: 20 },
  /** Login tokens handed out by /login/get_token, per account (Synapse: one a minute). */
  login_token: { perSecond: 1 / 60, burst: 1 },
  /** Content reports (events, rooms, users), per reporter. */
  report: { perSecond: 1, burst: 10 },
  /** Registration-token checks (the validity endpoint and the UIA stage), per client IP (Synapse's rc_registration_token_validity). */
  registration_token: { perSecond: 0.1, burst: 5 },
  /** OpenID tokens for integrations, per user. */
  openid_token: { perSecond: 1, burst: 10 },
  /** Nonces handed out by /_synapse/admin/v1/register, per client IP. */
  shared_secret_nonce: { perSecond: 1, burst: 10 },
};

/** A 429 that also carries a `Retry-After` header (seconds, rounded up). */
export class RateLimitedError extends MatrixError {
  constructor(readonly retryAfterMs: number) {
    super(429, "M_LIMIT_EXCEEDED", "Too many requests", { retry_after_ms: retryAfterMs });
  }

  override toResponse(headers?: HeadersInit): Response {
    const res = super.toResponse(headers);
    res.headers.set("Retry-After", String(Math.max(1, Math.ceil(this.retryAfterMs / 1000))));
    return res;
  }
}

/** The client's IP address as Cloudflare reports it; "local" when there is none (tests, direct calls). */
export function clientIp(c: AppContext): string {
  return c.req.header("cf-connecting-ip")?.trim() || "local";
}

/** The rule that applies to `action`, or null when it is not limited. */
export function ruleFor(env: Env, action: string, fallback?: RateLimitRule): RateLimitRule | null {
  const configured = getConfig(env).rateLimits;
  if (configured.has(action)) return configured.get(action) ?? null;
  return fallback ?? DEFAULT_RATE_LIMITS[action] ?? null;
}

export interface RateLimitOptions {
  /** false: only check that one action would be allowed now, without counting it. Default true. */
  consume?: boolean;
  /** Tokens the action costs (default 1). */
  cost?: number;
  /** Rule to use when RATE_LIMITS does not configure this action. */
  fallback?: RateLimitRule;
}

/** Counts one `action` for `key` (or only checks it); throws {@link RateLimitedError} when over the limit. */
export async function rateLimit(c: AppContext | { env: Env }, action: string, key: string, opts: RateLimitOptions = {}): Promise<void> {
  // Application services registered with `rate_limited: false`, and any appservice acting as its sender, are exempt.
  if (rateLimitExempt(c)) return;
  const env = c.env;
  const rule = ruleFor(env, action, opts.fallback);
  if (!rule) return;
  const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${action}\u0000${key}`));
  const result = await stub.take({ perSecond: rule.perSecond, burst: rule.burst }, opts.consume ?? true, opts.cost ?? 1);
  if (!result.allowed) throw new RateLimitedError(result.retryAfterMs);
}

/** Middleware: one `action` per request, keyed by client IP. */
export function rateLimitByIp(action: string, fallback?: RateLimitRule): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await rateLimit(c, action, clientIp(c), { fallback });
    await next();
  };
}
