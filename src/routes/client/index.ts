/**
 * The client-server API. Endpoint groups register on `v3` (also served under the legacy `r0` prefix, which
 * matrix-nio and other older clients still use) or on `v1` (endpoints that were introduced as v1).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { clientVersions } from "./versions";

/** Routes relative to `/_matrix/client/v3` (and `/_matrix/client/r0`). */
export const v3 = new Hono<AppEnv>();
/** Routes relative to `/_matrix/client/v1`. */
export const v1 = new Hono<AppEnv>();

// --- accounts: registration, login/logout/refresh, account management, devices, capabilities (docs/accounts.md) ---
import { registerRoutes, registerRoutesV1 } from "./register";
import { loginRoutes, loginRoutesV1 } from "./login";
import { accountRoutes } from "./account";
import { deviceRoutes } from "./devices";
import { capabilitiesRoutes } from "./capabilities";
v3.route("/", registerRoutes);
v3.route("/", loginRoutes);
v3.route("/", accountRoutes);
v3.route("/", deviceRoutes);
v3.route("/", capabilitiesRoutes);
v1.route("/", loginRoutesV1);
v1.route("/", registerRoutesV1);
// --- end accounts ---

// --- sync: /sync, filters, account data and tags, typing, receipts and read markers (docs/sync.md) ---
import { syncRoutes } from "./sync";
import { filterRoutes } from "./filters";
import { accountDataRoutes } from "./account-data";
import { typingRoutes } from "./typing";
import { receiptRoutes } from "./receipts";
v3.route("/", syncRoutes);
v3.route("/", filterRoutes);
v3.route("/", accountDataRoutes);
v3.route("/", typingRoutes);
v3.route("/", receiptRoutes);
// --- end sync ---

// --- presence: PUT/GET /presence/{userId}/status (docs/presence.md) ---
import { presenceRoutes } from "./presence";
v3.route("/", presenceRoutes);
// --- end presence ---

// --- rooms: createRoom, send/state/redact, membership, messages/context/state/members, aliases and the
// room directory, profiles, user directory (docs/client-rooms.md) ---
import { roomRoutes } from "./rooms";
import { membershipRoutes } from "./membership";
import { messageRoutes, messageRoutesV1 } from "./messages";
import { directoryRoutes } from "./directory";
import { profileRoutes } from "./profile";
import { userDirectoryRoutes } from "./user-directory";
v3.route("/", roomRoutes);
v3.route("/", membershipRoutes);
v3.route("/", messageRoutes);
v3.route("/", directoryRoutes);
v3.route("/", profileRoutes);
v3.route("/", userDirectoryRoutes);
v1.route("/", messageRoutesV1);
// --- end rooms ---

// --- search and room upgrades: POST /search, POST /rooms/{roomId}/upgrade (docs/search.md, docs/room-upgrades.md) ---
import { searchRoutes } from "./search";
import { upgradeRoutes } from "./upgrade";
v3.route("/", searchRoutes);
v3.route("/", upgradeRoutes);
// --- end search and room upgrades ---

// --- e2ee and push: keys, cross-signing, to-device, key backup, push rules and pushers (docs/e2ee.md) ---
import { keyRoutes } from "./keys";
import { toDeviceRoutes } from "./to-device";
import { roomKeyRoutes } from "./room-keys";
import { pushRuleRoutes } from "./push-rules";
v3.route("/", keyRoutes);
v3.route("/", toDeviceRoutes);
v3.route("/", roomKeyRoutes);
v3.route("/", pushRuleRoutes);
// --- end e2ee and push ---

// --- application services: ping, third-party networks (docs/appservices.md; authentication in src/appservices/auth.ts) ---
import { appservicePingRoutes } from "./appservice";
import { thirdPartyRoutes } from "./thirdparty";
v1.route("/", appservicePingRoutes);
v3.route("/", thirdPartyRoutes);
// --- end application services ---

// --- VoIP, content reports, OpenID for integrations (docs/moderation.md, docs/accounts.md) ---
import { voipRoutes } from "./voip";
import { reportRoutes } from "./reports";
import { openIdRoutes } from "./openid";
v3.route("/", voipRoutes);
v3.route("/", reportRoutes);
v3.route("/", openIdRoutes);
// --- end VoIP, reports, OpenID ---

// --- mutual rooms (docs/client-rooms.md) ---
import { mutualRoomRoutesV1 } from "./mutual-rooms";
v1.route("/", mutualRoomRoutesV1);
// --- end mutual rooms ---

// --- spaces and room previews: /hierarchy, /room_summary and MSC3266's unstable paths (docs/spaces.md) ---
import { roomSummaryUnstable, spaceRoutesV1 } from "./spaces";
v1.route("/", spaceRoutesV1);
// --- end spaces ---

// --- push notifications: GET /notifications (docs/push.md) ---
import { notificationRoutes } from "./notifications";
v3.route("/", notificationRoutes);
// --- end push notifications ---

// --- relations: /relations and /threads (docs/relations.md) ---
import { relationRoutesV1 } from "./relations";
v1.route("/", relationRoutesV1);
// --- end relations ---

export function mountClientApi(app: Hono<AppEnv>): void {
  app.route("/", clientVersions);
  app.route("/_matrix/client/v3", v3);
  app.route("/_matrix/client/r0", v3);
  app.route("/_matrix/client/v1", v1);
  app.route("/_matrix/client/unstable/im.nheko.summary", roomSummaryUnstable); // spaces: MSC3266 room summary
}
