/**
 * Questions for other servers on behalf of our clients: a remote user's profile (`GET /query/profile`) and a
 * remote room alias (`GET /query/directory`). https://spec.matrix.org/v1.19/server-server-api/#querying-for-information
 * Used through `federationHooks.queryRemoteProfile` / `queryRemoteAlias` (src/rooms/federation-hooks.ts).
 */
import type { Env } from "../env";
import { MatrixError } from "../http/errors";
import { isValidRoomId, serverNameOf } from "../protocol/identifiers";
import { FederationClient, FederationRequestError } from "./client";

const QUERY_TIMEOUT_MS = 10_000;

function unreachable(server: string, e: unknown): MatrixError {
  return new MatrixError(502, "M_UNKNOWN", `Could not ask ${server}: ${(e as Error).message}`);
}

/** A remote user's profile (or one field of it); undefined when their server says there is none. */
export async function queryRemoteProfile(env: Env, userId: string, field?: string): Promise<Record<string, unknown> | undefined> {
  const server = serverNameOf(userId);
  try {
    const res = await new FederationClient(env).request<Record<string, unknown>>(server, "GET", "/_matrix/federation/v1/query/profile", undefined, {
      query: { user_id: userId, field },
      timeoutMs: QUERY_TIMEOUT_MS,
    });
    if (field !== undefined) return field in res && res[field] !== null ? { [field]: res[field] } : undefined;
    return Object.fromEntries(Object.entries(res).filter(([, v]) => v !== null));
  } catch (e) {
    if (e instanceof FederationRequestError && (e.status === 404 || e.status === 400)) return undefined;
    throw unreachable(server, e);
  }
}

/** A remote alias's room and the servers to join through; undefined when the alias's server does not know it. */
export async function queryRemoteAlias(env: Env, alias: string): Promise<{ room_id: string; servers: string[] } | undefined> {
  const server = serverNameOf(alias);
  let res: { room_id?: unknown; servers?: unknown };
  try {
    res = await new FederationClient(env).request(server, "GET", "/_matrix/federation/v1/query/directory", undefined, {
      query: { room_alias: alias },
      timeoutMs: QUERY_TIMEOUT_MS,
    });
  } catch (e) {
    if (e instanceof FederationRequestError && e.status === 404) return undefined;
    throw unreachable(server, e);
  }
  if (!isValidRoomId(res.room_id)) throw new MatrixError(502, "M_UNKNOWN", `${server} answered the alias query without a room ID`);
  const servers = Array.isArray(res.servers) ? res.servers.filter((s): s is string => typeof s === "string").slice(0, 50) : [];
  return { room_id: res.room_id, servers: servers.includes(server) ? servers : [...servers, server] };
}
