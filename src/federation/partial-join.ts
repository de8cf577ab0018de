/**
 * Faster joins (MSC3706/MSC3902; the spec's `omit_members`), the Worker's parts. See docs/faster-joins.md.
 *
 * Resident side: `omitMembersRequested` reads send_join v2's query parameter; the RoomDO builds the answer
 * (federation-room.ts, partial-join-state.ts).
 *
 * Joining side: `persistPartialJoin` checks a send_join answer with `members_omitted` — the join, the partial
 * state and its auth chain, signatures verified together — and hands it to `RoomDO.beginPartialJoin`, which
 * stores the state as outliers, accepts the join on top of it, marks the room partial and starts the resync, in
 * one transaction. The client's join returns at once; the RoomDO's alarm fills in the rest (resync.ts).
 *
 * While partial: `awaitFullState` makes a read that needs every member (`/members`, `/joined_members`,
 * `/state`) wait until the room is fully stated — cancellably: when the client goes away its waiter is removed.
 */
import type { Env } from "../env";
import type { PDU } from "../protocol/events";
import { getConfig } from "../config";
import { MatrixError } from "../http/errors";
import type { RoomVersion } from "../protocol/room-versions";
import { computeEventId } from "../protocol/event-id";
import { isValidServerName } from "../protocol/identifiers";
import { KeyStore } from "./keys";
import { FederationClient } from "./client";
import { FetchBudget, InboundRoom } from "./inbound";
import { checkPdus, sortByAuthChain, type CheckedPdu } from "./pdu-checks";

/** MSC3706's names, still sent and understood by older servers. */
export const UNSTABLE_PARTIAL_STATE = "org.matrix.msc3706.partial_state";
export const UNSTABLE_SERVERS_IN_ROOM = "org.matrix.msc3706.servers_in_room";

/** Query parameters of a send_join v2 that asks for partial state (both spellings). */
export const PARTIAL_JOIN_QUERY: Record<string, string> = { omit_members: "true", [UNSTABLE_PARTIAL_STATE]: "true" };

/** At most this many servers are taken from `servers_in_room`. */
const MAX_SERVERS_IN_ROOM = 10_000;

// -------------------------------------------------------------------------------------------------------------
// Resident side

/**
 * Whether a send_join v2 asks for partial state: `omit_members` or `org.matrix.msc3706.partial_state` is
 * `true`. Values other than `true`/`false` are refused with 400 `M_INVALID_PARAM` (as MSC3706 says).
 */
export function omitMembersRequested(query: (name: string) => string | undefined): boolean {
  let asked = false;
  for (const name of ["omit_members", UNSTABLE_PARTIAL_STATE]) {
    const v = query(name);
    if (v === undefined) continue;
    if (v !== "true" && v !== "false") throw new MatrixError(400, "M_INVALID_PARAM", `'${name}' must be true or false`);
    asked ||= v === "true";
  }
  return asked;
}

// -------------------------------------------------------------------------------------------------------------
// Joining side

/** The parts of a send_join answer partial joins read. */
export interface PartialSendJoinAnswer {
  state?: unknown;
  auth_chain?: unknown;
  event?: unknown;
  members_omitted?: unknown;
  servers_in_room?: unknown;
  [UNSTABLE_PARTIAL_STATE]?: unknown;
  [UNSTABLE_SERVERS_IN_ROOM]?: unknown;
}

/** Whether a send_join answer has partial state (either spelling). */
export function membersOmitted(answer: PartialSendJoinAnswer): boolean {
  return answer.members_omitted === true || answer[UNSTABLE_PARTIAL_STATE] === true;
}

/** A resident's answer that cannot be used for a partial join (the next server is tried). */
export class BadPartialJoinAnswer extends Error {
  override readonly name = "BadPartialJoinAnswer";
}

/**
 * The servers to resync from: the server that answered first (it has the full state for sure), then the
 * answer's `servers_in_room` (either spelling), deduplicated, valid names only, ours left out.
 */
