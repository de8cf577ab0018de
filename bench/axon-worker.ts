/**
 * The benchmark server: the real Axon Worker (every route and Durable Object) plus `/_bench/*` routes that
 * drive RoomDOs directly, and `RawInsertDO`, the baseline: one Worker→DO RPC and one SQLite insert of a
 * comparable row, nothing else. Cases follow bench/worker.ts's convention: `?n=` operations per request,
 * `n=0` for the cost of the request itself; time is measured outside workerd.
 */
import { DurableObject } from "cloudflare:workers";
import app from "../src/index";
import type { Env } from "../src/env";
import { buildCreateEvent } from "../src/rooms/create-event";
import { getServerKeys } from "../src/server-keys";
import { roomVersion } from "../src/protocol/room-versions";
import { generateSigningKey } from "../src/protocol/signing";
import { addContentHash, signEvent } from "../src/protocol/hashes";
import { computeEventId } from "../src/protocol/event-id";
import type { JsonObject, PDU } from "../src/protocol/events";
import { lookupAccessToken } from "../src/http/auth"; // bench/client.mjs variants
import { resolveState } from "../src/protocol/state-res";
import { buildForkedRoom, type ForkedRoom } from "../test/helpers/state-res-room";

import { RoomDO } from "../durable-objects/room/RoomDO";
import { federationBenchRoute } from "./federation-routes"; // bench/federation.mjs
import { partialJoinBenchRoute } from "./partial-join-routes"; // bench/partial-join.mjs
export { RoomDO, UserDO, DestinationDO, RateLimiterDO, AppServiceDO } from "../src/index";

/**
 * Profiling: a RoomDO whose extra methods run pieces of the send path in a loop inside the object, so the
 * bench can tell the cost of building/signing, of the acceptance pipeline, and of the hops around them.
 * Reaches into private members on purpose (bench-only).
 */
export class ProfileRoomDO extends RoomDO {
  private get core(): any {
    return (this as any).room;
  }
  async setUp(): Promise<void> {
    if (this.core.exists) return;
    const version = roomVersion("12")!;
    const key = (await getServerKeys(this.env)).current;
    const { pdu, roomId } = buildCreateEvent({ creator: SENDER, version, serverName: "bench.local", signingKey: key });
    await this.createRoom(pdu, roomId, "12", [
      { type: "m.room.member", state_key: SENDER, sender: SENDER, content: { membership: "join" } },
      { type: "m.room.power_levels", state_key: "", sender: SENDER, content: { users: {} } },
    ]);
  }
  /** buildLocal only: prev/auth selection, hashes, signature, no persistence. */
  profileBuild(n: number): number {
    for (let i = 0; i < n; i++) this.core.buildLocal({ type: "m.room.message", sender: SENDER, content: message(i) });
    return n;
  }
  /** createLocal in its own transaction each time (build + accept + commit), no outbox delivery. */
  profileCreateLocal(n: number): number {
    for (let i = 0; i < n; i++) {
      this.ctx.storage.transactionSync(() => this.core.createLocal({ type: "m.room.message", sender: SENDER, content: message(i) }));
    }
    return n;
  }
}

type BenchEnv = Env & { RAW: DurableObjectNamespace<RawInsertDO>; PROFILE: DurableObjectNamespace<ProfileRoomDO> };

/** Baseline: what any persisted write costs at least (RPC + one SQLite row of an event's size). */
export class RawInsertDO extends DurableObject<BenchEnv> {
  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, json TEXT NOT NULL, ts INTEGER NOT NULL)");
  }
  insert(json: string): number {
    return this.ctx.storage.sql.exec<{ id: number }>("INSERT INTO rows (json, ts) VALUES (?, ?) RETURNING id", json, Date.now()).one().id;
  }
  databaseSize(): number {
    return this.ctx.storage.sql.databaseSize;
  }
}

const SENDER = "@bench:bench.local";
const message = (i: number) => ({ msgtype: "m.text", body: `benchmark message number ${i} — some ordinary chat text to send` });

