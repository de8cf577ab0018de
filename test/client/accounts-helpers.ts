/**
 * Helpers for the account, login and device tests: distinct client IPs (rate limits are per IP), registration
 * through the real UIA flow, password login, and requests against a worker with overridden variables.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import app from "../../src/index";
import { request, testEnv, SERVER, type TestUser } from "./helpers";
import type { Env } from "../../src/env";

let ipSeq = 0;
/** A client IP no other test uses, so per-IP rate limits never interfere between tests. */
export function uniqueIp(): string {
  ipSeq++;
  const r = Math.floor(Math.random() * 200) + 1;
  return `10.${r}.${(ipSeq >> 8) & 255}.${ipSeq & 255}`;
}

export const fromIp = (ip: string) => ({ "cf-connecting-ip": ip });

export async function json<T = Record<string, any>>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

/** Registers through /register: a first request for the UIA session, then the dummy stage. */
export async function registerUser(
  username: string,
  password = "correct horse battery staple",
  extra: Record<string, unknown> = {},
): Promise<TestUser & { refreshToken?: string; password: string }> {
  const ip = uniqueIp();
  const first = await request("POST", "/_matrix/client/v3/register", { body: { username, password, ...extra }, headers: fromIp(ip) });
  if (first.status !== 401) throw new Error(`register: expected 401, got ${first.status}: ${await first.text()}`);
  const { session } = await json<{ session: string }>(first);
  const res = await request("POST", "/_matrix/client/v3/register", {
    body: { username, password, ...extra, auth: { type: "m.login.dummy", session } },
    headers: fromIp(ip),
  });
  if (res.status !== 200) throw new Error(`register: expected 200, got ${res.status}: ${await res.text()}`);
  const body = await json(res);
  return { userId: body.user_id, deviceId: body.device_id, accessToken: body.access_token, refreshToken: body.refresh_token, password };
}

/** POST /login with a password; returns the raw response. */
export function loginRequest(user: string, password: string, extra: Record<string, unknown> = {}, ip = uniqueIp()): Promise<Response> {
  return request("POST", "/_matrix/client/v3/login", {
    body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password, ...extra },
    headers: fromIp(ip),
  });
}

/** Sends a request to the app with some environment variables overridden (a fresh configuration). */
export async function requestWithEnv(
  overrides: Partial<Env>,
  method: string,
  path: string,
  opts: { body?: unknown; headers?: Record<string, string>; token?: string } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    headers["content-type"] ??= "application/json";
  }
  const env = Object.assign(Object.create(null), testEnv, overrides) as Env;
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`http://${SERVER}${path}`, { method, headers, body }), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Polls until `check` returns a truthy value (background writes run after the response). */
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, timeoutMs = 3000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function tokenCount(userId: string): Promise<number> {
  const row = await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM access_tokens WHERE user_id = ?").bind(userId).first<{ n: number }>();
  return row!.n;
}
