/**
 * Joining (and knocking on) a room this server is not in, through a resident server
 * (https://spec.matrix.org/v1.19/server-server-api/#joining-rooms): `federationHooks.remoteJoin`.
 *
 *  1. Candidates: the `via` / `server_name` servers and an alias's servers (given), the server of the room ID
 *     (rooms v1–v11), and the server an invite came from; each is tried in turn.
 *  2. `GET /make_join?ver=<every version we support>` → a template; it must be for this room, user and membership.
 *  3. We fill in our content, `origin`, `origin_server_ts`, hash and sign it.
 *  4. `PUT /v2/send_join` (`/v1` for servers without it) → the state before the join and its auth chain, and for
 *     a restricted join the event with the authorising server's signature.
 *  5. Everything is checked before anything is stored: signatures in bulk, content hashes (a mismatch means the
 *     redacted copy is used), room IDs. Then one RoomDO transaction stores the auth chain and state as outliers
 *     (auth events first, each checked against its own auth events) and accepts the join on top of that state
 *     (`RoomDO.fedPersistRemoteJoin`); the joiner's sync stream hears of it before the call returns.
 *
 * Knocks take the same path with make_knock / send_knock; the knock is stored as an out-of-band membership with
 * the `knock_room_state` the resident answered.
 *
 * Faster joins: send_join v2 asks for partial state (`omit_members=true`, unless PARTIAL_JOINS is off); an answer
 * with `members_omitted` is checked and persisted by `persistPartialJoin` (partial-join.ts, docs/faster-joins.md).
 */
import type { Env } from "../env";
import type { JsonObject, PDU } from "../protocol/events";
import { getConfig } from "../config";
import { getServerKeys } from "../server-keys";
import { MatrixError } from "../http/errors";
import { roomVersion as lookupRoomVersion, supportedRoomVersions, type RoomVersion } from "../protocol/room-versions";
import { computeEventId, generateEventIdV1, toFederationPdu } from "../protocol/event-id";
import { signEvent } from "../protocol/hashes";
import { serverNameOf } from "../protocol/identifiers";
import type { RemoteJoinRequest } from "../rooms/federation-hooks";
import { FederationClient, FederationRequestError, seg } from "./client";
import { KeyStore } from "./keys";
import { checkPdus, sortByAuthChain, type CheckedPdu } from "./pdu-checks";
import { checkStrippedState } from "./invite";
import { collectAnswerEvents, membersOmitted, persistPartialJoin, PARTIAL_JOIN_QUERY } from "./partial-join"; // faster joins

function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A resident's answer that cannot be used (try the next server). */
export class BadResidentAnswer extends Error {
  override readonly name = "BadResidentAnswer";
}

/** Servers to try, in order: the given ones, the room ID's server (v1–v11 IDs), `extra`; ours left out. */
export function candidateServers(ours: string, roomId: string, given: readonly string[], extra: readonly (string | undefined)[] = []): string[] {
  const out: string[] = [];
  const add = (s: string | undefined) => {
    if (s && s !== ours && !out.includes(s)) out.push(s);
  };
  for (const s of given) add(s);
  if (roomId.includes(":")) {
    try {
      add(serverNameOf(roomId));
    } catch {
      // not a server-named room ID
    }
  }
  for (const s of extra) add(s);
  return out;
}

/**
 * The membership event built from a resident's template: checked (room, type, sender, state key, membership),
 * our content merged in (the template's `join_authorised_via_users_server` kept), stamped, hashed and signed.
 */
export async function signedFromTemplate(
  env: Env,
  res: { room_version?: unknown; event?: unknown },
  expect: { roomId: string; userId: string; membership: "join" | "leave" | "knock"; content: JsonObject },
): Promise<{ pdu: PDU; eventId: string; version: RoomVersion }> {
  const versionId = typeof res.room_version === "string" ? res.room_version : "1";
  const version = lookupRoomVersion(versionId);
  if (!version) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Room version ${versionId} is not supported by this server`);
  const t = res.event;
  if (!isObject(t) || !isObject(t.content)) throw new BadResidentAnswer("the template has no event");
  if (t.room_id !== expect.roomId || t.type !== "m.room.member" || t.sender !== expect.userId || t.state_key !== expect.userId) {
    throw new BadResidentAnswer("the template is for another room, user or event type");
  }
  if (t.content.membership !== expect.membership) throw new BadResidentAnswer(`the template's membership is not ${expect.membership}`);
  const ours = getConfig(env).serverName;
  const event: Record<string, unknown> = { ...t };
  for (const k of ["event_id", "hashes", "signatures", "unsigned"]) delete event[k];
  const content: JsonObject = { ...expect.content, membership: expect.membership };
  if (typeof t.content.join_authorised_via_users_server === "string") content.join_authorised_via_users_server = t.content.join_authorised_via_users_server;
  event.content = content;
  event.origin = ours;
  event.origin_server_ts = Date.now();
  if (version.eventFormat === "v1") event.event_id = generateEventIdV1(ours);
  const key = (await getServerKeys(env)).current;
  const pdu = signEvent(event, ours, key, version) as unknown as PDU;
  return { pdu, eventId: computeEventId(pdu, version), version };
}

