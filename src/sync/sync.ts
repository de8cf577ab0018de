/**
 * GET /sync, the Worker's part (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync).
 *
 * 1. Long poll: with a `since` token, wait in the user's UserDO until its stream passes the token (or the
 *    timeout). The wait is this request's own waiter; if the client goes away, `request.signal` aborts and the
 *    waiter is cancelled in the UserDO.
 * 2. Plan: the UserDO lists, as positions, what changed since the token (rooms with their room positions and the
 *    user's membership, account data, to-device and device-list sections) — one consistent snapshot.
 * 3. Catch up from the source: each listed room's RoomDO renders its entry (timeline, state, ephemeral).
 * 4. An incremental sync with nothing to show for the user (e.g. every new event filtered out) waits again,
 *    until the timeout.
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { SyncPlan, PlannedRoom } from "../../durable-objects/user/sync-plan";
import type { SyncRoomResult } from "../../durable-objects/room/sync-view";
import { excludesAll, matchesEvent, matchesRoom, type Filter, type RoomEventFilter } from "./filter";
import { formatSyncToken } from "./tokens";
import { presenceSyncEvents } from "../presence/sync"; // presence (docs/presence.md)
import { getConfig } from "../config";

/** The longest a long poll waits, whatever the client asks. */
export const MAX_SYNC_TIMEOUT_MS = 5 * 60 * 1000;

export interface SyncRequest {
  /** User stream position of the since token; null for an initial sync. */
  since: number | null;
  timeoutMs: number;
  fullState: boolean;
  filter: Filter;
  /** Presence: `set_presence` (online when absent; offline leaves presence alone). */
  setPresence?: string;
}

type UserStub = DurableObjectStub<import("../../durable-objects/user/UserDO").UserDO>;

/** Thrown when the client went away during the long poll: nothing to answer. */
export class SyncCancelled extends Error {
  override readonly name = "SyncCancelled";
}

export async function runSync(
  env: Env,
  requester: Requester,
  req: SyncRequest,
  signal: AbortSignal | undefined,
  waitUntil: (p: Promise<unknown>) => void,
): Promise<Record<string, unknown>> {
  const user = env.USERS.get(env.USERS.idFromName(requester.userId));
  const deadline = Date.now() + Math.min(Math.max(0, req.timeoutMs), MAX_SYNC_TIMEOUT_MS);
  // full_state answers at once (the spec says the timeout is ignored); so does an initial sync.
  const longPoll = req.since !== null && !req.fullState;
  let waitFrom = req.since;
  for (;;) {
    if (longPoll && waitFrom !== null) await waitForStream(user, waitFrom, deadline - Date.now(), signal, waitUntil, req.setPresence ?? "online");
    const plan = JSON.parse(
      await user.syncPlan({
        userId: requester.userId,
        deviceId: requester.deviceId,
        since: req.since,
        fullState: req.fullState,
        includeLeave: req.filter.room?.include_leave === true,
        lazyMembers: req.filter.room?.state?.lazy_load_members === true, // faster joins (sync-plan.ts)
        setPresence: req.setPresence ?? "online", // presence (docs/presence.md)
      }),
    ) as SyncPlan;
    const { response, news } = await render(env, requester, req, plan);
    if (!longPoll || news || Date.now() >= deadline) return response;
    waitFrom = plan.next;
  }
}