export function resyncServers(answer: PartialSendJoinAnswer, joinedVia: string, ours: string): string[] {
  const listed = Array.isArray(answer.servers_in_room) ? answer.servers_in_room : answer[UNSTABLE_SERVERS_IN_ROOM];
  if (!Array.isArray(listed)) throw new BadPartialJoinAnswer("the answer omits members but has no servers_in_room");
  const out = [joinedVia];
  for (const s of listed.slice(0, MAX_SERVERS_IN_ROOM)) {
    if (typeof s !== "string" || !isValidServerName(s) || s === ours || out.includes(s)) continue;
    out.push(s);
  }
  return out;
}

/**
 * Persists a join whose send_join answer omitted members: verifies the join (the resident's copy when it is the
 * same event — a restricted join carries the authorising server's signature), then the state and auth chain in
 * one bulk check (events that fail are dropped), and calls `RoomDO.beginPartialJoin`. Throws when the answer
 * cannot be used.
 */
/**
 * Gathers a send_join answer's auth chain and state into `raws` (by event ID, deduplicated, the join itself and
 * events whose ID cannot be computed left out) and returns the state's event IDs in order.
 */
export function collectAnswerEvents(
  answer: { auth_chain?: unknown; state?: unknown },
  version: RoomVersion,
  joinEventId: string,
  raws: Map<string, unknown>,
): string[] {
  const stateIds: string[] = [];
  for (const [list, isState] of [[answer.auth_chain, false], [answer.state, true]] as const) {
    for (const raw of list as unknown[]) {
      let id: string;
      try {
        id = computeEventId(raw as object, version);
      } catch {
        continue;
      }
      if (id === joinEventId) continue;
      raws.set(id, raw);
      if (isState) stateIds.push(id);
    }
  }
  return stateIds;
}

export async function persistPartialJoin(
  env: Env,
  server: string,
  roomId: string,
  version: RoomVersion,
  ours: PDU,
  eventId: string,
  answer: PartialSendJoinAnswer,
): Promise<void> {
  const started = Date.now();
  if (!Array.isArray(answer.state) || !Array.isArray(answer.auth_chain)) throw new BadPartialJoinAnswer("send_join answer lacks state or auth_chain");
  const servers = resyncServers(answer, server, getConfig(env).serverName);
  let join = ours;
  if (answer.event !== undefined && answer.event !== null && typeof answer.event === "object") {
    let id: string | undefined;
    try {
      id = computeEventId(answer.event, version);
    } catch {
      id = undefined;
    }
    if (id !== eventId) throw new BadPartialJoinAnswer("send_join answered with another event");
    join = answer.event as PDU;
  }
  const keys = new KeyStore(env);
  const raws = new Map<string, unknown>([[eventId, join]]);
  const stateIds = collectAnswerEvents(answer, version, eventId, raws);
  // The join and everything else in one bulk check: keys fetched once per server, signatures verified together.
  const checked = await checkPdus([...raws.values()], version, roomId, keys);
  const joinChecked = checked[0]!;
  if (!joinChecked.ok || joinChecked.redacted) {
    throw new BadPartialJoinAnswer(`the join does not verify: ${!joinChecked.ok ? joinChecked.error : "hash mismatch"}`);
  }
  const good = checked.slice(1).filter((c): c is Extract<CheckedPdu, { ok: true }> => c.ok);
  for (const c of checked) if (!c.ok) console.warn(`faster joins: ${roomId} via ${server}: dropping ${c.eventId ?? "an event"}: ${c.error}`);
  if (!good.some((c) => c.pdu.type === "m.room.create")) throw new BadPartialJoinAnswer("the state has no valid m.room.create event");
  const goodIds = new Set(good.map((c) => c.eventId));
  const outliers = sortByAuthChain(good).map((c) => JSON.stringify(c.pdu));
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  const outcome = await stub.beginPartialJoin(
    roomId,
    version.id,
    JSON.stringify(join),
    stateIds.filter((id) => goodIds.has(id)),
    { servers_in_room: servers, joined_via: server },
    outliers,
  );
  if (outcome.status === "missing_prevs") {
    // The room became fully stated while this (second local) join went through the resident: the join is then
    // an ordinary event of the room, handed in as if the resident had pushed it — the prev events it names are
    // fetched from the resident first — and its sender sees it in their next sync.
    const inbound = new InboundRoom(env, server, roomId, keys, new FederationClient(env), new FetchBudget()).useVersion(version);
    const result = (await inbound.processPushed([join]))[eventId];
    if (!result || result.error) throw new BadPartialJoinAnswer(`the join could not be placed after the resync: ${result?.error ?? "no result"}`);
    await stub.deliverToUser(join.sender as string);
    return;
  }
  if (outcome.status !== "accepted" && outcome.status !== "duplicate") {
    throw new BadPartialJoinAnswer(`the join could not be placed on the partial state ${server} sent: ${JSON.stringify(outcome)}`);
  }
  // The join is a state event: the RoomDO refreshes its directory rows by alarm (not awaited here; members known
  // only from the partial state are written once the room is fully stated).
  console.log(
    `faster joins: joined ${roomId} via ${server} with partial state (${stateIds.length} state events, ${raws.size - 1 - stateIds.length} more in the auth chain, ${servers.length} servers) in ${Date.now() - started} ms; resync started`,
  );
}

