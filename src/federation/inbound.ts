/**
 * Inbound transactions (`PUT /_matrix/federation/v1/send/{txnId}`) and what they set in motion.
 *
 * - Idempotent per (origin, txnId): the origin's DestinationDO records each transaction ID and its response; a
 *   retry gets the stored response, a concurrent duplicate waits for the first.
 * - PDUs are grouped by room; rooms are processed concurrently, the PDUs of a room in order. A PDU for a room we
 *   are not in, or whose server ACL denies the origin, gets an error entry. Per PDU: room version from the RoomDO → format → signatures (all PDUs of the
 *   room verified together) → content hash (mismatch: redacted) → `RoomDO.receive` (auth events, state before,
 *   soft-fail). A PDU that fails never stops the others.
 * - Missing auth events: `/event_auth` from the origin (then `/event/{id}`), stored as outliers.
 * - Missing prev events: `/get_missing_events` (bounded by `limit` and `min_depth`); what it returns is processed
 *   oldest first. If the gap stays open: the state at each missing prev event from `/state_ids` (events not held
 *   fetched with `/event/{id}`, or `/state` when many), stored as outliers, and the event is accepted on top of
 *   that state (`RoomDO.receiveWithPrevStates`).
 * - EDUs go to src/federation/edus.ts after the PDUs.
 *
 * All network fetches for one transaction share a budget, so a hostile origin cannot make one transaction fetch
 * without end.
 */
import type { Env } from "../env";
import type { PDU } from "../protocol/events";
import { isStateEvent } from "../protocol/events";
import { roomVersion as lookupRoomVersion, type RoomVersion } from "../protocol/room-versions";
import { isValidRoomId } from "../protocol/identifiers";
import { computeEventId } from "../protocol/event-id";
import { ROOM_VERSIONS } from "../protocol/room-versions";
import { badJson } from "../http/errors";
import type { Outcome, OutlierOutcome } from "../../durable-objects/room/room";
import { FederationClient, seg } from "./client";
import { KeyStore } from "./keys";
import { checkPdus, sortByAuthChain, tryEventId, type CheckedPdu } from "./pdu-checks";
import { destinationStub } from "./destinations";
import { handleEdus } from "./edus";
import { serverAllowedByAcl } from "./acl";

export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
/** `/get_missing_events` asks for at most this many events. */
export const MISSING_EVENTS_LIMIT = 10;
/** Above this many unknown state events, `/state` is fetched instead of `/event` per event. */
const STATE_BULK_THRESHOLD = 20;
/** An event with more missing prev events than this is not accepted through the state fallback. */
const MAX_MISSING_PREVS_FOR_STATE = 5;
/** How long a duplicate of an in-progress transaction waits for the first one. */
const DUPLICATE_WAIT_MS = 60_000;

export interface TransactionResult {
  pdus: Record<string, { error?: string }>;
}

/** Network work allowed for one transaction. */
export class FetchBudget {
  constructor(
    public requests = 200,
    public events = 2000,
  ) {}
  request(): void {
    if (--this.requests < 0) throw new Error("fetch budget for this transaction exhausted");
  }
  received(n: number): void {
    this.events -= n;
    if (this.events < 0) throw new Error("event budget for this transaction exhausted");
  }
}

/** Validates the body of a transaction (400 M_BAD_JSON otherwise). */
export function parseTransaction(body: Record<string, unknown>): { pdus: unknown[]; edus: unknown[] } {
  const { pdus, edus } = body;
  if (!Array.isArray(pdus)) throw badJson("pdus must be an array");
  if (edus !== undefined && !Array.isArray(edus)) throw badJson("edus must be an array");
  if (pdus.length > MAX_PDUS_PER_TXN) throw badJson(`a transaction may hold at most ${MAX_PDUS_PER_TXN} PDUs`);
  if ((edus?.length ?? 0) > MAX_EDUS_PER_TXN) throw badJson(`a transaction may hold at most ${MAX_EDUS_PER_TXN} EDUs`);
  return { pdus, edus: edus ?? [] };
}

