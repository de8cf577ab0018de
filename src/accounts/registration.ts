/**
 * Account creation shared by /register, /_synapse/admin/v1/register (and, later, application services): the
 * user row and, unless `inhibitLogin`, its first device and tokens, written in one D1 batch.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { insertUserStatement, isUniqueViolation, loginStatements, type IssuedLogin, type LoginRequest } from "./store";
import { onUserRegistered } from "./lifecycle";
import { generatedLocalpart, userIdFor, userInUse } from "./usernames";

export interface RegistrationRequest {
  /** Already validated (see normaliseNewLocalpart); a numeric one is generated when absent. */
  localpart?: string;
  passwordHash: string | null;
  admin?: boolean;
  userType?: string | null;
  appserviceId?: string | null;
  inhibitLogin?: boolean;
  login?: LoginRequest;
  /** Passed on to onUserRegistered. */
  displayname?: string;
}

/** The body of a successful /register (and of the login half of it). */
export type RegistrationResult = { user_id: string; home_server: string } & Partial<IssuedLogin>;

/** Creates the account (and logs it in unless `inhibitLogin`). Throws `M_USER_IN_USE` if the ID is taken. */
export async function registerAccount(env: Env, req: RegistrationRequest): Promise<RegistrationResult> {
  const serverName = getConfig(env).serverName;
  for (let attempt = 0; ; attempt++) {
    const localpart = req.localpart ?? generatedLocalpart();
    const userId = userIdFor(localpart, serverName);
    const now = Date.now();
    const statements = [
      insertUserStatement(
        env.DB,
        { userId, localpart, passwordHash: req.passwordHash, admin: req.admin, userType: req.userType, appserviceId: req.appserviceId },
        now,
      ),
    ];
    let issued: IssuedLogin | undefined;
    if (!req.inhibitLogin) {
      const login = loginStatements(env, userId, req.login ?? {}, now);
      statements.push(...login.statements);
      issued = login.issued;
    }
    try {
      await env.DB.batch(statements);
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
      if (req.localpart !== undefined || attempt >= 4) throw userInUse();
      continue; // a generated localpart collided: pick another
    }
    await onUserRegistered(env, userId, { displayname: req.displayname });
    return { user_id: userId, home_server: serverName, ...issued };
  }
}

/** A login for an existing account, shaped like a registration result. */
export function registrationResult(env: Env, userId: string, issued?: IssuedLogin): RegistrationResult {
  return { user_id: userId, home_server: getConfig(env).serverName, ...issued };
}
