/** https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientversions */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";

/**
 * Spec versions whose client-server API this server implements. Clients pick features by these, so the list
 * only grows when the endpoints it promises exist.
 */
export const CLIENT_SPEC_VERSIONS = [
  "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
  "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
];

/** Unstable features that are implemented (MSC number → enabled). */
export const UNSTABLE_FEATURES: Record<string, boolean> = {};

export const clientVersions = new Hono<AppEnv>();

clientVersions.get("/_matrix/client/versions", (c) =>
  c.json({ versions: CLIENT_SPEC_VERSIONS, unstable_features: UNSTABLE_FEATURES }),
);
