/**
 * Room summaries for spaces and previews, shared by the federation `/hierarchy` (src/routes/federation/hierarchy.ts)
 * and the client `/hierarchy` and `/room_summary` (src/routes/client/spaces.ts, src/rooms/space-walk.ts).
 * https://spec.matrix.org/v1.19/client-server-api/#spaces, docs/spaces.md
 *
 * - building the summary chunk of a room this server holds (a PublicRoomsChunk plus room type, version,
 *   encryption and allowed rooms), and taking one over federation (only the known fields, type-checked);
 * - who may see a room: anyone when its join rule is public / knock / knock_restricted or its history is
 *   world-readable; otherwise a server with users joined or invited, a user joined or invited, and — restricted
 *   rooms — a server or user joined in one of the allowed rooms;
 * - the `m.space.child` events that count (a non-empty `via` of strings) in the order clients show them;
 * - asking another server for its `/hierarchy` answer about a room.
 */
import type { Env } from "../env";
import type { RoomStats } from "../../durable-objects/room/queries";
import { isValidRoomId } from "../protocol/identifiers";
import { FederationClient } from "../federation/client";
import { roomStub } from "./common";

/** An `m.space.child` state event, stripped, with its `origin_server_ts`. */
export interface SpaceChildEvent {
  type: string;
  state_key: string;
  sender: string;
  content: Record<string, unknown>;
  origin_server_ts: number;
}

/** The summary of a room (spec: RoomSummary). Absent fields are omitted, never null. */
export interface RoomSummary {
  room_id: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  join_rule?: string;
  room_version?: string;
  name?: string;
  topic?: string;
  avatar_url?: string;
  canonical_alias?: string;
  room_type?: string;
  encryption?: string;
  allowed_room_ids?: string[];
}

export const SPACE_ROOM_TYPE = "m.space";

/** The summary of a room held here, from its directory figures and a restricted join rule's allowed rooms. */
export function summaryFromStats(s: RoomStats, allowRooms: string[]): RoomSummary {
  const out: RoomSummary = {
    room_id: s.room_id,
    num_joined_members: s.joined_members,
    world_readable: s.history_visibility === "world_readable",
    guest_can_join: s.guest_can_join,
    join_rule: s.join_rule ?? "invite",
    room_version: s.room_version,
  };
  if (s.name !== null) out.name = s.name;
  if (s.topic !== null) out.topic = s.topic;
  if (s.avatar_url !== null) out.avatar_url = s.avatar_url;
  if (s.canonical_alias !== null) out.canonical_alias = s.canonical_alias;
  if (s.room_type !== null) out.room_type = s.room_type;
  if (s.encryption !== null) out.encryption = s.encryption;
  if (allowRooms.length > 0) out.allowed_room_ids = allowRooms;
  return out;
}

/** Whether anyone may see a room: it can be joined or knocked on by anyone, or its history is world-readable. */
export function openToAnyone(joinRule: string | undefined, worldReadable: boolean): boolean {
  return worldReadable || ["public", "knock", "knock_restricted"].includes(joinRule ?? "invite");
}

// ---------------------------------------------------------------------------------------------------------
// Servers (the federation endpoint)

/** A room's entry as `RoomDO.fedHierarchyEntry` sees it for a server; `denied`: its server ACL bars the server. */
export interface ServerEntry {
  denied?: boolean;
  stats: RoomStats;
  children_state: SpaceChildEvent[];
  server_member: boolean;
  allow_rooms: string[];
}

/** A room's entry for `server`, or null when this server does not hold it. */
export async function serverEntryOf(env: Env, roomId: string, server: string): Promise<ServerEntry | null> {
  const json = await roomStub(env, roomId).fedHierarchyEntry(server).catch(() => null);
  return json === null ? null : (JSON.parse(json) as ServerEntry);
}

