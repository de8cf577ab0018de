/**
 * What an appservice user's UserDO hands to the AppServiceDO (MSC2409 to-device, MSC3202 device lists and key
 * counts). Positions, not payloads: the UserDO only says "something changed" (`watch`), and the AppServiceDO
 * reads everything after its cursor for the user with `userUpdates` (a UserDO RPC).
 *
 * Runs inside the UserDO over its storage (tables of durable-objects/user/keys-schema.ts), through the E2EE
 * engineer's exported readers, so the format is the one /sync uses.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import type { AppService } from "./registration";
import { deviceListChanges } from "../../durable-objects/user/device-lists";
import { oneTimeKeyCounts, unusedFallbackKeyTypes } from "../../durable-objects/user/keys";

export type AppserviceToDevice = {
  pos: number;
  device_id: string;
  sender: string;
  type: string;
  /** JSON text */
  content: string;
};

export interface AppserviceUserUpdates {
  /** The user stream position these updates reach (pass it back as `since`). */
  position: number;
  to_device: AppserviceToDevice[];
  device_lists: { changed: string[]; left: string[] };
  /** device ID → algorithm → unclaimed one-time keys (MSC3202; only when asked). */
  counts: Record<string, Record<string, number>> | null;
  /** device ID → algorithms with an unused fallback key (MSC3202; only when asked). */
  fallback: Record<string, string[]> | null;
}

const MAX_TO_DEVICE = 500;

/** Updates of the user after stream position `since`, up to `head`. Read-only. */
export function userUpdates(sql: SqlStorage, since: number, head: number, withCounts: boolean): AppserviceUserUpdates {
  const toDevice = sql
    .exec<AppserviceToDevice>(
      "SELECT pos, device_id, sender, type, content FROM to_device_inbox WHERE pos > ? AND pos <= ? ORDER BY pos LIMIT ?",
      since, head, MAX_TO_DEVICE,
    )
    .toArray();
  const position = toDevice.length === MAX_TO_DEVICE ? toDevice[toDevice.length - 1]!.pos : head;
  const updates: AppserviceUserUpdates = {
    position,
    to_device: toDevice,
    device_lists: deviceListChanges(sql, since, position),
    counts: null,
    fallback: null,
  };
  if (withCounts) {
    const devices = sql
      .exec<{ device_id: string }>(
        `SELECT device_id FROM e2e_device_keys UNION SELECT device_id FROM e2e_one_time_keys
         UNION SELECT device_id FROM e2e_fallback_keys`,
      )
      .toArray()
      .map((r) => r.device_id);
    updates.counts = {};
    updates.fallback = {};
    for (const d of devices) {
      updates.counts[d] = oneTimeKeyCounts(sql, d);
      updates.fallback[d] = unusedFallbackKeyTypes(sql, d);
    }
  }
  return updates;
}

/** The appservices that want updates about `userId` (to-device or MSC3202), if any. */
export function appservicesWatching(env: Env, userId: string): AppService[] {
  const registry = getConfig(env).appservices;
  if (registry.size === 0) return [];
  return registry.all.filter((as) => as.url !== null && (as.pushToDevice || as.msc3202) && registry.interestedInUser(as, userId));
}

/**
 * A cheap fingerprint of what an appservice could want from the user's storage: newest to-device message,
 * newest device-list record, and key counts. Compared before and after each UserDO write.
 */
export function userFingerprint(sql: SqlStorage): string {
  const r = sql
    .exec<{ a: number | null; b: number | null; c: number; d: number }>(
      `SELECT (SELECT max(pos) FROM to_device_inbox) AS a, (SELECT max(pos) FROM device_list_changes) AS b,
              (SELECT count(*) FROM e2e_one_time_keys) AS c, (SELECT count(*) FROM e2e_fallback_keys WHERE used = 0) AS d`,
    )
    .one();
  return `${r.a ?? 0}/${r.b ?? 0}/${r.c}/${r.d}`;
}

/**
 * The UserDO's hook (UserDO.write): remembers the fingerprint before a write and, if it changed, tells each
 * watching AppServiceDO to pull. Best effort: a notice lost to an eviction is made good by the user's next one
 * (the AppServiceDO always reads everything after its cursor).
 */
export class AppserviceWatch {
  private watchers: AppService[] | undefined;

  constructor(
    private readonly env: Env,
    private readonly sql: SqlStorage,
    private readonly userId: () => string | undefined,
  ) {}

  private get targets(): AppService[] {
    if (this.watchers === undefined) {
      const userId = this.userId();
      this.watchers = userId ? appservicesWatching(this.env, userId) : [];
    }
    return this.watchers;
  }

  /** Call before the write's transaction; undefined when nobody watches this user. */
  before(): string | undefined {
    return this.targets.length ? userFingerprint(this.sql) : undefined;
  }

  /** Call after the commit with what `before` returned. */
  after(fingerprint: string | undefined): void {
    if (fingerprint === undefined || userFingerprint(this.sql) === fingerprint) return;
    const userId = this.userId()!;
    for (const as of this.targets) {
      const stub = this.env.APPSERVICES.get(this.env.APPSERVICES.idFromName(as.id));
      stub.userAdvanced(as.id, userId).catch((e: unknown) => console.warn(`appservice ${as.id}: user notice failed: ${String(e)}`));
    }
  }
}
