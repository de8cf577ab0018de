/**
 * The device lists of a remote server's users that we track, kept in that server's DestinationDO (one writer
 * per remote server; https://spec.matrix.org/v1.19/server-server-api/#device-management).
 *
 * A user is tracked once a local user shares a room with them and someone asked for their keys: the list comes
 * from `GET /user/devices/{userId}` (src/federation/remote-keys.ts). `m.device_list_update` EDUs then apply one
 * device change each when their `prev_id` names the change we hold; otherwise (a gap, or no `prev_id`) the
 * list is fetched again. `m.signing_key_update` replaces the cross-signing keys.
 */

export interface CachedDevice {
  keys?: Record<string, unknown>;
  device_display_name?: string;
}

export interface CachedDeviceList {
  stream_id: number;
  devices: Record<string, CachedDevice>;
  master_key?: Record<string, unknown>;
  self_signing_key?: Record<string, unknown>;
}

/** What an `m.device_list_update` did: applied, ignored (old or not tracked), or a resync is needed. */
export type DeviceListUpdateResult = "applied" | "stale" | "untracked" | "resync";

type Row = { user_id: string; stream_id: number; devices: string; master_key: string | null; self_signing_key: string | null };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export class RemoteDeviceCache {
  constructor(private readonly sql: SqlStorage) {}

  private row(userId: string): Row | undefined {
    return this.sql.exec<Row>("SELECT * FROM remote_device_lists WHERE user_id = ?", userId).toArray()[0];
  }

  private static toList(r: Row): CachedDeviceList {
    const list: CachedDeviceList = { stream_id: r.stream_id, devices: JSON.parse(r.devices) as Record<string, CachedDevice> };
    if (r.master_key) list.master_key = JSON.parse(r.master_key) as Record<string, unknown>;
    if (r.self_signing_key) list.self_signing_key = JSON.parse(r.self_signing_key) as Record<string, unknown>;
    return list;
  }

  get(userIds: readonly string[]): Record<string, CachedDeviceList> {
    const out: Record<string, CachedDeviceList> = {};
    for (const u of userIds) {
      const r = this.row(u);
      if (r) out[u] = RemoteDeviceCache.toList(r);
    }
    return out;
  }

  put(userId: string, list: CachedDeviceList): void {
    this.sql.exec(
      `INSERT INTO remote_device_lists (user_id, stream_id, devices, master_key, self_signing_key, updated_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, devices = excluded.devices, master_key = excluded.master_key,
         self_signing_key = excluded.self_signing_key, updated_ts = excluded.updated_ts`,
      userId,
      list.stream_id,
      JSON.stringify(list.devices),
      list.master_key ? JSON.stringify(list.master_key) : null,
      list.self_signing_key ? JSON.stringify(list.self_signing_key) : null,
      Date.now(),
    );
  }

  forget(userIds: readonly string[]): void {
    for (const u of userIds) this.sql.exec("DELETE FROM remote_device_lists WHERE user_id = ?", u);
  }

  /** Applies an `m.device_list_update` (content as received, checked for shape by the caller). */
  deviceListUpdate(userId: string, content: Record<string, unknown>): DeviceListUpdateResult {
    const r = this.row(userId);
    if (!r) return "untracked";
    const streamId = typeof content.stream_id === "number" ? content.stream_id : undefined;
    const prevIds = Array.isArray(content.prev_id) ? content.prev_id.filter((p): p is number => typeof p === "number") : [];
    const deviceId = typeof content.device_id === "string" ? content.device_id : undefined;
    if (streamId === undefined || deviceId === undefined) return "resync";
    if (streamId <= r.stream_id && !prevIds.includes(r.stream_id)) return "stale";
    if (prevIds.length === 0 || !prevIds.includes(r.stream_id)) return "resync";
    const list = RemoteDeviceCache.toList(r);
    if (content.deleted === true) delete list.devices[deviceId];
    else {
      const device: CachedDevice = { ...list.devices[deviceId] };
      if (isObject(content.keys)) device.keys = content.keys;
      if (typeof content.device_display_name === "string") device.device_display_name = content.device_display_name;
      list.devices[deviceId] = device;
    }
    list.stream_id = streamId;
    this.put(userId, list);
    return "applied";
  }

  /** Applies an `m.signing_key_update`; false when the user is not tracked. */
  signingKeyUpdate(userId: string, content: Record<string, unknown>): boolean {
    const r = this.row(userId);
    if (!r) return false;
    const list = RemoteDeviceCache.toList(r);
    if (isObject(content.master_key)) list.master_key = content.master_key;
    if (isObject(content.self_signing_key)) list.self_signing_key = content.self_signing_key;
    this.put(userId, list);
    return true;
  }
}
