/**
 * Where the E2EE endpoints reach remote servers. FEDERATION HOOKS: until the federation side implements these,
 * they report the remote server as unreachable (which the client API expresses as `failures`), and remote
 * to-device messages / device-list updates are dropped with a warning.
 *
 * What each must do once implemented (spec server-server API):
 * - `queryRemoteKeys`: `POST /_matrix/federation/v1/user/keys/query` to `server` with `{device_keys}`; return
 *   its `device_keys`, `master_keys`, `self_signing_keys` (verify what comes back: user IDs on that server).
 * - `claimRemoteKeys`: `POST /_matrix/federation/v1/user/keys/claim` with `{one_time_keys}`.
 * - `sendRemoteToDevice`: an `m.direct_to_device` EDU `{sender, type, message_id, messages}` to `server`.
 * - `sendDeviceListUpdate`: `m.device_list_update` (and `m.signing_key_update` for cross-signing changes) EDUs
 *   to the servers of the rooms `userId` is in.
 */
import type { Env } from "../env";

export class RemoteUnavailable extends Error {
  constructor(readonly server: string) {
    super(`Federation with ${server} is not available`);
    this.name = "RemoteUnavailable";
  }
}

export interface RemoteKeysQueryResult {
  device_keys?: Record<string, Record<string, unknown>>;
  master_keys?: Record<string, unknown>;
  self_signing_keys?: Record<string, unknown>;
}

export async function queryRemoteKeys(
  _env: Env,
  server: string,
  _deviceKeys: Record<string, string[]>,
  _timeoutMs: number,
): Promise<RemoteKeysQueryResult> {
  throw new RemoteUnavailable(server);
}

export async function claimRemoteKeys(
  _env: Env,
  server: string,
  _oneTimeKeys: Record<string, Record<string, string>>,
  _timeoutMs: number,
): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  throw new RemoteUnavailable(server);
}

export interface DirectToDeviceEdu {
  sender: string;
  type: string;
  message_id: string;
  /** recipient user → device ID or `*` → content */
  messages: Record<string, Record<string, unknown>>;
}

/** Returns false when there is no way to send (the message is then dropped). */
export async function sendRemoteToDevice(_env: Env, server: string, _edu: DirectToDeviceEdu): Promise<boolean> {
  console.warn(`to-device: no federation sender yet; dropping a message for ${server}`);
  return false;
}

/** Tells remote servers sharing a room with `userId` that their device list changed. */
export async function sendDeviceListUpdate(_env: Env, _userId: string, _servers: readonly string[]): Promise<void> {
  // Nothing to do until federation sends EDUs; local users are notified by the UserDO fan-out.
}
