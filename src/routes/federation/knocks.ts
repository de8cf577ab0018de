/**
 * Knocking on rooms through this server (resident side): `GET /v1/make_knock/{roomId}/{userId}?ver=…` and
 * `PUT /v1/send_knock/{roomId}/{eventId}` (answered with the room's stripped state as `knock_room_state`).
 * https://spec.matrix.org/v1.19/server-server-api/#knocking-upon-a-room
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { forbidden, MatrixError, missingParam } from "../../http/errors";
import { getConfig } from "../../config";
import { serverNameOf } from "../../protocol/identifiers";
import { MAX_FEDERATION_BODY_BYTES } from "./auth";
import { answer, eventIdParam, roomIdParam, roomStub, userIdParam } from "./common";
import { checkMembershipShape, checkSignaturesAndHash, heldRoomVersion } from "../../federation/resident";

export const federationKnocks = new Hono<AppEnv>();

federationKnocks.get("/_matrix/federation/v1/make_knock/:roomId/:userId", async (c) => {
  const roomId = roomIdParam(c);
  const userId = userIdParam(c);
  const origin = c.get("origin");
  if (serverNameOf(userId) !== origin) throw forbidden(`${userId} is not a user of ${origin}`);
  const versions = c.req.queries("ver");
  if (!versions || versions.length === 0) throw missingParam("Missing 'ver'");
  const stub = roomStub(c.env, roomId);
  const info = await stub.federationInfo();
  if (info && !versions.includes(info.room_version)) {
    throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Your server does not support room version ${info.room_version}`, {
      room_version: info.room_version,
    });
  }
  return answer(await stub.fedMakeMembership(origin, userId, "knock", versions, null));
});

federationKnocks.put("/_matrix/federation/v1/send_knock/:roomId/:eventId", async (c) => {
  const roomId = roomIdParam(c);
  const eventId = eventIdParam(c);
  const origin = c.get("origin");
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  const version = await heldRoomVersion(c.env, roomId);
  const pdu = checkMembershipShape(body, { origin, roomId, eventId, membership: "knock", version, ours: getConfig(c.env).serverName });
  await checkSignaturesAndHash(c.env, pdu, version, roomId);
  return answer(await roomStub(c.env, roomId).fedSendMembership(origin, JSON.stringify(pdu), "knock", false));
});
