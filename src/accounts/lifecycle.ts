/**
 * Device deletion and account deactivation, with the hooks other modules extend.
 *
 * Order matters for retries: the cleanup hooks run first and the row that says "this device / account is live"
 * goes last, so a failure half-way leaves something the client can simply delete again. Every step is idempotent.
 */
import type { Env } from "../env";
import { deviceIdsOf, revokeAllTokens, revokeDeviceTokens } from "./store";
import { onE2eeDeviceDeleted } from "../e2ee/devices";
import { onRoomsUserDeactivated, onRoomsUserRegistered } from "../rooms/account-hooks";

/**
 * Runs when a device is deleted (DELETE /devices/{id}, /delete_devices, /logout, /logout/all, password change
 * with `logout_devices`, deactivation), before its row is removed. Revokes the device's access and refresh
 * tokens. EXTEND HERE: end-to-end keys, one-time keys, to-device inbox, device-list updates for the device.
 */
export async function onDeviceDeleted(env: Env, userId: string, deviceId: string): Promise<void> {
  await revokeDeviceTokens(env.DB, userId, deviceId);
  // E2EE and push (src/e2ee/devices.ts): keys, to-device inbox, a device-list change; the device's pushers.
  await onE2eeDeviceDeleted(env, userId, deviceId);
}

/** Deletes devices of `userId` (unknown IDs are ignored), running {@link onDeviceDeleted} for each. */
export async function deleteDevices(env: Env, userId: string, deviceIds: readonly string[]): Promise<void> {
  for (const deviceId of new Set(deviceIds)) {
    await onDeviceDeleted(env, userId, deviceId);
    await env.DB.prepare("DELETE FROM devices WHERE user_id = ? AND device_id = ?").bind(userId, deviceId).run();
  }
}

/** Deletes every device of `userId` except `keep` (if given). */
export async function deleteAllDevices(env: Env, userId: string, keep?: string): Promise<void> {
  const ids = (await deviceIdsOf(env.DB, userId)).filter((d) => d !== keep);
  await deleteDevices(env, userId, ids);
}

export interface RegistrationDetails {
  /** The display name asked for at registration (shared-secret registration's `displayname`). */
  displayname?: string;
}

/**
 * Runs after an account has been created (by /register or shared-secret registration). Nothing to do yet.
 * EXTEND HERE: the initial profile (Synapse sets the display name to `details.displayname` or the localpart),
 * default push rules, user directory.
 */
export async function onUserRegistered(env: Env, userId: string, details: RegistrationDetails = {}): Promise<void> {
  // Rooms (src/rooms/account-hooks.ts): the initial profile (display name: the one asked for, else the localpart).
  await onRoomsUserRegistered(env, userId, details.displayname);
}

export interface DeactivationOptions {
  /** The user asked for their content to be erased (`erase: true`). Not acted on yet. */
  erase?: boolean;
}

/**
 * Runs after an account has been marked deactivated (its tokens no longer authenticate from that moment on).
 * Currently it revokes every token and deletes every device (through {@link onDeviceDeleted}).
 * EXTEND HERE: leave every joined room and reject invites, clear the profile, remove from the user directory,
 * erase data when `opts.erase`.
 */
export async function onUserDeactivated(env: Env, userId: string, opts: DeactivationOptions = {}): Promise<void> {
  void opts;
  await revokeAllTokens(env.DB, userId);
  await deleteAllDevices(env, userId);
  // Rooms (src/rooms/account-hooks.ts): leave joined rooms, reject invites, rescind knocks; clear the profile.
  await onRoomsUserDeactivated(env, userId);
}

/**
 * Deactivates an account: marks it deactivated and forgets its password in one write (so it can neither
 * authenticate nor log in from then on), drops its pending UIA sessions, then runs {@link onUserDeactivated}.
 */
export async function deactivateAccount(env: Env, userId: string, opts: DeactivationOptions = {}): Promise<void> {
  await env.DB.batch([
    env.DB.prepare("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?").bind(userId),
    env.DB.prepare("DELETE FROM uia_sessions WHERE user_id = ?").bind(userId),
  ]);
  await onUserDeactivated(env, userId, opts);
}
