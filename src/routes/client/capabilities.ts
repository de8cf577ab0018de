/**
 * GET /capabilities. https://spec.matrix.org/v1.19/client-server-api/#capabilities-negotiation
 *
 * Room versions come from the room-version table (all stable). Password changes and profile changes are
 * allowed; third-party identifiers are not supported. `m.get_login_token` is not advertised (no login tokens).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { DEFAULT_ROOM_VERSION, supportedRoomVersions } from "../../protocol/room-versions";

export const capabilitiesRoutes = new Hono<AppEnv>();

export function capabilities() {
  return {
    "m.change_password": { enabled: true },
    "m.room_versions": {
      default: DEFAULT_ROOM_VERSION,
      available: Object.fromEntries(supportedRoomVersions().map((v) => [v, "stable"])),
    },
    "m.set_displayname": { enabled: true },
    "m.set_avatar_url": { enabled: true },
    "m.3pid_changes": { enabled: false },
  };
}

capabilitiesRoutes.get("/capabilities", requireAuth, (c) => c.json({ capabilities: capabilities() }));
