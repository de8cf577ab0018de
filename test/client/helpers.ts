/**
 * Client API test helpers: a worker to send requests to, and users with access tokens.
 * `createUserDirect` writes the account rows itself so endpoint tests do not depend on /register.
 */
import { env, exports } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { newToken, tokenHash } from "../../src/accounts/tokens";

export const testEnv = env as unknown as Env;
export const SERVER = "test.local";
const worker = (exports as unknown as { default: Fetcher }).default;

export interface TestUser {
  userId: string;
  deviceId: string;
  accessToken: string;
}

let seq = 0;

/** Creates a user with a device and an access token directly in D1. */
export async function createUserDirect(localpart = `user${++seq}_${Date.now().toString(36)}`): Promise<TestUser> {
  const userId = `@${localpart}:${SERVER}`;
  const deviceId = `DEV${++seq}`;
  const accessToken = newToken("syt");
  const now = Date.now();
  await testEnv.DB.batch([
    testEnv.DB.prepare("INSERT INTO users (user_id, localpart, created_ts) VALUES (?, ?, ?)").bind(userId, localpart, now),
    testEnv.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(userId, deviceId, now),
    testEnv.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(
      tokenHash(accessToken), userId, deviceId, now,
    ),
  ]);
  return { userId, deviceId, accessToken };
}

/** Sends a request to the worker; `body` objects are sent as JSON; `user` adds its access token. */
export async function request(
  method: string,
  path: string,
  opts: { user?: TestUser; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.user) headers.authorization = `Bearer ${opts.user.accessToken}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    headers["content-type"] ??= "application/json";
  }
  return worker.fetch(`http://${SERVER}${path}`, { method, headers, body, signal: opts.signal });
}

/** Like `request`, but asserts the status and returns the parsed JSON body. */
export async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  opts: Parameters<typeof request>[2] & { expect?: number } = {},
): Promise<T> {
  const res = await request(method, path, opts);
  const text = await res.text();
  const expected = opts.expect ?? 200;
  if (res.status !== expected) throw new Error(`${method} ${path}: expected ${expected}, got ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : {}) as T;
}
