/**
 * Room pagination tokens (`/messages`, `/context`, `/members?at=`, sync's `prev_batch`).
 *
 * A token is a *cut* in a room's timeline, between two events. The timeline is ordered topologically, by
 * (depth, stream ordering) — the order Synapse calls "topological" — so that history fetched late (backfill)
 * still sorts by its place in the DAG rather than by arrival.
 *
 * - `t<depth>_<stream>`: the cut just after the event at (depth, stream). Everything at or below that pair,
 *   lexicographically, is "before" the cut; everything above is "after". `t0_0` is the start of the room.
 *   The cut just *before* an event at (d, s) is `t<d>_<s-1>`.
 * - `s<stream>`: a room stream position (what a room's stream ordering counts). It is read as the cut just after
 *   the event with the highest stream ordering ≤ that position. Accepted so that stream positions from the
 *   RoomDO (e.g. `eventsAfter`) can be handed to clients directly.
 *
 * Tokens are room-local: the same string means different cuts in different rooms.
 */

/** A position in the topological order of a room's timeline. */
export interface TopoPos {
  depth: number;
  stream: number;
}

export type RoomToken = { kind: "topo"; pos: TopoPos } | { kind: "stream"; stream: number };

// The stream part may be negative: events backfilled over federation sit below every other position.
const TOPO = /^t(\d{1,16})_(-?\d{1,16})$/;
const STREAM = /^s(\d{1,16})$/;

/** Parses a token; undefined when it is not one of ours. */
export function parseRoomToken(token: string): RoomToken | undefined {
  let m = TOPO.exec(token);
  if (m) {
    const depth = Number(m[1]);
    const stream = Number(m[2]);
    if (Number.isSafeInteger(depth) && Number.isSafeInteger(stream)) return { kind: "topo", pos: { depth, stream } };
    return undefined;
  }
  m = STREAM.exec(token);
  if (m) {
    const stream = Number(m[1]);
    return Number.isSafeInteger(stream) ? { kind: "stream", stream } : undefined;
  }
  return undefined;
}

export function formatTopoToken(pos: TopoPos): string {
  return `t${pos.depth}_${pos.stream}`;
}

/** The cut just after an event. */
export function tokenAfter(event: { depth: number; stream_ordering: number }): string {
  return formatTopoToken(cutAfter(event));
}

/** The cut just before an event (what `/sync` should give as `prev_batch` for a timeline starting at it). */
export function tokenBefore(event: { depth: number; stream_ordering: number }): string {
  return formatTopoToken(cutBefore(event));
}

export function cutAfter(event: { depth: number; stream_ordering: number }): TopoPos {
  return { depth: event.depth, stream: event.stream_ordering };
}

export function cutBefore(event: { depth: number; stream_ordering: number }): TopoPos {
  return { depth: event.depth, stream: event.stream_ordering - 1 };
}

/** Lexicographic comparison of positions. */
export function compareTopo(a: TopoPos, b: TopoPos): number {
  return a.depth !== b.depth ? a.depth - b.depth : a.stream - b.stream;
}

/** The start of every room: no event is before it. */
export const ROOM_START: TopoPos = Object.freeze({ depth: 0, stream: 0 });
