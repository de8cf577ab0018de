/**
 * Benchmark routes of the `federation` group (bench/federation.mjs), mounted by bench/axon-worker.ts under
 * `/_bench/federation/`. They prepare rooms and build signed requests *outside* the timed requests:
 *
 * - `setup-inbound`: a room here with a local user (an account and device, for to-device EDUs) and a user of a
 *   pretend remote server joined; the remote's signing key is put in D1 as if it had been fetched.
 * - `inbound-txn?room=&pdus=&edus=`: a transaction from that remote, ready to PUT: `pdus` messages chained on the
 *   room's latest event, `edus` EDUs (typing, to-device for the local user, receipts), its path, body and
 *   X-Matrix header. Node then times `PUT /_matrix/federation/v1/send/{txnId}` itself.
 * - `setup-fanout?servers=`: a room here whose members are a local user (with an access token) and one user of
 *   each of `servers` remote servers (`fanout<i>.bench`, pointed at a closed loopback port by the bench's
 *   FEDERATION_OVERRIDES).
 * - `fanout-status?room=&servers=&position=`: how many of those servers' DestinationDOs have recorded the room
 *   at `position` or later.
 */
import type { Env } from "../src/env";
import type { PDU } from "../src/protocol/events";
import { roomVersion } from "../src/protocol/room-versions";
import { buildCreateEvent } from "../src/rooms/create-event";
import { getServerKeys } from "../src/server-keys";
import { generateSigningKey, publicKeyBase64, type SigningKey } from "../src/protocol/signing";
import { addContentHash, signEvent } from "../src/protocol/hashes";
import { computeEventId } from "../src/protocol/event-id";
import { signRequest } from "../src/federation/x-matrix";
import { newToken, tokenHash } from "../src/accounts/tokens";

const HERE = "bench.local";
const REMOTE = "inbound.bench";
const VERSION = roomVersion("12")!;

/** The pretend remote's key (one per isolate; D1 learns its public half in setup). */
let remoteKey: SigningKey | undefined;
/** Per room: the last event a generated transaction built on, and its depth. */
const tips = new Map<string, { eventId: string; depth: number; pl: string; member: string; localUser: string; localDevice: string }>();
let txnSeq = 0;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