// -------------------------------------------------------------------------------------------------------------
// While partial: reads that need the full state

/** How long a read waits for the room to become fully stated before giving up. */
export const FULL_STATE_WAIT_MS = 5 * 60_000;

/** The room's membership list is still being fetched after a faster join, and the wait ran out. */
export class FullStateTimeout extends MatrixError {
  constructor(roomId: string) {
    super(503, "M_UNKNOWN", `The members of ${roomId} are still being fetched from other servers; try again shortly`);
  }
}

/** The client reads that need every member: `/members`, `/joined_members`, `/state`, a remote user's member event. */
export function readNeedsFullState(req: { kind: string; type?: string; state_key?: string }, ourServer: string): boolean {
  if (req.kind === "members" || req.kind === "joined_members" || req.kind === "state") return true;
  return req.kind === "state_event" && req.type === "m.room.member" && !(req.state_key ?? "").endsWith(`:${ourServer}`);
}

/**
 * Before a read that needs every member: when the room is partially stated, the read is tried once (a refusal —
 * not in the room, unknown room — is answered at once and returned), then the request waits for full state
 * (`awaitFullState`). Undefined: go ahead and read.
 */
export async function awaitFullStateForRead<R extends { status: number }>(
  env: Env,
  roomId: string,
  probe: () => Promise<R>,
  signal: AbortSignal | undefined,
  waitUntil: (p: Promise<unknown>) => void,
  timeoutMs = FULL_STATE_WAIT_MS,
): Promise<R | undefined> {
  const info = await env.ROOMS.get(env.ROOMS.idFromName(roomId)).federationInfo();
  if (!info?.partial_state) return undefined;
  const first = await probe();
  if (first.status !== 200) return first;
  await awaitFullState(env, roomId, signal, waitUntil, timeoutMs);
  return undefined;
}

/**
 * Waits until `roomId` is fully stated (at once when it is). The wait is this request's own waiter in the
 * RoomDO; if `signal` aborts (the client went away), the waiter is cancelled there. Throws FullStateTimeout when
 * `timeoutMs` passes first, and rethrows the abort when the client left.
 */
export async function awaitFullState(
  env: Env,
  roomId: string,
  signal: AbortSignal | undefined,
  waitUntil: (p: Promise<unknown>) => void,
  timeoutMs = FULL_STATE_WAIT_MS,
): Promise<void> {
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  const info = await stub.federationInfo();
  if (!info?.partial_state) return;
  signal?.throwIfAborted();
  const waiterId = crypto.randomUUID();
  const onAbort = () => waitUntil(stub.cancelFullStateWait(waiterId));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const full = await stub.waitForFullState(waiterId, timeoutMs);
    signal?.throwIfAborted();
    if (!full) throw new FullStateTimeout(roomId);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
