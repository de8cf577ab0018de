/// <reference types="node" />
/**
 * A real matrix-appservice-bridge (the npm devDependency, unmodified) against the real Axon Worker started by
 * the e2e project's global setup (test/e2e/global-setup.ts), which registered this bridge through
 * APPSERVICE_REGISTRATIONS. The bridge listens on the loopback port the Worker was told about; the Worker pushes
 * transactions to it (the bridge refuses any without the right hs_token), and the bridge uses the client API
 * with its as_token: it registers puppets (`m.login.application_service`, `inhibit_login`), creates rooms and
 * acts as its puppets with `?user_id=`.
 *
 * The bridge's optional end-to-end encryption module is a native binary its package downloads at install time,
 * which this machine cannot do; it is stubbed before the bridge is loaded (encryption is not used here).
 */
import { createRequire } from "node:module";
import Module from "node:module";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const baseUrl = inject("axonBaseUrl");
const serverName = inject("axonServerName");
const as = inject("appservice");
const WAIT_MS = 15_000;

// --- the bridge, with its native crypto module stubbed ---------------------------------------------------------
function stubNativeCrypto(): void {
  const require = createRequire(import.meta.url);
  const bridgeDir = require.resolve("matrix-appservice-bridge");
  const path = createRequire(bridgeDir).resolve("@matrix-org/matrix-sdk-crypto-nodejs");
  const stub = new Module(path);
  stub.filename = path;
  stub.loaded = true;
  stub.exports = new Proxy(
    {},
    {
      get: (_t, key) =>
        key === "__esModule"
          ? false
          : class Unavailable {
              constructor() {
                throw new Error("end-to-end encryption is not available in these tests");
              }
            },
    },
  );
  (require.cache as Record<string, unknown>)[path] = stub;
}

type Bridge = import("matrix-appservice-bridge").Bridge;
type WeakEvent = { event_id: string; type: string; room_id: string; sender: string; state_key?: string; content: Record<string, unknown> };

let bridge: Bridge;
const received: WeakEvent[] = [];
const waiters: { check: () => boolean; resolve: () => void }[] = [];

function receivedEvent(ev: WeakEvent): void {
  received.push(ev);
  for (const w of [...waiters]) {
    if (w.check()) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  }
}

/** Resolves once the bridge has received an event matching `match` (through a transaction). */
function bridgeReceives(match: (e: WeakEvent) => boolean, what: string): Promise<WeakEvent> {
  const found = () => received.find(match);
  return new Promise((resolve, reject) => {
    if (found()) return resolve(found()!);
    const timer = setTimeout(() => reject(new Error(`the bridge never received ${what}`)), WAIT_MS);
    waiters.push({ check: () => found() !== undefined, resolve: () => (clearTimeout(timer), resolve(found()!)) });
  });
}

