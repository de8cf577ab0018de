/**
 * Backfill (https://spec.matrix.org/v1.19/server-server-api/#backfilling-and-retrieving-missing-events): when
 * `/messages` walks back to where this server's copy of a room's history ends (the prev events of the join, or
 * of the oldest events backfilled so far), ask a server in the room for what came before.
 *
 * `maybeBackfill` (called by the /messages route before it reads): the RoomDO says whether the page would reach
 * such a gap and from which events to backfill (`fedBackfillPoint`). Then `GET /backfill?v=…&limit=100` from
 * one server after another until one answers with events; they are checked (signatures in bulk, hashes) and
 * placed oldest first as *historical* events (`RoomDO.fedReceiveHistorical`): below every stream position, so
 * incremental syncs never report them as new, without touching the current state or the forward extremities.
 * An event whose prev events are still unknown (the oldest of a batch) is placed on the state before it, fetched
 * with `/state_ids` (and `/event` or `/state` for the events not held); missing auth events come from
 * `/event_auth`. Failures are logged and /messages answers with what it has.
 */
import type { Env } from "../env";
import type { PDU } from "../protocol/events";
import { roomVersion as lookupRoomVersion } from "../protocol/room-versions";
import type { Outcome } from "../../durable-objects/room/room";
import { FederationClient, seg } from "./client";
import { KeyStore } from "./keys";
import { checkPdus, type CheckedPdu } from "./pdu-checks";
import { FetchBudget, InboundRoom } from "./inbound";
import { fetchStateIds } from "./resync";

/** Events asked for per `/backfill` request. */
export const BACKFILL_BATCH = 100;
/** Servers tried per backfill. */
const MAX_SERVERS = 3;

function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

/**
 * Backfills the room if a `/messages` page going back from `from` (a room token; null: the live end) would run
 * out of local history within `limit` events. Returns how many events were placed.
 */
export async function maybeBackfill(env: Env, roomId: string, from: string | null, limit: number): Promise<number> {
  const stub = roomStub(env, roomId);
  const point = await stub.fedBackfillPoint(from, limit);
  if (!point) return 0;
  for (const server of point.servers.slice(0, MAX_SERVERS)) {
    try {
      const placed = await backfillFrom(env, server, roomId, point.extremities, BACKFILL_BATCH);
      if (placed > 0) return placed;
    } catch (e) {
      console.warn(`federation: backfill of ${roomId} from ${server} failed: ${(e as Error).message}`);
    }
  }
  return 0;
}

/** One `/backfill` request to `server` and the placing of what it returns. Returns how many events were placed. */
export async function backfillFrom(env: Env, server: string, roomId: string, from: readonly string[], limit: number): Promise<number> {
  const stub = roomStub(env, roomId);
  const info = await stub.federationInfo();
  const version = info ? lookupRoomVersion(info.room_version) : undefined;
  if (!version) return 0;
  const client = new FederationClient(env);
  const res = await client.request<{ pdus?: unknown }>(server, "GET", `/_matrix/federation/v1/backfill/${seg(roomId)}`, undefined, {
    query: { v: [...from], limit },
  });
  if (!Array.isArray(res.pdus)) return 0;
  const keys = new KeyStore(env, { client });
  const checked = (await checkPdus(res.pdus.slice(0, limit), version, roomId, keys)).filter(
    (c): c is Extract<CheckedPdu, { ok: true }> => c.ok,
  );
  checked.sort((a, b) => a.pdu.depth - b.pdu.depth || (a.eventId < b.eventId ? -1 : 1));
  const inbound = new InboundRoom(env, server, roomId, keys, client, new FetchBudget()).useVersion(version);
  let placed = 0;
  for (const c of checked) {
    try {
      const outcome = await placeHistorical(env, inbound, client, server, roomId, c.pdu, c.eventId);
      if (outcome.status === "accepted") placed++;
      else if (outcome.status !== "duplicate") console.warn(`federation: backfilled ${c.eventId} not placed: ${JSON.stringify(outcome)}`);
    } catch (e) {
      console.warn(`federation: backfilled ${c.eventId}: ${(e as Error).message}`);
    }
  }
  return placed;
}

async function placeHistorical(
  env: Env,
  inbound: InboundRoom,
  client: FederationClient,
  server: string,
  roomId: string,
  pdu: PDU,
  eventId: string,
): Promise<Outcome> {
  const stub = roomStub(env, roomId);
  const json = JSON.stringify(pdu);
  let prevStates: [string, string[]][] = [];
  let outcome = await stub.fedReceiveHistorical(json, prevStates);
  for (let round = 0; round < 3; round++) {
    if (outcome.status === "missing_auth") {
      await inbound.fetchAuthChain(eventId, outcome.missing);
    } else if (outcome.status === "missing_prevs") {
      // The prev events are older than anything held: place the event on the state before it.
      const { pdu_ids, auth_chain_ids } = await fetchStateIds(client, server, roomId, eventId);
      await inbound.ensureHeld(auth_chain_ids, eventId);
      await inbound.ensureHeld(pdu_ids, eventId);
      prevStates = outcome.missing.map((p) => [p, pdu_ids]);
    } else {
      return outcome;
    }
    outcome = await stub.fedReceiveHistorical(json, prevStates);
  }
  return outcome;
}
