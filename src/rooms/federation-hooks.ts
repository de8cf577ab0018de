/**
 * The points where room operations need another server. Until the federation engineer fills them in, each
 * answers with a clear error; they replace these functions (e.g. `federationHooks.remoteJoin = …`) from the
 * federation module at start-up, keeping the signatures.
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { JsonObject } from "../protocol/events";
import { matrixError } from "./common";

export interface RemoteJoinRequest {
  requester: Requester;
  roomId: string;
  /** Candidate resident servers: `via` / `server_name` from the request, then the alias's servers. */
  servers: string[];
  /** The member event content to send (membership, profile, reason). */
  content: JsonObject;
}

export interface RemoteInviteRequest {
  roomId: string;
  inviter: string;
  invitee: string;
  content: JsonObject;
}

export interface RemoteLeaveRequest {
  requester: Requester;
  roomId: string;
  content: JsonObject;
}

export interface FederationHooks {
  /** Join (or knock on, with `membership: knock`) a room this server is not resident in; returns the room ID. */
  remoteJoin(env: Env, req: RemoteJoinRequest): Promise<{ room_id: string }>;
  /** Invite a user of another server (the invite must be co-signed by their server before it is persisted). */
  remoteInvite(env: Env, req: RemoteInviteRequest): Promise<{ event_id: string }>;
  /** Reject a remote invite / rescind a remote knock (make_leave + send_leave). */
  remoteLeave(env: Env, req: RemoteLeaveRequest): Promise<void>;
  /** Resolve an alias of another server; undefined when it does not exist. */
  queryRemoteAlias(env: Env, alias: string): Promise<{ room_id: string; servers: string[] } | undefined>;
  /** The profile of a user of another server; undefined when unknown. */
  queryRemoteProfile(env: Env, userId: string, field?: string): Promise<Record<string, unknown> | undefined>;
}

const notYet = (what: string) => matrixError(501, "M_UNRECOGNIZED", `${what} over federation is not supported yet`);

export const federationHooks: FederationHooks = {
  async remoteJoin(_env, req) {
    throw matrixError(404, "M_NOT_FOUND", `This server is not in room ${req.roomId}; joining over federation is not supported yet`);
  },
  async remoteInvite() {
    throw notYet("Inviting users of other servers");
  },
  async remoteLeave(_env, req) {
    throw matrixError(404, "M_NOT_FOUND", `This server is not in room ${req.roomId}; leaving over federation is not supported yet`);
  },
  async queryRemoteAlias() {
    throw notYet("Resolving room aliases of other servers");
  },
  async queryRemoteProfile() {
    throw notYet("Looking up profiles of other servers");
  },
};