/** Waits for the user stream to pass `since`, as this request's own waiter, cancelled if the client leaves. */
async function waitForStream(
  user: UserStub,
  since: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  waitUntil: (p: Promise<unknown>) => void,
  setPresence: string,
): Promise<void> {
  if (timeoutMs <= 0) return;
  if (signal?.aborted) throw new SyncCancelled("client went away");
  const waiterId = crypto.randomUUID();
  const onAbort = () => waitUntil(user.cancelWait(waiterId));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const outcome = await user.waitForChange(waiterId, since, timeoutMs, setPresence);
    if (outcome === "cancelled" || signal?.aborted) throw new SyncCancelled("client went away");
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Builds the response from a plan; `news` tells whether an incremental sync has anything to show. */
async function render(
  env: Env,
  requester: Requester,
  req: SyncRequest,
  plan: SyncPlan,
): Promise<{ response: Record<string, unknown>; news: boolean }> {
  const filter = req.filter;
  const roomFilter = filter.room;
  const rooms: Record<"join" | "invite" | "leave" | "knock", Record<string, unknown>> = { join: {}, invite: {}, leave: {}, knock: {} };
  let news = plan.sectionNews;

  const planned = plan.rooms.filter((r) => matchesRoom(roomFilter, r.roomId));
  // Notification counts need the user's push rules (kept in the UserDO): the plan carries them when it lists a
  // joined room, read in the plan's own transaction (no second call to the UserDO).
  const pushRules = planned.some((r) => r.membership === "join") ? (plan.pushRules ?? null) : null;
  const results = await Promise.all(planned.map((r) => syncOneRoom(env, requester, req, r, pushRules, plan.ignoredUsers)));
  planned.forEach((r, i) => {
    const result = results[i];
    if (!result) return;
    // Invites from ignored users are not shown (src/rooms/ignored-users.ts).
    if (result.section === "invite" && plan.ignoredUsers && invitedBy(result.body, requester.userId, plan.ignoredUsers)) return;
    const body = result.body;
    const accountData = roomAccountData(r, roomFilter?.account_data);
    if (result.section === "join" || result.section === "leave") body.account_data = { events: accountData };
    if (!result.news && accountData.length === 0 && req.since !== null && !req.fullState) return;
    rooms[result.section][r.roomId] = body;
    news = true;
  });

  const globalData = accountDataEvents(plan.accountData, filter.account_data);
  if (globalData.length > 0) news = true;
  const response: Record<string, unknown> = {
    next_batch: formatSyncToken(plan.next),
    rooms,
    account_data: { events: globalData },
    ...plan.sections,
  };
  // Presence (docs/presence.md): absent from the plan when presence is disabled.
  if (plan.presence && getConfig(env).presenceEnabled) {
    const newlyJoined = req.since === null ? [] : planned.filter((r) => r.membership === "join" && r.from === null).map((r) => r.roomId);
    const events = await presenceSyncEvents(env, requester.userId, plan.presence, newlyJoined, filter.presence);
    response.presence = { events };
    if (events.length > 0) news = true;
  }
  return { response, news };
}

async function syncOneRoom(
  env: Env,
  requester: Requester,
  req: SyncRequest,
  r: PlannedRoom,
  pushRules: string | null,
  ignoredUsers: string[] | undefined,
): Promise<SyncRoomResult | null> {
  const stub = env.ROOMS.get(env.ROOMS.idFromName(r.roomId));
  const text = await stub.syncRoom({
    userId: requester.userId,
    deviceId: requester.deviceId,
    membership: r.membership,
    from: r.from,
    to: r.to,
    fullState: req.fullState,
    ephFrom: r.ephFrom,
    ephTo: r.ephTo,
    filter: JSON.stringify(filterForRoom(req.filter, r.roomId)),
    pushRules,
    ...(ignoredUsers ? { ignoredUsers } : {}),
  });
  return text === null ? null : (JSON.parse(text) as SyncRoomResult);
}

/** Whether an invite entry's invite event (the user's member event in `invite_state`) was sent by one of `users`. */
function invitedBy(body: Record<string, unknown>, userId: string, users: string[]): boolean {
  const events = (body.invite_state as { events?: { type?: string; state_key?: string; sender?: string }[] } | undefined)?.events ?? [];
  const invite = events.find((e) => e.type === "m.room.member" && e.state_key === userId);
  return invite?.sender !== undefined && users.includes(invite.sender);
}

/** The filter as it applies to one room: a section whose `rooms`/`not_rooms` exclude the room lets nothing through. */
export function filterForRoom(filter: Filter, roomId: string): Filter {
  const room = filter.room;
  if (!room) return filter;
  const narrow = (f: RoomEventFilter | undefined): RoomEventFilter | undefined =>
    f && !matchesRoom(f, roomId) ? { ...f, types: [] } : f;
  const out: Filter = { ...filter, room: { ...room } };
  for (const key of ["timeline", "state", "ephemeral", "account_data"] as const) {
    const f = narrow(room[key]);
    if (f) out.room![key] = f;
  }
  return out;
}

function roomAccountData(r: PlannedRoom, f: RoomEventFilter | undefined): { type: string; content: unknown }[] {
  if (f && !matchesRoom(f, r.roomId)) return [];
  return accountDataEvents(r.accountData, f);
}

function accountDataEvents(rows: [string, string][], f: RoomEventFilter | undefined): { type: string; content: unknown }[] {
  if (excludesAll(f)) return [];
  const events: { type: string; content: unknown }[] = [];
  for (const [type, content] of rows) {
    // Account data has no sender; only the type lists apply.
    if (f && !matchesEvent({ types: f.types, not_types: f.not_types } as RoomEventFilter, { type, sender: "" })) continue;
    events.push({ type, content: JSON.parse(content) as unknown });
  }
  return events;
}
