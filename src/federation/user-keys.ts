/**
 * Our users' devices and keys as other servers see them (`/user/devices`, `/user/keys/query`, device-list
 * EDUs): live devices from D1, keys from each user's UserDO, never the user-signing key.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { serverNameOf } from "../protocol/identifiers";
import type { UserKeys } from "../../durable-objects/user/keys";

function userStub(env: Env, userId: string) {
  return env.USERS.get(env.USERS.idFromName(userId));
}

/** Live devices (ID → display name) of an existing, active local user; undefined when there is no such user. */
export async function localDevices(env: Env, userId: string): Promise<Map<string, string | null> | undefined> {
  if (serverNameOf(userId) !== getConfig(env).serverName) return undefined;
  const user = await env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(userId).first<{ deactivated: number }>();
  if (!user || user.deactivated) return undefined;
  const { results } = await env.DB.prepare("SELECT device_id, display_name FROM devices WHERE user_id = ?")
    .bind(userId)
    .all<{ device_id: string; display_name: string | null }>();
  return new Map(results.map((r) => [r.device_id, r.display_name]));
}

/** A local user's keys as another server sees them (no user-signing key), limited to live devices. */
export async function keysForServer(env: Env, userId: string, devices: Map<string, string | null>, deviceIds: string[] | null): Promise<UserKeys> {
  // The viewer is a server, never the user: the user-signing key stays private.
  const keys = JSON.parse(await userStub(env, userId).queryKeys(userId, "", deviceIds)) as UserKeys;
  for (const id of Object.keys(keys.device_keys)) if (!devices.has(id)) delete keys.device_keys[id];
  delete keys.user_signing_key;
  return keys;
}

