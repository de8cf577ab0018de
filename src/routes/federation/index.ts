/**
 * The federation API (server-server): request authentication for every /_matrix/federation/* endpoint
 * (except /version, mounted separately in version.ts), and the endpoint groups.
 */
import type { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireServerAuth } from "./auth";
import { federationSend } from "./send";
import { federationAdmin } from "./admin";

export function mountFederationApi(app: Hono<AppEnv>): void {
  app.use("/_matrix/federation/*", requireServerAuth);
  app.route("/", federationSend);
  app.route("/", federationAdmin);
}