let roomPromise: Promise<string> | undefined;
/** One room per isolate for the send cases, created on first use by a local user. */
function benchRoom(env: BenchEnv): Promise<string> {
  roomPromise ??= (async () => {
    const version = roomVersion("12")!;
    const key = (await getServerKeys(env)).current;
    const { pdu, roomId } = buildCreateEvent({ creator: SENDER, version, serverName: "bench.local", signingKey: key });
    const results = await env.ROOMS.get(env.ROOMS.idFromName(roomId)).createRoom(pdu, roomId, "12", [
      { type: "m.room.member", state_key: SENDER, sender: SENDER, content: { membership: "join" } },
      { type: "m.room.power_levels", state_key: "", sender: SENDER, content: { users: {} } },
      { type: "m.room.join_rules", state_key: "", sender: SENDER, content: { join_rule: "public" } },
    ]);
    if (!results.every((r) => r.ok)) throw new Error(`createRoom failed: ${JSON.stringify(results)}`);
    return roomId;
  })();
  return roomPromise;
}

let forked: ForkedRoom | undefined;

type Case = (env: BenchEnv, n: number, params: URLSearchParams) => Promise<unknown>;

const profileRoom = async (env: BenchEnv) => {
  const stub = env.PROFILE.get(env.PROFILE.idFromName("profile"));
  await stub.setUp();
  return stub;
};

const CASES: Record<string, Case> = {
  /** Profiling: building and signing local events inside the RoomDO (no persistence). */
  "profile/build": async (env, n) => (await profileRoom(env)).profileBuild(n),
  /** Profiling: build + accept + commit inside the RoomDO, one transaction each, no outbox delivery. */
  "profile/create-local": async (env, n) => (await profileRoom(env)).profileCreateLocal(n),
  /** Local sends through RoomDO.send, one after another. */
  "rooms/send-sequential": async (env, n) => {
    const room = env.ROOMS.get(env.ROOMS.idFromName(await benchRoom(env)));
    for (let i = 0; i < n; i++) {
      const r = await room.send({ type: "m.room.message", sender: SENDER, content: message(i) });
      if (!r.ok) throw new Error(r.error);
    }
    return n;
  },
  /** Local sends through RoomDO.send, all at once. */
  "rooms/send-concurrent": async (env, n) => {
    const room = env.ROOMS.get(env.ROOMS.idFromName(await benchRoom(env)));
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => room.send({ type: "m.room.message", sender: SENDER, content: message(i) })));
    if (!rs.every((r) => r.ok)) throw new Error("a send failed");
    return n;
  },
  /** Baseline: an event-sized row inserted by a DO, one after another. */
  "raw/insert-sequential": async (env, n) => {
    const raw = env.RAW.get(env.RAW.idFromName("raw"));
    const json = JSON.stringify({ type: "m.room.message", sender: SENDER, content: message(0), pad: "x".repeat(600) });
    for (let i = 0; i < n; i++) await raw.insert(json);
    return n;
  },
  /** Baseline: event-sized rows inserted by a DO, all at once. */
  "raw/insert-concurrent": async (env, n) => {
    const raw = env.RAW.get(env.RAW.idFromName("raw"));
    const json = JSON.stringify({ type: "m.room.message", sender: SENDER, content: message(0), pad: "x".repeat(600) });
    await Promise.all(Array.from({ length: n }, () => raw.insert(json)));
    return n;
  },
  /** State resolution of two forks of a room with `members` members (the room is built once per isolate). */
  "stateres/two-forks": async (_env, n, params) => {
    const members = Number(params.get("members") ?? "10000");
    const version = params.get("version") ?? "12";
    if (!forked || forked.base.size < members || forked.version.id !== version) forked = buildForkedRoom({ members, version });
    let size = 0;
    for (let i = 0; i < n; i++) size += resolveState(forked.forks, forked.version, forked.store).size;
    return size;
  },
};

/**
 * Builds a room with `members` remote members (joined through RoomDO.receive, as from federation), then
 * sends `messages` messages and `stateEvents` state events, measuring the database size after each phase.
 */
