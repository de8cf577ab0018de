/**
 * Sessions: GET/POST /login, POST /logout, POST /logout/all, POST /refresh.
 * https://spec.matrix.org/v1.19/client-server-api/#login
 *
 * Only `m.login.password` is offered: login tokens (`m.login.token`, /login/get_token) and SSO are not
 * implemented. Rate limits (Synapse's defaults): every attempt per client IP, failed attempts per account, and
 * successful logins per account.
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
import { createLogin } from "../../accounts/store";
import { deleteAllDevices, deleteDevices } from "../../accounts/lifecycle";
import { refreshTokens } from "../../accounts/refresh";
import { registrationResult } from "../../accounts/registration";
import { getConfig } from "../../config";
import { loginAppserviceUser } from "../../appservices/client";

export const loginRoutes = new Hono<AppEnv>();

export const LOGIN_FLOWS = [{ type: "m.login.password" }];

// Application services log their users in with their as_token (offered when any appservice is registered).
loginRoutes.get("/login", (c) =>
  c.json({ flows: getConfig(c.env).appservices.size ? [...LOGIN_FLOWS, { type: "m.login.application_service" }] : LOGIN_FLOWS }),
);

loginRoutes.post("/login", async (c) => {
  const body = await readJsonObject(c);
  await rateLimit(c, "login_address", clientIp(c));
  const type = body.type;
  if (type === "m.login.application_service") return c.json(await loginAppserviceUser(c, body)); // src/appservices/client.ts
  if (type !== "m.login.password") {
    throw new MatrixError(400, "M_UNKNOWN", typeof type === "string" ? `Unknown login type ${JSON.stringify(type)}` : "Missing login type");
  }
  const userId = identifiedUserId(c.env, body);
  const password = passwordOf(body);
  const deviceId = optDeviceId(body);
  const initialDisplayName = optString(body, "initial_device_display_name");
  const refreshToken = optBool(body, "refresh_token") ?? false;

  const user = await checkPassword(c.env, userId, password);
  if (!user) throw wrongCredentials();
  if (user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  await rateLimit(c, "login_account", user.user_id.toLowerCase());

  if (user.password_hash && needsRehash(user.password_hash)) {
    await c.env.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(await hashPassword(password), user.user_id).run();
  }
  const issued = await createLogin(c.env, user.user_id, { deviceId, initialDisplayName, refreshToken });
  return c.json(registrationResult(c.env, user.user_id, issued));
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
