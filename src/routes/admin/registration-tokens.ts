/**
 * Registration tokens for server admins, in the shape of Synapse's admin API so its tools and docs apply:
 * https://element-hq.github.io/synapse/latest/usage/administration/admin_api/registration_tokens.html
 *
 *   GET    /_synapse/admin/v1/registration_tokens[?valid=true|false]
 *   GET    /_synapse/admin/v1/registration_tokens/{token}
 *   POST   /_synapse/admin/v1/registration_tokens/new   {token?, length?, uses_allowed?, expiry_time?}
 *   PUT    /_synapse/admin/v1/registration_tokens/{token}   {uses_allowed?, expiry_time?}  (null: unlimited / never)
 *   DELETE /_synapse/admin/v1/registration_tokens/{token}
 *
 * Server admins only (users.admin = 1). The tokens gate /register when REGISTRATION_REQUIRES_TOKEN is on
 * (src/accounts/registration-tokens.ts).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { badJson, forbidden, invalidParam, MatrixError, notFound } from "../../http/errors";
import { getRegistrationToken, listRegistrationTokens, TOKEN_PATTERN } from "../../accounts/registration-tokens";
import { isUniqueViolation } from "../../accounts/store";

export const registrationTokensAdmin = new Hono<AppEnv>();

const BASE = "/_synapse/admin/v1/registration_tokens";
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

async function requireAdmin(c: AppContext): Promise<void> {
  const row = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(c.get("requester").userId).first<{ admin: number }>();
  if (row?.admin !== 1) throw forbidden("You are not a server admin");
}

function randomToken(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join("");
}

/** `uses_allowed`: a non-negative integer or null (unlimited); `expiry_time`: ms in the future or null (never). */
function limits(body: Record<string, unknown>, now: number) {
  const out: { uses_allowed?: number | null; expiry_time?: number | null } = {};
  if ("uses_allowed" in body) {
    const v = body.uses_allowed;
    if (v !== null && (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)) throw invalidParam("uses_allowed must be a non-negative integer or null");
    out.uses_allowed = v as number | null;
  }
  if ("expiry_time" in body) {
    const v = body.expiry_time;
    if (v !== null && (typeof v !== "number" || !Number.isSafeInteger(v))) throw invalidParam("expiry_time must be an integer or null");
    if (typeof v === "number" && v < now) throw invalidParam("expiry_time must not be in the past");
    out.expiry_time = v as number | null;
  }
  return out;
}

function tokenParam(c: AppContext): string {
  const token = c.req.param("token")!;
  if (!TOKEN_PATTERN.test(token)) throw notFound(`No such registration token: ${token}`);
  return token;
}

registrationTokensAdmin.get(BASE, requireAuth, async (c) => {
  await requireAdmin(c);
  const valid = c.req.query("valid");
  if (valid !== undefined && valid !== "true" && valid !== "false") throw invalidParam("valid must be true or false");
  return c.json({ registration_tokens: await listRegistrationTokens(c.env, valid === undefined ? undefined : valid === "true") });
});

registrationTokensAdmin.post(`${BASE}/new`, requireAuth, async (c) => {
  await requireAdmin(c);
  const body = await readJsonObject(c);
  const now = Date.now();
  const { uses_allowed = null, expiry_time = null } = limits(body, now);
  let token: string;
  if (body.token !== undefined) {
    if (typeof body.token !== "string") throw badJson("token must be a string");
    if (!TOKEN_PATTERN.test(body.token)) throw invalidParam("token must be 1 to 64 characters of A-Z a-z 0-9 . _ ~ -");
    if (body.length !== undefined) throw invalidParam("give either token or length");
    token = body.token;
  } else {
    const length = body.length ?? 16;
    if (typeof length !== "number" || !Number.isInteger(length) || length < 1 || length > 64) throw invalidParam("length must be an integer from 1 to 64");
    token = randomToken(length);
  }
  try {
    await c.env.DB.prepare("INSERT INTO registration_tokens (token, uses_allowed, expiry_time, created_ts) VALUES (?, ?, ?, ?)")
      .bind(token, uses_allowed, expiry_time, now)
      .run();
  } catch (e) {
    if (isUniqueViolation(e)) throw new MatrixError(400, "M_INVALID_PARAM", `Token already in use: ${token}`);
    throw e;
  }
  return c.json(await getRegistrationToken(c.env, token));
});

registrationTokensAdmin.get(`${BASE}/:token`, requireAuth, async (c) => {
  await requireAdmin(c);
  const found = await getRegistrationToken(c.env, tokenParam(c));
  if (!found) throw notFound("No such registration token");
  return c.json(found);
});

registrationTokensAdmin.put(`${BASE}/:token`, requireAuth, async (c) => {
  await requireAdmin(c);
  const token = tokenParam(c);
  const changes = limits(await readJsonObject(c), Date.now());
  const sets = Object.keys(changes).map((k) => `${k} = ?`);
  if (sets.length > 0) {
    const res = await c.env.DB.prepare(`UPDATE registration_tokens SET ${sets.join(", ")} WHERE token = ?`)
      .bind(...Object.values(changes), token)
      .run();
    if (res.meta.changes === 0) throw notFound("No such registration token");
  }
  const found = await getRegistrationToken(c.env, token);
  if (!found) throw notFound("No such registration token");
  return c.json(found);
});

registrationTokensAdmin.delete(`${BASE}/:token`, requireAuth, async (c) => {
  await requireAdmin(c);
  const res = await c.env.DB.prepare("DELETE FROM registration_tokens WHERE token = ?").bind(tokenParam(c)).run();
  if (res.meta.changes === 0) throw notFound("No such registration token");
  return c.json({});
});
