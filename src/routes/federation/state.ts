/**
 * The state of a room at an event: `GET /_matrix/federation/v1/state/{roomId}?event_id=` (the state events and
 * their auth chain) and `GET /state_ids/{roomId}?event_id=` (their IDs). The state is the one before the event.
 * https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1stateroomid
 * The asking server must have a user joined, and the room's server ACL must admit it (403 otherwise).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { answer, eventIdQuery, roomIdParam, roomStub } from "./common";

export const federationState = new Hono<AppEnv>();

federationState.get("/_matrix/federation/v1/state/:roomId", async (c) =>
  answer(await roomStub(c.env, roomIdParam(c)).fedState(c.get("origin"), eventIdQuery(c))),
);

federationState.get("/_matrix/federation/v1/state_ids/:roomId", async (c) =>
  answer(await roomStub(c.env, roomIdParam(c)).fedStateIds(c.get("origin"), eventIdQuery(c))),
);
