/**
 * Leaving rooms and rejecting invites through this server (resident side): `GET /v1/make_leave/{roomId}/{userId}`
 * and `PUT /v1|v2/send_leave/{roomId}/{eventId}`. https://spec.matrix.org/v1.19/server-server-api/#leaving-rooms-rejecting-invites
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { forbidden } from "../../http/errors";
import { getConfig } from "../../config";
import { serverNameOf } from "../../protocol/identifiers";
import { MAX_FEDERATION_BODY_BYTES } from "./auth";
import { answer, eventIdParam, roomIdParam, roomStub, userIdParam } from "./common";
import { checkMembershipShape, checkSignaturesAndHash, heldRoomVersion } from "../../federation/resident";

export const federationLeaves = new Hono<AppEnv>();

federationLeaves.get("/_matrix/federation/v1/make_leave/:roomId/:userId", async (c) => {
  const roomId = roomIdParam(c);
  const userId = userIdParam(c);
  const origin = c.get("origin");
  if (serverNameOf(userId) !== origin) throw forbidden(`${userId} is not a user of ${origin}`);
  return answer(await roomStub(c.env, roomId).fedMakeMembership(origin, userId, "leave", null, null));
});

async function sendLeave(c: AppContext, v1: boolean): Promise<Response> {
  const roomId = roomIdParam(c);
  const eventId = eventIdParam(c);
  const origin = c.get("origin");
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  const version = await heldRoomVersion(c.env, roomId);
  const pdu = checkMembershipShape(body, { origin, roomId, eventId, membership: "leave", version, ours: getConfig(c.env).serverName });
  await checkSignaturesAndHash(c.env, pdu, version, roomId);
  const res = await roomStub(c.env, roomId).fedSendMembership(origin, JSON.stringify(pdu), "leave", false);
  if (v1 && res.status === 200) return c.json([200, {}]);
  return answer(res);
}

federationLeaves.put("/_matrix/federation/v1/send_leave/:roomId/:eventId", (c) => sendLeave(c, true));
federationLeaves.put("/_matrix/federation/v2/send_leave/:roomId/:eventId", (c) => sendLeave(c, false));