async function localUser(env: Env, localpart: string): Promise<{ userId: string; deviceId: string; token: string }> {
  const userId = `@${localpart}:${HERE}`;
  const deviceId = "BENCHDEV";
  const token = newToken("syt");
  const now = Date.now();
  await env.DB.batch([
    env.DB.prepare("INSERT OR IGNORE INTO users (user_id, localpart, created_ts) VALUES (?, ?, ?)").bind(userId, localpart, now),
    env.DB.prepare("INSERT OR IGNORE INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(userId, deviceId, now),
    env.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(tokenHash(token), userId, deviceId, now),
  ]);
  return { userId, deviceId, token };
}

/** A v12 room created by `creator` (public, shared history); returns its ID, stub and the power-levels event ID. */
async function newRoom(env: Env, creator: string) {
  const key = (await getServerKeys(env)).current;
  const { pdu, roomId } = buildCreateEvent({ creator, version: VERSION, serverName: HERE, signingKey: key });
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  const results = await stub.createRoom(pdu, roomId, VERSION.id, [
    { type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join" } },
    { type: "m.room.power_levels", state_key: "", sender: creator, content: { users: {}, events_default: 0 } },
    { type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: "public" } },
    { type: "m.room.history_visibility", state_key: "", sender: creator, content: { history_visibility: "shared" } },
  ]);
  if (!results.every((r) => r.ok)) throw new Error(`createRoom failed: ${JSON.stringify(results)}`);
  const ids = results.map((r) => (r.ok ? r.event_id : ""));
  return { roomId, stub, pl: ids[2]!, jr: ids[3]!, last: ids.at(-1)!, depth: results.length };
}

/** Remote joins through RoomDO.receive (the federation layer's checks are not what this setup measures). */
async function joinRemote(stub: ReturnType<typeof newRoomStub>, roomId: string, server: string, key: SigningKey, prev: string, depth: number, pl: string, jr: string) {
  const user = `@m:${server}`;
  const event = {
    room_id: roomId, type: "m.room.member", state_key: user, sender: user, content: { membership: "join" },
    origin_server_ts: Date.now(), depth, prev_events: [prev], auth_events: [pl, jr],
  };
  const signed = signEvent(addContentHash(event), server, key, VERSION) as unknown as PDU;
  const [outcome] = await stub.receive([signed]);
  if (outcome?.status !== "accepted") throw new Error(`join of ${user} not accepted: ${JSON.stringify(outcome)}`);
  return { user, eventId: computeEventId(signed, VERSION) };
}

function newRoomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

async function setupInbound(env: Env): Promise<Response> {
  remoteKey ??= generateSigningKey("bench");
  await env.DB.prepare(
    `INSERT INTO remote_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts, fetched_from)
     VALUES (?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts`,
  )
    .bind(REMOTE, remoteKey.keyId, publicKeyBase64(remoteKey), Date.now() + 30 * 24 * 3600 * 1000, Date.now(), REMOTE)
    .run();
  const local = await localUser(env, `local${Date.now().toString(36)}`);
  const room = await newRoom(env, local.userId);
  const join = await joinRemote(newRoomStub(env, room.roomId), room.roomId, REMOTE, remoteKey, room.last, room.depth + 1, room.pl, room.jr);
  tips.set(room.roomId, { eventId: join.eventId, depth: room.depth + 1, pl: room.pl, member: join.eventId, localUser: local.userId, localDevice: local.deviceId });
  return json({ room_id: room.roomId, remote: REMOTE, remote_user: join.user, local_user: local.userId });
}

async function inboundTxn(params: URLSearchParams): Promise<Response> {
  const roomId = params.get("room") ?? "";
  const tip = tips.get(roomId);
  if (!tip || !remoteKey) return json({ error: "run setup-inbound first (in this isolate)" }, 400);
  const nPdus = Number(params.get("pdus") ?? "50");
  const nEdus = Number(params.get("edus") ?? "100");
  const user = `@m:${REMOTE}`;
  const pdus: PDU[] = [];
  let prev = tip.eventId;
  let depth = tip.depth;
  for (let i = 0; i < nPdus; i++) {
    const event = {
      room_id: roomId, type: "m.room.message", sender: user, content: { msgtype: "m.text", body: `inbound message ${txnSeq}.${i}, ordinary chat text` },
      origin_server_ts: Date.now(), depth: ++depth, prev_events: [prev], auth_events: [tip.pl, tip.member],
    };
    const signed = signEvent(addContentHash(event), REMOTE, remoteKey, VERSION) as unknown as PDU;
    prev = computeEventId(signed, VERSION);
    pdus.push(signed);
  }
  tips.set(roomId, { ...tip, eventId: prev, depth });
  // EDUs: a third typing, a third to-device messages for the local user, a third read receipts.
  const edus: { edu_type: string; content: unknown }[] = [];
  const kinds = (params.get("edu_kinds") ?? "typing,to_device,receipt").split(",");
  for (let j = 0; j < nEdus; j++) {
    const i = ["typing", "to_device", "receipt"].indexOf(kinds[j % kinds.length]!);
    if (i % 3 === 0) edus.push({ edu_type: "m.typing", content: { room_id: roomId, user_id: user, typing: j % 2 === 0 } });
    else if (i % 3 === 1) {
      edus.push({
        edu_type: "m.direct_to_device",
        content: { sender: user, type: "m.bench", message_id: `m${txnSeq}.${j}`, messages: { [tip.localUser]: { [tip.localDevice]: { n: j } } } },
      });
    } else {
      edus.push({ edu_type: "m.receipt", content: { [roomId]: { "m.read": { [user]: { event_ids: [prev], data: { ts: Date.now() } } } } } });
    }
  }
  const txnId = `bench${Date.now()}_${++txnSeq}`;
  const path = `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`;
  const body = { origin: REMOTE, origin_server_ts: Date.now(), pdus, edus };
  const authorization = signRequest({ method: "PUT", uri: path, origin: REMOTE, destination: HERE, content: body }, remoteKey);
  return json({ path, body: JSON.stringify(body), authorization, pdus: pdus.length, edus: edus.length });
}

async function setupFanout(env: Env, params: URLSearchParams): Promise<Response> {
  const servers = Number(params.get("servers") ?? "100");
  const local = await localUser(env, `fan${Date.now().toString(36)}`);
  const room = await newRoom(env, local.userId);
  const stub = newRoomStub(env, room.roomId);
  const key = generateSigningKey("fanout");
  let prev = room.last;
  let depth = room.depth;
  for (let i = 0; i < servers; i++) prev = (await joinRemote(stub, room.roomId, `fanout${i}.bench`, key, prev, ++depth, room.pl, room.jr)).eventId;
  return json({ room_id: room.roomId, user_id: local.userId, access_token: local.token, servers });
}

async function fanoutStatus(env: Env, params: URLSearchParams): Promise<Response> {
  const roomId = params.get("room") ?? "";
  const servers = Number(params.get("servers") ?? "100");
  const position = Number(params.get("position") ?? "0");
  const statuses = await Promise.all(
    Array.from({ length: servers }, (_, i) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(`fanout${i}.bench`)).status()),
  );
  const queued = statuses.filter((s) => s.backlog.rooms.some((r) => r.room_id === roomId && r.notified >= position)).length;
  return json({ queued, servers });
}

/** The room's stream position now (after a send: that event's position). */
async function roomPosition(env: Env, params: URLSearchParams): Promise<Response> {
  const summary = await newRoomStub(env, params.get("room") ?? "").summary();
  return json({ position: summary?.stream_position ?? 0 });
}

/**
 * Profiling: a transaction body (as `inbound-txn` builds) handed straight to RoomDO.receive — no HTTP
 * authentication, no signature or hash checks, no EDUs: what the room's acceptance pipeline alone costs.
 */
async function receiveDirect(request: Request, env: Env, params: URLSearchParams): Promise<Response> {
  const body = (await request.json()) as { pdus: PDU[] };
  const outcomes = await newRoomStub(env, params.get("room") ?? "").receive(body.pdus);
  return json({ accepted: outcomes.filter((o) => o.status === "accepted").length });
}

/** Dispatches `/_bench/federation/<name>`; undefined for other paths. */
export async function federationBenchRoute(path: string, env: Env, params: URLSearchParams, request: Request): Promise<Response | undefined> {
  switch (path) {
    case "federation/receive-direct":
      return receiveDirect(request, env, params);
    case "federation/setup-inbound":
      return setupInbound(env);
    case "federation/inbound-txn":
      return inboundTxn(params);
    case "federation/setup-fanout":
      return setupFanout(env, params);
    case "federation/fanout-status":
      return fanoutStatus(env, params);
    case "federation/room-position":
      return roomPosition(env, params);
    default:
      return undefined;
  }
}
