/**
 * Registration: POST /register (user-interactive auth with `m.login.dummy`, preceded by `m.login.registration_token`
 * with REGISTRATION_REQUIRES_TOKEN), GET /register/available, GET /v1/register/m.login.registration_token/validity.
 * https://spec.matrix.org/v1.19/client-server-api/#account-registration
 *
 * Open registration needs ENABLE_REGISTRATION; guests are refused. Usernames are lower-cased and must then match
 * the user ID grammar. The username is checked before UIA (the spec asks for that) and again when the account is
 * created. A UIA session remembers the request's parameters and a hash of its password, so the client may send
 * only `auth` on later requests; once it has registered an account, retrying with the same session logs that
 * account in again rather than creating a second one (as Synapse does).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { getConfig } from "../../config";
import { forbidden, MatrixError, missingParam } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { clientIp, rateLimit } from "../../http/rate-limit";
import { LOGIN_DUMMY, LOGIN_REGISTRATION_TOKEN, loadUiaSession, requireUia, setUiaSessionData, uiaSessionIdOf } from "../../http/uia";
import { completeRegistrationToken, getRegistrationToken, isUsable, TOKEN_PATTERN } from "../../accounts/registration-tokens";
import type { Config } from "../../config";
import { optBool, optDeviceId, optString } from "../../accounts/body";
import { passwordOf } from "../../accounts/credentials";
import { hashPassword } from "../../accounts/passwords";
import { createLogin, localpartTaken } from "../../accounts/store";
import { registerAccount, registrationResult } from "../../accounts/registration";
import { normaliseNewLocalpart, userIdFor, userInUse } from "../../accounts/usernames";
import { checkUserNotExclusive, registerAppserviceUser } from "../../appservices/client";

export const registerRoutes = new Hono<AppEnv>();
/** Routes relative to /_matrix/client/v1. */
export const registerRoutesV1 = new Hono<AppEnv>();

/** The flows /register offers: a click, after a registration token when the server requires one (as Synapse). */
export function registrationFlows(config: Config): string[][] {
  return config.registrationRequiresToken ? [[LOGIN_REGISTRATION_TOKEN, LOGIN_DUMMY]] : [[LOGIN_DUMMY]];
}

/** Request parameters a registration UIA session keeps (never the password itself). */
interface RegistrationParams {
  username?: string;
  device_id?: string;
  initial_device_display_name?: string;
  inhibit_login?: boolean;
  refresh_token?: boolean;
}

function registrationParams(body: Record<string, unknown>): RegistrationParams {
  const p: RegistrationParams = {};
  const username = body.username;
  if (username !== undefined && username !== null) {
    if (typeof username !== "string") throw new MatrixError(400, "M_INVALID_USERNAME", "Invalid username");
    p.username = username;
  }
  p.device_id = optDeviceId(body);
  p.initial_device_display_name = optString(body, "initial_device_display_name");
  p.inhibit_login = optBool(body, "inhibit_login");
  p.refresh_token = optBool(body, "refresh_token");
  return JSON.parse(JSON.stringify(p)) as RegistrationParams; // drop undefined fields
}

