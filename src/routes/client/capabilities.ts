/**
 * GET /capabilities. https://spec.matrix.org/v1.19/client-server-api/#capabilities-negotiation
 *
 * Room versions come from the room-version table (all stable). Password changes and profile changes are
 * allowed; third-party identifiers are not supported. `m.get_login_token` follows LOGIN_VIA_EXISTING_SESSION.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { DEFAULT_ROOM_VERSION, supportedRoomVersions } from "../../protocol/room-versions";
import { getConfig } from "../../config";
import type { Env } from "../../env";

export const capabilitiesRoutes = new Hono<AppEnv>();

export function capabilities(env: Env) {
  return {
    "m.change_password": { enabled: true },
    "m.room_versions": {
      default: DEFAULT_ROOM_VERSION,
      available: Object.fromEntries(supportedRoomVersions().map((v) => [v, "stable"])),
    },
    "m.set_displayname": { enabled: true },
    "m.set_avatar_url": { enabled: true },
    "m.3pid_changes": { enabled: false },
    "m.get_login_token": { enabled: getConfig(env).loginViaExistingSession },
  };
}

capabilitiesRoutes.get("/capabilities", requireAuth, (c) => c.json({ capabilities: capabilities(c.env) }));
