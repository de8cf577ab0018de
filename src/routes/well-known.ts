/**
 * Server and client discovery documents.
 * https://spec.matrix.org/v1.19/server-server-api/#getwell-knownmatrixserver
 * https://spec.matrix.org/v1.19/client-server-api/#getwell-knownmatrixclient
 * https://spec.matrix.org/v1.19/client-server-api/#getwell-knownmatrixsupport
 */
import { Hono } from "hono";
import type { AppEnv } from "../http/app";
import { getConfig } from "../config";
import { notFound } from "../http/errors";

export const wellKnown = new Hono<AppEnv>();

wellKnown.get("/.well-known/matrix/server", (c) => {
  const { serverName } = getConfig(c.env);
  // Workers serve HTTPS on 443, never on the federation default of 8448, so a bare server name is delegated
  // to port 443 of the same host.
  return c.json({ "m.server": hasPort(serverName) ? serverName : `${serverName}:443` });
});

// Server admin contacts and support page (SUPPORT_CONTACTS); 404 when none are configured, as the spec allows.
// https://spec.matrix.org/v1.19/client-server-api/#getwell-knownmatrixsupport
wellKnown.get("/.well-known/matrix/support", (c) => {
  const support = getConfig(c.env).support;
  if (!support) throw notFound("No support information is configured on this server");
  return c.json(support);
});

wellKnown.get("/.well-known/matrix/client", (c) => {
  const origin = new URL(c.req.url).origin;
  return c.json({ "m.homeserver": { base_url: origin } });
});

function hasPort(serverName: string): boolean {
  // An IPv6 literal has colons inside brackets; a port follows the closing bracket.
  const host = serverName.startsWith("[") ? serverName.slice(serverName.indexOf("]") + 1) : serverName;
  return host.includes(":");
}