async function storageReport(env: BenchEnv, params: URLSearchParams) {
  const members = Number(params.get("members") ?? "10000");
  const messages = Number(params.get("messages") ?? "2000");
  const stateEvents = Number(params.get("state_events") ?? "2000");
  const version = roomVersion("12")!;
  const key = (await getServerKeys(env)).current;
  const creator = `@creator${Date.now()}:bench.local`;
  const { pdu, roomId } = buildCreateEvent({ creator, version, serverName: "bench.local", signingKey: key });
  const room = env.ROOMS.get(env.ROOMS.idFromName(roomId));
  const created = await room.createRoom(pdu, roomId, "12", [
    { type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join" } },
    { type: "m.room.power_levels", state_key: "", sender: creator, content: { users: {}, state_default: 0 } },
    { type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: "public" } },
  ]);
  const ids = created.map((r) => (r.ok ? r.event_id : ""));
  const [, , plId, jrId] = ids as [string, string, string, string];
  const size = async () => JSON.parse(await room.storageStats()) as { database_bytes: number; state_rows: number; events: number };

  // Remote joins: a chain signed by a pretend remote server (signatures are the federation layer's job).
  const remoteKey = generateSigningKey("bench");
  let prev = (await room.summary())!.forward_extremities[0]!;
  let depth = 10;
  const start = await size();
  for (let done = 0; done < members; ) {
    const batch: PDU[] = [];
    for (let i = 0; i < 500 && done < members; i++, done++) {
      const user = `@m${done}:remote${done % 20}.bench`;
      const event = { room_id: roomId, type: "m.room.member", state_key: user, sender: user, content: { membership: "join" },
        origin_server_ts: Date.now(), depth: depth++, prev_events: [prev], auth_events: [plId, jrId] };
      const signed = signEvent(addContentHash(event), `remote${done % 20}.bench`, remoteKey, version) as unknown as PDU;
      prev = computeEventId(signed, version);
      batch.push(signed);
    }
    const outcomes = await room.receive(batch);
    const bad = outcomes.find((o) => o.status !== "accepted");
    if (bad) throw new Error(`join not accepted: ${JSON.stringify(bad)}`);
  }
  const afterJoins = await size();
  for (let i = 0; i < messages; i++) await room.send({ type: "m.room.message", sender: creator, content: message(i) });
  const afterMessages = await size();
  for (let i = 0; i < stateEvents; i++) {
    await room.send({ type: "m.room.topic", state_key: "", sender: creator, content: { topic: `topic ${i}` } });
  }
  const afterState = await size();
  const per = (a: { database_bytes: number }, b: { database_bytes: number }, n: number) => Math.round((b.database_bytes - a.database_bytes) / n);
  return {
    members,
    database_bytes: { start: start.database_bytes, after_joins: afterJoins.database_bytes, after_messages: afterMessages.database_bytes, after_state_events: afterState.database_bytes },
    state_rows: { after_joins: afterJoins.state_rows, after_messages: afterMessages.state_rows, after_state_events: afterState.state_rows },
    bytes_per_member_join: per(start, afterJoins, members),
    bytes_per_message: per(afterJoins, afterMessages, messages),
    bytes_per_state_event: per(afterMessages, afterState, stateEvents),
    state_rows_per_message: (afterMessages.state_rows - afterJoins.state_rows) / messages,
    state_rows_per_state_event: (afterState.state_rows - afterMessages.state_rows) / stateEvents,
  };
}

