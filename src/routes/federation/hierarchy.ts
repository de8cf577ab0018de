/**
 * Spaces for other servers: `GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=`.
 * https://spec.matrix.org/v1.19/server-server-api/#spaces
 *
 * The room (a space) with its `m.space.child` events, and a summary of each child this server holds. A room is
 * shown to a server if anyone may join or peek (join rule public / knock / knock_restricted, or world-readable
 * history), if the server has users in it, or — restricted rooms — if it has users in one of the allowed rooms
 * that this server holds. Children held here but not shown are listed in `inaccessible_children`; children not
 * held here are left out (the asking server can ask a server named in their `via`). Summaries and access rules
 * are shared with the client endpoints (src/rooms/summary.ts).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { invalidParam, notFound } from "../../http/errors";
import { isValidRoomId } from "../../protocol/identifiers";
import { serverEntryOf, serverMayAccess, summaryFromStats, type RoomSummary } from "../../rooms/summary";
import { roomIdParam } from "./common";

export const federationHierarchy = new Hono<AppEnv>();

/** Children summarised at most. */
const MAX_CHILDREN = 50;

/** Spaces summary; also under MSC2946's unstable path, which servers from before its stabilisation call. */
async function hierarchy(c: AppContext): Promise<Response> {
  const roomId = roomIdParam(c);
  const origin = c.get("origin");
  const suggested = c.req.query("suggested_only");
  if (suggested !== undefined && suggested !== "true" && suggested !== "false") throw invalidParam("'suggested_only' must be true or false");
  const root = await serverEntryOf(c.env, roomId, origin);
  if (!root || !(await serverMayAccess(c.env, root, origin))) throw notFound(`Unknown room ${roomId}`);
  const childrenState = root.children_state.filter((ev) => suggested !== "true" || ev.content.suggested === true);
  const children: RoomSummary[] = [];
  const inaccessible: string[] = [];
  await Promise.all(
    childrenState.slice(0, MAX_CHILDREN).map(async (ev) => {
      if (!isValidRoomId(ev.state_key)) return;
      const child = await serverEntryOf(c.env, ev.state_key, origin);
      if (!child) return;
      if (await serverMayAccess(c.env, child, origin)) children.push(summaryFromStats(child.stats, child.allow_rooms));
      else inaccessible.push(ev.state_key);
    }),
  );
  return c.json({ room: { ...summaryFromStats(root.stats, root.allow_rooms), children_state: childrenState }, children, inaccessible_children: inaccessible });
}

federationHierarchy.get("/_matrix/federation/v1/hierarchy/:roomId", hierarchy);
federationHierarchy.get("/_matrix/federation/unstable/org.matrix.msc2946/hierarchy/:roomId", hierarchy);
