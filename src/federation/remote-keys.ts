/**
 * End-to-end encryption across servers (https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption):
 * what `src/e2ee/federation.ts` delegates to.
 *
 * - Key queries for remote users: a tracked user (see below) is answered from the cache in their server's
 *   DestinationDO; an untracked one who shares a room with a local user is fetched with `/user/devices` and
 *   becomes tracked; anyone else is asked with `/user/keys/query` and not remembered.
 * - Device-list EDUs from other servers keep the cache current: an `m.device_list_update` whose `prev_id` names
 *   the change we hold is applied; otherwise the list is fetched again (`/user/devices`). `m.signing_key_update`
 *   replaces the cross-signing keys. Then local users sharing a room are told (`device_lists.changed`).
 * - One-time key claims go straight to the user's server (`/user/keys/claim`).
 * - Our users' device-list changes go out as `m.device_list_update` EDUs (one per device, with its keys) and
 *   `m.signing_key_update`, with `stream_id` = the user's stream position and no `prev_id`: receivers resync from
 *   `/user/devices/{userId}`, which reports the same position (src/routes/federation/user.ts).
 *
 * Not done: tracking stops only when a list is forgotten explicitly (nothing notices yet that no local user shares
 * a room with someone any more; the spec allows keeping the list while updates keep coming).
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { isValidUserId, serverNameOf } from "../protocol/identifiers";
import type { CachedDevice, CachedDeviceList } from "../../durable-objects/destination/device-cache";
import { FederationClient, seg } from "./client";
import { destinationStub, queueEduToServers } from "./destinations";
import { keysForServer, localDevices } from "./user-keys";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export interface RemoteKeysResult {
  device_keys: Record<string, Record<string, Record<string, unknown>>>;
  master_keys: Record<string, unknown>;
  self_signing_keys: Record<string, unknown>;
}

/** Whether a local user shares a joined room with `userId` (D1 room directory). */
export async function sharesRoomWithLocalUser(env: Env, userId: string): Promise<boolean> {
  const suffix = `%:${getConfig(env).serverName.replace(/[\\%_]/g, (ch) => `\\${ch}`)}`;
  const row = await env.DB.prepare(
    `SELECT 1 AS x FROM room_members a JOIN room_members b ON a.room_id = b.room_id
     WHERE a.user_id = ? AND b.user_id LIKE ? ESCAPE '\\' LIMIT 1`,
  )
    .bind(userId, suffix)
    .first();
  return row !== null;
}

/** A `/user/devices/{userId}` answer as a cache entry; undefined when malformed or about someone else. */
export function parseUserDevices(res: unknown, userId: string): CachedDeviceList | undefined {
  if (!isObject(res) || res.user_id !== userId || typeof res.stream_id !== "number" || !Array.isArray(res.devices)) return undefined;
  const devices: Record<string, CachedDevice> = {};
  for (const d of res.devices.slice(0, 1000)) {
    if (!isObject(d) || typeof d.device_id !== "string") continue;
    const device: CachedDevice = {};
    if (isObject(d.keys) && d.keys.user_id === userId && d.keys.device_id === d.device_id) device.keys = d.keys;
    if (typeof d.device_display_name === "string") device.device_display_name = d.device_display_name;
    devices[d.device_id] = device;
  }
  const list: CachedDeviceList = { stream_id: res.stream_id, devices };
  if (isObject(res.master_key) && res.master_key.user_id === userId) list.master_key = res.master_key;
  if (isObject(res.self_signing_key) && res.self_signing_key.user_id === userId) list.self_signing_key = res.self_signing_key;
  return list;
}

/** Fetches a remote user's device list (`/user/devices`) and makes them tracked. */
export async function resyncDeviceList(env: Env, userId: string, timeoutMs = 10_000): Promise<CachedDeviceList | undefined> {
  const server = serverNameOf(userId);
  const res = await new FederationClient(env).request<unknown>(server, "GET", `/_matrix/federation/v1/user/devices/${seg(userId)}`, undefined, { timeoutMs });
  const list = parseUserDevices(res, userId);
  if (list) await destinationStub(env, server).storeDeviceList(userId, JSON.stringify(list));
  return list;
}

