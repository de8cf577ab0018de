/**
 * POST /search (https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3search).
 * The logic lives in src/search (parsing, fan-out and merge) and durable-objects/room/search-index.ts.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { search } from "../../search/search";

export const searchRoutes = new Hono<AppEnv>();

searchRoutes.post("/search", requireAuth, async (c) => {
  return c.json(await search(c.env, c.get("requester"), await readJsonObject(c), c.req.query("next_batch")));
});
