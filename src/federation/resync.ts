/**
 * The network half of a partial-state resync step (faster joins): ask a resident server for the full state
 * before one event (`/state_ids`), and make sure the room holds every event it names, fetching, verifying and
 * storing the missing ones as outliers. The RoomDO then completes the event in one transaction
 * (durable-objects/room/partial-state.ts).
 */
import type { Env } from "../env";
import { FederationClient, seg } from "./client";
import { KeyStore } from "./keys";
import { FetchBudget, InboundRoom } from "./inbound";
import { tryEventId } from "./pdu-checks";
import { roomVersion } from "../protocol/room-versions";

/** A resync step may fetch a whole big room's state: budget for it (a 10k-member room is ~10k events). */
const RESYNC_REQUESTS = 500;
const RESYNC_EVENTS = 250_000;

export interface StateIdsAt {
  pdu_ids: string[];
  auth_chain_ids: string[];
}

export class BadStateIdsResponse extends Error {
  override readonly name = "BadStateIdsResponse";
}

/** `/state_ids?event_id=` from `server`, validated (string arrays, bounded). */
export async function fetchStateIds(client: FederationClient, server: string, roomId: string, eventId: string): Promise<StateIdsAt> {
  const res = await client.request<{ pdu_ids?: unknown; auth_chain_ids?: unknown }>(
    server,
    "GET",
    `/_matrix/federation/v1/state_ids/${seg(roomId)}`,
    undefined,
    { query: { event_id: eventId } },
  );
  const ids = (v: unknown, name: string): string[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new BadStateIdsResponse(`${server}: ${name} is not a list of event IDs`);
    if (v.length > RESYNC_EVENTS) throw new BadStateIdsResponse(`${server}: ${name} is too long`);
    return v as string[];
  };
  return { pdu_ids: ids(res.pdu_ids, "pdu_ids"), auth_chain_ids: ids(res.auth_chain_ids, "auth_chain_ids") };
}

/**
 * Fetches the state before `eventId` from `server` and stores whatever of it (and its auth chain) the room does
 * not hold. Returns the state's event IDs and how many events had to be fetched. `bulk` (faster joins: the
 * first step, when almost none of the state is held): `/state` at once, without asking for the IDs first.
 */
export async function fetchStateBefore(
  env: Env, server: string, roomId: string, eventId: string, opts: { bulk?: boolean } = {},
): Promise<{ stateIds: string[]; fetched: number }> {
  const client = new FederationClient(env);
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  // Faster joins: fetched events are checked (IDs, format, signatures) for the room's version.
  const version = roomVersion((await stub.federationInfo())?.room_version ?? "");
  if (!version) throw new Error(`room ${roomId} is not held here`);
  const inbound = new InboundRoom(env, server, roomId, new KeyStore(env, { client }), client, new FetchBudget(RESYNC_REQUESTS, RESYNC_EVENTS)).useVersion(version);
  if (opts.bulk) {
    const res = await client.request<{ pdus?: unknown; auth_chain?: unknown }>(server, "GET", `/_matrix/federation/v1/state/${seg(roomId)}`, undefined, {
      query: { event_id: eventId },
    });
    if (!Array.isArray(res.pdus) || !Array.isArray(res.auth_chain)) throw new BadStateIdsResponse(`${server}: the /state answer lacks pdus or auth_chain`);
    if (res.pdus.length + res.auth_chain.length > RESYNC_EVENTS) throw new BadStateIdsResponse(`${server}: the /state answer is too long`);
    const stateIds = res.pdus.map((raw) => tryEventId(raw, version)).filter((id): id is string => id !== undefined);
    const all = [...res.auth_chain, ...res.pdus];
    const allIds = [...new Set(all.map((raw) => tryEventId(raw, version)).filter((id): id is string => id !== undefined))];
    const heldBefore = new Set(await stub.heldEvents(allIds));
    await inbound.storeFetched(all);
    return { stateIds, fetched: allIds.filter((id) => !heldBefore.has(id)).length };
  }
  const { pdu_ids, auth_chain_ids } = await fetchStateIds(client, server, roomId, eventId);
  const wanted = [...new Set([...auth_chain_ids, ...pdu_ids])];
  const heldBefore = new Set(await stub.heldEvents(wanted));
  // Auth chain first, so that state events find their auth events held when they are stored.
  await inbound.ensureHeld(auth_chain_ids, eventId);
  await inbound.ensureHeld(pdu_ids, eventId);
  return { stateIds: pdu_ids, fetched: wanted.filter((id) => !heldBefore.has(id)).length };
}
