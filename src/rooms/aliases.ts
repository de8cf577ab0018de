/**
 * Room aliases (https://spec.matrix.org/v1.19/client-server-api/#room-aliases): local aliases in D1, remote
 * ones through the federation hook; resolving `roomIdOrAlias` path parameters; the `m.room.canonical_alias`
 * content check.
 */
import type { Env } from "../env";
import type { JsonObject } from "../protocol/events";
import { invalidParam, notFound } from "../http/errors";
import { isValidRoomAlias, parseRoomAlias } from "../protocol/identifiers";
import { getAlias } from "./directory-store";
import { federationHooks } from "./federation-hooks";
import { queryAliasFromAppservices } from "../appservices/client";
import { isLocal, matrixError, requireRoomId, roomStub } from "./common";

export function requireAlias(alias: string): string {
  if (!isValidRoomAlias(alias)) throw invalidParam(`Invalid room alias ${JSON.stringify(alias)}`);
  return alias;
}

/** Resolves an alias to its room and the servers to join through; 404 `M_NOT_FOUND` when unknown. */
export async function resolveAlias(env: Env, alias: string): Promise<{ room_id: string; servers: string[] }> {
  requireAlias(alias);
  if (!isLocal(env, alias)) {
    const remote = await federationHooks.queryRemoteAlias(env, alias);
    if (!remote) throw notFound(`Room alias ${alias} not found`);
    return remote;
  }
  let row = await getAlias(env.DB, alias);
  // Application services are asked about unknown aliases in their namespaces (src/appservices/client.ts).
  if (!row && (await queryAliasFromAppservices(env, alias))) row = await getAlias(env.DB, alias);
  if (!row) throw notFound(`Room alias ${alias} not found`);
  const servers = await roomStub(env, row.room_id).joinedServers();
  return { room_id: row.room_id, servers: servers.length ? servers : [parseRoomAlias(alias).serverName] };
}

/** A `/join/{roomIdOrAlias}`-style parameter as a room ID and the servers an alias suggests. */
export async function resolveRoomIdOrAlias(env: Env, roomIdOrAlias: string): Promise<{ roomId: string; servers: string[] }> {
  if (roomIdOrAlias.startsWith("#")) {
    const r = await resolveAlias(env, roomIdOrAlias);
    return { roomId: r.room_id, servers: r.servers };
  }
  if (roomIdOrAlias.startsWith("!")) return { roomId: requireRoomId(roomIdOrAlias), servers: [] };
  throw invalidParam(`${JSON.stringify(roomIdOrAlias)} is neither a room ID nor a room alias`);
}

/**
 * Checks `m.room.canonical_alias` content before it is sent: `alias` and `alt_aliases` must be valid aliases, and
 * local ones must exist and point to this room (400 `M_BAD_ALIAS`). Remote aliases are not looked up.
 */
export async function checkCanonicalAliasContent(env: Env, roomId: string, content: JsonObject): Promise<void> {
  const aliases: string[] = [];
  if (content.alias !== undefined && content.alias !== null) {
    if (typeof content.alias !== "string" || !isValidRoomAlias(content.alias)) {
      throw invalidParam("'alias' must be a valid room alias");
    }
    aliases.push(content.alias);
  }
  if (content.alt_aliases !== undefined) {
    if (!Array.isArray(content.alt_aliases) || !content.alt_aliases.every((a) => typeof a === "string" && isValidRoomAlias(a))) {
      throw invalidParam("'alt_aliases' must be a list of valid room aliases");
    }
    aliases.push(...(content.alt_aliases as string[]));
  }
  for (const alias of aliases) {
    if (!isLocal(env, alias)) continue;
    const row = await getAlias(env.DB, alias);
    if (!row || row.room_id !== roomId) throw matrixError(400, "M_BAD_ALIAS", `Room alias ${alias} does not point to the room`);
  }
}
