/**
 * Entry module of the auxiliary homeservers of the federation test harness (bundled by harness-config.ts; never
 * deployed). It is the real Axon Worker plus two test conveniences:
 * - the D1 migrations are applied on first use (the runner's test/setup.ts does the same for `test.local`);
 * - `TestControl`, an RPC entrypoint the tests use to drive this server directly (create rooms, send events,
 *   read what was persisted) where no client API exists for it.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import app from "../../src/index";
import type { Env } from "../../src/env";
import type { PDU } from "../../src/protocol/events";
import type { EventTemplate } from "../../durable-objects/room/room";
import { roomVersion } from "../../src/protocol/room-versions";
import { toFederationPdu } from "../../src/protocol/event-id";
import { buildCreateEvent } from "../../src/rooms/create-event";
import { getServerKeys } from "../../src/server-keys";
import { destinationStatus, destinationStub, queueEdu } from "../../src/federation/destinations";
// Federation scenarios (test/federation/scenarios.test.ts): users with access tokens, partitions, request logs.
import { newToken, tokenHash } from "../../src/accounts/tokens";
import { setFederationFetch } from "../../src/federation/fetch";

export * from "../../src/index";

type Migration = { name: string; queries: string[] };
type AuxEnv = Env & { TEST_MIGRATIONS: Migration[] };

let migrated: Promise<void> | undefined;

async function applyMigrations(env: AuxEnv): Promise<void> {
  await env.DB.prepare("CREATE TABLE IF NOT EXISTS _test_migrations (name TEXT PRIMARY KEY)").run();
  const done = new Set(
    (await env.DB.prepare("SELECT name FROM _test_migrations").all<{ name: string }>()).results.map((r) => r.name),
  );
  for (const m of env.TEST_MIGRATIONS) {
    if (done.has(m.name)) continue;
    await env.DB.batch([
      ...m.queries.map((q) => env.DB.prepare(q)),
      env.DB.prepare("INSERT INTO _test_migrations (name) VALUES (?)").bind(m.name),
    ]);
  }
}

function ensureMigrated(env: AuxEnv): Promise<void> {
  migrated ??= applyMigrations(env).catch((e) => {
    migrated = undefined;
    throw e;
  });
  return migrated;
}

export default {
  async fetch(request: Request, env: AuxEnv, ctx: ExecutionContext): Promise<Response> {
    await ensureMigrated(env);
    return app.fetch(request, env, ctx);
  },
};

/** Test-only control of this homeserver, for the harness tests (service binding `HS2_CONTROL`, …). */
export class TestControl extends WorkerEntrypoint<AuxEnv> {
  private async ready(): Promise<void> {
    await ensureMigrated(this.env);
  }

