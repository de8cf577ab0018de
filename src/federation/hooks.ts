/**
 * Plugs the federation client side into the rest of the server at start-up (imported once by src/index.ts):
 * - room operations that need another server (src/rooms/federation-hooks.ts): remote joins and knocks, invites of
 *   remote users, leaving rooms we are not resident in, remote aliases and profiles;
 * - local typing and receipt changes (src/sync/ephemeral-hooks.ts) become EDUs for the other servers in the room.
 * E2EE goes through src/e2ee/federation.ts, which calls src/federation/remote-keys.ts.
 */
import { federationHooks } from "../rooms/federation-hooks";
import { onLocalEphemeral } from "../sync/ephemeral-hooks";
import { remoteJoin } from "./join";
import { remoteLeave } from "./leave";
import { remoteInvite } from "./invite";
import { queryRemoteAlias, queryRemoteProfile } from "./remote-queries";
import { sendEphemeralEdus } from "./ephemeral";

let installed = false;

export function installFederationHooks(): void {
  if (installed) return;
  installed = true;
  federationHooks.remoteJoin = remoteJoin;
  federationHooks.remoteInvite = remoteInvite;
  federationHooks.remoteLeave = remoteLeave;
  federationHooks.queryRemoteAlias = queryRemoteAlias;
  federationHooks.queryRemoteProfile = queryRemoteProfile;
  onLocalEphemeral(sendEphemeralEdus);
}

installFederationHooks();
