/**
 * The identifier checks the authorization rules need, on top of src/protocol/identifiers.ts: the rules compare
 * server names, and a missing server name must read as "no match" rather than throw.
 *
 * User IDs use the same lenient (historical) grammar that PDU format checks apply to `sender`; MSC4289 asks
 * `additional_creators` to pass exactly that validation.
 */
import { isValidUserId, serverNameOf as strictServerNameOf } from "../identifiers";

export { isValidEventId, isValidRoomId, isValidUserId } from "../identifiers";

/** The server name of a `@user:server`, `!room:server` or `$event:server` ID; undefined if it has none. */
export function serverNameOf(id: unknown): string | undefined {
  if (typeof id !== "string") return undefined;
  try {
    return strictServerNameOf(id);
  } catch {
    return undefined;
  }
}

/** A valid user ID's server name, or undefined if `id` is not a valid user ID. */
export function userServerName(id: unknown): string | undefined {
  return isValidUserId(id) ? serverNameOf(id) : undefined;
}
