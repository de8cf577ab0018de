/**
 * Ignoring users (https://spec.matrix.org/v1.19/client-server-api/#ignoring-users): a user's
 * `m.ignored_user_list` account data names users whose events the server must not send them. As Synapse, the
 * filter applies when events are served — /sync timelines, /messages, /context, /event, /relations, /threads,
 * /search and notification counts — and drops non-state events of ignored senders (state events stay, so the
 * client's view of the room state remains right); invites from ignored users are left out of /sync.
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { Viewer } from "../../durable-objects/room/queries";

export const IGNORED_USER_LIST = "m.ignored_user_list";

/** The ignored user IDs in an `m.ignored_user_list` content (JSON text or null). Malformed content ignores no one. */
export function ignoredUsersOf(content: string | null): string[] {
  if (content === null) return [];
  try {
    const parsed = JSON.parse(content) as { ignored_users?: unknown };
    const users = parsed.ignored_users;
    if (typeof users !== "object" || users === null || Array.isArray(users)) return [];
    return Object.keys(users).filter((u) => u.startsWith("@"));
  } catch {
    return [];
  }
}

/** The viewer for a client read: the requester, with the users they ignore (one UserDO call). */
export async function requesterViewer(env: Env, requester: Requester): Promise<Viewer> {
  const viewer: Viewer = { userId: requester.userId };
  if (requester.deviceId) viewer.deviceId = requester.deviceId;
  const ignored = ignoredUsersOf(await env.USERS.get(env.USERS.idFromName(requester.userId)).getAccountData(null, IGNORED_USER_LIST));
  if (ignored.length > 0) viewer.ignoredUsers = ignored;
  return viewer;
}
