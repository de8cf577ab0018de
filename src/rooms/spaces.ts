/**
 * Spaces and room previews for clients: the walk behind `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` and the
 * summary behind `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (routes in src/routes/client/spaces.ts;
 * summaries and access rules in ./summary.ts; design in docs/spaces.md).
 *
 * The walk is depth-first, as the spec describes it (and as the reference server does): a stack of rooms to visit,
 * children pushed in reverse display order so the first child is visited next; each room at most once per walk.
 * A room this server holds (with local users joined) is summarised from its RoomDO; any other room is asked of a
 * server named in its `m.space.child` event's `via` (for the root: the request's `via` — MSC4235, also
 * spelled `org.matrix.msc4235.via` — servers this server knows for it, or the room ID's server) with the federation `/hierarchy`, whose answer also carries summaries of that room's
 * children (used for children that are not spaces) and the children we may not see (not visited).
 *
 * Pagination: what remains of the walk (the stack and the rooms already visited) is kept server-side, in the
 * root room's RoomDO, under a random token that expires after five minutes; `next_batch` is that token. A token
 * is bound to the user, root, `suggested_only` and `max_depth`; it is not consumed, so a page can be asked for
 * again, and each page's answer gets a fresh token.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { forbidden, invalidParam, notFound } from "../http/errors";
import { candidateServers } from "../federation/join";
import { roomStub } from "./common";
import {
  SPACE_ROOM_TYPE, remoteHierarchy, sortedChildren, summaryFromStats, userMayAccess, userViewOf,
  type RemoteHierarchy, type RoomSummary, type SpaceChildEvent, type UserRoomView,
} from "./summary";

/** Rooms per page: the default and the most. */
export const DEFAULT_HIERARCHY_LIMIT = 50;
export const MAX_HIERARCHY_LIMIT = 50;
/** Rooms looked at per page (inaccessible ones included) and rooms asked of other servers per page, at most. */
const MAX_ROOMS_EXAMINED_PER_PAGE = 200;
const MAX_REMOTE_ROOMS_PER_PAGE = 10;
/** How long a pagination token stays valid. */
export const HIERARCHY_SESSION_TTL_MS = 5 * 60 * 1000;

export interface HierarchyRequest {
  roomId: string;
  userId: string;
  suggestedOnly: boolean;
  /** Null: no limit (the walk still visits each room once). */
  maxDepth: number | null;
  limit: number;
  from?: string;
  /** Servers to ask about the root when this server does not hold it (MSC4235's `via`). */
  via: string[];
}

export type HierarchyRoom = RoomSummary & { children_state: SpaceChildEvent[] };

interface QueueEntry {
  room_id: string;
  via: string[];
  depth: number;
  /** The room's summary from its parent's federation answer (used when the room is not a space). */
  remote?: RoomSummary;
}

interface Session {
  user_id: string;
  room_id: string;
  suggested_only: boolean;
  max_depth: number | null;
  /** The stack: the next room to visit is last. */
  queue: QueueEntry[];
  processed: string[];
}

interface Summarised {
  summary: RoomSummary;
  children: SpaceChildEvent[];
  childSummaries: Map<string, RoomSummary>;
  inaccessible: Set<string>;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

/** A held room whose state is current: local users are joined (otherwise its state may be stale). */
function heldLive(view: UserRoomView): view is UserRoomView & { room: NonNullable<UserRoomView["room"]> } {
  return view.room !== null && view.room.local_joined > 0;
}

/** One walk step's context: the request, this server's name, and federation answers already received. */
class Walk {
  readonly ours: string;
  private readonly remote = new Map<string, RemoteHierarchy | null>();
  remoteAsked = 0;

  constructor(private readonly env: Env, private readonly req: HierarchyRequest) {
    this.ours = getConfig(env).serverName;
  }

  async remoteOf(roomId: string, via: readonly string[], view: UserRoomView): Promise<RemoteHierarchy | null> {
    if (!this.remote.has(roomId)) {
      this.remoteAsked++;
      const servers = candidateServers(this.ours, roomId, via, view.servers);
      this.remote.set(roomId, await remoteHierarchy(this.env, roomId, servers, this.req.suggestedOnly, this.ours));
    }
    return this.remote.get(roomId) ?? null;
  }

  private childrenOf(summary: RoomSummary, events: readonly SpaceChildEvent[]): SpaceChildEvent[] {
    return summary.room_type === SPACE_ROOM_TYPE ? sortedChildren(events, this.req.suggestedOnly) : [];
  }

