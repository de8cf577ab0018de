/**
 * Identifier grammars (https://spec.matrix.org/v1.19/appendices/#identifier-grammar): server names, user IDs,
 * room IDs (with and without a domain), room aliases and event IDs. Each `parseX` returns a typed result or
 * throws a {@link MatrixIdError} saying what is wrong; each `isValidX` is the non-throwing form.
 *
 * Leniency follows the spec: events must be accepted with *historical* user IDs (any non-surrogate code point
 * except `:` and NUL in the localpart, even empty), so `parseUserId` accepts them unless `{strict: true}` is
 * asked for (for IDs this server allocates). Server names follow the spec's ABNF, which is looser than DNS
 * (any 1–255 of `[A-Za-z0-9.-]`); IPv6 literals are checked against RFC 3513 as the spec requires.
 */

import { isUnpaddedBase64 } from "./base64";
import { utf8ByteLength } from "./canonical-json";
import type { RoomVersion } from "./room-versions";

export type IdKind = "server name" | "user ID" | "room ID" | "room alias" | "event ID";

/** A malformed identifier: `kind` of identifier, the `input`, and a human-readable reason. */
export class MatrixIdError extends Error {
  override readonly name = "MatrixIdError";
  constructor(
    readonly kind: IdKind,
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid ${kind} ${JSON.stringify(input.length > 300 ? input.slice(0, 300) + "…" : input)}: ${reason}`);
  }
}

/** Maximum length in bytes of user IDs, room IDs, room aliases and event IDs (sigil and domain included). */
export const MAX_ID_BYTES = 255;

// ---------------------------------------------------------------------------------------------------------
// Server names

export type HostKind = "dns" | "ipv4" | "ipv6";

export interface ServerName {
  /** The hostname as written: a DNS name, a dotted quad, or an IPv6 literal *including* its brackets. */
  readonly host: string;
  /** The explicit port, if any. */
  readonly port?: number;
  readonly hostKind: HostKind;
}

const DNS_NAME = /^[A-Za-z0-9.-]{1,255}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const PORT = /^\d{1,5}$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

function isIPv4(s: string): boolean {
  const m = IPV4.exec(s);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

/** RFC 3513 §2.2 text forms: eight groups, `::` compression, optional trailing dotted quad. No zone IDs. */
export function isIPv6Address(s: string): boolean {
  if (s.length < 2 || s.length > 45) return false;
  let groups = 0; // groups taken by a trailing dotted quad
  let body = s;
  const lastColon = s.lastIndexOf(":");
  if (lastColon < 0) return false;
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    if (!isIPv4(tail)) return false;
    groups = 2;
    body = s.slice(0, lastColon + 1);
    if (!body.endsWith("::")) body = body.slice(0, -1); // drop the separator before the quad
  }
  const halves = body.split("::");
  if (halves.length > 2) return false;
  const count = (part: string): number => {
    if (part === "") return 0;
    const gs = part.split(":");
    for (const g of gs) if (!HEX_GROUP.test(g)) return -1;
    return gs.length;
  };
  const a = count(halves[0]!);
  if (a < 0) return false;
  if (halves.length === 1) return a + groups === 8;
  const b = count(halves[1]!);
  if (b < 0) return false;
  return a + b + groups <= 7;
}

function serverNameProblem(s: string): string | ServerName {
  if (s.length === 0) return "empty";
  let host: string;
  let rest: string;
  let hostKind: HostKind;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) return "IPv6 literal is missing its closing ']'";
    const addr = s.slice(1, close);
    if (!isIPv6Address(addr)) return `${JSON.stringify(addr)} is not a valid IPv6 address`;
    host = s.slice(0, close + 1);
    rest = s.slice(close + 1);
    hostKind = "ipv6";
  } else {
    const colon = s.indexOf(":");
    host = colon < 0 ? s : s.slice(0, colon);
    rest = colon < 0 ? "" : s.slice(colon);
    if (host.length === 0) return "hostname is empty";
    if (host.length > 255) return "hostname is longer than 255 characters";
    if (!DNS_NAME.test(host)) return "hostname may only contain A-Z, a-z, 0-9, '-' and '.'";
    hostKind = isIPv4(host) ? "ipv4" : "dns";
  }
  if (rest === "") return { host, hostKind };
  if (!rest.startsWith(":")) return "unexpected characters after the hostname";
  const port = rest.slice(1);
  if (!PORT.test(port)) return "port must be 1 to 5 digits";
  return { host, port: Number(port), hostKind };
}

/** Parses `hostname [":" port]`. Throws {@link MatrixIdError}. */
export function parseServerName(s: string): ServerName {
  const r = serverNameProblem(s);
  if (typeof r === "string") throw new MatrixIdError("server name", s, r);
  return r;
}

export function isValidServerName(s: string): boolean {
  return typeof s === "string" && typeof serverNameProblem(s) !== "string";
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

const nativeIsWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
function isWellFormed(s: string): boolean {
  return nativeIsWellFormed ? nativeIsWellFormed.call(s) : !LONE_SURROGATE.test(s);
}

/** Problem with an "opaque" localpart (historical user IDs, room ID and alias localparts), if any. */
function opaqueLocalpartProblem(localpart: string): string | undefined {
  if (localpart.includes("\u0000")) return "localpart contains NUL";
  if (!isWellFormed(localpart)) return "localpart contains a lone UTF-16 surrogate";
  return undefined;
}

interface Split {
  localpart: string;
  serverName: string;
}

/** Splits `<sigil>localpart:server` at the first colon; throws when the sigil, colon or server is wrong. */
function splitDomainId(kind: IdKind, sigil: string, id: string): Split {
  if (typeof id !== "string") throw new MatrixIdError(kind, String(id), "not a string");
  if (!id.startsWith(sigil)) throw new MatrixIdError(kind, id, `must start with '${sigil}'`);
  if (utf8ByteLength(id) > MAX_ID_BYTES) throw new MatrixIdError(kind, id, `longer than ${MAX_ID_BYTES} bytes`);
  const colon = id.indexOf(":");
  if (colon < 0) throw new MatrixIdError(kind, id, "missing ':' before the server name");
  const serverName = id.slice(colon + 1);
  const sn = serverNameProblem(serverName);
  if (typeof sn === "string") throw new MatrixIdError(kind, id, `bad server name: ${sn}`);
  return { localpart: id.slice(sigil.length, colon), serverName };
}

// ---------------------------------------------------------------------------------------------------------
// User IDs

export interface UserId {
  readonly localpart: string;
  readonly serverName: string;
  /** The localpart uses only `a-z 0-9 . _ = - / +` (the current grammar, required for new users). */
  readonly strictLocalpart: boolean;
  /** Non-empty and only U+0021–U+007E: not "non-compliant" in the spec's sense (historical but tolerated). */
  readonly compliant: boolean;
}

const STRICT_LOCALPART = /^[a-z0-9._=\-/+]+$/;
const COMPLIANT_LOCALPART = /^[\x21-\x7e]+$/;

/** Whether `localpart` matches the current user ID localpart grammar (`a-z 0-9 . _ = - / +`, non-empty). */
export function isStrictUserLocalpart(localpart: string): boolean {
  return STRICT_LOCALPART.test(localpart);
}

export interface UserIdOptions {
  /** Require the current grammar for the localpart instead of accepting historical IDs. Default false. */
  readonly strict?: boolean;
}

/** Parses `@localpart:server`. Historical localparts are accepted unless `strict`. Throws {@link MatrixIdError}. */
export function parseUserId(id: string, options?: UserIdOptions): UserId {
  const { localpart, serverName } = splitDomainId("user ID", "@", id);
  const strictLocalpart = STRICT_LOCALPART.test(localpart);
  if (options?.strict && !strictLocalpart) {
    throw new MatrixIdError(
      "user ID",
      id,
      localpart === "" ? "localpart is empty" : "localpart may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
    );
  }
  if (!strictLocalpart) {
    const p = opaqueLocalpartProblem(localpart);
    if (p) throw new MatrixIdError("user ID", id, p);
  }
  return { localpart, serverName, strictLocalpart, compliant: strictLocalpart || COMPLIANT_LOCALPART.test(localpart) };
}

export function isValidUserId(id: unknown, options?: UserIdOptions): id is string {
  if (typeof id !== "string") return false;
  try {
    parseUserId(id, options);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Room IDs, event IDs, aliases

/** Length of unpadded base64 of a SHA-256 hash. */
const HASH_B64_LENGTH = 43;

function isHashId(opaque: string, alphabet: "standard" | "url-safe"): boolean {
  return opaque.length === HASH_B64_LENGTH && isUnpaddedBase64(opaque, alphabet);
}

export interface RoomId {
  /** Everything between `!` and the first `:` (or the whole hash for domainless v12 room IDs). */
  readonly opaqueId: string;
  /** The creating server, for room versions 1–11; `undefined` for domainless (v12+) room IDs. */
  readonly serverName?: string;
}

/**
 * Parses a room ID. With a `roomVersion`, requires that version's form (v12+: `!` + 43 characters of URL-safe
 * unpadded base64, the create event's reference hash; older: `!opaque:server`). Without one, accepts either.
 */
export function parseRoomId(id: string, roomVersion?: RoomVersion): RoomId {
  if (typeof id !== "string") throw new MatrixIdError("room ID", String(id), "not a string");
  if (!id.startsWith("!")) throw new MatrixIdError("room ID", id, "must start with '!'");
  const hasDomain = id.includes(":");
  if (roomVersion && roomVersion.roomIdFromCreateEvent && hasDomain) {
    throw new MatrixIdError("room ID", id, `room version ${roomVersion.id} room IDs have no server name`);
  }
  if (roomVersion && !roomVersion.roomIdFromCreateEvent && !hasDomain) {
    throw new MatrixIdError("room ID", id, "missing ':' before the server name");
  }
  if (!hasDomain) {
    const opaqueId = id.slice(1);
    if (!isHashId(opaqueId, "url-safe")) {
      throw new MatrixIdError("room ID", id, "a room ID without a server name must be 43 characters of URL-safe base64");
    }
    return { opaqueId };
  }
  const { localpart, serverName } = splitDomainId("room ID", "!", id);
  const p = opaqueLocalpartProblem(localpart);
  if (p) throw new MatrixIdError("room ID", id, p);
  return { opaqueId: localpart, serverName };
}

export function isValidRoomId(id: unknown, roomVersion?: RoomVersion): id is string {
  if (typeof id !== "string") return false;
  try {
    parseRoomId(id, roomVersion);
    return true;
  } catch {
    return false;
  }
}

export interface RoomAlias {
  readonly localpart: string;
  readonly serverName: string;
}

/** Parses `#localpart:server`. Throws {@link MatrixIdError}. */
export function parseRoomAlias(id: string): RoomAlias {
  const { localpart, serverName } = splitDomainId("room alias", "#", id);
  const p = opaqueLocalpartProblem(localpart);
  if (p) throw new MatrixIdError("room alias", id, p);
  return { localpart, serverName };
}

export function isValidRoomAlias(id: unknown): id is string {
  if (typeof id !== "string") return false;
  try {
    parseRoomAlias(id);
    return true;
  } catch {
    return false;
  }
}

export interface EventId {
  /** The part after `$` (before the `:` for v1–v2 IDs). */
  readonly opaqueId: string;
  /** The creating server, for v1–v2 event IDs only. */
  readonly serverName?: string;
}

/**
 * Parses an event ID. With a `roomVersion`, requires its form: v1–v2 `$opaque:server`; v3 `$` + 43 characters of
 * standard unpadded base64; v4+ `$` + 43 characters of URL-safe unpadded base64. Without one, accepts any of
 * them. Always at most 255 bytes.
 */
export function parseEventId(id: string, roomVersion?: RoomVersion): EventId {
  if (typeof id !== "string") throw new MatrixIdError("event ID", String(id), "not a string");
  if (!id.startsWith("$")) throw new MatrixIdError("event ID", id, "must start with '$'");
  if (utf8ByteLength(id) > MAX_ID_BYTES) throw new MatrixIdError("event ID", id, `longer than ${MAX_ID_BYTES} bytes`);
  const format = roomVersion?.eventIdFormat;
  const hasDomain = id.includes(":");
  if (format === "v1" || (format === undefined && hasDomain)) {
    const { localpart, serverName } = splitDomainId("event ID", "$", id);
    const p = opaqueLocalpartProblem(localpart);
    if (p) throw new MatrixIdError("event ID", id, p);
    return { opaqueId: localpart, serverName };
  }
  const opaqueId = id.slice(1);
  const ok =
    format === "v3"
      ? isHashId(opaqueId, "standard")
      : format === "v4"
        ? isHashId(opaqueId, "url-safe")
        : isHashId(opaqueId, "standard") || isHashId(opaqueId, "url-safe");
  if (!ok) {
    const what = format === "v3" ? "standard" : format === "v4" ? "URL-safe" : "standard or URL-safe";
    throw new MatrixIdError("event ID", id, `expected '$' followed by 43 characters of ${what} unpadded base64`);
  }
  return { opaqueId };
}

export function isValidEventId(id: unknown, roomVersion?: RoomVersion): id is string {
  if (typeof id !== "string") return false;
  try {
    parseEventId(id, roomVersion);
    return true;
  } catch {
    return false;
  }
}

const KIND_BY_SIGIL: Readonly<Record<string, IdKind>> = {
  "@": "user ID",
  "!": "room ID",
  "#": "room alias",
  $: "event ID",
};

/**
 * The server name of a user ID, room alias, or room/event ID that has one (`@a:example.org:8448` →
 * `example.org:8448`). Throws {@link MatrixIdError} for IDs without a (valid) server name, such as v12 room IDs
 * and v3+ event IDs.
 */
export function serverNameOf(id: string): string {
  const kind = KIND_BY_SIGIL[id.charAt(0)];
  if (!kind) throw new MatrixIdError("user ID", id, "does not start with a known sigil (@, !, #, $)");
  const colon = id.indexOf(":");
  if (colon < 0) throw new MatrixIdError(kind, id, "has no server name");
  const serverName = id.slice(colon + 1);
  const sn = serverNameProblem(serverName);
  if (typeof sn === "string") throw new MatrixIdError(kind, id, `bad server name: ${sn}`);
  return serverName;
}
