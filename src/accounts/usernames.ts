/**
 * Localparts for new accounts. New user IDs must use the current grammar (`a-z 0-9 . _ = - / +`), so a requested
 * username is lower-cased first (as Synapse does) and then checked; anything else is `M_INVALID_USERNAME`.
 * https://spec.matrix.org/v1.19/appendices/#user-identifiers
 */
import { MatrixError } from "../http/errors";
import { isStrictUserLocalpart, MAX_ID_BYTES } from "../protocol/identifiers";
import { utf8ByteLength } from "../protocol/canonical-json";

export const invalidUsername = (msg: string) => new MatrixError(400, "M_INVALID_USERNAME", msg);
export const userInUse = () => new MatrixError(400, "M_USER_IN_USE", "User ID already taken.");

/** Longest `username` accepted in a request before any other check (as Synapse). */
export const MAX_USERNAME_INPUT = 512;

export function userIdFor(localpart: string, serverName: string): string {
  return `@${localpart}:${serverName}`;
}

/**
 * Maps a requested username to the localpart to register, or throws `M_INVALID_USERNAME`. `generated` marks
 * localparts the server picked itself (those may be all digits).
 */
export function normaliseNewLocalpart(username: unknown, serverName: string, generated = false): string {
  if (typeof username !== "string" || username.length > MAX_USERNAME_INPUT) throw invalidUsername("Invalid username");
  const localpart = username.toLowerCase();
  if (localpart === "") throw invalidUsername("User ID cannot be empty");
  if (!isStrictUserLocalpart(localpart)) {
    throw invalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'");
  }
  if (localpart.startsWith("_")) throw invalidUsername("User ID may not begin with _");
  if (!generated && /^\d+$/.test(localpart)) throw invalidUsername("Numeric user IDs are reserved for generated accounts");
  if (utf8ByteLength(userIdFor(localpart, serverName)) > MAX_ID_BYTES) {
    throw invalidUsername(`User ID may not be longer than ${MAX_ID_BYTES} characters`);
  }
  return localpart;
}

/** A localpart for a registration that asked for none: twelve random digits (collisions are retried). */
export function generatedLocalpart(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => String(b % 10)).join("").replace(/^0/, "1");
}
