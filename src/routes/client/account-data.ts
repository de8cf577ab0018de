/**
 * Account data and room tags (https://spec.matrix.org/v1.19/client-server-api/#client-config,
 * https://spec.matrix.org/v1.19/client-server-api/#room-tagging):
 *   PUT/GET /user/{userId}/account_data/{type}
 *   PUT/GET /user/{userId}/rooms/{roomId}/account_data/{type}
 *   GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE /user/{userId}/rooms/{roomId}/tags/{tag}
 * Only for oneself. Stored in the user's UserDO, where every change takes a sync stream position.
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, forbidden, invalidParam, MatrixError, notFound } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { isValidRoomId } from "../../protocol/identifiers";

export const accountDataRoutes = new Hono<AppEnv>();

accountDataRoutes.use("/user/:userId/account_data/*", requireAuth);
accountDataRoutes.use("/user/:userId/rooms/*", requireAuth);

/** Account data types the server manages; clients read them but may not set them (405 M_BAD_JSON). */
const SERVER_MANAGED = new Set(["m.fully_read", "m.push_rules"]);

function self(c: AppContext, action: string) {
  const userId = c.req.param("userId");
  if (userId !== c.get("requester").userId) throw forbidden(`Cannot ${action} account data for other users.`);
  return c.env.USERS.get(c.env.USERS.idFromName(userId!));
}

function roomIdParam(c: AppContext): string {
  const roomId = c.req.param("roomId")!;
  if (!isValidRoomId(roomId)) throw invalidParam(`${roomId} is not a valid room ID`);
  return roomId;
}

function typeParam(c: AppContext): string {
  const type = c.req.param("type")!;
  if (type.length === 0 || type.length > 255) throw invalidParam("Invalid account data type");
  return type;
}

async function put(c: AppContext, roomId: string | null) {
  const user = self(c, "add");
  const type = typeParam(c);
  const content = await readJsonObject(c);
  if (SERVER_MANAGED.has(type)) throw new MatrixError(405, "M_BAD_JSON", `Cannot set ${type} through this API.`);
  await user.setAccountData(roomId, type, JSON.stringify(content));
  return c.json({});
}

async function get(c: AppContext, roomId: string | null) {
  const user = self(c, "get");
  const content = await user.getAccountData(roomId, typeParam(c));
  if (content === null) throw notFound("Account data not found");
  return c.json(JSON.parse(content) as object);
}

accountDataRoutes.put("/user/:userId/account_data/:type", (c) => put(c, null));
accountDataRoutes.get("/user/:userId/account_data/:type", (c) => get(c, null));
accountDataRoutes.put("/user/:userId/rooms/:roomId/account_data/:type", (c) => put(c, roomIdParam(c)));
accountDataRoutes.get("/user/:userId/rooms/:roomId/account_data/:type", (c) => get(c, roomIdParam(c)));

accountDataRoutes.get("/user/:userId/rooms/:roomId/tags", async (c) => {
  const user = self(c, "get");
  return c.json(JSON.parse(await user.getTags(roomIdParam(c))) as object);
});

accountDataRoutes.put("/user/:userId/rooms/:roomId/tags/:tag", async (c) => {
  const user = self(c, "add");
  const roomId = roomIdParam(c);
  const tag = c.req.param("tag");
  if (tag.length === 0 || tag.length > 255) throw invalidParam("Invalid tag");
  const content = await readJsonObject(c);
  if (content.order !== undefined && (typeof content.order !== "number" || content.order < 0 || content.order > 1)) {
    throw badJson("'order' must be a number between 0 and 1");
  }
  await user.setTag(roomId, tag, JSON.stringify(content));
  return c.json({});
});

accountDataRoutes.delete("/user/:userId/rooms/:roomId/tags/:tag", async (c) => {
  const user = self(c, "remove");
  await user.removeTag(roomIdParam(c), c.req.param("tag"));
  return c.json({});
});