  /** A room's summary and children for the user, or null when the user may not see it (or it is unknown). */
  async summarise(e: QueueEntry): Promise<Summarised | null> {
    const { env, req } = this;
    const view = await userViewOf(env, e.room_id, req.userId);
    const out: Summarised = { summary: undefined as unknown as RoomSummary, children: [], childSummaries: new Map(), inaccessible: new Set() };
    if (heldLive(view)) {
      out.summary = summaryFromStats(view.room.stats, view.room.allow_rooms);
      out.children = this.childrenOf(out.summary, view.room.children_state);
    } else if (e.remote && (e.remote.room_type !== SPACE_ROOM_TYPE || (req.maxDepth !== null && e.depth >= req.maxDepth))) {
      // Its parent's server described it, and its children are not needed.
      out.summary = e.remote;
    } else {
      const r = await this.remoteOf(e.room_id, e.via, view);
      if (r) {
        out.summary = r.room;
        out.children = this.childrenOf(r.room, r.children_state);
        out.childSummaries = r.children;
        out.inaccessible = r.inaccessible;
      } else if (e.remote) {
        out.summary = e.remote;
      } else if (view.room) {
        // Everyone here left, and no other server answered: what this server last knew.
        out.summary = summaryFromStats(view.room.stats, view.room.allow_rooms);
        out.children = this.childrenOf(out.summary, view.room.children_state);
      } else {
        return null;
      }
    }
    return (await userMayAccess(env, out.summary, view.membership, req.userId)) ? out : null;
  }
}

/** One page of the space tree under `req.roomId` as `req.userId` may see it. */
export async function walkHierarchy(env: Env, req: HierarchyRequest): Promise<{ rooms: HierarchyRoom[]; next_batch?: string }> {
  const walk = new Walk(env, req);
  const rootStub = roomStub(env, req.roomId);

  // The root must be visible to the user (checked on every page).
  const root = await walk.summarise({ room_id: req.roomId, via: req.via, depth: 0 });
  if (!root) throw forbidden(`You may not see the space ${req.roomId}, or it is unknown`);

  let queue: QueueEntry[];
  let processed: Set<string>;
  if (req.from !== undefined) {
    const json = await rootStub.hierarchySessionGet(req.from);
    const s = json === null ? null : (JSON.parse(json) as Session);
    if (!s || s.user_id !== req.userId || s.room_id !== req.roomId) throw invalidParam("Unknown or expired pagination token");
    if (s.suggested_only !== req.suggestedOnly || s.max_depth !== req.maxDepth) {
      throw invalidParam("'suggested_only' and 'max_depth' cannot change during pagination");
    }
    queue = s.queue;
    processed = new Set(s.processed);
  } else {
    queue = [{ room_id: req.roomId, via: req.via, depth: 0 }];
    processed = new Set();
  }

  const rooms: HierarchyRoom[] = [];
  let examined = 0;
  while (queue.length > 0 && rooms.length < req.limit && examined < MAX_ROOMS_EXAMINED_PER_PAGE && walk.remoteAsked < MAX_REMOTE_ROOMS_PER_PAGE) {
    const e = queue.pop()!;
    if (processed.has(e.room_id)) continue;
    processed.add(e.room_id);
    examined++;
    const r = e.room_id === req.roomId && e.depth === 0 ? root : await walk.summarise(e);
    if (!r) continue;
    rooms.push({ ...r.summary, children_state: r.children });
    if (req.maxDepth !== null && e.depth >= req.maxDepth) continue;
    for (const ev of [...r.children].reverse()) {
      if (r.inaccessible.has(ev.state_key) || processed.has(ev.state_key)) continue;
      queue.push({ room_id: ev.state_key, via: (ev.content.via as string[]).slice(0, 10), depth: e.depth + 1, remote: r.childSummaries.get(ev.state_key) });
    }
  }
  queue = queue.filter((q) => !processed.has(q.room_id));
  if (queue.length === 0) return { rooms };

  const token = randomToken();
  const session: Session = {
    user_id: req.userId, room_id: req.roomId, suggested_only: req.suggestedOnly, max_depth: req.maxDepth,
    queue, processed: [...processed],
  };
  await rootStub.hierarchySessionPut(token, JSON.stringify(session), Date.now() + HIERARCHY_SESSION_TTL_MS);
  return { rooms, next_batch: token };
}

/**
 * The summary of a room for `userId` (null: unauthenticated), with their `membership` when authenticated.
 * Held rooms with local users joined are summarised here; others are asked of `via` (then servers this server
 * knows for the room, then the room ID's server) with the federation `/hierarchy`. 404 `M_NOT_FOUND` when the
 * room is unknown or the user may not see it — the two are not told apart.
 */
export async function roomSummaryFor(env: Env, roomId: string, via: readonly string[], userId: string | null): Promise<RoomSummary & { membership?: string }> {
  const ours = getConfig(env).serverName;
  const view = await userViewOf(env, roomId, userId);
  let summary: RoomSummary | null = null;
  if (heldLive(view)) {
    summary = summaryFromStats(view.room.stats, view.room.allow_rooms);
  } else {
    const r = await remoteHierarchy(env, roomId, candidateServers(ours, roomId, via, view.servers), true, ours);
    summary = r?.room ?? (view.room ? summaryFromStats(view.room.stats, view.room.allow_rooms) : null);
  }
  if (!summary || !(await userMayAccess(env, summary, view.membership, userId))) throw notFound("Room not found or not accessible");
  return userId === null ? summary : { ...summary, membership: view.membership ?? "leave" };
}
