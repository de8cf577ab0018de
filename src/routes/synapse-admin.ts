/**
 * Synapse-compatible shared-secret registration, GET/POST /_synapse/admin/v1/register, as used by
 * `register_new_matrix_user`, test harnesses and bots. Enabled by REGISTRATION_SHARED_SECRET, independent of
 * ENABLE_REGISTRATION.
 *
 * GET hands out a nonce (single use, valid NONCE_TTL_MS, stored in D1 so any isolate can take it back). POST
 * carries the nonce, the account details and `mac`: the hex HMAC-SHA1, keyed with the shared secret, of
 * `nonce \0 username \0 password \0 ("admin" | "notadmin")`, followed by `\0 user_type` when one is given.
 * The nonce is spent by the first POST that names it, whatever the outcome.
 */
import { Hono } from "hono";
import type { AppEnv } from "../http/app";
import { getConfig } from "../config";
import { badJson, forbidden, MatrixError } from "../http/errors";
import { readJsonObject } from "../http/json";
import { clientIp, rateLimit } from "../http/rate-limit";
import { optBool, optDeviceId, optString } from "../accounts/body";
import { constantTimeEqual, hashPassword, MAX_PASSWORD_LENGTH } from "../accounts/passwords";
import { registerAccount } from "../accounts/registration";
import { MAX_USERNAME_INPUT, normaliseNewLocalpart } from "../accounts/usernames";

export const synapseAdmin = new Hono<AppEnv>();

export const NONCE_TTL_MS = 60_000;
/** Synapse's built-in user types. */
export const USER_TYPES = ["support", "bot"];

const bad = (msg: string, errcode: "M_UNKNOWN" | "M_BAD_JSON" = "M_UNKNOWN") => new MatrixError(400, errcode, msg);

function requireSecret(secret: string | undefined): string {
  if (!secret) throw bad("Shared secret registration is not enabled");
  return secret;
}

/** The MAC that shared-secret registration expects, as lower-case hex. */
export async function registrationMac(
  secret: string,
  nonce: string,
  username: string,
  password: string,
  admin: boolean,
  userType?: string,
): Promise<string> {
  const parts = [nonce, username, password, admin ? "admin" : "notadmin", ...(userType ? [userType] : [])];
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(parts.join("\u0000")));
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}

synapseAdmin.get("/_synapse/admin/v1/register", async (c) => {
  requireSecret(getConfig(c.env).registrationSharedSecret);
  await rateLimit(c, "shared_secret_nonce", clientIp(c));
  const nonce = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");
  const now = Date.now();
  await c.env.DB.batch([
    c.env.DB.prepare("DELETE FROM registration_nonces WHERE created_ts <= ?").bind(now - NONCE_TTL_MS),
    c.env.DB.prepare("INSERT INTO registration_nonces (nonce, created_ts) VALUES (?, ?)").bind(nonce, now),
  ]);
  return c.json({ nonce });
});

synapseAdmin.post("/_synapse/admin/v1/register", async (c) => {
  const secret = requireSecret(getConfig(c.env).registrationSharedSecret);
  const body = await readJsonObject(c);

  const nonce = body.nonce;
  if (nonce === undefined) throw bad("nonce must be specified", "M_BAD_JSON");
  if (typeof nonce !== "string") throw badJson("nonce must be a string");
  const spent = await c.env.DB.prepare("DELETE FROM registration_nonces WHERE nonce = ? RETURNING created_ts")
    .bind(nonce)
    .first<{ created_ts: number }>();
  if (!spent || spent.created_ts <= Date.now() - NONCE_TTL_MS) throw bad("unrecognised nonce");

  const username = body.username;
  if (username === undefined) throw bad("username must be specified", "M_BAD_JSON");
  if (typeof username !== "string" || username.length > MAX_USERNAME_INPUT || username.includes("\u0000")) throw bad("Invalid username");
  const password = body.password;
  if (password === undefined) throw bad("password must be specified", "M_BAD_JSON");
  if (typeof password !== "string" || password.length > MAX_PASSWORD_LENGTH || password.includes("\u0000")) throw bad("Invalid password");
  const admin = body.admin === undefined || body.admin === null ? false : Boolean(body.admin);
  const userType = optString(body, "user_type");
  if (userType !== undefined && !USER_TYPES.includes(userType)) throw bad("Invalid user type");
  const displayname = optString(body, "displayname");
  const mac = body.mac;
  if (mac === undefined) throw bad("mac must be specified", "M_BAD_JSON");
  if (typeof mac !== "string") throw badJson("mac must be a string");

  const want = new TextEncoder().encode(await registrationMac(secret, nonce, username, password, admin, userType));
  if (!constantTimeEqual(want, new TextEncoder().encode(mac.toLowerCase()))) throw forbidden("HMAC incorrect");

  const localpart = normaliseNewLocalpart(username, getConfig(c.env).serverName);
  const result = await registerAccount(c.env, {
    localpart,
    passwordHash: await hashPassword(password),
    admin,
    userType: userType ?? null,
    displayname,
    inhibitLogin: optBool(body, "inhibit_login") ?? false,
    login: {
      deviceId: optDeviceId(body),
      initialDisplayName: optString(body, "initial_device_display_name"),
      refreshToken: optBool(body, "refresh_token") ?? false,
    },
  });
  return c.json(result);
});
