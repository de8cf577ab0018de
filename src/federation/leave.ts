/**
 * Leaving a room this server is not resident in — rejecting a remote invite, rescinding a knock, or leaving a
 * room whose state we only hold from before (https://spec.matrix.org/v1.19/server-server-api/#leaving-rooms-rejecting-invites):
 * `federationHooks.remoteLeave`.
 *
 * make_leave → sign → send_leave (v2, v1 fallback) through the server the invite came from (or where the knock
 * went), then the room's servers as we know them, then the room ID's server. The leave is stored as an
 * out-of-band membership, so the user's sync shows the room as left.
 *
 * When no server can be reached, an invite or knock is still dropped locally (as the reference server does): a
 * leave built on top of the invite, signed by us and never sent, replaces it — users are not stuck with invites
 * from servers that went away.
 */
import type { Env } from "../env";
import type { PDU } from "../protocol/events";
import { getConfig } from "../config";
import { getServerKeys } from "../server-keys";
import { MatrixError } from "../http/errors";
import { roomVersion as lookupRoomVersion, type RoomVersion } from "../protocol/room-versions";
import { generateEventIdV1, toFederationPdu } from "../protocol/event-id";
import { signEvent } from "../protocol/hashes";
import { serverNameOf } from "../protocol/identifiers";
import type { RemoteLeaveRequest } from "../rooms/federation-hooks";
import { FederationClient, seg } from "./client";
import { candidateServers, putV2OrV1, remoteFailure, signedFromTemplate } from "./join";

function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

export async function remoteLeave(env: Env, req: RemoteLeaveRequest): Promise<void> {
  const userId = req.requester.userId;
  const ours = getConfig(env).serverName;
  const stub = roomStub(env, req.roomId);
  const known = await stub.fedRemoteInfo(userId);
  if (!known.exists) throw new MatrixError(404, "M_NOT_FOUND", `Unknown room ${req.roomId}`);
  const oob = known.out_of_band;
  const pending = oob && (oob.membership === "invite" || oob.membership === "knock") ? oob : null;
  const inviter = pending?.membership === "invite" ? serverNameOf(pending.sender) : undefined;
  const servers = candidateServers(ours, req.roomId, [], [inviter, pending?.resident ?? undefined, ...known.servers]);
  const client = new FederationClient(env);
  const errors: unknown[] = [];
  for (const server of servers) {
    try {
      const template = await client.request<{ room_version?: unknown; event?: unknown }>(
        server,
        "GET",
        `/_matrix/federation/v1/make_leave/${seg(req.roomId)}/${seg(userId)}`,
      );
      const { pdu, eventId, version } = await signedFromTemplate(env, template, { roomId: req.roomId, userId, membership: "leave", content: req.content });
      await putV2OrV1<Record<string, unknown>>(client, server, "send_leave", req.roomId, eventId, toFederationPdu(pdu, version));
      await storeLeave(env, req.roomId, version, pdu);
      return;
    } catch (e) {
      console.warn(`federation: leave ${req.roomId} via ${server} failed: ${(e as Error).message}`);
      errors.push(e);
    }
  }
  if (pending && known.room_version !== null) {
    // Nobody to tell: drop the invite or knock here.
    const version = lookupRoomVersion(known.room_version);
    if (version) {
      await storeLeave(env, req.roomId, version, await localLeave(env, req, version, pending.event_id));
      return;
    }
  }
  if (servers.length === 0) throw new MatrixError(404, "M_NOT_FOUND", `No known servers to leave room ${req.roomId} through`);
  throw remoteFailure(errors, "leave");
}

async function storeLeave(env: Env, roomId: string, version: RoomVersion, pdu: PDU): Promise<void> {
  const stored = await roomStub(env, roomId).fedStoreOutOfBand(roomId, version.id, JSON.stringify(pdu), "{}");
  if ("error" in stored) throw new MatrixError(500, "M_UNKNOWN", stored.error);
}

/** A leave on top of the user's out-of-band invite or knock, signed by us, for nobody else. */
async function localLeave(env: Env, req: RemoteLeaveRequest, version: RoomVersion, previous: string): Promise<PDU> {
  const ours = getConfig(env).serverName;
  const stub = roomStub(env, req.roomId);
  const prevDepth = (JSON.parse(await stub.fedOutOfBandJson(req.requester.userId)) as { depth?: number } | null)?.depth ?? 0;
  const ref = version.eventFormat === "v1" ? [previous, {}] : previous;
  const event: Record<string, unknown> = {
    room_id: req.roomId,
    type: "m.room.member",
    state_key: req.requester.userId,
    sender: req.requester.userId,
    content: { ...req.content, membership: "leave" },
    origin: ours,
    origin_server_ts: Date.now(),
    depth: prevDepth + 1,
    prev_events: [ref],
    auth_events: [ref],
  };
  if (version.eventFormat === "v1") event.event_id = generateEventIdV1(ours);
  return signEvent(event, ours, (await getServerKeys(env)).current, version) as unknown as PDU;
}
