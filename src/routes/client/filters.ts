/**
 * Filters: POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId}
 * (https://spec.matrix.org/v1.19/client-server-api/#filtering). Stored in the user's UserDO; only for oneself.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { forbidden, invalidParam, notFound } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { parseFilter } from "../../sync/filter";

export const filterRoutes = new Hono<AppEnv>();

filterRoutes.use("/user/:userId/filter", requireAuth);
filterRoutes.use("/user/:userId/filter/*", requireAuth);

filterRoutes.post("/user/:userId/filter", async (c) => {
  const userId = c.req.param("userId");
  if (userId !== c.get("requester").userId) throw forbidden("Cannot create filters for other users");
  const filter = parseFilter(await readJsonObject(c));
  const user = c.env.USERS.get(c.env.USERS.idFromName(userId));
  return c.json({ filter_id: await user.createFilter(JSON.stringify(filter)) });
});

filterRoutes.get("/user/:userId/filter/:filterId", async (c) => {
  const userId = c.req.param("userId");
  if (userId !== c.get("requester").userId) throw forbidden("Cannot get filters for other users");
  const filterId = c.req.param("filterId");
  if (!/^\d+$/.test(filterId)) throw invalidParam("Invalid filter ID");
  const stored = await c.env.USERS.get(c.env.USERS.idFromName(userId)).getFilter(filterId);
  if (stored === null) throw notFound("No such filter");
  return c.json(JSON.parse(stored) as object);
});