  private room(roomId: string) {
    return this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId));
  }

  async serverName(): Promise<string> {
    await this.ready();
    return this.env.SERVER_NAME;
  }

  /** Creates a public room (power levels, join rules, shared history) as `creator`. */
  async createRoom(creator: string, versionId: string): Promise<string> {
    await this.ready();
    const version = roomVersion(versionId)!;
    const keys = await getServerKeys(this.env);
    const { pdu, roomId } = buildCreateEvent({ creator, version, serverName: this.env.SERVER_NAME, signingKey: keys.current, now: Date.now() });
    const users: Record<string, number> = version.privilegedCreators ? {} : { [creator]: 100 };
    const results = await this.room(roomId).createRoom(pdu, roomId, version.id, [
      { type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join" } },
      { type: "m.room.power_levels", state_key: "", sender: creator, content: { users, users_default: 0, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0 } },
      { type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: "public" } },
      { type: "m.room.history_visibility", state_key: "", sender: creator, content: { history_visibility: "shared" } },
    ]);
    for (const r of results) if (!r.ok) throw new Error(`createRoom: ${r.error}`);
    return roomId;
  }

  /** Sends an event as a local user; returns its ID. */
  async send(roomId: string, template: { type: string; state_key?: string; sender: string; content: Record<string, string> }): Promise<string> {
    await this.ready();
    const r = await this.room(roomId).send(template as EventTemplate);
    if (!r.ok) throw new Error(`send: ${r.error}`);
    return r.event_id;
  }

  /** The room's events in stream order, in federation format (JSON strings), for seeding another server. */
  async history(roomId: string): Promise<string[]> {
    await this.ready();
    const version = roomVersion((await this.room(roomId).federationInfo())!.room_version)!;
    const rows = await this.room(roomId).eventsAfter(0, 10_000);
    return rows.map((r) => JSON.stringify(toFederationPdu(JSON.parse(r.json) as object, version)));
  }

  /** Copies a room's history from its JSON PDUs (as `history` returns) into this server: a stand-in for a join. */
  async seedRoom(roomId: string, versionId: string, pdus: string[]): Promise<string[]> {
    await this.ready();
    const [create, ...rest] = pdus.map((p) => JSON.parse(p) as PDU);
    const stub = this.room(roomId);
    const created = await stub.createRoom(create!, roomId, versionId, []);
    if (!created[0]!.ok) throw new Error(`seedRoom: ${JSON.stringify(created)}`);
    return (await stub.receive(rest)).map((o) => o.status);
  }

  /** Timeline (type, sender, body) in stream order. */
  async timeline(roomId: string): Promise<{ event_id: string; type: string; sender: string; body: string | null }[]> {
    await this.ready();
    return (await this.room(roomId).eventsAfter(0, 10_000)).map((r) => {
      const e = JSON.parse(r.json) as { type: string; sender: string; content: { body?: unknown } };
      return { event_id: r.event_id, type: e.type, sender: e.sender, body: typeof e.content.body === "string" ? e.content.body : null };
    });
  }

  async typingUsers(roomId: string): Promise<string[]> {
    await this.ready();
    return this.room(roomId).typingUsers();
  }

  async queueEdu(destination: string, eduType: string, contentJson: string): Promise<void> {
    await this.ready();
    await queueEdu(this.env, destination, eduType, JSON.parse(contentJson) as object);
  }

  async destinationStatus(destination: string): Promise<string> {
    await this.ready();
    return JSON.stringify(await destinationStatus(this.env, destination));
  }

  // --- federation scenarios -----------------------------------------------------------------------------

  /** Creates a local user with a device and an access token (for this server's client API). */
  async createUser(localpart: string): Promise<{ user_id: string; device_id: string; access_token: string }> {
    await this.ready();
    const userId = `@${localpart}:${this.env.SERVER_NAME}`;
    const deviceId = `DEV${localpart.toUpperCase()}`;
    const token = newToken("syt");
    const now = Date.now();
    await this.env.DB.batch([
      this.env.DB.prepare("INSERT INTO users (user_id, localpart, created_ts) VALUES (?, ?, ?)").bind(userId, localpart, now),
      this.env.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(userId, deviceId, now),
      this.env.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(tokenHash(token), userId, deviceId, now),
    ]);
    return { user_id: userId, device_id: deviceId, access_token: token };
  }

  /** Adds a device with its own access token to a local user. */
  async addDevice(userId: string, deviceId: string): Promise<{ user_id: string; device_id: string; access_token: string }> {
    await this.ready();
    const token = newToken("syt");
    const now = Date.now();
    await this.env.DB.batch([
      this.env.DB.prepare("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)").bind(userId, deviceId, now),
      this.env.DB.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)").bind(tokenHash(token), userId, deviceId, now),
    ]);
    return { user_id: userId, device_id: deviceId, access_token: token };
  }

  /**
   * Partitions: this server's outbound federation requests to `hosts` fail as if the network were down (an
   * empty list heals). Requests this server makes are also recorded (see `federationLog`).
   */
  async blockFederation(hosts: string[]): Promise<void> {
    await this.ready();
    blocked = new Set(hosts);
    installRecorder();
  }

  /** The outbound federation requests made since the last call (method and path), and forget them. */
  async federationLog(): Promise<{ host: string; method: string; path: string }[]> {
    await this.ready();
    installRecorder();
    return log.splice(0);
  }

  /** Retries sending to `server` at once (after a partition heals). */
  async retryDestination(server: string): Promise<void> {
    await this.ready();
    await destinationStub(this.env, server).retryNow();
  }

  /** Every timeline event of the room, backfilled history included (negative positions), in stream order. */
  async fullTimeline(roomId: string): Promise<string> {
    await this.ready();
    // JSON text: event contents are arbitrary JSON (RPC return types stay narrow).
    return JSON.stringify(
      (await this.room(roomId).eventsAfter(-Number.MAX_SAFE_INTEGER, 10_000)).map((r) => {
        const ev = JSON.parse(r.json) as { type: string; content: Record<string, unknown> };
        return { event_id: r.event_id, stream_ordering: r.stream_ordering, type: ev.type, content: ev.content };
      }),
    );
  }

  /** The room's forward extremities and current state event IDs as `viewer` (a joined member) reads them. */
  async roomShape(roomId: string, viewer: string): Promise<{ extremities: string[]; state: string[] }> {
    await this.ready();
    const stub = this.room(roomId);
    const summary = await stub.summary();
    const res = await stub.clientRead({ userId: viewer }, { kind: "state" });
    const state = res.status === 200 ? (JSON.parse(res.body) as { event_id: string }[]).map((e) => e.event_id) : [];
    return { extremities: [...(summary?.forward_extremities ?? [])].sort(), state: state.sort() };
  }
}

// Outbound federation of this auxiliary server: blocked hosts fail, every request is logged.
let blocked = new Set<string>();
const log: { host: string; method: string; path: string }[] = [];
let recorderInstalled = false;

function installRecorder(): void {
  if (recorderInstalled) return;
  recorderInstalled = true;
  setFederationFetch(async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    log.push({ host: url.host, method: request.method, path: url.pathname });
    if (blocked.has(url.host) || blocked.has(url.hostname)) throw new Error(`network partition: ${url.host} is unreachable`);
    return fetch(request);
  });
}