/**
 * Handles `PUT /send/{txnId}` from `origin` (authenticated): once per transaction ID, replaying the stored
 * response for retries.
 */
export async function receiveTransaction(env: Env, origin: string, txnId: string, body: Record<string, unknown>): Promise<TransactionResult> {
  const { pdus, edus } = parseTransaction(body);
  const dest = destinationStub(env, origin);
  const claim = await dest.beginInbound(origin, txnId);
  if (claim.status === "done") return JSON.parse(claim.response) as TransactionResult;
  if (claim.status === "in_progress") {
    const response = await dest.waitInbound(origin, txnId, DUPLICATE_WAIT_MS);
    if (response !== undefined) return JSON.parse(response) as TransactionResult;
    // The first attempt did not finish in time: processing again is safe (RoomDOs deduplicate events).
  }
  let result: TransactionResult;
  try {
    result = await processTransaction(env, origin, pdus, edus);
  } catch (e) {
    await dest.abandonInbound(origin, txnId);
    throw e;
  }
  await dest.finishInbound(origin, txnId, JSON.stringify(result));
  return result;
}

/** Processes the PDUs (per room, concurrently across rooms) and then the EDUs of a transaction. */
export async function processTransaction(env: Env, origin: string, pdus: unknown[], edus: unknown[]): Promise<TransactionResult> {
  const results: TransactionResult["pdus"] = {};
  const keys = new KeyStore(env);
  const client = new FederationClient(env);
  const budget = new FetchBudget();

  const byRoom = new Map<string, unknown[]>();
  for (const raw of pdus) {
    const roomId = typeof raw === "object" && raw !== null ? (raw as { room_id?: unknown }).room_id : undefined;
    if (typeof roomId !== "string" || !isValidRoomId(roomId)) {
      // No room to take the version from (or a v12 create event, which cannot arrive in a room we are in).
      const id = guessEventId(raw);
      if (id) results[id] = { error: "PDU has no valid room_id" };
      continue;
    }
    (byRoom.get(roomId) ?? byRoom.set(roomId, []).get(roomId)!).push(raw);
  }

  await Promise.all(
    [...byRoom].map(async ([roomId, raws]) => {
      const room = new InboundRoom(env, origin, roomId, keys, client, budget);
      try {
        Object.assign(results, await room.processPushed(raws));
      } catch (e) {
        console.error(`federation: processing PDUs for ${roomId} from ${origin} failed`, e);
        for (const raw of raws) {
          const id = guessEventId(raw);
          if (id && !results[id]) results[id] = { error: "internal error processing this PDU" };
        }
      }
    }),
  );

  await handleEdus(env, origin, edus);
  return { pdus: results };
}

/** Best effort event ID for an error entry when the room (and so its version) is unknown. */
function guessEventId(raw: unknown): string | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const id = (raw as { event_id?: unknown }).event_id;
  if (typeof id === "string") return id;
  return tryEventId(raw, ROOM_VERSIONS["11"]!);
}

/** Maps an outcome to the transaction response entry. Soft-failed events were handled: no error. */
function resultOf(outcome: Outcome): { error?: string } {
  switch (outcome.status) {
    case "accepted":
    case "duplicate":
    case "soft_failed":
      return {};
    case "rejected":
      return { error: `event rejected: ${outcome.reason}` };
    case "missing_prevs":
      return { error: `could not fetch prev events ${outcome.missing.join(", ")}` };
    case "missing_auth":
      return { error: `could not fetch auth events ${outcome.missing.join(", ")}` };
    case "invalid":
      return { error: `invalid event: ${outcome.reason}` };
  }
}

/** The work on one room for one transaction: the room's PDUs in order, and everything fetched for them. */
/** Faster joins: events verified at a time before yielding (a resync verifies a whole room state). */
const VERIFY_SLICE = 1000;

export class InboundRoom {
  private readonly stub;
  private version: RoomVersion | undefined;

  constructor(
    private readonly env: Env,
    private readonly origin: string,
    readonly roomId: string,
    private readonly keys: KeyStore,
    private readonly client: FederationClient,
    private readonly budget: FetchBudget,
  ) {
    this.stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  }

