/**
 * Authentication of requests from other servers (https://spec.matrix.org/v1.19/server-server-api/#request-authentication):
 * every /_matrix/federation/* endpoint except /version and /openid/userinfo requires an `Authorization: X-Matrix …` header whose
 * destination (when given) is us, whose key is a current key of the origin (fetched if needed) and whose
 * signature covers this exact request: method, path and query as sent, origin, destination, and the JSON body.
 * Failures are 401 M_UNAUTHORIZED. On success `c.get("origin")` is the authenticated server.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { notJson, tooLarge, unauthorized } from "../../http/errors";
import { getConfig } from "../../config";
import { isValidServerName } from "../../protocol/identifiers";
import { KeyStore } from "../../federation/keys";
import { parseXMatrixHeader, verifyRequestSignature, XMatrixParseError, type XMatrixCredentials } from "../../federation/x-matrix";

/** Largest federation request body: a full transaction (50 PDUs and 100 EDUs of up to 64 KiB each). */
export const MAX_FEDERATION_BODY_BYTES = 150 * 65536;

/** Paths under /_matrix/federation that need no signature. */
// OpenID userinfo is asked by integrations with the OpenID token itself (src/routes/federation/openid.ts).
const UNAUTHENTICATED = new Set(["/_matrix/federation/v1/version", "/_matrix/federation/v1/openid/userinfo"]);

/** The request target as the sender signed it: path and query exactly as received, without scheme and host. */
export function requestUri(url: string): string {
  const afterScheme = url.indexOf("//");
  const pathStart = url.indexOf("/", afterScheme < 0 ? 0 : afterScheme + 2);
  const uri = pathStart < 0 ? "/" : url.slice(pathStart);
  const hash = uri.indexOf("#");
  return hash < 0 ? uri : uri.slice(0, hash);
}

export const requireServerAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (UNAUTHENTICATED.has(c.req.path)) return next();
  const origin = await authenticateServer(c);
  c.set("origin", origin);
  await next();
};

/** Checks the X-Matrix credentials of a request and returns the origin. Throws 401 M_UNAUTHORIZED. */
export async function authenticateServer(c: AppContext): Promise<string> {
  const header = c.req.header("authorization");
  if (!header) throw unauthorized("Missing X-Matrix Authorization header");
  let creds: XMatrixCredentials;
  try {
    creds = parseXMatrixHeader(header);
  } catch (e) {
    if (e instanceof XMatrixParseError) throw unauthorized(`Malformed X-Matrix header: ${e.message}`);
    throw e;
  }
  const { serverName } = getConfig(c.env);
  if (creds.destination !== undefined && creds.destination !== serverName) {
    throw unauthorized(`Request is for ${creds.destination}, not this server`);
  }
  if (!isValidServerName(creds.origin)) throw unauthorized("origin is not a valid server name");
  if (!creds.key.startsWith("ed25519:")) throw unauthorized(`Unsupported key algorithm in ${creds.key}`);

  // The body, parsed, is part of what was signed (the text stays cached for the handler).
  const text = await c.req.text();
  if (text.length > MAX_FEDERATION_BODY_BYTES) throw tooLarge("Request body too large");
  let content: unknown;
  if (text.trim() !== "") {
    try {
      content = JSON.parse(text);
    } catch {
      throw notJson("Request body is not JSON");
    }
  }

  // Requests must be signed with a key that is valid now (old keys only count for events).
  const key = await new KeyStore(c.env).key(creds.origin, creds.key, Date.now());
  if (!key || key.expiredTs !== null) throw unauthorized(`Unknown or expired key ${creds.key} for ${creds.origin}`);
  const ok = await verifyRequestSignature(
    { method: c.req.method, uri: requestUri(c.req.url), destination: serverName, ...(content !== undefined ? { content } : {}) },
    creds,
    key.publicKey,
  );
  if (!ok) throw unauthorized("Invalid X-Matrix signature");
  return creds.origin;
}
