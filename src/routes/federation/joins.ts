/**
 * Joining rooms through this server (resident side): `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
 * and `PUT /v1|v2/send_join/{roomId}/{eventId}`. https://spec.matrix.org/v1.19/server-server-api/#joining-rooms
 *
 * make_join hands out a template checked against the current state (403 if the user may not join;
 * `M_INCOMPATIBLE_ROOM_VERSION` if the asking server does not support the room's version; restricted rooms get
 * a local user with invite power as `join_authorised_via_users_server`). send_join checks the signed event, adds
 * our signature when we authorise a restricted join, accepts it, passes it on to the room's other servers and
 * answers with the state before the join and its auth chain (v1 wraps the answer in `[200, …]`).
 *
 * Faster joins: `omit_members=true` (or MSC3706's `org.matrix.msc3706.partial_state=true`) on send_join v2 gets
 * the partial state (`members_omitted`; see `FederationRoom.sendJoinAnswerJson` and docs/faster-joins.md).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { forbidden, MatrixError } from "../../http/errors";
import { getConfig } from "../../config";
import { roomVersion as lookupRoomVersion } from "../../protocol/room-versions";
import { serverNameOf } from "../../protocol/identifiers";
import { MAX_FEDERATION_BODY_BYTES } from "./auth";
import { answer, eventIdParam, roomIdParam, roomStub, userIdParam } from "./common";
import {
  checkMembershipShape, checkSignaturesAndHash, heldRoomVersion, meetsAllowRule, restrictedJoinAuthoriser, signAsUs,
} from "../../federation/resident";
import { omitMembersRequested } from "../../federation/partial-join"; // faster joins (docs/faster-joins.md)

export const federationJoins = new Hono<AppEnv>();

/** The `ver` query parameter: the room versions the asking server supports (the spec's default is ["1"]). */
export function versionsParam(c: AppContext): string[] {
  const ver = c.req.queries("ver");
  return ver && ver.length > 0 ? ver : ["1"];
}

federationJoins.get("/_matrix/federation/v1/make_join/:roomId/:userId", async (c) => {
  const roomId = roomIdParam(c);
  const userId = userIdParam(c);
  const origin = c.get("origin");
  if (serverNameOf(userId) !== origin) throw forbidden(`${userId} is not a user of ${origin}`);
  const stub = roomStub(c.env, roomId);
  const info = await stub.fedJoinInfo(origin, userId);
  if (!info.ok) return answer(info.answer);
  const versions = versionsParam(c);
  if (!versions.includes(info.room_version)) {
    throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Your server does not support room version ${info.room_version}`, {
      room_version: info.room_version,
    });
  }
  const authoriser = await restrictedJoinAuthoriser(c.env, userId, info, lookupRoomVersion(info.room_version)!);
  return answer(await stub.fedMakeMembership(origin, userId, "join", versions, authoriser));
});

async function sendJoin(c: AppContext, v1: boolean): Promise<Response> {
  const roomId = roomIdParam(c);
  const eventId = eventIdParam(c);
  const origin = c.get("origin");
  const ours = getConfig(c.env).serverName;
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  const version = await heldRoomVersion(c.env, roomId);
  let pdu = checkMembershipShape(body, { origin, roomId, eventId, membership: "join", version, ours });
  const stub = roomStub(c.env, roomId);

  // Restricted joins we authorise: check the user may join through an allowed room, then co-sign.
  const authoriser = pdu.content.join_authorised_via_users_server;
  let signedByUs = false;
  if (typeof authoriser === "string" && version.restrictedJoins && serverNameOf(authoriser) === ours) {
    const info = await stub.fedJoinInfo(origin, pdu.sender);
    if (!info.ok) return answer(info.answer);
    if (info.membership !== "join" && info.membership !== "invite") {
      const meets = await meetsAllowRule(c.env, pdu.sender, info.allow_rooms);
      if (meets === undefined) throw new MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server is in none of the rooms that allow joining");
      if (!meets) throw forbidden("You do not belong to any of the rooms required to join this room");
    }
    pdu = await signAsUs(c.env, pdu, version);
    signedByUs = true;
  }
  await checkSignaturesAndHash(c.env, pdu, version, roomId);
  // Faster joins: v2's `omit_members` (and MSC3706's `org.matrix.msc3706.partial_state`) ask for partial state.
  const omitMembers = !v1 && omitMembersRequested((name) => c.req.query(name));
  const res = await stub.fedSendMembership(origin, JSON.stringify(pdu), "join", signedByUs, omitMembers);
  if (v1 && res.status === 200) return c.json([200, JSON.parse(res.body) as unknown]);
  return answer(res);
}

federationJoins.put("/_matrix/federation/v1/send_join/:roomId/:eventId", (c) => sendJoin(c, true));
federationJoins.put("/_matrix/federation/v2/send_join/:roomId/:eventId", (c) => sendJoin(c, false));