registerRoutes.post("/register", async (c) => {
  const body = await readJsonObject(c);
  const config = getConfig(c.env);
  const ip = clientIp(c);
  await rateLimit(c, "registration", ip, { consume: false });

  const kind = c.req.query("kind") ?? "user";
  if (kind === "guest") throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled on this server");
  if (kind !== "user") throw new MatrixError(400, "M_UNRECOGNIZED", `Unknown account kind ${JSON.stringify(kind)}`);

  // Application services: passwordless users in their namespaces, no UIA (src/appservices/client.ts).
  if (body.type === "m.login.application_service") return c.json(await registerAppserviceUser(c, body));
  if (!config.registrationEnabled) throw forbidden("Registration has been disabled");

  // Parameters: from this request, or — when it carries nothing but `auth` — from the session's first request.
  const sessionId = uiaSessionIdOf(body);
  const stored = sessionId ? await loadUiaSession(c, sessionId) : undefined;
  const onlyAuth = Object.keys(body).every((k) => k === "auth");
  const params: RegistrationParams = onlyAuth && stored ? ((stored.data.params ?? {}) as RegistrationParams) : registrationParams(body);
  const password = body.password === undefined || body.password === null ? undefined : passwordOf(body);
  const registeredUserId = typeof stored?.data.registered_user_id === "string" ? stored.data.registered_user_id : undefined;

  // Username checks come before authentication, so that clients learn of a bad or taken name at once.
  let localpart: string | undefined;
  if (params.username !== undefined) {
    localpart = normaliseNewLocalpart(params.username, config.serverName);
    const userId = userIdFor(localpart, config.serverName);
    checkUserNotExclusive(c.env, userId); // application services' exclusive namespaces: 400 M_EXCLUSIVE
    if (registeredUserId !== undefined) {
      if (registeredUserId !== userId) throw new MatrixError(400, "M_INVALID_USERNAME", "A different user ID has already been registered for this session");
    } else if (await localpartTaken(c.env.DB, userId)) {
      throw userInUse();
    }
  }

  const session = await requireUia(c, body, {
    flows: registrationFlows(config),
    newSessionData: async () => ({
      params,
      ...(password !== undefined ? { password_hash: await hashPassword(password) } : {}),
    }),
  });

  const login = {
    deviceId: params.device_id,
    initialDisplayName: params.initial_device_display_name,
    refreshToken: params.refresh_token ?? false,
  };
  if (registeredUserId !== undefined) {
    // A retry after success: the account exists; hand out a login for it again.
    return c.json(registrationResult(c.env, registeredUserId, params.inhibit_login ? undefined : await createLogin(c.env, registeredUserId, login)));
  }

  const passwordHash = password !== undefined ? await hashPassword(password) : (session.data.password_hash as string | undefined);
  if (!passwordHash) throw missingParam("Missing params: password");

  await rateLimit(c, "registration", ip);
  const registrationToken = typeof session.data.registration_token === "string" ? session.data.registration_token : undefined;
  const result = await registerAccount(c.env, {
    localpart,
    passwordHash,
    inhibitLogin: params.inhibit_login ?? false,
    login,
  });
  // The token's pending use (this session) becomes a completed one: count it before the session stops holding it.
  if (registrationToken !== undefined) await completeRegistrationToken(c.env, registrationToken);
  await setUiaSessionData(c, session.id, { registered_user_id: result.user_id, password_hash: null });
  return c.json(result);
});

// Whether a registration token may be used now (clients check before starting registration).
registerRoutesV1.get("/register/m.login.registration_token/validity", async (c) => {
  if (!getConfig(c.env).registrationEnabled) throw forbidden("Registration has been disabled");
  const token = c.req.query("token");
  if (token === undefined) throw missingParam("Missing 'token' query parameter");
  await rateLimit(c, "registration_token", clientIp(c));
  const found = TOKEN_PATTERN.test(token) ? await getRegistrationToken(c.env, token) : null;
  return c.json({ valid: found !== null && isUsable(found) });
});

registerRoutes.get("/register/available", async (c) => {
  const config = getConfig(c.env);
  if (!config.registrationEnabled) throw forbidden("Registration has been disabled");
  await rateLimit(c, "registration_available", clientIp(c));
  const username = c.req.query("username");
  if (username === undefined) throw missingParam("Missing 'username' query parameter");
  const localpart = normaliseNewLocalpart(username, config.serverName);
  checkUserNotExclusive(c.env, userIdFor(localpart, config.serverName)); // application services: M_EXCLUSIVE
  if (await localpartTaken(c.env.DB, userIdFor(localpart, config.serverName))) throw userInUse();
  return c.json({ available: true });
});
