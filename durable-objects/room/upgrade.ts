/**
 * Room upgrades, the old room's half (src/rooms/upgrade.ts drives the whole upgrade; docs/room-upgrades.md).
 *
 * - `snapshot`: what the upgrade copies from the old room's current state, read in one synchronous instant.
 * - `claim` / `finish`: the upgrade record kept in the room's `meta` table, so that two requests never create
 *   two replacement rooms. While an upgrade runs, the same user's repeated request waits for its answer and
 *   another user's is refused (as the reference server does with its response cache); a finished upgrade
 *   answers the same user's repeat with the same replacement room for UPGRADE_RECORD_MS. A record older than
 *   that whose upgrade never finished (the Worker died half-way) no longer blocks a new attempt.
 */
import type { JsonObject, PDU } from "../../src/protocol/events";
import { roomCreators } from "../../src/protocol/auth";
import type { Room } from "./room";

/** How long an upgrade record answers repeats (and how long an unfinished one blocks others). */
export const UPGRADE_RECORD_MS = 5 * 60_000;

/** State copied to the replacement room (Synapse's list, plus space parents/children and related groups). */
const COPIED_TYPES = [
  "m.room.join_rules",
  "m.room.name",
  "m.room.topic",
  "m.room.history_visibility",
  "m.room.guest_access",
  "m.room.avatar",
  "m.room.encryption",
  "m.room.server_acl",
  "m.room.power_levels",
  "m.room.related_groups",
];
/** State with any state key, copied unless emptied (a removed child or parent has empty content). */
const COPIED_KEYED_TYPES = ["m.space.child", "m.space.parent"];

export interface UpgradeSnapshot {
  room_version: string;
  /** The requester is joined and has the power to send m.room.tombstone. */
  allowed: boolean;
  create_content: JsonObject;
  /** The old room's creators (v12: the create event's sender and additional creators). */
  creators: string[];
  state: { type: string; state_key: string; content: JsonObject }[];
  bans: { user_id: string; content: JsonObject }[];
  canonical_alias: JsonObject | null;
}

interface UpgradeRecord {
  user: string;
  started_ts: number;
  replacement_room?: string;
  done_ts?: number;
}

export type UpgradeClaim =
  | { status: "claimed" }
  | { status: "done"; replacement_room: string }
  | { status: "in_progress"; same_user: boolean };

export class RoomUpgrade {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    private readonly canSendTombstone: (userId: string) => boolean,
  ) {}

  snapshot(userId: string): UpgradeSnapshot {
    const create = this.room.createEvent();
    const out: UpgradeSnapshot = {
      room_version: this.room.version.id,
      allowed: this.canSendTombstone(userId),
      create_content: create?.content ?? {},
      creators: [...roomCreators(create, this.room.version)],
      state: [],
      bans: [],
      canonical_alias: null,
    };
    const types = [...COPIED_TYPES, ...COPIED_KEYED_TYPES, "m.room.canonical_alias"];
    for (const r of this.sql.exec<{ type: string; state_key: string; json: string }>(
      `SELECT k.type, k.state_key, e.json FROM current_state c
       JOIN state_keys k ON k.id = c.key_id JOIN events e ON e.nid = c.event_nid
       WHERE k.type IN (${types.map(() => "?").join(",")}) ORDER BY k.type, k.state_key`,
      ...types,
    )) {
      const content = (JSON.parse(r.json) as PDU).content;
      if (r.type === "m.room.canonical_alias") {
        if (r.state_key === "") out.canonical_alias = content;
        continue;
      }
      if (COPIED_KEYED_TYPES.includes(r.type)) {
        if (Object.keys(content).length === 0) continue;
      } else if (r.state_key !== "") continue;
      out.state.push({ type: r.type, state_key: r.state_key, content });
    }
    for (const r of this.sql.exec<{ user_id: string; json: string }>(
      "SELECT m.user_id, e.json FROM members m JOIN events e ON e.nid = m.event_nid WHERE m.membership = 'ban' ORDER BY m.user_id",
    )) {
      out.bans.push({ user_id: r.user_id, content: (JSON.parse(r.json) as PDU).content });
    }
    return out;
  }

  private record(): UpgradeRecord | undefined {
    const v = this.room.meta("upgrade");
    return v === undefined ? undefined : (JSON.parse(v) as UpgradeRecord);
  }

  private write(r: UpgradeRecord | undefined): void {
    if (r === undefined) this.sql.exec("DELETE FROM meta WHERE key = 'upgrade'");
    else {
      this.sql.exec(
        "INSERT INTO meta (key, value) VALUES ('upgrade', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        JSON.stringify(r),
      );
    }
  }

  /** Claims the room for an upgrade by `userId`, or says why not (see the header). Call inside a transaction. */
  claim(userId: string, now: number): UpgradeClaim {
    const r = this.record();
    if (r) {
      if (r.done_ts === undefined && now - r.started_ts < UPGRADE_RECORD_MS) return { status: "in_progress", same_user: r.user === userId };
      if (r.done_ts !== undefined && r.replacement_room && r.user === userId && now - r.done_ts < UPGRADE_RECORD_MS) {
        return { status: "done", replacement_room: r.replacement_room };
      }
    }
    this.write({ user: userId, started_ts: now });
    return { status: "claimed" };
  }

  /** Ends `userId`'s upgrade: records the replacement room, or (null: it failed) forgets the claim. */
  finish(userId: string, replacementRoom: string | null, now: number): void {
    const r = this.record();
    if (!r || r.user !== userId || r.done_ts !== undefined) return;
    if (replacementRoom === null) this.write(undefined);
    else this.write({ ...r, replacement_room: replacementRoom, done_ts: now });
  }

  /** The replacement of a finished upgrade by `userId`, if one is recorded (waiting repeats poll this). */
  result(userId: string): { done: boolean; replacement_room: string | null } {
    const r = this.record();
    if (!r || r.user !== userId) return { done: true, replacement_room: null };
    return { done: r.done_ts !== undefined, replacement_room: r.replacement_room ?? null };
  }
}
