/**
 * Spaces and room previews (docs/spaces.md):
 * - `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` — a page of the space tree under a room
 *   (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy);
 * - `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` — a room's summary, with or without an access token
 *   (spec v1.15+, MSC3266), also under MSC3266's unstable paths `…/unstable/im.nheko.summary/summary/{…}` and
 *   `…/unstable/im.nheko.summary/rooms/{…}/summary`.
 * The walk and the summary live in src/rooms/spaces.ts and src/rooms/summary.ts.
 */
import { Hono, type MiddlewareHandler } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { accessTokenOf, requireAuth } from "../../http/auth";
import { invalidParam } from "../../http/errors";
import { isValidServerName } from "../../protocol/identifiers";
import { requireRoomId } from "../../rooms/common";
import { resolveRoomIdOrAlias } from "../../rooms/aliases";
import { DEFAULT_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT, roomSummaryFor, walkHierarchy } from "../../rooms/spaces";

/** Routes relative to `/_matrix/client/v1`. */
export const spaceRoutesV1 = new Hono<AppEnv>();
/** Routes relative to `/_matrix/client/unstable/im.nheko.summary`. */
export const roomSummaryUnstable = new Hono<AppEnv>();

/**
 * Authenticates when the request carries an access token (a bad one is still a 401, as for any endpoint) and
 * lets requests without one through with no requester.
 */
const optionalAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.get("requester") || accessTokenOf(c) !== undefined) return requireAuth(c, next);
  await next();
};

function boolQuery(c: AppContext, name: string): boolean {
  const v = c.req.query(name);
  if (v === undefined || v === "false") return false;
  if (v === "true") return true;
  throw invalidParam(`'${name}' must be true or false`);
}

/** An integer query parameter of at least `min`, or undefined when absent. */
function intQuery(c: AppContext, name: string, min: number): number | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (!/^-?\d{1,15}$/.test(v)) throw invalidParam(`'${name}' must be an integer`);
  const n = Number(v);
  if (n < min) throw invalidParam(`'${name}' must be at least ${min}`);
  return n;
}

/** Server names given as repeated query parameters (under any of `names`), at most 20. */
function viaQuery(c: AppContext, ...names: string[]): string[] {
  const via = names.flatMap((n) => c.req.queries(n) ?? []);
  for (const s of via) if (!isValidServerName(s)) throw invalidParam(`Invalid server name in 'via': ${JSON.stringify(s)}`);
  return [...new Set(via)].slice(0, 20);
}

spaceRoutesV1.get("/rooms/:roomId/hierarchy", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const from = c.req.query("from");
  const via = viaQuery(c, "via", "org.matrix.msc4235.via");
  if (from !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(from)) throw invalidParam("Unknown pagination token");
  const page = await walkHierarchy(c.env, {
    roomId,
    userId: c.get("requester").userId,
    suggestedOnly: boolQuery(c, "suggested_only"),
    maxDepth: intQuery(c, "max_depth", 0) ?? null,
    limit: Math.min(intQuery(c, "limit", 1) ?? DEFAULT_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT),
    from,
    via,
  });
  return c.json(page);
});

async function roomSummary(c: AppContext): Promise<Response> {
  const via = viaQuery(c, "via");
  const { roomId, servers } = await resolveRoomIdOrAlias(c.env, c.req.param("roomIdOrAlias") ?? "");
  const requester = c.get("requester");
  return c.json(await roomSummaryFor(c.env, roomId, [...via, ...servers], requester ? requester.userId : null));
}

spaceRoutesV1.get("/room_summary/:roomIdOrAlias", optionalAuth, roomSummary);
roomSummaryUnstable.get("/summary/:roomIdOrAlias", optionalAuth, roomSummary);
roomSummaryUnstable.get("/rooms/:roomIdOrAlias/summary", optionalAuth, roomSummary);
