/**
 * Presence (https://spec.matrix.org/v1.19/client-server-api/#presence): the states, the timings the reference
 * server uses, and the wire formats (client `m.presence` events, the federation EDU's `push` entries). Pure
 * functions, shared by the Worker and the UserDO. The design is in docs/presence.md.
 */

export const PRESENCE_STATES = ["online", "unavailable", "offline"] as const;
export type PresenceState = (typeof PRESENCE_STATES)[number];

export function isPresenceState(v: unknown): v is PresenceState {
  return typeof v === "string" && (PRESENCE_STATES as readonly string[]).includes(v);
}

/** An online user with no activity for this long becomes unavailable (idle). */
export const IDLE_TIMEOUT_MS = 5 * 60_000;
/** A user who is not syncing and was neither active nor synced for this long becomes offline. */
export const SYNC_ONLINE_TIMEOUT_MS = 30_000;
/** `currently_active` holds this long after the last activity; smaller moves of last_active are not news. */
export const ACTIVE_GRANULARITY_MS = 60_000;
/** A user who is not offline is re-announced to other servers this often, so they do not time them out. */
export const FEDERATION_PING_MS = 25 * 60_000;
/** A remote user not heard of for this long is shown offline (their server should ping every 25 minutes). */
export const FEDERATION_TIMEOUT_MS = 30 * 60_000;
/** Longest status message accepted (characters). */
export const MAX_STATUS_MSG_LENGTH = 2048;

/** A user's presence as stored (D1 `presence`, UserDO `presence`) and carried between Worker and DOs. */
export interface PresenceRecord {
  user_id: string;
  state: PresenceState;
  status_msg: string | null;
  /** Milliseconds since the epoch of the last activity; 0 when never active. */
  last_active_ts: number;
  currently_active: boolean;
}

/** The content of an `m.presence` event (client API, /sync, GET /presence, appservices). */
export interface PresenceContent {
  presence: PresenceState;
  last_active_ago?: number;
  currently_active?: boolean;
  status_msg?: string;
}

/** The content at `now`: `last_active_ago` is computed here, at read time. */
export function presenceContent(r: PresenceRecord, now: number): PresenceContent {
  const out: PresenceContent = { presence: r.state };
  if (r.last_active_ts > 0) out.last_active_ago = Math.max(0, now - r.last_active_ts);
  out.currently_active = r.state === "online" && r.currently_active;
  if (r.status_msg !== null && r.status_msg !== "") out.status_msg = r.status_msg;
  return out;
}

/** The `m.presence` event of a user for /sync and appservice transactions. */
export function presenceEvent(r: PresenceRecord, now: number): { type: "m.presence"; sender: string; content: PresenceContent } {
  return { type: "m.presence", sender: r.user_id, content: presenceContent(r, now) };
}

/** One entry of an outbound `m.presence` EDU's `push` array. */
export function presenceEduEntry(r: PresenceRecord, now: number): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    user_id: r.user_id,
    presence: r.state,
    last_active_ago: r.last_active_ts > 0 ? Math.max(0, now - r.last_active_ts) : 0,
    currently_active: r.state === "online" && r.currently_active,
  };
  if (r.status_msg !== null && r.status_msg !== "") entry.status_msg = r.status_msg;
  return entry;
}

/**
 * A remote user's presence from an EDU entry (already checked: `user_id` belongs to the origin and `presence` is
 * a string). Undefined when the state is not one we know.
 */
export function recordFromEdu(userId: string, content: Record<string, unknown>, now: number): PresenceRecord | undefined {
  if (!isPresenceState(content.presence)) return undefined;
  const ago = typeof content.last_active_ago === "number" && Number.isFinite(content.last_active_ago) && content.last_active_ago >= 0
    ? content.last_active_ago
    : undefined;
  const statusMsg = typeof content.status_msg === "string" ? content.status_msg.slice(0, MAX_STATUS_MSG_LENGTH) : null;
  return {
    user_id: userId,
    state: content.presence,
    status_msg: statusMsg,
    last_active_ts: ago === undefined ? 0 : Math.max(0, now - ago),
    currently_active: content.currently_active === true,
  };
}

/**
 * Whether a change from `prev` to `next` is worth telling others (the reference server's rule): the state, the
 * status message or `currently_active` changed, or an online user's last activity moved by more than the
 * granularity (clients show "active N minutes ago").
 */
export function presenceNews(prev: PresenceRecord | undefined, next: PresenceRecord): boolean {
  if (!prev) return true;
  if (prev.state !== next.state) return true;
  if ((prev.status_msg ?? null) !== (next.status_msg ?? null)) return true;
  if (next.state === "online" && prev.currently_active !== next.currently_active) return true;
  if (next.state === "online" && next.last_active_ts - prev.last_active_ts > ACTIVE_GRANULARITY_MS) return true;
  return false;
}

/** A remote row's state at read time: one not heard of for FEDERATION_TIMEOUT_MS is offline. */
export function remoteAsSeen(r: PresenceRecord, updatedTs: number, now: number): PresenceRecord {
  if (r.state !== "offline" && now - updatedTs > FEDERATION_TIMEOUT_MS) return { ...r, state: "offline", currently_active: false };
  return r;
}
