/**
 * Client-API hooks for application services, called from the account and room endpoints:
 * - `/register` and `/login` with `m.login.application_service` (spec: "Server admin style permissions");
 * - exclusive namespaces against everyone else (registration and alias creation: 400 `M_EXCLUSIVE`);
 * - user and alias queries: a namespaced user or alias that does not exist is asked about
 *   (`GET {url}/_matrix/app/v1/users/{userId}` / `rooms/{alias}`); a 200 means it exists now.
 */
import type { AppContext, Requester } from "../http/app";
import type { Env } from "../env";
import { getConfig } from "../config";
import { MatrixError, missingToken, unknownToken } from "../http/errors";
import { isStrictUserLocalpart, MAX_ID_BYTES } from "../protocol/identifiers";
import { utf8ByteLength } from "../protocol/canonical-json";
import { optBool, optDeviceId, optString } from "../accounts/body";
import { accessTokenOf } from "../http/auth";
import { createLogin, getUser } from "../accounts/store";
import { registerAccount, registrationResult, type RegistrationResult } from "../accounts/registration";
import { userIdFor } from "../accounts/usernames";
import { requestingAppservice } from "./auth";
import type { AppService } from "./registration";
import { callAppservice } from "./transport";

const exclusive = (msg: string) => new MatrixError(400, "M_EXCLUSIVE", msg);

/** The appservice of an `m.login.application_service` request, or 401 as the spec asks (no / unknown token). */
function appserviceOf(c: AppContext): AppService {
  const as = requestingAppservice(c);
  if (as) return as;
  if (!accessTokenOf(c)) throw missingToken();
  throw unknownToken();
}

/** A localpart an appservice asks for: lower-cased, the user ID grammar, length (leading `_` is fine here). */
function appserviceLocalpart(username: unknown, serverName: string): string {
  if (typeof username !== "string" || username === "") throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'username'");
  const localpart = username.toLowerCase();
  if (!isStrictUserLocalpart(localpart)) throw new MatrixError(400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'");
  if (utf8ByteLength(userIdFor(localpart, serverName)) > MAX_ID_BYTES) {
    throw new MatrixError(400, "M_INVALID_USERNAME", `User ID may not be longer than ${MAX_ID_BYTES} characters`);
  }
  return localpart;
}

/**
 * POST /register with `type: m.login.application_service`: creates a passwordless user in the appservice's
 * user namespace (no UIA, no rate limit, works with open registration off). 400 `M_EXCLUSIVE` outside its
 * namespaces or inside another appservice's exclusive one; `M_USER_IN_USE` if it exists.
 */
export async function registerAppserviceUser(c: AppContext, body: Record<string, unknown>): Promise<RegistrationResult> {
  const as = appserviceOf(c);
  const registry = getConfig(c.env).appservices;
  const localpart = appserviceLocalpart(body.username ?? body.user, registry.serverName);
  const userId = userIdFor(localpart, registry.serverName);
  if (!registry.controlsUser(as, userId)) throw exclusive("Invalid user localpart for this application service.");
  if (registry.exclusiveUserOwner(userId, as)) throw exclusive("This user ID is reserved by another application service.");
  return registerAccount(c.env, {
    localpart,
    passwordHash: null,
    appserviceId: as.id,
    inhibitLogin: optBool(body, "inhibit_login") ?? false,
    login: {
      deviceId: optDeviceId(body),
      initialDisplayName: optString(body, "initial_device_display_name"),
      refreshToken: optBool(body, "refresh_token") ?? false,
    },
  });
}

/**
 * POST /login with `type: m.login.application_service`: a login for an existing user the appservice controls.
 * Outside its namespaces: 403 `M_EXCLUSIVE` (spec); an unknown user: 403 `M_FORBIDDEN`.
 */
export async function loginAppserviceUser(c: AppContext, body: Record<string, unknown>): Promise<RegistrationResult> {
  const as = appserviceOf(c);
  const registry = getConfig(c.env).appservices;
  const identifier = body.identifier;
  let user: unknown = body.user;
  if (identifier !== undefined) {
    if (typeof identifier !== "object" || identifier === null) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid identifier in login submission");
    const id = identifier as Record<string, unknown>;
    if (id.type !== "m.id.user") throw new MatrixError(400, "M_UNKNOWN", "Unknown login identifier type");
    user = id.user;
  }
  if (typeof user !== "string" || user === "") throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user in identifier");
  const userId = user.startsWith("@") ? user : userIdFor(user.toLowerCase(), registry.serverName);
  if (!registry.controlsUser(as, userId)) throw new MatrixError(403, "M_EXCLUSIVE", "This user is not in the application service's namespaces");
  const row = await getUser(c.env.DB, userId);
  if (!row) throw new MatrixError(403, "M_FORBIDDEN", "Invalid login");
  if (row.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  const issued = await createLogin(c.env, userId, {
    deviceId: optDeviceId(body),
    initialDisplayName: optString(body, "initial_device_display_name"),
    refreshToken: optBool(body, "refresh_token") ?? false,
  });
  return registrationResult(c.env, userId, issued);
}

/** Ordinary registration (and /register/available): 400 `M_EXCLUSIVE` inside an appservice's exclusive namespace. */
export function checkUserNotExclusive(env: Env, userId: string): void {
  if (getConfig(env).appservices.exclusiveUserOwner(userId)) throw exclusive("This user ID is reserved by an application service.");
}

/**
 * Creating an alias (PUT /directory/room/{alias}, createRoom's room_alias_name): an appservice may create aliases
 * in its alias namespaces only, anyone else not in an exclusive one; 400 `M_EXCLUSIVE` otherwise (as Synapse).
 */
export function checkAliasCreation(env: Env, requester: Requester | undefined, alias: string): void {
  const registry = getConfig(env).appservices;
  const as = requester?.appserviceId === undefined ? undefined : registry.get(requester.appserviceId);
  if (as) {
    if (!registry.aliasInNamespace(as, alias)) throw exclusive("This application service has not reserved this kind of alias.");
    return;
  }
  if (registry.exclusiveAliasOwner(alias)) throw exclusive("This alias is reserved by an application service.");
}

/** How long a user or alias query may take (the client waits meanwhile). */
const QUERY_TIMEOUT_MS = 10_000;

async function query(as: AppService, path: string): Promise<boolean> {
  try {
    return (await callAppservice(as, { method: "GET", path, timeoutMs: QUERY_TIMEOUT_MS })).ok;
  } catch (e) {
    console.warn(`appservice ${as.id}: query ${path} failed: ${String((e as Error)?.message ?? e)}`);
    return false;
  }
}

/**
 * A local user ID that does not exist was looked up (profile, invite): asks the appservices whose user
 * namespaces cover it. True if one answered 200 (it has created the user by then).
 */
export async function queryUserFromAppservices(env: Env, userId: string): Promise<boolean> {
  for (const as of getConfig(env).appservices.userQueryTargets(userId)) {
    if (await query(as, `/_matrix/app/v1/users/${encodeURIComponent(userId)}`)) return true;
  }
  return false;
}

/** A local alias that does not exist was looked up: asks the appservices whose alias namespaces cover it. */
export async function queryAliasFromAppservices(env: Env, alias: string): Promise<boolean> {
  for (const as of getConfig(env).appservices.aliasQueryTargets(alias)) {
    if (await query(as, `/_matrix/app/v1/rooms/${encodeURIComponent(alias)}`)) return true;
  }
  return false;
}
