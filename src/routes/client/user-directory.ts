/**
 * POST /user_directory/search (https://spec.matrix.org/v1.19/client-server-api/#user-directory); the search
 * itself is in src/rooms/user-directory.ts.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { badJson, missingParam } from "../../http/errors";
import { searchUserDirectory } from "../../rooms/user-directory";

export const userDirectoryRoutes = new Hono<AppEnv>();

userDirectoryRoutes.post("/user_directory/search", requireAuth, async (c) => {
  const body = await readJsonObject(c);
  if (body.search_term === undefined) throw missingParam("Missing 'search_term'");
  if (typeof body.search_term !== "string") throw badJson("'search_term' must be a string");
  const limit = body.limit ?? 10;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0) throw badJson("'limit' must be a non-negative integer");
  return c.json(await searchUserDirectory(c.env, c.get("requester").userId, body.search_term, Math.min(limit, 100)));
});
