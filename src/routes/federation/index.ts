/**
 * The federation API (server-server): request authentication for every /_matrix/federation/* endpoint
 * (except /version, mounted separately in version.ts), and the endpoint groups.
 */
import type { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireServerAuth } from "./auth";
import { federationSend } from "./send";
import { federationAdmin } from "./admin";
// Serving room data and the membership handshakes (docs/federation.md, "Serving room data").
import { federationJoins } from "./joins";
import { federationLeaves } from "./leaves";
import { federationKnocks } from "./knocks";
import { federationInvites } from "./invites";
import { federationEvents } from "./events";
import { federationState } from "./state";
import { federationBackfill } from "./backfill";
import { federationQueries } from "./queries";
import { federationUser } from "./user";
import { federationPublicRooms } from "./public-rooms";
import { federationHierarchy } from "./hierarchy";
import { federationMedia } from "./media"; // media repository (docs/media.md)
import { federationOpenId } from "./openid"; // OpenID userinfo for integrations (unauthenticated, see auth.ts)

export function mountFederationApi(app: Hono<AppEnv>): void {
  app.use("/_matrix/federation/*", requireServerAuth);
  app.route("/", federationSend);
  app.route("/", federationAdmin);
  for (const group of [
    federationJoins, federationLeaves, federationKnocks, federationInvites, federationEvents, federationState,
    federationBackfill, federationQueries, federationUser, federationPublicRooms, federationHierarchy,
    federationMedia, federationOpenId,
  ]) {
    app.route("/", group);
  }
}