/** Whether `server` may see a room held here (with users joined in an allowed room, for restricted rooms). */
export async function serverMayAccess(env: Env, e: ServerEntry, server: string): Promise<boolean> {
  if (e.denied) return false;
  if (openToAnyone(e.stats.join_rule ?? "invite", e.stats.history_visibility === "world_readable")) return true;
  if (e.server_member) return true;
  if ((e.stats.join_rule ?? "invite") === "restricted") {
    for (const roomId of e.allow_rooms) {
      const allowed = await serverEntryOf(env, roomId, server);
      if (allowed && !allowed.denied && allowed.server_member) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Users (the client endpoints)

/** What this server knows of a room for a user (`RoomDO.clientSpaceEntry`). */
export interface UserRoomView {
  /** The user's membership (current or out-of-band), null when none or unauthenticated. */
  membership: string | null;
  /** Servers that may know the room: an inviting server, servers in its (possibly stale) state. */
  servers: string[];
  /** Present when the room's state is held here. */
  room: {
    stats: RoomStats;
    children_state: SpaceChildEvent[];
    allow_rooms: string[];
    /** Local users joined: 0 means the state held may be stale (everyone here left). */
    local_joined: number;
  } | null;
}

export async function userViewOf(env: Env, roomId: string, userId: string | null): Promise<UserRoomView> {
  return JSON.parse(await roomStub(env, roomId).clientSpaceEntry(userId)) as UserRoomView;
}

/** Whether `userId` is joined in one of `roomIds` as this server knows (restricted rooms). */
async function joinedInAny(env: Env, roomIds: readonly string[], userId: string): Promise<boolean> {
  for (const roomId of roomIds.slice(0, 50)) {
    if (isValidRoomId(roomId) && (await roomStub(env, roomId).fedIsJoined(userId))) return true;
  }
  return false;
}

/**
 * Whether a user (null: unauthenticated) may see a room whose summary is `s`: anyone when open to anyone; a
 * user joined or invited (`membership`, as this server knows it); for restricted rooms (and any room naming
 * allowed rooms), a user joined in one of them.
 */
export async function userMayAccess(env: Env, s: RoomSummary, membership: string | null, userId: string | null): Promise<boolean> {
  if (openToAnyone(s.join_rule, s.world_readable)) return true;
  if (userId === null) return false;
  if (membership === "join" || membership === "invite") return true;
  return s.allowed_room_ids !== undefined && (await joinedInAny(env, s.allowed_room_ids, userId));
}

// ---------------------------------------------------------------------------------------------------------
// Children

/** The `m.space.child` events that count: a `via` that is a non-empty list of strings. */
export function hasValidVia(ev: { content: Record<string, unknown> }): boolean {
  const via = ev.content.via;
  return Array.isArray(via) && via.length > 0 && via.every((v) => typeof v === "string");
}

function orderKey(ev: SpaceChildEvent): string | null {
  const order = ev.content.order;
  return typeof order === "string" && order.length <= 50 && /^[\x20-\x7e]*$/.test(order) ? order : null;
}

/**
 * The children to walk, in the order the spec asks clients to show them: by a valid `order` (printable ASCII,
 * at most 50 characters; those without come last), then the event's `origin_server_ts`, then room ID.
 */
export function sortedChildren(events: readonly SpaceChildEvent[], suggestedOnly: boolean): SpaceChildEvent[] {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return events
    .filter((ev) => ev.type === "m.space.child" && isValidRoomId(ev.state_key) && hasValidVia(ev))
    .filter((ev) => !suggestedOnly || ev.content.suggested === true)
    .sort((a, b) => {
      const oa = orderKey(a);
      const ob = orderKey(b);
      if (oa !== ob) return oa === null ? 1 : ob === null ? -1 : cmp(oa, ob);
      if (a.origin_server_ts !== b.origin_server_ts) return a.origin_server_ts - b.origin_server_ts;
      return cmp(a.state_key, b.state_key);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Over federation

/** Servers asked about one room at most. */
export const MAX_SERVERS_PER_ROOM = 3;
const HIERARCHY_TIMEOUT_MS = 10_000;

/** Another server's `/hierarchy` answer about a room, checked. */
export interface RemoteHierarchy {
  room: RoomSummary;
  children_state: SpaceChildEvent[];
  /** Summaries of the room's children that the server holds, by room ID. */
  children: Map<string, RoomSummary>;
  /** Children the server says we may not see: not asked about again. */
  inaccessible: Set<string>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A summary received over federation: the known fields with the right types, or null without a room ID. */
export function summaryFromRemote(v: unknown): RoomSummary | null {
  if (!isObject(v) || !isValidRoomId(v.room_id)) return null;
  const out: RoomSummary = {
    room_id: v.room_id,
    num_joined_members: typeof v.num_joined_members === "number" && Number.isSafeInteger(v.num_joined_members) ? v.num_joined_members : 0,
    world_readable: v.world_readable === true,
    guest_can_join: v.guest_can_join === true,
  };
  for (const k of ["join_rule", "room_version", "name", "topic", "avatar_url", "canonical_alias", "room_type", "encryption"] as const) {
    const x = v[k];
    if (typeof x === "string") out[k] = x;
  }
  // Servers before spec v1.15 leave the join rule out; the spec's default for a PublicRoomsChunk is public.
  out.join_rule ??= "public";
  if (Array.isArray(v.allowed_room_ids)) {
    const ids = v.allowed_room_ids.filter((id): id is string => isValidRoomId(id));
    if (ids.length > 0) out.allowed_room_ids = ids;
  }
  return out;
}

function childFromRemote(v: unknown): SpaceChildEvent | null {
  if (!isObject(v) || v.type !== "m.space.child" || typeof v.state_key !== "string" || !isObject(v.content)) return null;
  return {
    type: v.type,
    state_key: v.state_key,
    sender: typeof v.sender === "string" ? v.sender : "",
    content: v.content,
    origin_server_ts: typeof v.origin_server_ts === "number" ? v.origin_server_ts : 0,
  };
}

/**
 * Asks `servers` in turn (at most {@link MAX_SERVERS_PER_ROOM}; never this server) for
 * `GET /_matrix/federation/v1/hierarchy/{roomId}`; the first usable answer, or null when none gives one.
 */
export async function remoteHierarchy(env: Env, roomId: string, servers: readonly string[], suggestedOnly: boolean, ours: string): Promise<RemoteHierarchy | null> {
  const client = new FederationClient(env);
  const candidates = [...new Set(servers)].filter((s) => s !== ours).slice(0, MAX_SERVERS_PER_ROOM);
  for (const server of candidates) {
    let res: Record<string, unknown>;
    try {
      res = await client.request<Record<string, unknown>>(server, "GET", `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}`, undefined, {
        query: { suggested_only: suggestedOnly ? "true" : "false" },
        timeoutMs: HIERARCHY_TIMEOUT_MS,
      });
    } catch (e) {
      console.warn(`spaces: /hierarchy of ${roomId} from ${server} failed: ${(e as Error).message}`);
      continue;
    }
    const room = summaryFromRemote(res.room);
    if (!room || room.room_id !== roomId) continue;
    const rawChildren = isObject(res.room) && Array.isArray(res.room.children_state) ? res.room.children_state : [];
    const children = new Map<string, RoomSummary>();
    for (const c of Array.isArray(res.children) ? res.children : []) {
      const s = summaryFromRemote(c);
      if (s) children.set(s.room_id, s);
    }
    const inaccessible = new Set(Array.isArray(res.inaccessible_children) ? res.inaccessible_children.filter((id): id is string => typeof id === "string") : []);
    const childrenState = rawChildren.map(childFromRemote).filter((c): c is SpaceChildEvent => c !== null);
    return { room, children_state: childrenState, children, inaccessible };
  }
  return null;
}
