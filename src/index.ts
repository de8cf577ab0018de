/**
 * The Axon Worker: one Hono app with a route group per API, plus the Durable Object classes it exports.
 */
import { createApp } from "./http/app";
import { wellKnown } from "./routes/well-known";
import { mountClientApi } from "./routes/client";
import { federationVersion } from "./routes/federation/version";
import { serverKeys } from "./routes/keys/server";
// --- federation (docs/federation.md) ---
import { mountFederationApi } from "./routes/federation";
import "./federation/hooks"; // remote joins/invites/leaves, remote aliases and profiles, outbound typing/receipt EDUs
import { keyQuery } from "./routes/keys/query";
import { synapseAdmin } from "./routes/synapse-admin";
// --- application services (docs/appservices.md) ---
import { appserviceAuth } from "./appservices/auth";
import { appserviceAdmin } from "./routes/admin/appservices";
// --- content reports and whois (docs/moderation.md) ---
import { reportsAdmin } from "./routes/admin/reports";
import { registrationTokensAdmin } from "./routes/admin/registration-tokens";
// --- presence (docs/presence.md) ---
import { presenceActivity } from "./presence/activity";
// --- faster joins (docs/faster-joins.md) ---
import { partialStateAdmin } from "./routes/admin/partial-state";
// --- media repository (docs/media.md) ---
import { clientMediaRoutes } from "./routes/media/client";
import { legacyMediaRoutes } from "./routes/media/legacy";

const app = createApp();
app.route("/", wellKnown);
// Application services: `as_token` authentication, masquerading and `?ts=` for the client API (before its routes).
app.use("/_matrix/client/*", appserviceAuth);
// Presence: sending, typing and receipts count as activity (src/presence/activity.ts, docs/presence.md).
app.use("/_matrix/client/*", presenceActivity);
mountClientApi(app);
// Media: uploads and the deprecated endpoints under /_matrix/media (appservice tokens work there too), and the
// authenticated /_matrix/client/v1/media endpoints (src/routes/media/).
app.use("/_matrix/media/*", appserviceAuth);
app.route("/", legacyMediaRoutes);
app.route("/", clientMediaRoutes);
app.route("/", federationVersion);
app.route("/", serverKeys);
app.route("/", keyQuery); // notary: /_matrix/key/v2/query
mountFederationApi(app); // X-Matrix authentication for /_matrix/federation/*, then /send, admin destinations
app.route("/", synapseAdmin); // shared-secret registration (src/routes/synapse-admin.ts)
app.route("/", appserviceAdmin); // GET /_axon/admin/v1/appservices (src/routes/admin/appservices.ts)
app.route("/", reportsAdmin); // reports for admins, /admin/whois (src/routes/admin/reports.ts)
app.route("/", registrationTokensAdmin); // /_synapse/admin/v1/registration_tokens (src/routes/admin/registration-tokens.ts)
app.route("/", partialStateAdmin); // faster joins: GET /_axon/admin/v1/rooms/{roomId}/partial_state

export default app;

export { RoomDO } from "../durable-objects/room/RoomDO";
export { UserDO } from "../durable-objects/user/UserDO";
export { DestinationDO } from "../durable-objects/destination/DestinationDO";
export { RateLimiterDO } from "../durable-objects/rate-limiter/RateLimiterDO";
export { AppServiceDO } from "../durable-objects/appservice/AppServiceDO";
