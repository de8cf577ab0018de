/**
 * What E2EE and push do when a device is deleted (called from onDeviceDeleted in src/accounts/lifecycle.ts):
 * the device's identity, one-time and fallback keys, the signatures of and by it, and its to-device inbox are
 * removed; the user's device list changes (their own devices and everyone sharing a room refetch their keys);
 * pushers the device set are removed (as logging out removes them in Synapse).
 */
import type { Env } from "../env";
import { deleteDevicePushers } from "../push/pushers";

export async function onE2eeDeviceDeleted(env: Env, userId: string, deviceId: string): Promise<void> {
  await env.USERS.get(env.USERS.idFromName(userId)).deleteDeviceKeys(userId, deviceId);
  await deleteDevicePushers(env.DB, userId, deviceId);
}
