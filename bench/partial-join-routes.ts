/**
 * Benchmark routes of the `partial-join` group (bench/partial-join.mjs), mounted by bench/axon-worker.ts under
 * `/_bench/partial-join/`. Three bench servers run them: the resident (holds the big room) and two joiners.
 *
 * - `setup?members=&state_events=` (resident): a public v12 room created by a local user, `members` joins of
 *   users of `members.bench` (a pretend server whose events are signed with a fixed key; accepted through
 *   RoomDO.receive, as from federation) and `state_events` other state events; returns the room ID.
 * - `user?localpart=` (any): a local user with an access token.
 * - `send?room=&body=` (resident): a message from the room's creator; returns its event ID.
 * - `progress?room=` (joiners): the room's partial-state row (null once fully stated), its event count and
 *   joined members.
 * - `held?room=&event=` (joiners): whether the room holds an event.
 * - `fake-members/...`: the pretend `members.bench` server (its FEDERATION_OVERRIDES entry points here): its key
 *   document, and `{}` answers to transactions (a partial-state room sends its events to every server in it).
 */
import type { Env } from "../src/env";
import type { PDU } from "../src/protocol/events";
import { getConfig } from "../src/config";
import { roomVersion } from "../src/protocol/room-versions";
import { buildCreateEvent } from "../src/rooms/create-event";
import { getServerKeys } from "../src/server-keys";
import { signingKeyFromSeed } from "../src/protocol/signing";
import { addContentHash, signEvent } from "../src/protocol/hashes";
import { computeEventId } from "../src/protocol/event-id";
import { serverKeyDocument } from "../src/routes/keys/server";
import { newToken, tokenHash } from "../src/accounts/tokens";

export const MEMBERS_SERVER = "members.bench";
/** The pretend members' server key: the same on every bench server (a fixed seed). */
const membersKey = signingKeyFromSeed("bench", new Uint8Array(32).fill(7));
const VERSION = roomVersion("12")!;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** Routes under `/_bench/partial-join/` (`path` without that prefix); undefined when none matches. */
export async function partialJoinBenchRoute(path: string, env: Env, params: URLSearchParams, request: Request): Promise<Response | undefined> {
  if (path.startsWith("fake-members/")) return fakeMembersServer(path.slice("fake-members".length), request);
  const roomParam = () => env.ROOMS.get(env.ROOMS.idFromName(params.get("room") ?? ""));
  switch (path) {
    case "setup":
      return json(await setup(env, Number(params.get("members") ?? "10000"), Number(params.get("state_events") ?? "100")));
    case "user":
      return json(await localUser(env, params.get("localpart") ?? `u${Date.now()}`));
    case "send": {
      const stub = roomParam();
      const creator = (await stub.summary()) ? `@creator:${getConfig(env).serverName}` : "";
      const r = await stub.send({ type: "m.room.message", sender: creator, content: { msgtype: "m.text", body: params.get("body") ?? "hello" } });
      return r.ok ? json({ event_id: r.event_id }) : json(r, 400);
    }
    case "progress": {
      const stub = roomParam();
      const [partial, summary] = await Promise.all([stub.partialStateInfo(), stub.summary()]);
      return json({ partial, events: summary?.events ?? 0, joined_members: summary?.joined_members ?? 0 });
    }
    case "held":
      return json({ held: (await roomParam().heldEvents([params.get("event") ?? ""])).length === 1 });
    default:
      return undefined;
  }
}

/** The pretend members.bench: key document, and a sink for transactions. */
async function fakeMembersServer(path: string, request: Request): Promise<Response> {
  if (path.startsWith("/_matrix/key/v2/server")) return json(serverKeyDocument(MEMBERS_SERVER, { current: membersKey, old: [] }, Date.now()));
  if (path.startsWith("/_matrix/federation/v1/send/")) {
    await request.arrayBuffer();
    return json({ pdus: {} });
  }
  return json({ errcode: "M_UNRECOGNIZED", error: "members.bench serves keys only" }, 404);
}

async function localUser(env: Env, localpart: string): Promise<{ user_id: string; device_id: string; access_token: string }> {
  const userId = `@${localpart}:${getConfig(env).serverName}`;
  const deviceId = "BENCHDEV";
  const token = newToken("syt");
  const now = Date.now();
  await env.DB.batch([
    env.DB.prepare("INSERT OR IGNORE INTO users (user_id, localpart, created_ts) VALUES (?, ?, ?)").bind(userId, localpart, now),
    env.DB.prepare("INSERT OR IGNORE INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(userId, deviceId, now),
    env.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(tokenHash(token), userId, deviceId, now),
  ]);
  return { user_id: userId, device_id: deviceId, access_token: token };
}

/** The resident's room: creator, power levels, public join rule, shared history, `members` joins, `stateEvents` more. */
async function setup(env: Env, members: number, stateEvents: number) {
  const started = Date.now();
  const here = getConfig(env).serverName;
  const creator = `@creator:${here}`;
  await localUser(env, "creator");
  const key = (await getServerKeys(env)).current;
  const { pdu, roomId } = buildCreateEvent({ creator, version: VERSION, serverName: here, signingKey: key });
  const room = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  const created = await room.createRoom(pdu, roomId, VERSION.id, [
    { type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join" } },
    { type: "m.room.power_levels", state_key: "", sender: creator, content: { users: {}, state_default: 50, events_default: 0, invite: 0 } },
    { type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: "public" } },
    { type: "m.room.history_visibility", state_key: "", sender: creator, content: { history_visibility: "shared" } },
    { type: "m.room.name", state_key: "", sender: creator, content: { name: "Big room" } },
  ]);
  if (!created.every((r) => r.ok)) throw new Error(`createRoom failed: ${JSON.stringify(created)}`);
  const [, , plId, jrId] = created.map((r) => (r.ok ? r.event_id : "")) as [string, string, string, string];
  let prev = (await room.summary())!.forward_extremities[0]!;
  let depth = 10;
  for (let done = 0; done < members; ) {
    const batch: PDU[] = [];
    for (let i = 0; i < 500 && done < members; i++, done++) {
      const user = `@m${done}:${MEMBERS_SERVER}`;
      const event = { room_id: roomId, type: "m.room.member", state_key: user, sender: user, content: { membership: "join", displayname: `Member ${done}` },
        origin_server_ts: Date.now(), depth: depth++, prev_events: [prev], auth_events: [plId, jrId] };
      const signed = signEvent(addContentHash(event), MEMBERS_SERVER, membersKey, VERSION) as unknown as PDU;
      prev = computeEventId(signed, VERSION);
      batch.push(signed);
    }
    const outcomes = await room.receive(batch);
    const bad = outcomes.find((o) => o.status !== "accepted");
    if (bad) throw new Error(`join not accepted: ${JSON.stringify(bad)}`);
  }
  for (let i = 0; i < stateEvents; i++) {
    const r = await room.send({ type: "org.bench.setting", state_key: `k${i}`, sender: creator, content: { value: i } });
    if (!r.ok) throw new Error(`state event not accepted: ${r.error}`);
  }
  const summary = await room.summary();
  return { room_id: roomId, members: summary!.joined_members, events: summary!.events, setup_ms: Date.now() - started };
}
