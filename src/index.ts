/**
 * The Axon Worker: one Hono app with a route group per API, plus the Durable Object classes it exports.
 */
import { createApp } from "./http/app";
import { wellKnown } from "./routes/well-known";
import { mountClientApi } from "./routes/client";
import { federationVersion } from "./routes/federation/version";
import { serverKeys } from "./routes/keys/server";
import { synapseAdmin } from "./routes/synapse-admin";

const app = createApp();
app.route("/", wellKnown);
mountClientApi(app);
app.route("/", federationVersion);
app.route("/", serverKeys);
app.route("/", synapseAdmin); // shared-secret registration (src/routes/synapse-admin.ts)

export default app;

export { RoomDO } from "../durable-objects/room/RoomDO";
export { UserDO } from "../durable-objects/user/UserDO";
export { RateLimiterDO } from "../durable-objects/rate-limiter/RateLimiterDO";