  /** Sets the room version for fetches made outside `processPushed` (backfill, joins). */
  useVersion(version: RoomVersion): this {
    this.version = version;
    return this;
  }

  /** Pushed PDUs: every one gets a result entry (when its ID can be computed). */
  async processPushed(raws: unknown[]): Promise<TransactionResult["pdus"]> {
    const results: TransactionResult["pdus"] = {};
    const info = await this.stub.federationInfo();
    const version = info ? lookupRoomVersion(info.room_version) : undefined;
    if (!info || !version || (info.local_joined === 0 && !info.partial_state)) {
      for (const raw of raws) {
        const id = version ? tryEventId(raw, version) : guessEventId(raw);
        if (id) results[id] = { error: `this server is not in room ${this.roomId}` };
      }
      return results;
    }
    this.version = version;
    if (!serverAllowedByAcl(this.origin, info.server_acl === null ? null : JSON.parse(info.server_acl))) {
      for (const raw of raws) {
        const id = tryEventId(raw, version);
        if (id) results[id] = { error: `${this.origin} is denied by the room's server ACL` };
      }
      return results;
    }
    const checked = await checkPdus(raws, version, this.roomId, this.keys);
    // One RoomDO call for the whole batch, in order (each event its own transaction there); only the events that
    // lack prev or auth events then take the slow path one by one, in order, fetching what they need.
    const good = checked.filter((c): c is Extract<CheckedPdu, { ok: true }> => c.ok);
    const first = good.length > 0 ? await this.stub.receive(good.map((c) => c.pdu)) : [];
    const firstOutcome = new Map(good.map((c, i) => [c.eventId, first[i]!]));
    for (const c of checked) {
      if (!c.ok) {
        if (c.eventId) results[c.eventId] = { error: c.error };
        continue;
      }
      try {
        const outcome = firstOutcome.get(c.eventId);
        const done = outcome && outcome.status !== "missing_prevs" && outcome.status !== "missing_auth";
        results[c.eventId] = resultOf(done ? outcome : await this.processEvent(c.pdu, c.eventId, true));
      } catch (e) {
        console.warn(`federation: ${c.eventId} from ${this.origin}: ${(e as Error).message}`);
        results[c.eventId] = { error: `could not process the event: ${(e as Error).message}` };
      }
    }
    return results;
  }

  /**
   * Hands a checked event to the RoomDO, fetching what it lacks: auth events, then prev events (for pushed
   * events through /get_missing_events first), then the state at prev events that stay missing.
   */
  async processEvent(pdu: PDU, eventId: string, pushed: boolean): Promise<Outcome> {
    let outcome = await this.receive(pdu);
    if (outcome.status === "missing_auth") {
      await this.fetchAuthChain(eventId, outcome.missing);
      outcome = await this.receive(pdu);
    }
    if (outcome.status !== "missing_prevs") return outcome;
    if (pushed) {
      await this.fetchMissingEvents(eventId);
      outcome = await this.receive(pdu);
      if (outcome.status === "missing_auth") {
        await this.fetchAuthChain(eventId, outcome.missing);
        outcome = await this.receive(pdu);
      }
      if (outcome.status !== "missing_prevs") return outcome;
    }
    return this.acceptWithStateAtPrevs(pdu, eventId, outcome.missing);
  }

