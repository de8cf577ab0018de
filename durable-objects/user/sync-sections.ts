/**
 * Extension point for the top-level, per-device parts of a /sync response that live in the UserDO but are not
 * owned by the sync module: `to_device`, `device_lists`, `device_one_time_keys_count`,
 * `device_unused_fallback_key_types` (E2EE), and anything later.
 *
 * A section is a synchronous function over the UserDO's storage. It runs while the sync plan is computed,
 * inside one storage transaction, so it may also write (e.g. delete to-device messages the `since` token
 * acknowledges). Register sections in SYNC_SECTIONS below, one import per module.
 *
 * Stream contract: a module that records something a sync must report calls `stream.next()` inside its write
 * transaction (storing the returned position with the row) and lets the UserDO wake waiters afterwards
 * (`UserDO.write` does both). A section then reports rows with since < pos <= upTo.
 */

import { toDeviceSection } from "./to-device";
import { deviceListsSection } from "./device-lists";
import { oneTimeKeysSection } from "./keys";

export interface SyncSectionContext {
  sql: SqlStorage;
  userId: string;
  deviceId: string;
  /** The user stream position of the `since` token; null for an initial sync. */
  since: number | null;
  /** The position this response's `next_batch` names: report nothing newer. */
  upTo: number;
}

export interface SyncSectionResult {
  /** Top-level keys to merge into the /sync response (e.g. `{ to_device: { events: [...] } }`). */
  fields: Record<string, unknown>;
  /**
   * Whether the fields carry news for this sync (a long poll returns when any section has news). Counts that
   * are always present (one-time key counts) are not news.
   */
  hasNews: boolean;
}

export type SyncSection = (ctx: SyncSectionContext) => SyncSectionResult | undefined;

/** The registered sections, called in order. E2EE modules add theirs here. */
export const SYNC_SECTIONS: SyncSection[] = [
  // E2EE: to_device (acknowledged by the since token), device_lists, one-time key counts / unused fallback keys
  toDeviceSection,
  deviceListsSection,
  oneTimeKeysSection,
];
