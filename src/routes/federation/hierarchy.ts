/**
 * Spaces for other servers: `GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=`.
 * https://spec.matrix.org/v1.19/server-server-api/#spaces
 *
 * The room (a space) with its `m.space.child` events, and a summary of each child this server holds. A room is
 * shown to a server if anyone may join or peek (join rule public / knock / knock_restricted, or world-readable
 * history), if the server has users in it, or — restricted rooms — if it has users in one of the allowed rooms
 * that this server holds. Children held here but not shown are listed in `inaccessible_children`; children not
 * held here are left out (the asking server can ask a server named in their `via`).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import type { Env } from "../../env";
import { invalidParam, notFound } from "../../http/errors";
import { isValidRoomId } from "../../protocol/identifiers";
import type { RoomStats } from "../../../durable-objects/room/queries";
import { roomIdParam, roomStub } from "./common";

export const federationHierarchy = new Hono<AppEnv>();

/** Children summarised at most. */
const MAX_CHILDREN = 50;

interface Entry {
  denied?: boolean;
  stats: RoomStats;
  children_state: { state_key: string; content: Record<string, unknown> }[];
  server_member: boolean;
  allow_rooms: string[];
}

async function entryOf(env: Env, roomId: string, server: string): Promise<Entry | null> {
  const json = await roomStub(env, roomId).fedHierarchyEntry(server).catch(() => null);
  return json === null ? null : (JSON.parse(json) as Entry);
}

async function accessible(env: Env, e: Entry, server: string): Promise<boolean> {
  if (e.denied) return false;
  const rule = e.stats.join_rule ?? "invite";
  if (["public", "knock", "knock_restricted"].includes(rule) || e.stats.history_visibility === "world_readable") return true;
  if (e.server_member) return true;
  if (rule === "restricted") {
    for (const roomId of e.allow_rooms) {
      const allowed = await entryOf(env, roomId, server);
      if (allowed && !allowed.denied && allowed.server_member) return true;
    }
  }
  return false;
}

/** The summary of a room in a hierarchy (a PublicRoomsChunk plus room type and allowed rooms). */
function summary(e: Entry): Record<string, unknown> {
  const s = e.stats;
  const out: Record<string, unknown> = {
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
  if (e.allow_rooms.length > 0) out.allowed_room_ids = e.allow_rooms;
  return out;
}

/** Spaces summary; also under MSC2946's unstable path, which servers from before its stabilisation call. */
async function hierarchy(c: AppContext): Promise<Response> {
  const roomId = roomIdParam(c);
  const origin = c.get("origin");
  const suggested = c.req.query("suggested_only");
  if (suggested !== undefined && suggested !== "true" && suggested !== "false") throw invalidParam("'suggested_only' must be true or false");
  const root = await entryOf(c.env, roomId, origin);
  if (!root || !(await accessible(c.env, root, origin))) throw notFound(`Unknown room ${roomId}`);
  const childrenState = root.children_state.filter((ev) => suggested !== "true" || ev.content.suggested === true);
  const children: Record<string, unknown>[] = [];
  const inaccessible: string[] = [];
  await Promise.all(
    childrenState.slice(0, MAX_CHILDREN).map(async (ev) => {
      if (!isValidRoomId(ev.state_key)) return;
      const child = await entryOf(c.env, ev.state_key, origin);
      if (!child) return;
      if (await accessible(c.env, child, origin)) children.push(summary(child));
      else inaccessible.push(ev.state_key);
    }),
  );
  return c.json({ room: { ...summary(root), children_state: childrenState }, children, inaccessible_children: inaccessible });
}

federationHierarchy.get("/_matrix/federation/v1/hierarchy/:roomId", hierarchy);
federationHierarchy.get("/_matrix/federation/unstable/org.matrix.msc2946/hierarchy/:roomId", hierarchy);