  private async receive(pdu: PDU): Promise<Outcome> {
    return (await this.stub.receive([pdu]))[0]!;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Fetching

  private async get<T>(path: string, query?: Record<string, string>): Promise<T> {
    this.budget.request();
    return this.client.request<T>(this.origin, "GET", path, undefined, query ? { query } : {});
  }

  /** `/get_missing_events` from the origin; the events returned are processed oldest first. */
  async fetchMissingEvents(eventId: string): Promise<void> {
    const ext = await this.stub.extremities();
    let events: unknown;
    try {
      this.budget.request();
      const res = await this.client.request<{ events?: unknown }>(
        this.origin,
        "POST",
        `/_matrix/federation/v1/get_missing_events/${seg(this.roomId)}`,
        { earliest_events: ext.event_ids, latest_events: [eventId], limit: MISSING_EVENTS_LIMIT, min_depth: ext.min_depth },
      );
      events = res.events;
    } catch (e) {
      console.warn(`federation: get_missing_events for ${eventId} from ${this.origin} failed: ${(e as Error).message}`);
      return;
    }
    if (!Array.isArray(events)) return;
    const capped = events.slice(0, MISSING_EVENTS_LIMIT);
    this.budget.received(capped.length);
    const checked = (await checkPdus(capped, this.version!, this.roomId, this.keys)).filter(
      (c): c is Extract<CheckedPdu, { ok: true }> => c.ok && c.eventId !== eventId,
    );
    // Events already in the timeline come back as duplicates; outliers (held for an auth chain) get placed.
    const ordered = checked.sort((a, b) => a.pdu.depth - b.pdu.depth);
    for (const c of ordered) {
      try {
        await this.processEvent(c.pdu, c.eventId, false);
      } catch (e) {
        console.warn(`federation: missing event ${c.eventId}: ${(e as Error).message}`);
      }
    }
  }

  /** The auth chain of `eventId` from `/event_auth`; on failure each missing event from `/event/{id}`. */
  async fetchAuthChain(eventId: string, missing: string[]): Promise<void> {
    let chain: unknown[] | undefined;
    try {
      const res = await this.get<{ auth_chain?: unknown }>(`/_matrix/federation/v1/event_auth/${seg(this.roomId)}/${seg(eventId)}`);
      if (Array.isArray(res.auth_chain)) chain = res.auth_chain;
    } catch (e) {
      console.warn(`federation: event_auth for ${eventId} from ${this.origin} failed: ${(e as Error).message}`);
    }
    if (chain) {
      this.budget.received(chain.length);
      await this.storeOutliers(chain);
    }
    await this.ensureHeld(missing);
  }

  /**
   * Makes sure the room holds `ids` (as outliers at least): fetches those it does not hold — through `/state`
   * at `statePrev` when many are missing, else `/event/{id}` — and stores them, fetching missing auth events
   * of what was fetched for a few rounds.
   */
  async ensureHeld(ids: readonly string[], statePrev?: string): Promise<void> {
    const wanted = [...new Set(ids)];
    if (wanted.length === 0) return;
    const held = new Set(await this.stub.heldEvents(wanted));
    const unknown = wanted.filter((id) => !held.has(id));
    if (unknown.length === 0) return;
    let raws: unknown[];
    if (statePrev !== undefined && unknown.length > STATE_BULK_THRESHOLD) {
      const res = await this.get<{ pdus?: unknown; auth_chain?: unknown }>(`/_matrix/federation/v1/state/${seg(this.roomId)}`, {
        event_id: statePrev,
      });
      raws = [...(Array.isArray(res.pdus) ? res.pdus : []), ...(Array.isArray(res.auth_chain) ? res.auth_chain : [])];
    } else {
      raws = await this.fetchEvents(unknown);
    }
    this.budget.received(raws.length);
    await this.storeFetched(raws);
  }

  /**
   * Checks and stores events fetched some other way (faster joins: a resync's `/state` answer) as outliers,
   * fetching auth events they name that are not held, for a few rounds.
   */
  async storeFetched(raws: unknown[]): Promise<void> {
    // Events whose auth events are not held yet are stored once those are fetched (a few rounds at most).
    for (let round = 0; round < 3; round++) {
      const outcomes = await this.storeOutliers(raws);
      const missingAuth = [...new Set(outcomes.flatMap((o) => (o.status === "missing_auth" ? o.missing : [])))];
      if (missingAuth.length === 0) return;
      const stillMissing = new Set(await this.stub.heldEvents(missingAuth));
      const more = await this.fetchEvents(missingAuth.filter((id) => !stillMissing.has(id)));
      if (more.length === 0) return;
      this.budget.received(more.length);
      raws = [...more, ...raws];
    }
  }

  private async fetchEvents(ids: readonly string[]): Promise<unknown[]> {
    return (await Promise.all(ids.map((id) => this.fetchEvent(id)))).filter((r) => r !== undefined);
  }

  /** One event from `/event/{id}`; undefined when the origin does not serve it or serves another event. */
  private async fetchEvent(id: string): Promise<unknown> {
    try {
      const res = await this.get<{ pdus?: unknown }>(`/_matrix/federation/v1/event/${seg(id)}`);
      const pdu = Array.isArray(res.pdus) ? res.pdus[0] : undefined;
      if (pdu === undefined) return undefined;
      let actual: string | undefined;
      try {
        actual = computeEventId(pdu as object, this.version!);
      } catch {
        actual = undefined;
      }
      return actual === id ? pdu : undefined;
    } catch (e) {
      console.warn(`federation: /event/${id} from ${this.origin} failed: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** Checks fetched events and stores the good ones as outliers, auth events first. */
  private async storeOutliers(raws: unknown[]): Promise<OutlierOutcome[]> {
    // Only what is not held yet is verified (faster joins: a resync step that was cut short and runs again
    // verifies and stores just the rest).
    const ids = raws.map((raw) => tryEventId(raw, this.version!));
    const held = new Set(await this.stub.heldEvents(ids.filter((id): id is string => id !== undefined)));
    const unheld = raws.filter((_, i) => ids[i] === undefined || !held.has(ids[i]!));
    // Verified in slices, yielding in between: this runs inside the RoomDO during a resync, whose other
    // requests (sends, incoming events, syncs) would otherwise wait for a whole state's signatures.
    const checked: Extract<CheckedPdu, { ok: true }>[] = [];
    for (let i = 0; i < unheld.length; i += VERIFY_SLICE) {
      if (i > 0) await new Promise((r) => setTimeout(r, 0));
      for (const c of await checkPdus(unheld.slice(i, i + VERIFY_SLICE), this.version!, this.roomId, this.keys)) if (c.ok) checked.push(c);
    }
    const fresh = sortByAuthChain(checked.filter((c) => !held.has(c.eventId)));
    if (fresh.length === 0) return [];
    return this.stub.storeOutliers(fresh.map((c) => JSON.stringify(c.pdu)));
  }

  /**
   * The gap before `pdu` cannot be closed: fetch the state after each missing prev event (`/state_ids` of the
   * prev event plus the prev event itself when it is a state event) and accept the event on top of it.
   */
  async acceptWithStateAtPrevs(pdu: PDU, eventId: string, missing: string[]): Promise<Outcome> {
    if (missing.length > MAX_MISSING_PREVS_FOR_STATE) return { status: "missing_prevs", event_id: eventId, missing };
    const prevStates: [string, string[]][] = [];
    for (const prev of missing) {
      let ids: { pdu_ids?: unknown; auth_chain_ids?: unknown };
      try {
        ids = await this.get(`/_matrix/federation/v1/state_ids/${seg(this.roomId)}`, { event_id: prev });
      } catch (e) {
        console.warn(`federation: state_ids at ${prev} from ${this.origin} failed: ${(e as Error).message}`);
        return { status: "missing_prevs", event_id: eventId, missing };
      }
      const stateIds = stringArray(ids.pdu_ids);
      const authIds = stringArray(ids.auth_chain_ids);
      if (!stateIds || !authIds) return { status: "missing_prevs", event_id: eventId, missing };
      const prevEvent = await this.fetchEvent(prev);
      await this.ensureHeld([...authIds, ...stateIds], prev);
      const state = [...stateIds];
      if (prevEvent !== undefined) {
        const [checkedPrev] = await checkPdus([prevEvent], this.version!, this.roomId, this.keys);
        if (checkedPrev?.ok) {
          await this.storeOutliers([prevEvent]);
          if (isStateEvent(checkedPrev.pdu)) state.push(prev);
        }
      }
      prevStates.push([prev, state]);
    }
    return this.stub.receiveWithPrevStates(JSON.stringify(pdu), prevStates);
  }
}

function stringArray(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;
}
