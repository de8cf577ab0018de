/**
 * Device-list changes as one user sees them: "user X changed their devices or cross-signing keys" (`changed`)
 * and "you no longer share a room with X" (`left`). Each record takes a user stream position, so /sync reports
 * `device_lists` since its token and `/keys/changes` between two tokens.
 *
 * A user's own changes are recorded in their own view (their other devices must refetch their keys) and fanned
 * out to the users they share a room with through the E2EE outbox (keys-outbox.ts).
 */
import type { UserStream } from "./stream";
import type { SyncSection } from "./sync-sections";

export type DeviceListKind = "changed" | "left";

export interface DeviceListDelta {
  changed: string[];
  left: string[];
}

export class DeviceLists {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {}

  /** Records in this user's view that `userId` changed (or left). Call inside a transaction. */
  record(userId: string, kind: DeviceListKind): number {
    const pos = this.stream.next();
    this.sql.exec("INSERT INTO device_list_changes (pos, user_id, kind) VALUES (?, ?, ?)", pos, userId, kind);
    return pos;
  }

  /** Changes in (since, upTo]; a user recorded several times counts with their latest kind. */
  between(since: number, upTo: number): DeviceListDelta {
    return deviceListChanges(this.sql, since, upTo);
  }
}

/**
 * The device-list delta between two user stream positions: users whose latest record in (since, upTo] is
 * `changed`, and those whose latest is `left`. Sorted for stable output.
 */
export function deviceListChanges(sql: SqlStorage, since: number, upTo: number): DeviceListDelta {
  const rows = sql
    // SQLite takes bare columns from the row that holds max(pos): each user's latest record in the range.
    .exec<{ user_id: string; kind: string; pos: number }>(
      `SELECT user_id, kind, max(pos) AS pos FROM device_list_changes WHERE pos > ? AND pos <= ?
       GROUP BY user_id ORDER BY user_id`,
      since, upTo,
    )
    .toArray();
  return {
    changed: rows.filter((r) => r.kind === "changed").map((r) => r.user_id),
    left: rows.filter((r) => r.kind === "left").map((r) => r.user_id),
  };
}

/** The `device_lists` field of an incremental /sync (none on an initial sync, as the spec allows). */
export const deviceListsSection: SyncSection = ({ sql, since, upTo }) => {
  if (since === null) return undefined;
  const delta = deviceListChanges(sql, since, upTo);
  const hasNews = delta.changed.length > 0 || delta.left.length > 0;
  return { fields: { device_lists: delta }, hasNews };
};