/** `POST /keys/query` for users of `server` (the hook of src/e2ee/federation.ts). */
export async function queryRemoteKeys(env: Env, server: string, deviceKeys: Record<string, string[]>, timeoutMs: number): Promise<RemoteKeysResult> {
  const users = Object.keys(deviceKeys).filter((u) => isValidUserId(u) && serverNameOf(u) === server);
  const lists = JSON.parse(await destinationStub(env, server).cachedDeviceLists(users)) as Record<string, CachedDeviceList>;
  const untracked = users.filter((u) => !lists[u]);
  const direct: string[] = [];
  await Promise.all(
    untracked.map(async (u) => {
      if (!(await sharesRoomWithLocalUser(env, u))) {
        direct.push(u);
        return;
      }
      const list = await resyncDeviceList(env, u, timeoutMs);
      if (list) lists[u] = list;
      else direct.push(u);
    }),
  );
  const out: RemoteKeysResult = { device_keys: {}, master_keys: {}, self_signing_keys: {} };
  for (const [u, list] of Object.entries(lists)) {
    const wanted = deviceKeys[u] ?? [];
    const devices: Record<string, Record<string, unknown>> = {};
    for (const [id, d] of Object.entries(list.devices)) {
      if (!d.keys || (wanted.length > 0 && !wanted.includes(id))) continue;
      devices[id] = { ...d.keys, unsigned: d.device_display_name ? { device_display_name: d.device_display_name } : {} };
    }
    out.device_keys[u] = devices;
    if (list.master_key) out.master_keys[u] = list.master_key;
    if (list.self_signing_key) out.self_signing_keys[u] = list.self_signing_key;
  }
  if (direct.length > 0) {
    const res = await new FederationClient(env).request<Record<string, unknown>>(
      server,
      "POST",
      "/_matrix/federation/v1/user/keys/query",
      { device_keys: Object.fromEntries(direct.map((u) => [u, deviceKeys[u] ?? []])) },
      { timeoutMs },
    );
    for (const u of direct) {
      const dk = isObject(res.device_keys) ? res.device_keys[u] : undefined;
      if (isObject(dk)) {
        const devices: Record<string, Record<string, unknown>> = {};
        for (const [id, k] of Object.entries(dk)) if (isObject(k) && k.user_id === u && k.device_id === id) devices[id] = k;
        out.device_keys[u] = devices;
      }
      const mk = isObject(res.master_keys) ? res.master_keys[u] : undefined;
      if (isObject(mk) && mk.user_id === u) out.master_keys[u] = mk;
      const ssk = isObject(res.self_signing_keys) ? res.self_signing_keys[u] : undefined;
      if (isObject(ssk) && ssk.user_id === u) out.self_signing_keys[u] = ssk;
    }
  }
  return out;
}

/** `POST /keys/claim` for users of `server`. */
export async function claimRemoteKeys(
  env: Env,
  server: string,
  oneTimeKeys: Record<string, Record<string, string>>,
  timeoutMs: number,
): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  const res = await new FederationClient(env).request<{ one_time_keys?: unknown }>(
    server,
    "POST",
    "/_matrix/federation/v1/user/keys/claim",
    { one_time_keys: oneTimeKeys },
    { timeoutMs },
  );
  const out: Record<string, Record<string, Record<string, unknown>>> = {};
  if (!isObject(res.one_time_keys)) return out;
  for (const [u, byDevice] of Object.entries(res.one_time_keys)) {
    if (!isValidUserId(u) || serverNameOf(u) !== server || !isObject(byDevice) || !oneTimeKeys[u]) continue;
    for (const [device, keys] of Object.entries(byDevice)) {
      if (isObject(keys) && device in oneTimeKeys[u]!) (out[u] ??= {})[device] = keys;
    }
  }
  return out;
}

// -------------------------------------------------------------------------------------------------------------
// Inbound device-list EDUs (src/federation/edu-hooks.ts)

/** Applies an `m.device_list_update` to the cache (fetching the list again on a gap). */
export async function applyDeviceListUpdate(env: Env, origin: string, userId: string, content: Record<string, unknown>): Promise<void> {
  const result = await destinationStub(env, origin).deviceListUpdate(userId, JSON.stringify(content));
  if (result === "resync") await resyncDeviceList(env, userId);
}

/** Applies an `m.signing_key_update` to the cache. */
export async function applySigningKeyUpdate(env: Env, origin: string, userId: string, content: Record<string, unknown>): Promise<void> {
  await destinationStub(env, origin).signingKeyUpdate(userId, JSON.stringify(content));
}

// -------------------------------------------------------------------------------------------------------------
// Outbound

/** Tells `servers` that `userId`'s devices or cross-signing keys changed. */
export async function sendDeviceListUpdate(env: Env, userId: string, servers: readonly string[]): Promise<void> {
  const devices = await localDevices(env, userId);
  if (!devices || servers.length === 0) return;
  const keys = await keysForServer(env, userId, devices, null);
  const streamId = await env.USERS.get(env.USERS.idFromName(userId)).streamHead();
  const updates: Record<string, unknown>[] = [...devices].map(([deviceId, name]) => ({
    user_id: userId,
    device_id: deviceId,
    stream_id: streamId,
    prev_id: [], // no chain kept: receivers resync from /user/devices
    deleted: false,
    ...(name ? { device_display_name: name } : {}),
    ...(keys.device_keys[deviceId] ? { keys: keys.device_keys[deviceId] } : {}),
  }));
  // The last device went: an update about none of them still makes the receivers resync (to an empty list).
  if (updates.length === 0) updates.push({ user_id: userId, device_id: "", stream_id: streamId, prev_id: [], deleted: true });
  for (const u of updates) await queueEduToServers(env, servers, "m.device_list_update", u, `device_list:${userId}:${String(u.device_id)}`);
  if (keys.master_key || keys.self_signing_key) {
    await queueEduToServers(
      env,
      servers,
      "m.signing_key_update",
      { user_id: userId, ...(keys.master_key ? { master_key: keys.master_key } : {}), ...(keys.self_signing_key ? { self_signing_key: keys.self_signing_key } : {}) },
      `signing_key:${userId}`,
    );
  }
}
