/**
 * Server ACLs (`m.room.server_acl`, https://spec.matrix.org/v1.19/client-server-api/#server-access-control-lists-acls-for-rooms):
 * whether a server may take part in a room. Applied by inbound /send per PDU and to typing and receipt EDUs.
 *
 * Order: no ACL → allow; an IP literal with `allow_ip_literals: false` → deny; a `deny` match → deny; an `allow`
 * match → allow; otherwise deny. Patterns are case-insensitive globs (`*`, `?`) matched against the server name
 * without its port.
 */
import { parseServerName } from "../protocol/identifiers";

const globCache = new Map<string, RegExp>();

/** A case-insensitive glob (`*` any run, `?` one character) as an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    re = new RegExp(`^${body}$`, "is");
    if (globCache.size > 1000) globCache.clear();
    globCache.set(glob, re);
  }
  return re;
}

function patterns(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((p): p is string => typeof p === "string") : [];
}

/** Whether `serverName` may take part in a room whose ACL content is `acl` (undefined/null: no ACL). */
export function serverAllowedByAcl(serverName: string, acl: unknown): boolean {
  if (acl === undefined || acl === null) return true;
  const content = typeof acl === "object" && !Array.isArray(acl) ? (acl as Record<string, unknown>) : {};
  let host: string;
  let ipLiteral: boolean;
  try {
    const parsed = parseServerName(serverName);
    host = parsed.host;
    ipLiteral = parsed.hostKind !== "dns";
  } catch {
    return false;
  }
  if (ipLiteral && content.allow_ip_literals === false) return false;
  if (patterns(content.deny).some((p) => globToRegExp(p).test(host))) return false;
  return patterns(content.allow).some((p) => globToRegExp(p).test(host));
}
