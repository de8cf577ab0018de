/**
 * Queries from other servers: `GET /_matrix/federation/v1/query/profile?user_id=&field=` and
 * `GET /query/directory?room_alias=`. https://spec.matrix.org/v1.19/server-server-api/#querying-for-information
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { invalidParam, missingParam, notFound } from "../../http/errors";
import { getConfig } from "../../config";
import { isValidRoomAlias, isValidUserId, serverNameOf } from "../../protocol/identifiers";
import { getProfile } from "../../rooms/profiles";
import { getAlias } from "../../rooms/directory-store";
import { queryAliasFromAppservices } from "../../appservices/client";
import { roomStub } from "./common";

export const federationQueries = new Hono<AppEnv>();

federationQueries.get("/_matrix/federation/v1/query/profile", async (c) => {
  const userId = c.req.query("user_id");
  if (userId === undefined || userId === "") throw missingParam("Missing 'user_id'");
  if (!isValidUserId(userId)) throw invalidParam("'user_id' is not a user ID");
  if (serverNameOf(userId) !== getConfig(c.env).serverName) throw invalidParam(`${userId} is not a user of this server`);
  const field = c.req.query("field");
  const profile = await getProfile(c.env.DB, userId);
  if (!profile) throw notFound("Profile not found");
  if (field !== undefined && field !== "") {
    if (!(field in profile)) throw notFound(`The profile has no ${field}`);
    return c.json({ [field]: profile[field] });
  }
  return c.json(profile);
});

federationQueries.get("/_matrix/federation/v1/query/directory", async (c) => {
  const alias = c.req.query("room_alias");
  if (alias === undefined || alias === "") throw missingParam("Missing 'room_alias'");
  if (!isValidRoomAlias(alias)) throw invalidParam("'room_alias' is not a room alias");
  const ours = getConfig(c.env).serverName;
  if (serverNameOf(alias) !== ours) throw invalidParam(`${alias} is not an alias of this server`);
  let row = await getAlias(c.env.DB, alias);
  // Application services are asked about unknown aliases in their namespaces.
  if (!row && (await queryAliasFromAppservices(c.env, alias))) row = await getAlias(c.env.DB, alias);
  if (!row) throw notFound(`Room alias ${alias} not found`);
  const servers = await roomStub(c.env, row.room_id).joinedServers();
  return c.json({ room_id: row.room_id, servers: servers.length > 0 ? servers : [ours] });
});
