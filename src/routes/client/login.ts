/**
 * Sessions: GET/POST /login, POST /logout, POST /logout/all, POST /refresh, and POST /v1/login/get_token.
 * https://spec.matrix.org/v1.19/client-server-api/#login
 *
 * Login types: `m.login.password`; `m.login.token` with tokens from /login/get_token (a logged-in user, after
 * re-authenticating, lets a new device in; LOGIN_VIA_EXISTING_SESSION=false turns that off); and
 * `m.login.application_service` when appservices are registered. SSO is not implemented. Rate limits (Synapse's
 * defaults): every attempt per client IP, failed attempts per account, and successful logins per account.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { MatrixError } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { requireAuth } from "../../http/auth";
import { clientIp, rateLimit } from "../../http/rate-limit";
import { optBool, optDeviceId, optString } from "../../accounts/body";
import { checkPassword, identifiedUserId, passwordOf, wrongCredentials } from "../../accounts/credentials";
import { hashPassword, needsRehash } from "../../accounts/passwords";
import { createLogin, getUser, type UserRow } from "../../accounts/store";
import { deleteAllDevices, deleteDevices } from "../../accounts/lifecycle";
import { refreshTokens } from "../../accounts/refresh";
import { registrationResult } from "../../accounts/registration";
import { getConfig } from "../../config";
import { loginAppserviceUser } from "../../appservices/client";
import { consumeLoginToken, issueLoginToken } from "../../accounts/login-tokens";
import { reauthOptions } from "./account";
import { requireUia } from "../../http/uia";
import type { AppContext } from "../../http/app";
import type { Env } from "../../env";

export const loginRoutes = new Hono<AppEnv>();
/** Routes relative to /_matrix/client/v1. */
export const loginRoutesV1 = new Hono<AppEnv>();

export function loginFlows(env: Env) {
  const config = getConfig(env);
  return [
    { type: "m.login.password" },
    // `get_login_token`: this server hands out tokens to logged-in users (MSC3882), so clients may offer it.
    { type: "m.login.token", ...(config.loginViaExistingSession ? { get_login_token: true } : {}) },
    // Application services log their users in with their as_token (offered when any appservice is registered).
    ...(config.appservices.size ? [{ type: "m.login.application_service" }] : []),
  ];
}

loginRoutes.get("/login", (c) => c.json({ flows: loginFlows(c.env) }));

loginRoutes.post("/login", async (c) => {
  const body = await readJsonObject(c);
  await rateLimit(c, "login_address", clientIp(c));
  const type = body.type;
  if (type === "m.login.application_service") return c.json(await loginAppserviceUser(c, body)); // src/appservices/client.ts
  if (type === "m.login.token") return c.json(await loginWithToken(c, body));
  if (type !== "m.login.password") {
    throw new MatrixError(400, "M_UNKNOWN", typeof type === "string" ? `Unknown login type ${JSON.stringify(type)}` : "Missing login type");
  }
  const userId = identifiedUserId(c.env, body);
  const password = passwordOf(body);
  // Device parameters are checked before the password so that a malformed request costs no password check.
  optDeviceId(body);
  optString(body, "initial_device_display_name");
  optBool(body, "refresh_token");

  const user = await checkPassword(c.env, userId, password);
  if (!user) throw wrongCredentials();
  if (user.password_hash && needsRehash(user.password_hash) && !user.deactivated) {
    await c.env.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(await hashPassword(password), user.user_id).run();
  }
  return c.json(await completeLogin(c, user, body));
});

async function loginWithToken(c: AppContext, body: Record<string, unknown>) {
  const token = body.token;
  if (token === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'token'");
  if (typeof token !== "string") throw new MatrixError(400, "M_BAD_JSON", "'token' must be a string");
  optDeviceId(body);
  optString(body, "initial_device_display_name");
  optBool(body, "refresh_token");
  const userId = await consumeLoginToken(c.env, token);
  const user = userId ? await getUser(c.env.DB, userId) : null;
  if (!user) throw new MatrixError(403, "M_FORBIDDEN", "Invalid login token");
  return completeLogin(c, user, body);
}

/** The common end of every login type: the account must be active; then a device and its tokens. */
async function completeLogin(c: AppContext, user: UserRow, body: Record<string, unknown>) {
  if (user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  await rateLimit(c, "login_account", user.user_id.toLowerCase());
  const issued = await createLogin(c.env, user.user_id, {
    deviceId: optDeviceId(body),
    initialDisplayName: optString(body, "initial_device_display_name"),
    refreshToken: optBool(body, "refresh_token") ?? false,
  });
  return registrationResult(c.env, user.user_id, issued);
}

// A logged-in user lets another device in: re-authenticate (user-interactive auth), get a short-lived token.
loginRoutesV1.post("/login/get_token", requireAuth, async (c) => {
  if (!getConfig(c.env).loginViaExistingSession) {
    throw new MatrixError(404, "M_UNRECOGNIZED", "Login via an existing session is disabled on this server");
  }
  const body = await readJsonObject(c);
  const { userId, isGuest } = c.get("requester");
  if (isGuest) throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot get login tokens");
  await requireUia(c, body, await reauthOptions(c, userId));
  await rateLimit(c, "login_token", userId.toLowerCase());
  const { loginToken, expiresInMs } = await issueLoginToken(c.env, userId);
  return c.json({ login_token: loginToken, expires_in_ms: expiresInMs });
});

loginRoutes.post("/logout", requireAuth, async (c) => {
  const { userId, deviceId } = c.get("requester");
  await deleteDevices(c.env, userId, [deviceId]);
  return c.json({});
});

loginRoutes.post("/logout/all", requireAuth, async (c) => {
  await deleteAllDevices(c.env, c.get("requester").userId);
  return c.json({});
});

loginRoutes.post("/refresh", async (c) => {
  const body = await readJsonObject(c);
  const token = body.refresh_token;
  if (token === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'refresh_token'");
  if (typeof token !== "string") throw new MatrixError(400, "M_BAD_JSON", "'refresh_token' must be a string");
  return c.json(await refreshTokens(c.env, token));
});
