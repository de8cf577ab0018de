/**
 * History visibility: which room events a user may see.
 * https://spec.matrix.org/v1.19/client-server-api/#room-history-visibility ("Server behaviour")
 *
 * Pure functions over the facts about one event. The RoomDO gathers those facts from its state groups
 * (durable-objects/room/queries.ts, `RoomQueries.visibleTo`); anything else that holds them can use these directly.
 *
 * "The state of the room at that event" is read from the state *after* the event (which only differs from the
 * state before it for state events). The two special cases of the spec look at both sides:
 * - an `m.room.history_visibility` event is visible if the visibility before *or* after it allows it;
 * - a user's own `m.room.member` event is visible if their membership before *or* after it allows it.
 */

export type HistoryVisibility = "world_readable" | "shared" | "invited" | "joined";

const KNOWN: ReadonlySet<string> = new Set(["world_readable", "shared", "invited", "joined"]);

/** The visibility an `m.room.history_visibility` content sets; absent or not understood means `shared`. */
export function parseHistoryVisibility(content: unknown): HistoryVisibility {
  const value = (content as { history_visibility?: unknown } | null | undefined)?.history_visibility;
  return typeof value === "string" && KNOWN.has(value) ? (value as HistoryVisibility) : "shared";
}

/** The membership a member event's content sets (`null` for none or not a string). */
export function membershipOf(content: unknown): string | null {
  const value = (content as { membership?: unknown } | null | undefined)?.membership;
  return typeof value === "string" ? value : null;
}

/** Everything the rules need to know about one event, from one user's point of view. */
export interface VisibilityFacts {
  /** The history visibility in the state at (after) the event. */
  visibility: HistoryVisibility;
  /** For `m.room.history_visibility` events: the visibility before the event. */
  visibilityBefore?: HistoryVisibility;
  /** The user's membership in the state at (after) the event; `null` if they had none. */
  membership: string | null;
  /** For the user's own `m.room.member` events: their membership before the event. */
  membershipBefore?: string | null;
  /**
   * Whether the user joined the room at some point after the event was sent (rule 3, for `shared`).
   * A user who is joined now and was not at the event has, by definition, joined since.
   */
  joinedSince: boolean;
}

/** The spec's five rules for one (visibility, membership) pair. */
export function visibleUnder(visibility: HistoryVisibility, membership: string | null, joinedSince: boolean): boolean {
  if (visibility === "world_readable") return true; // 1
  if (membership === "join") return true; // 2
  if (visibility === "shared" && joinedSince) return true; // 3
  if (visibility === "invited" && membership === "invite") return true; // 4
  return false; // 5
}

/** Whether the user may see the event, including the two before-or-after special cases. */
export function isEventVisible(f: VisibilityFacts): boolean {
  const visibilities = f.visibilityBefore === undefined ? [f.visibility] : [f.visibility, f.visibilityBefore];
  const memberships = f.membershipBefore === undefined ? [f.membership] : [f.membership, f.membershipBefore];
  for (const v of visibilities) for (const m of memberships) if (visibleUnder(v, m, f.joinedSince)) return true;
  return false;
}

/**
 * Whether a user may read a room's history at all (`/messages`, `/context`, `/event`, `/state`, `/members`):
 * anyone who is or was joined (their view ends where their membership does), or anyone at all when the room's
 * current history visibility is `world_readable`. Invited or never-joined users of other rooms may not
 * (as Synapse: "not in room, and room previews are disabled").
 */
export function mayReadHistory(everJoined: boolean, currentVisibility: HistoryVisibility): boolean {
  return everJoined || currentVisibility === "world_readable";
}