// ---- bench/client.mjs: routes timed one HTTP request at a time (not `?n=` cases) ----
type ClientRoute = (request: Request, env: BenchEnv, params: URLSearchParams) => Promise<Response>;
const CLIENT_ROUTES: Record<string, ClientRoute> = {
  /**
   * Baseline for a client send: Node → Worker → RawInsertDO → one SQLite insert of the request body, answered
   * with an ID, one insert per HTTP request. `?do=` names the DO (default one, like one room).
   */
  "raw/request": async (request, env, params) => {
    const body = await request.text();
    const id = await env.RAW.get(env.RAW.idFromName(params.get("do") ?? "raw-request")).insert(body);
    return json({ event_id: `$${id}` });
  },
  /** Variant: the HTTP floor, a Worker request that touches no Durable Object. */
  "raw/noop": async () => json({ event_id: "$noop" }),
  /**
   * Variant: the hop a send makes to the sender's UserDO (read-your-writes): Worker → UserDO.roomAdvanced, one
   * transaction, for a user and room used by nothing else (`?n=` the position, increasing).
   */
  "client/user-advance": async (_request, env, params) => {
    await env.USERS.get(env.USERS.idFromName("@advance:bench.local")).roomAdvanced("!advance:bench.local", Number(params.get("n")), "join");
    return json({ ok: true });
  },
  /** Variant: the raw request plus the access-token lookup every authenticated request does (one D1 query). */
  "raw/request-auth": async (request, env, params) => {
    const token = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization") ?? "")?.[1];
    const requester = token ? await lookupAccessToken(env.DB, token) : undefined;
    if (!requester || "expired" in requester) return json({ error: "unknown token" }, 401);
    const body = await request.text();
    const id = await env.RAW.get(env.RAW.idFromName(params.get("do") ?? "raw-request")).insert(body);
    return json({ event_id: `$${id}` });
  },
  /** Variant: a message straight to RoomDO.clientWrite (what PUT /send does after authentication), `?room=&user=`. */
  "client/room-write": async (request, env, params) => {
    const content = (await request.json()) as JsonObject;
    const r = await env.ROOMS.get(env.ROOMS.idFromName(params.get("room") ?? "")).clientWrite({
      kind: "message", sender: params.get("user") ?? "", type: "m.room.message", content,
    });
    return r.ok ? json({ event_id: r.event_id }) : json(r, r.status);
  },
  /**
   * Fan-out profile for the initial sync: one trivial RPC to each of the rooms in the body (`{"rooms": [...]}`),
   * all at once, as /sync calls syncRoom; `?to=raw` sends them to as many RawInsertDOs instead.
   */
  "client/fanout": async (request, env, params) => {
    const { rooms } = (await request.json()) as { rooms: string[] };
    if (params.get("to") === "raw") await Promise.all(rooms.map((r) => env.RAW.get(env.RAW.idFromName(r)).databaseSize()));
    else await Promise.all(rooms.map((r) => env.ROOMS.get(env.ROOMS.idFromName(r)).typingUsers()));
    return json({ rooms: rooms.length });
  },
  /** How many long polls a user's UserDO holds (the sync-wake measurement waits for 1 before sending). */
  "client/waiters": async (_request, env, params) =>
    json({ waiters: await env.USERS.get(env.USERS.idFromName(params.get("user") ?? "")).waiterCount() }),
};
// ---- end bench/client.mjs ----

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

export default {
  async fetch(request: Request, env: BenchEnv, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (!url.pathname.startsWith("/_bench/")) return app.fetch(request, env, ctx);
    const path = url.pathname.slice("/_bench/".length).replace(/\/+$/, "");
    try {
      // ---- bench/client.mjs (HTTP client path): whole HTTP requests, one operation each ----
      const clientRoute = CLIENT_ROUTES[path];
      if (clientRoute) return await clientRoute(request, env, url.searchParams);
      // ---- end bench/client.mjs ----
      // ---- bench/federation.mjs: setup and request builders (bench/federation-routes.ts) ----
      if (path.startsWith("federation/")) return (await federationBenchRoute(path, env, url.searchParams, request)) ?? json({ error: `no route ${path}` }, 404);
      // ---- bench/partial-join.mjs: the resident's big room, joiners' progress, the pretend members' server ----
      if (path.startsWith("partial-join/")) {
        return (await partialJoinBenchRoute(path.slice("partial-join/".length), env, url.searchParams, request)) ?? json({ error: `no route ${path}` }, 404);
      }
      if (path === "rooms/storage") return json(await storageReport(env, url.searchParams));
      const run = CASES[path];
      if (!run) return json({ error: `no benchmark case ${JSON.stringify(path)}` }, 404);
      const n = Number(url.searchParams.get("n") ?? "0");
      if (!Number.isSafeInteger(n) || n < 0) return json({ error: "n must be a non-negative integer" }, 400);
      // n = 0 still touches the DO the case uses, so the baseline includes the same setup.
      if (n === 0 && path.startsWith("rooms/")) await benchRoom(env);
      return json({ case: path, n, sink: await run(env, n, url.searchParams) });
    } catch (e) {
      return json({ error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }, 500);
    }
  },
} satisfies ExportedHandler<BenchEnv>;
