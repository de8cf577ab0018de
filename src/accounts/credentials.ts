/**
 * Password credentials as sent to /login and in `m.login.password` UIA stages: a user identifier
 * (https://spec.matrix.org/v1.19/client-server-api/#identifier-types) plus a password.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { badJson, forbidden, MatrixError } from "../http/errors";
import { rateLimit } from "../http/rate-limit";
import { MAX_PASSWORD_LENGTH, verifyPassword } from "./passwords";
import { findUserForLogin, type UserRow } from "./store";

/**
 * The user ID a login body names: `identifier` of type `m.id.user` (full ID or localpart), or the legacy
 * top-level `user`. Third-party identifiers can never match (this server stores no 3PIDs): 403, as the spec
 * asks for unknown 3PIDs.
 */
export function identifiedUserId(env: Env, body: Record<string, unknown>): string {
  const serverName = getConfig(env).serverName;
  let user: unknown;
  const identifier = body.identifier;
  if (identifier !== undefined) {
    if (typeof identifier !== "object" || identifier === null || Array.isArray(identifier)) {
      throw badJson("'identifier' must be an object");
    }
    const id = identifier as Record<string, unknown>;
    switch (id.type) {
      case "m.id.user":
        user = id.user;
        break;
      case "m.id.thirdparty":
      case "m.id.phone":
        throw forbidden("Third-party identifiers are not supported on this server");
      default:
        throw new MatrixError(400, "M_UNKNOWN", "Unknown identifier type");
    }
  } else if (body.user !== undefined) {
    user = body.user;
  } else if (body.medium !== undefined || body.address !== undefined) {
    throw forbidden("Third-party identifiers are not supported on this server");
  } else {
    throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'identifier'");
  }
  if (typeof user !== "string" || user === "") throw badJson("'identifier.user' must be a non-empty string");
  return user.startsWith("@") ? user : `@${user}:${serverName}`;
}

export function passwordOf(body: Record<string, unknown>, field = "password"): string {
  const password = body[field];
  if (password === undefined) throw new MatrixError(400, "M_MISSING_PARAM", `Missing '${field}'`);
  if (typeof password !== "string") throw badJson(`'${field}' must be a string`);
  if (password.length > MAX_PASSWORD_LENGTH) throw new MatrixError(400, "M_INVALID_PARAM", "Password too long");
  return password;
}

export const wrongCredentials = () => forbidden("Invalid username or password");

/**
 * Checks a password for the account `userId` names. Failed attempts are rate limited per account
 * (`login_failed`); unknown accounts take as long as wrong passwords. Returns the account, or null when the
 * user or password is wrong (or the account has no password, e.g. after deactivation).
 */
export async function checkPassword(env: Env, userId: string, password: string): Promise<UserRow | null> {
  const key = userId.toLowerCase();
  await rateLimit({ env }, "login_failed", key, { consume: false });
  const user = await findUserForLogin(env.DB, userId);
  const ok = await verifyPassword(password, user?.password_hash);
  if (!ok || !user) {
    await rateLimit({ env }, "login_failed", key).catch(() => {});
    return null;
  }
  return user;
}
