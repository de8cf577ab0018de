/**
 * The UserDO's half of a /sync: what changed for the user between the `since` token and now, expressed as
 * positions. The Worker then reads each listed room's events from its RoomDO ("catch up from the source").
 *
 * Runs synchronously inside one storage transaction, so the plan is a consistent snapshot: `next` is the
 * stream head and every room's `to` is the room position the user stream had reached at `next`.
 */
import type { AccountData } from "./account-data";
import type { Membership, UserRooms } from "./rooms";
import { SYNC_SECTIONS } from "./sync-sections";
import { PUSH_RULES_ACCOUNT_DATA, pushRuleset, pushRulesContent } from "./push-rules";
import { IGNORED_USER_LIST, ignoredUsersOf } from "../../src/rooms/ignored-users";
import type { PlannedPresence } from "./presence";

export interface SyncPlanRequest {
  userId: string;
  deviceId: string;
  /** User stream position of the since token; null for an initial sync. */
  since: number | null;
  fullState: boolean;
  includeLeave: boolean;
  /**
   * Faster joins: whether the sync lazy-loads members. An eager sync never saw a room while it was partially
   * stated, so a room that became fully stated since the token starts afresh (full state), as if newly joined.
   */
  lazyMembers?: boolean;
  /** Presence: the sync's `set_presence` (online when absent; offline: the sync does not touch presence). */
  setPresence?: string;
}

export interface PlannedRoom {
  roomId: string;
  membership: Membership;
  /**
   * The room position the client already has (exclusive start of the timeline), or null when the client
   * knows nothing of the room as a member (initial sync, newly joined, full state of a new membership):
   * then the timeline is the latest events and the state is complete.
   */
  from: number | null;
  /** The room position of `next` (inclusive end of the timeline). */
  to: number;
  /** Ephemeral (typing/receipts) positions: (ephFrom, ephTo]. */
  ephFrom: number;
  ephTo: number;
  /** Room account data that changed: [type, JSON content]. */
  accountData: [string, string][];
}

export interface SyncPlan {
  next: number;
  rooms: PlannedRoom[];
  /** Global account data that changed: [type, JSON content]. */
  accountData: [string, string][];
  /** Fields from the registered sync sections (to_device, device_lists, …). */
  sections: Record<string, unknown>;
  /** Whether a section reported news. */
  sectionNews: boolean;
  /**
   * The user's push ruleset (JSON text of a Ruleset) when the plan lists a joined room: the rooms need it for
   * notification counts, and carrying it here spares the sync a second call to the UserDO.
   */
  pushRules?: string;
  /** Presence (presence.ts): absent when presence is disabled. */
  presence?: PlannedPresence;
  /** Users the user ignores (`m.ignored_user_list`): their events are filtered out (src/rooms/ignored-users.ts). */
  ignoredUsers?: string[];
}

const MEMBER_LIKE = new Set<Membership>(["join", "invite", "knock"]);

export function planSync(
  sql: SqlStorage,
  rooms: UserRooms,
  accountData: AccountData,
  head: number,
  req: SyncPlanRequest,
): SyncPlan {
  const since = req.since === null ? null : Math.min(req.since, head);

  const roomData = new Map<string, [string, string][]>();
  const globalData: [string, string][] = [];
  for (const row of accountData.changed(since, head)) {
    if (row.room_id === "") globalData.push([row.type, row.content]);
    else {
      const list = roomData.get(row.room_id) ?? [];
      list.push([row.type, row.content]);
      roomData.set(row.room_id, list);
    }
  }
  // Push rules (push-rules.ts): an initial sync shows the default ruleset to a user who never changed a rule.
  if (since === null && !globalData.some(([type]) => type === PUSH_RULES_ACCOUNT_DATA)) {
    globalData.push([PUSH_RULES_ACCOUNT_DATA, pushRulesContent(sql, req.userId)]);
  }

  const planned: PlannedRoom[] = [];
  const candidates = since === null || req.fullState ? rooms.all() : rooms.changedSince(since);
  const seen = new Set(candidates.map((r) => r.room_id));
  // Rooms whose only change is their account data.
  for (const roomId of roomData.keys()) {
    if (seen.has(roomId)) continue;
    const row = rooms.get(roomId);
    if (row) candidates.push(row);
  }

  // A token older than the pruned history cannot tell what the user had seen of a room: leaves are then
  // reported whenever they may be news (see UserRooms.prune).
  const stale = since !== null && since < rooms.prunedBefore;
  for (const row of candidates) {
    const entry: PlannedRoom = {
      roomId: row.room_id,
      membership: row.membership,
      from: null,
      to: row.room_pos,
      ephFrom: since === null ? 0 : rooms.ephemeralAt(row.room_id, since),
      ephTo: row.eph_pos,
      accountData: roomData.get(row.room_id) ?? [],
    };
    if (since === null) {
      if (!MEMBER_LIKE.has(row.membership) && !req.includeLeave) continue;
      planned.push(entry);
      continue;
    }
    const then = rooms.eventsAt(row.room_id, since);
    const changedMembership = then?.membership !== row.membership;
    switch (row.membership) {
      case "join":
        // A room joined before the token continues from where the client was; a new join starts afresh. So
        // does, for an eager sync, a room that became fully stated since (faster joins).
        if (!changedMembership && !(req.lazyMembers !== true && rooms.fullyStatedSince(row.room_id, since))) entry.from = then!.room_pos;
        planned.push(entry);
        break;
      case "invite":
      case "knock":
        if (changedMembership || req.fullState) planned.push(entry);
        break;
      default:
        // Left or banned: reported once, in the sync that covers the change (or on request with include_leave).
        if (changedMembership && (then ? MEMBER_LIKE.has(then.membership) : stale)) {
          if (then?.membership === "join") entry.from = then.room_pos;
          planned.push(entry);
        } else if (req.fullState && req.includeLeave) {
          planned.push(entry);
        }
    }
  }

  const sections: Record<string, unknown> = {};
  let sectionNews = false;
  for (const section of SYNC_SECTIONS) {
    const result = section({ sql, userId: req.userId, deviceId: req.deviceId, since, upTo: head });
    if (!result) continue;
    Object.assign(sections, result.fields);
    sectionNews ||= result.hasNews;
  }

  const plan: SyncPlan = { next: head, rooms: planned, accountData: globalData, sections, sectionNews };
  if (planned.some((r) => r.membership === "join")) plan.pushRules = JSON.stringify(pushRuleset(sql, req.userId));
  const ignored = ignoredUsersOf(accountData.get("", IGNORED_USER_LIST));
  if (ignored.length > 0) plan.ignoredUsers = ignored;
  return plan;
}