/** Turns the last failure of a candidate list into what the client sees. */
export function remoteFailure(errors: unknown[], what: string): MatrixError {
  const http = errors.filter((e): e is FederationRequestError => e instanceof FederationRequestError && e.status !== undefined);
  const pick = (status: number) => http.find((e) => e.status === status);
  const forbidden = pick(403);
  if (forbidden) return new MatrixError(403, "M_FORBIDDEN", forbidden.message);
  const incompatible = http.find((e) => e.errcode === "M_INCOMPATIBLE_ROOM_VERSION" || e.errcode === "M_UNSUPPORTED_ROOM_VERSION");
  if (incompatible) return new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", incompatible.message);
  const refused = http.find((e) => e.status! >= 400 && e.status! < 500 && e.errcode !== undefined && e.errcode !== "M_UNRECOGNIZED");
  if (refused) return new MatrixError(refused.status === 404 ? 404 : 400, refused.errcode as "M_UNKNOWN", refused.message);
  const local = errors.find((e): e is MatrixError => e instanceof MatrixError);
  if (local) return local;
  const last = errors.at(-1);
  return new MatrixError(502, "M_UNKNOWN", `Could not ${what} through any server: ${last instanceof Error ? last.message : String(last)}`);
}

/**
 * `PUT send_*` through v2, falling back to v1 (`[200, body]`) for servers without it. `v2Query`: query
 * parameters of the v2 request (faster joins: `omit_members`).
 */
export async function putV2OrV1<T>(
  client: FederationClient, server: string, kind: "send_join" | "send_leave", roomId: string, eventId: string, body: unknown,
  v2Query?: Record<string, string>,
): Promise<T> {
  const path = (v: string) => `/_matrix/federation/${v}/${kind}/${seg(roomId)}/${seg(eventId)}`;
  try {
    return await client.request<T>(server, "PUT", path("v2"), body, v2Query ? { query: v2Query } : {});
  } catch (e) {
    const unsupported = e instanceof FederationRequestError && (e.status === 404 || e.status === 405) && (e.errcode === undefined || e.errcode === "M_UNRECOGNIZED");
    if (!unsupported) throw e;
  }
  const res = await client.request<unknown>(server, "PUT", path("v1"), body);
  if (!Array.isArray(res) || !isObject(res[1])) throw new BadResidentAnswer(`${kind} v1 answer is not [200, {…}]`);
  return res[1] as T;
}

/** Joins or knocks on a remote room (`federationHooks.remoteJoin`). */
export async function remoteJoin(env: Env, req: RemoteJoinRequest): Promise<{ room_id: string }> {
  const membership = req.content.membership === "knock" ? "knock" : "join";
  const userId = req.requester.userId;
  const ours = getConfig(env).serverName;
  const known = await roomStub(env, req.roomId).fedRemoteInfo(userId);
  const inviter = known.out_of_band?.membership === "invite" ? serverNameOf(known.out_of_band.sender) : undefined;
  const servers = candidateServers(ours, req.roomId, req.servers, [inviter, ...known.servers]);
  if (servers.length === 0) throw new MatrixError(404, "M_NOT_FOUND", `No known servers to ${membership} room ${req.roomId} through`);
  const client = new FederationClient(env);
  const errors: unknown[] = [];
  for (const server of servers) {
    try {
      if (membership === "join") await joinVia(env, client, server, req);
      else await knockVia(env, client, server, req);
      return { room_id: req.roomId };
    } catch (e) {
      console.warn(`federation: ${membership} ${req.roomId} via ${server} failed: ${(e as Error).message}`);
      errors.push(e);
    }
  }
  throw remoteFailure(errors, membership);
}

interface SendJoinAnswer {
  state?: unknown;
  auth_chain?: unknown;
  event?: unknown;
  members_omitted?: unknown;
  servers_in_room?: unknown;
}

