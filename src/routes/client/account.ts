/**
 * Account management: GET /account/whoami, POST /account/password, POST /account/deactivate, and the 3PID
 * endpoints. https://spec.matrix.org/v1.19/client-server-api/#account-management
 *
 * Password change and deactivation need an access token plus user-interactive auth with the current password
 * (application services skip UIA for deactivation, as in Synapse). There is no password reset by email.
 *
 * Third-party identifiers are not supported: GET /account/3pid lists none, /account/3pid (POST), /add, /delete,
 * /bind and /unbind answer 403 `M_FORBIDDEN`, and the `requestToken` endpoints do not exist (404).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { forbidden, missingParam } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { requireAuth } from "../../http/auth";
import { LOGIN_PASSWORD, requireUia, setUiaSessionData, type UiaOptions } from "../../http/uia";
import { optBool, optString } from "../../accounts/body";
import { passwordOf } from "../../accounts/credentials";
import { hashPassword } from "../../accounts/passwords";
import { getUser } from "../../accounts/store";
import { deactivateAccount, deleteAllDevices } from "../../accounts/lifecycle";

export const accountRoutes = new Hono<AppEnv>();

/** UIA for an authenticated user: their password, if they have one (otherwise no flow can be completed). */
export async function reauthOptions(c: AppContext, userId: string): Promise<UiaOptions> {
  const user = await getUser(c.env.DB, userId);
  return { flows: user?.password_hash ? [[LOGIN_PASSWORD]] : [], userId };
}

accountRoutes.get("/account/whoami", requireAuth, (c) => {
  const r = c.get("requester");
  return c.json({ user_id: r.userId, ...(r.deviceId ? { device_id: r.deviceId } : {}), is_guest: r.isGuest });
});

accountRoutes.post("/account/password", requireAuth, async (c) => {
  const body = await readJsonObject(c);
  const { userId, deviceId } = c.get("requester");
  const newPassword = body.new_password === undefined || body.new_password === null ? undefined : passwordOf(body, "new_password");
  const logoutDevices = optBool(body, "logout_devices") ?? true;

  const session = await requireUia(c, body, {
    ...(await reauthOptions(c, userId)),
    newSessionData: async () => (newPassword !== undefined ? { password_hash: await hashPassword(newPassword) } : {}),
  });
  const hash = newPassword !== undefined ? await hashPassword(newPassword) : (session.data.password_hash as string | undefined);
  if (!hash) throw missingParam("Missing params: new_password");

  await c.env.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(hash, userId).run();
  await setUiaSessionData(c, session.id, { password_hash: null });
  // The requesting device keeps its session; the others are logged out unless the client asked otherwise.
  if (logoutDevices) await deleteAllDevices(c.env, userId, deviceId);
  return c.json({});
});

accountRoutes.post("/account/deactivate", requireAuth, async (c) => {
  const body = await readJsonObject(c);
  const requester = c.get("requester");
  const erase = optBool(body, "erase") ?? false;
  optString(body, "id_server");
  if (!requester.appserviceId) await requireUia(c, body, await reauthOptions(c, requester.userId));
  await deactivateAccount(c.env, requester.userId, { erase });
  // No 3PIDs are ever bound, so there is nothing to unbind.
  return c.json({ id_server_unbind_result: "success" });
});

// --- Third-party identifiers: not supported ---

accountRoutes.get("/account/3pid", requireAuth, (c) => c.json({ threepids: [] }));

const threepidsDisabled = () => forbidden("Third-party identifiers are not supported on this server");
for (const path of ["/account/3pid", "/account/3pid/add", "/account/3pid/delete", "/account/3pid/bind", "/account/3pid/unbind"]) {
  accountRoutes.post(path, requireAuth, async (c) => {
    await readJsonObject(c);
    throw threepidsDisabled();
  });
}
