/**
 * Where E2EE meets federation.
 *
 * Outbound, implemented: to-device messages for remote users become `m.direct_to_device` EDUs queued in the
 * destination's DestinationDO (src/federation/destinations.ts), which sends and retries them.
 *
 * Inbound, implemented (called from src/federation/edu-hooks.ts): `m.direct_to_device` messages land in the
 * recipient's UserDO inbox (deduplicated by sender and message ID); `m.device_list_update` and
 * `m.signing_key_update` update the remote key cache (src/federation/remote-keys.ts) and mark the remote user as
 * changed for every local user sharing a room with them (members from the D1 room_members directory), so their
 * clients refetch the keys.
 *
 * Federation hooks, implemented in src/federation/remote-keys.ts (docs/federation.md, "E2EE across servers"):
 * `queryRemoteKeys` (tracked users from the cache in their server's DestinationDO, others from
 * `/user/devices` or `/user/keys/query`), `claimRemoteKeys` (`/user/keys/claim`), `sendDeviceListUpdate`
 * (`m.device_list_update` per device and `m.signing_key_update`). A failing remote shows up in `failures`.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { queueEdu } from "../federation/destinations";
import * as federationKeys from "../federation/remote-keys";

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
  env: Env,
  server: string,
  deviceKeys: Record<string, string[]>,
  timeoutMs: number,
): Promise<RemoteKeysQueryResult> {
  // Federation (src/federation/remote-keys.ts): tracked users from the cache, others from their server.
  try {
    return await federationKeys.queryRemoteKeys(env, server, deviceKeys, timeoutMs);
  } catch (e) {
    console.warn(`keys/query to ${server}: ${(e as Error).message}`);
    throw new RemoteUnavailable(server);
  }
}

export async function claimRemoteKeys(
  env: Env,
  server: string,
  oneTimeKeys: Record<string, Record<string, string>>,
  timeoutMs: number,
): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  // Federation (src/federation/remote-keys.ts): POST /user/keys/claim.
  try {
    return await federationKeys.claimRemoteKeys(env, server, oneTimeKeys, timeoutMs);
  } catch (e) {
    console.warn(`keys/claim to ${server}: ${(e as Error).message}`);
    throw new RemoteUnavailable(server);
  }
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
export async function sendDeviceListUpdate(env: Env, userId: string, servers: readonly string[]): Promise<void> {
  // Federation (src/federation/remote-keys.ts): m.device_list_update / m.signing_key_update EDUs.
  await federationKeys.sendDeviceListUpdate(env, userId, servers);
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

/** Federation: one inbound transaction's messages for one recipient, delivered in one UserDO call. */
export async function receiveRemoteToDeviceMany(env: Env, recipient: string, msgs: InboundToDevice[]): Promise<void> {
  await env.USERS.get(env.USERS.idFromName(recipient)).receiveToDeviceMany(
    recipient,
    msgs.map((msg) => ({
      sender: msg.sender,
      type: msg.type,
      message_id: msg.messageId ? `${msg.sender}|${msg.messageId}` : crypto.randomUUID(),
      messages: { [msg.deviceId]: JSON.stringify(msg.content) },
    })),
  );
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