async function joinVia(env: Env, client: FederationClient, server: string, req: RemoteJoinRequest): Promise<void> {
  const userId = req.requester.userId;
  const template = await client.request<{ room_version?: unknown; event?: unknown }>(
    server,
    "GET",
    `/_matrix/federation/v1/make_join/${seg(req.roomId)}/${seg(userId)}`,
    undefined,
    { query: { ver: supportedRoomVersions() } },
  );
  const { pdu, eventId, version } = await signedFromTemplate(env, template, { roomId: req.roomId, userId, membership: "join", content: req.content });
  // Faster joins (docs/faster-joins.md): ask for partial state unless PARTIAL_JOINS is off. A resident that does
  // not support it answers with the full state, which is persisted as usual (v1 never has partial state).
  const partial = getConfig(env).partialJoins;
  const answer = await putV2OrV1<SendJoinAnswer>(
    client, server, "send_join", req.roomId, eventId, toFederationPdu(pdu, version), partial ? PARTIAL_JOIN_QUERY : undefined,
  );
  await persistJoin(env, server, req.roomId, version, pdu, eventId, answer, partial);
}

/**
 * Checks a send_join answer and persists the join with it. The resident's copy of the event replaces ours when
 * it is the same event (same ID) — it carries the authorising server's signature of a restricted join.
 */
export async function persistJoin(
  env: Env, server: string, roomId: string, version: RoomVersion, ours: PDU, eventId: string, answer: SendJoinAnswer,
  partialAsked = false, // faster joins: an answer with members omitted goes to persistPartialJoin
): Promise<void> {
  if (membersOmitted(answer)) {
    if (!partialAsked) throw new BadResidentAnswer("partial state was not asked for");
    return persistPartialJoin(env, server, roomId, version, ours, eventId, answer);
  }
  if (!Array.isArray(answer.state) || !Array.isArray(answer.auth_chain)) throw new BadResidentAnswer("send_join answer lacks state or auth_chain");
  let join = ours;
  if (isObject(answer.event)) {
    let id: string | undefined;
    try {
      id = computeEventId(answer.event, version);
    } catch {
      id = undefined;
    }
    if (id !== eventId) throw new BadResidentAnswer("send_join answered with another event");
    join = answer.event as unknown as PDU;
  }
  const keys = new KeyStore(env);
  const [joinChecked] = await checkPdus([join], version, roomId, keys);
  if (!joinChecked?.ok || joinChecked.redacted) throw new BadResidentAnswer(`the join does not verify: ${joinChecked && !joinChecked.ok ? joinChecked.error : "hash mismatch"}`);

  // Auth chain and state, deduplicated, checked together (signatures fetched once per server).
  const raws = new Map<string, unknown>();
  const stateIds = collectAnswerEvents(answer, version, eventId, raws);
  const checked = await checkPdus([...raws.values()], version, roomId, keys);
  const good = checked.filter((c): c is Extract<CheckedPdu, { ok: true }> => c.ok);
  for (const c of checked) if (!c.ok) console.warn(`federation: join of ${roomId} via ${server}: dropping ${c.eventId ?? "an event"}: ${c.error}`);
  const goodIds = new Set(good.map((c) => c.eventId));
  if (!good.some((c) => c.pdu.type === "m.room.create")) throw new BadResidentAnswer("the state has no valid m.room.create event");
  const outliers = sortByAuthChain(good).map((c) => JSON.stringify(c.pdu));
  const stub = roomStub(env, roomId);
  const outcome = await stub.fedPersistRemoteJoin(roomId, version.id, outliers, stateIds.filter((id) => goodIds.has(id)), JSON.stringify(join));
  if (outcome.status !== "accepted" && outcome.status !== "duplicate") {
    throw new BadResidentAnswer(`the join could not be placed on the state ${server} sent: ${JSON.stringify(outcome)}`);
  }
  await stub.syncDirectory().catch((e: unknown) => console.warn(`federation: directory sync of ${roomId} failed: ${String(e)}`));
}

async function knockVia(env: Env, client: FederationClient, server: string, req: RemoteJoinRequest): Promise<void> {
  const userId = req.requester.userId;
  const template = await client.request<{ room_version?: unknown; event?: unknown }>(
    server,
    "GET",
    `/_matrix/federation/v1/make_knock/${seg(req.roomId)}/${seg(userId)}`,
    undefined,
    { query: { ver: supportedRoomVersions() } },
  );
  const { pdu, eventId, version } = await signedFromTemplate(env, template, { roomId: req.roomId, userId, membership: "knock", content: req.content });
  const res = await client.request<{ knock_room_state?: unknown }>(
    server,
    "PUT",
    `/_matrix/federation/v1/send_knock/${seg(req.roomId)}/${seg(eventId)}`,
    toFederationPdu(pdu, version),
  );
  const state = await checkStrippedState(env, res.knock_room_state, version, req.roomId, "knock_room_state");
  const stored = await roomStub(env, req.roomId).fedStoreOutOfBand(
    req.roomId,
    version.id,
    JSON.stringify(pdu),
    // Where a rescinding leave must go (make_leave through the same resident).
    JSON.stringify({ knock_room_state: state, "io.axon.resident": server }),
  );
  if ("error" in stored) throw new MatrixError(500, "M_UNKNOWN", stored.error);
}
