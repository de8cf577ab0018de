/**
 * Faster joins, resident side (MSC3706, spec `omit_members`): which events of the state before a join go into a
 * partial `send_join` answer. Pure: the RoomDO hands in one small row per state event (no JSON), this decides.
 *
 * Kept:
 * - every state event that is not an `m.room.member` event (create, power levels, join rules, name, …);
 * - the joiner's own membership before the join (an invite, a knock, an earlier leave) — the join's auth events
 *   name it anyway;
 * - the room's heroes, when the room has neither a name nor a canonical alias (the room summary's rule: the
 *   first five members other than the joiner who are joined or invited, by the order their membership arrived;
 *   failing those, the first five who left or were banned) — so a DM renders with names at once;
 * - members the remaining state refers to: the senders of the kept non-member state events (who set the name,
 *   the power levels, …), and the users the power levels list (moderators, up to {@link MAX_POWER_USERS}, most
 *   powerful first) — whoever of them has a member event in the state.
 * Everything else (thousands of joins in a big room) is left out; the joiner fetches it later (`/state_ids`).
 */

/** One state event, as much as the selection needs. */
export type StateEntry = {
  nid: number;
  type: string;
  state_key: string;
  sender: string;
  /** `content.membership` of member events (the RoomDO keeps it in a column). */
  membership: string | null;
  /** Room stream position (null: known only as part of a state, e.g. an outlier of our own join). */
  stream_ordering: number | null;
};

/** At most this many heroes (as /sync's room summary). */
export const HEROES = 5;
/** At most this many power-level users' member events are kept. */
export const MAX_POWER_USERS = 50;

const MEMBER = "m.room.member";

export interface PartialStateSelection {
  /** The kept state events (nids). */
  state: number[];
  /** Servers with joined members in the full state given (`servers_in_room`), sorted. */
  servers_in_room: string[];
}

/**
 * Chooses the partial state for `joiner`'s join. `named`: whether the room has a non-empty name or canonical
 * alias (then there are no heroes); `powerUsers`: the `users` map of the power levels content (if any).
 */
export function selectPartialJoinState(
  entries: readonly StateEntry[],
  joiner: string,
  opts: { named: boolean; powerUsers?: Record<string, unknown> | undefined; serverOf: (userId: string) => string | undefined },
): PartialStateSelection {
  const keep = new Set<number>();
  const members = new Map<string, StateEntry>();
  const servers = new Set<string>();
  const referenced = new Set<string>();
  for (const e of entries) {
    if (e.type !== MEMBER) {
      keep.add(e.nid);
      referenced.add(e.sender);
      continue;
    }
    members.set(e.state_key, e);
    if (e.membership === "join") {
      const server = opts.serverOf(e.state_key);
      if (server) servers.add(server);
    }
  }
  const own = members.get(joiner);
  if (own) keep.add(own.nid);

  if (!opts.named) for (const hero of heroesOf(members, joiner)) keep.add(members.get(hero)!.nid);

  const levels = Object.entries(opts.powerUsers ?? {})
    .filter((e): e is [string, number] => typeof e[1] === "number")
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, MAX_POWER_USERS);
  for (const [user] of levels) referenced.add(user);
  for (const user of referenced) {
    const m = members.get(user);
    if (m) keep.add(m.nid);
  }
  return { state: [...keep], servers_in_room: [...servers].sort() };
}

/** The heroes of the room summary: up to five members other than `self`, by arrival of their membership. */
export function heroesOf(members: ReadonlyMap<string, StateEntry>, self: string): string[] {
  const pick = (ms: readonly string[]) =>
    [...members.values()]
      .filter((m) => m.state_key !== self && m.membership !== null && ms.includes(m.membership))
      .sort((a, b) => (a.stream_ordering ?? -Infinity) - (b.stream_ordering ?? -Infinity) || (a.state_key < b.state_key ? -1 : 1))
      .slice(0, HEROES)
      .map((m) => m.state_key);
  const joined = pick(["join", "invite"]);
  return joined.length > 0 ? joined : pick(["leave", "ban"]);
}