async function client(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}/_matrix/client${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const puppetId = (name: string) => `@${as.userPrefix}${name}:${serverName}`;

beforeAll(async () => {
  stubNativeCrypto();
  const { Bridge: BridgeClass, AppServiceRegistration, Logger } = await import("matrix-appservice-bridge");
  Logger.configure({ console: "warn" });
  const registration = new AppServiceRegistration(as.url);
  registration.setId(as.id);
  registration.setHomeserverToken(as.hsToken);
  registration.setAppServiceToken(as.asToken);
  registration.setSenderLocalpart(as.senderLocalpart);
  registration.addRegexPattern("users", `@${as.userPrefix}.*`, true);
  registration.addRegexPattern("aliases", `#${as.aliasPrefix}.*`, true);
  bridge = new BridgeClass({
    homeserverUrl: baseUrl,
    domain: serverName,
    registration,
    disableStores: true,
    suppressEcho: false,
    controller: {
      onUserQuery: () => ({}),
      onEvent: (request) => receivedEvent(request.getData() as unknown as WeakEvent),
    },
  });
  await bridge.initialise();
  await bridge.listen(as.port, "127.0.0.1");
});

afterAll(async () => {
  await bridge?.close();
});

describe("matrix-appservice-bridge against Axon", () => {
  let roomId = "";
  const alice = puppetId("alice");
  const bob = puppetId("bob");

  it("is pinged through the homeserver (POST /_matrix/client/v1/appservice/{id}/ping) and its answer reported", async () => {
    // matrix-appservice (the bridge's HTTP listener) has no /_matrix/app/v1/ping route: the homeserver reaches it
    // and reports its 404 as the spec says, 502 M_BAD_STATUS with the status and body.
    const res = await client("POST", `/v1/appservice/${as.id}/ping`, as.asToken, { transaction_id: "e2e-ping" });
    expect(res).toMatchObject({ status: 502, json: { errcode: "M_BAD_STATUS", status: 404 } });
    // Only the appservice itself may ask.
    expect((await client("POST", `/v1/appservice/${as.id}/ping`, "not-a-token", {})).status).toBe(401);
  });

  it("registers puppets (m.login.application_service with inhibit_login) and sets their names", async () => {
    for (const id of [alice, bob]) {
      const intent = bridge.getIntent(id);
      await intent.ensureRegistered();
      await intent.setDisplayName(id === alice ? "Alice (bridged)" : "Bob (bridged)");
    }
    // The puppets exist: their profiles answer, and they cannot log in with a password (they have none).
    const profile = await client("GET", `/v3/profile/${encodeURIComponent(alice)}`);
    expect(profile).toMatchObject({ status: 200, json: { displayname: "Alice (bridged)" } });
    // Registering again says so.
    const again = await client("POST", "/v3/register", as.asToken, { type: "m.login.application_service", username: `${as.userPrefix}alice`, inhibit_login: true });
    expect(again).toMatchObject({ status: 400, json: { errcode: "M_USER_IN_USE" } });
  });

  it("creates a room as its bot, puppets join it by masquerading, and their events come back as transactions", async () => {
    const created = await bridge.getIntent().createRoom({
      createAsClient: true,
      options: { name: "Bridged room", preset: "public_chat", room_alias_name: `${as.aliasPrefix}lobby` },
    });
    roomId = created.room_id;
    expect(roomId).toMatch(/^!/);
    await bridge.getIntent(alice).join(roomId);
    await bridge.getIntent(bob).join(`#${as.aliasPrefix}lobby:${serverName}`);
    const sent = await bridge.getIntent(alice).sendText(roomId, "hello from the other side");
    const ev = await bridgeReceives((e) => e.event_id === sent.event_id, "alice's message");
    expect(ev).toMatchObject({ room_id: roomId, sender: alice, type: "m.room.message", content: { body: "hello from the other side" } });
    await bridgeReceives((e) => e.type === "m.room.member" && e.state_key === bob && e.content.membership === "join", "bob's join");
  });

  it("receives what an ordinary Matrix user says in the bridged room", async () => {
    const reg = await client("POST", "/v3/register", undefined, { username: `human${Date.now()}`, password: "correct horse battery", auth: { type: "m.login.dummy" } });
    expect(reg.status).toBe(200);
    const token = reg.json.access_token as string;
    const human = reg.json.user_id as string;
    expect((await client("POST", `/v3/join/${encodeURIComponent(roomId)}`, token, {})).status).toBe(200);
    const sent = await client("PUT", `/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/h1`, token, { msgtype: "m.text", body: "hi bridge" });
    expect(sent.status).toBe(200);
    const ev = await bridgeReceives((e) => e.event_id === sent.json.event_id, "the human's message");
    expect(ev).toMatchObject({ sender: human, content: { body: "hi bridge" } });
    // The human cannot take names from the bridge's exclusive namespace.
    const taken = await client("PUT", `/v3/directory/room/${encodeURIComponent(`#${as.aliasPrefix}mine:${serverName}`)}`, token, { room_id: roomId });
    expect(taken).toMatchObject({ status: 400, json: { errcode: "M_EXCLUSIVE" } });
  });

  it("measures a round trip through the homeserver with the bridge's own ping (an event it sends and receives)", async () => {
    const ms = await bridge.pingAppserviceRoute(roomId, WAIT_MS);
    expect(ms).toBeGreaterThanOrEqual(0);
  });

  it("massages timestamps with ?ts= when a puppet sends", async () => {
    const ts = Date.UTC(2020, 0, 1);
    const res = await client("PUT", `/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/ts1?user_id=${encodeURIComponent(alice)}&ts=${ts}`, as.asToken, { msgtype: "m.text", body: "from the past" });
    expect(res.status).toBe(200);
    const ev = await bridgeReceives((e) => e.event_id === res.json.event_id, "the back-dated message");
    expect((ev as unknown as { origin_server_ts: number }).origin_server_ts).toBe(ts);
  });
});
