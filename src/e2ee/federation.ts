/**
 * Where E2EE meets federation.
 *
 * Outbound, implemented: to-device messages for remote users become `m.direct_to_device` EDUs queued in the
 * destination's DestinationDO (src/federation/destinations.ts), which sends and retries them.
 *
 * Inbound, implemented (called from src/federation/edu-hooks.ts): `m.direct_to_device` messages land in the
 * recipient's UserDO inbox (deduplicated by sender and message ID); `m.device_list_update` and
 * `m.signing_key_update` mark the remote user as changed for every local user sharing a room with them (members
 * from the D1 room_members directory), so their clients refetch the keys. No remote key cache is kept.
 *
 * FEDERATION HOOKS still to implement (they report the server as unreachable, which the client API shows in
 * `failures`; sendDeviceListUpdate does nothing):
 * - `queryRemoteKeys`: `POST /_matrix/federation/v1/user/keys/query` to `server` with `{device_keys}`; return
 *   its `device_keys`, `master_keys`, `self_signing_keys` (check that the user IDs belong to that server).
 * - `claimRemoteKeys`: `POST /_matrix/federation/v1/user/keys/claim` with `{one_time_keys}`.
 * - `sendDeviceListUpdate`: `m.device_list_update` EDUs (stream_id/prev_id per device, with the device keys or
 *   `deleted`) and `m.signing_key_update` for cross-signing changes, to the servers of the rooms `userId` is in;
 *   this needs the federation endpoints `/user/devices/{userId}` and `/user/keys/query` to answer resyncs.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { queueEdu } from "../federation/destinations";

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

/** Queues an `m.direct_to_device` EDU for `server` (sent and retried by its DestinationDO). */
export async function sendRemoteToDevice(env: Env, server: string, edu: DirectToDeviceEdu): Promise<void> {
  await queueEdu(env, server, "m.direct_to_device", edu);
}

/** Tells remote servers sharing a room with `userId` that their device list changed. */
export async function sendDeviceListUpdate(_env: Env, _userId: string, _servers: readonly string[]): Promise<void> {
  // Nothing to do until federation sends EDUs; local users are notified by the UserDO fan-out.
}

// ---------------------------------------------------------------------------------------------------------
// Inbound EDUs (src/federation/edu-hooks.ts has checked that senders belong to the origin and recipients to us)

export interface InboundToDevice {
  sender: string;
  type: string;
  messageId: string;
  recipient: string;
  /** A device ID or `*`. */
  deviceId: string;
  content: Record<string, unknown>;
}

/** Delivers one remote to-device message into the recipient's inbox. */
export async function receiveRemoteToDevice(env: Env, msg: InboundToDevice): Promise<void> {
  // Message IDs are chosen by the sending server: scope them by sender so they cannot collide with ours.
  const messageId = msg.messageId ? `${msg.sender}|${msg.messageId}` : crypto.randomUUID();
  await env.USERS.get(env.USERS.idFromName(msg.recipient)).receiveToDevice(msg.recipient, {
    sender: msg.sender,
    type: msg.type,
    message_id: messageId,
    messages: { [msg.deviceId]: JSON.stringify(msg.content) },
  });
}

/** Local users who share a joined room with `userId`, per the D1 room_members directory. */
async function localUsersSharingRoomWith(env: Env, userId: string): Promise<string[]> {
  const suffix = `:${getConfig(env).serverName}`;
  const { results } = await env.DB.prepare(
    `SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
     WHERE a.user_id = ? AND b.user_id != a.user_id`,
  )
    .bind(userId)
    .all<{ user_id: string }>();
  return results.map((r) => r.user_id).filter((u) => u.endsWith(suffix));
}

/** A remote user's devices or cross-signing keys changed: local users sharing a room refetch their keys. */
export async function remoteDeviceListChanged(env: Env, userId: string): Promise<void> {
  const peers = await localUsersSharingRoomWith(env, userId);
  await Promise.all(peers.map((p) => env.USERS.get(env.USERS.idFromName(p)).deviceListPeerChanged(userId)));
}
