/** https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1version */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { SERVER_SOFTWARE, SERVER_VERSION } from "../../version";

export const federationVersion = new Hono<AppEnv>();

federationVersion.get("/_matrix/federation/v1/version", (c) =>
  c.json({ server: { name: SERVER_SOFTWARE, version: SERVER_VERSION } }),
);
