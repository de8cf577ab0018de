/**
 * Remote server keys: direct fetch and D1 cache, notary fallback, validity (7-day cap, old keys, v5+ enforcement
 * at origin_server_ts), event signature checks, and our notary endpoints.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { env, exports } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { KeyStore, MAX_KEY_VALIDITY_MS, verifyEventSignatures, verifyEventsSignatures } from "../../src/federation/keys";
import { getServerKeys } from "../../src/server-keys";
import { generateSigningKey, publicKeyBase64, signJson, verifyJsonSignature } from "../../src/protocol/signing";
import { roomVersion } from "../../src/protocol/room-versions";
import { FakeServer, installFakeServers, json, RUNNER } from "./fake-server";

const testEnv = env as unknown as Env;
const worker = (exports as unknown as { default: Fetcher }).default;
const v10 = roomVersion("10")!;
const v4 = roomVersion("4")!;

let seq = 0;
const fresh = (prefix: string) => new FakeServer(`${prefix}${++seq}-${Date.now().toString(36)}.test`);

let restore: (() => void) | undefined;
afterEach(() => restore?.());

function envWith(vars: Partial<Env>): Env {
  return { ...testEnv, ...vars };
}

function message(server: FakeServer, version = v10, ts = Date.now(), signWith = server.key) {
  return server.event(
    version,
    {
      room_id: `!room:${server.name}`,
      type: "m.room.message",
      sender: `@u:${server.name}`,
      content: { body: "hi" },
      prev_events: [],
      auth_events: [],
      depth: 1,
      origin_server_ts: ts,
    },
    signWith,
  ).pdu;
}

describe("KeyStore", () => {
  let remote: FakeServer;
  beforeEach(() => {
    remote = fresh("keys");
    restore = installFakeServers(remote);
  });

  it("fetches a server's keys directly and then answers from D1", async () => {
    const store = new KeyStore(testEnv);
    const k = await store.key(remote.name, remote.key.keyId, Date.now());
    expect(k?.publicKey).toBe(publicKeyBase64(remote.key));
    expect(await new KeyStore(testEnv).key(remote.name, remote.key.keyId, Date.now())).toMatchObject({ publicKey: k!.publicKey });
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
  });

  it("caps validity at 7 days from the fetch", async () => {
    remote.keyValidityMs = 365 * 24 * 3600 * 1000;
    const before = Date.now();
    const k = await new KeyStore(testEnv).key(remote.name, remote.key.keyId, 0);
    expect(k!.validUntilTs).toBeLessThanOrEqual(Date.now() + MAX_KEY_VALIDITY_MS);
    expect(k!.validUntilTs).toBeGreaterThanOrEqual(before + MAX_KEY_VALIDITY_MS);
  });

  it("rejects a key document not signed by the server, or naming another server", async () => {
    const impostor = generateSigningKey("imp");
    remote.routes.push((req) =>
      req.path === "/_matrix/key/v2/server"
        ? json(signJson({ ...(remote.keyDocument() as object), signatures: {} }, remote.name, impostor))
        : undefined,
    );
    expect(await new KeyStore(testEnv).key(remote.name, remote.key.keyId, 0)).toBeUndefined();

    const other = fresh("keys");
    restore!();
    restore = installFakeServers(other);
    other.routes.push((req) =>
      req.path === "/_matrix/key/v2/server" ? json(signJson({ ...(other.keyDocument() as object), server_name: "x.test", signatures: {} }, other.name, other.key)) : undefined,
    );
    expect(await new KeyStore(testEnv).key(other.name, other.key.keyId, 0)).toBeUndefined();
    const rows = await testEnv.DB.prepare("SELECT count(*) AS n FROM remote_server_keys WHERE server_name IN (?, ?)")
      .bind(remote.name, other.name)
      .first<{ n: number }>();
    expect(rows!.n).toBe(0);
  });

  it("refetches when the cached key is not valid long enough, but not more often than the cooldown", async () => {
    remote.keyValidityMs = 60_000;
    let now = Date.now();
    const store = new KeyStore(testEnv, { now: () => now });
    const k = await store.key(remote.name, remote.key.keyId, now);
    expect(k).toBeDefined();
    // Needed valid later than it is: a refetch (blocked within the cooldown, done after it).
    expect(await store.key(remote.name, remote.key.keyId, now + 120_000)).toBeUndefined();
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
    now += 31_000;
    remote.keyValidityMs = 3600_000;
    expect(await store.key(remote.name, remote.key.keyId, now + 120_000)).toBeDefined();
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(2);
  });

  it("keeps old keys usable until their expired_ts", async () => {
    const old = generateSigningKey("old");
    const expiredTs = Date.now() - 60_000;
    remote.oldKeys = [{ key: old, expiredTs }];
    const store = new KeyStore(testEnv);
    const k = await store.key(remote.name, old.keyId, 0);
    expect(k).toMatchObject({ expiredTs, validUntilTs: expiredTs });
    expect(await store.key(remote.name, old.keyId, Date.now())).toBeUndefined();
  });
});

describe("notary fallback", () => {
  it("asks a trusted notary (pinned key) when the server cannot be reached, and checks the notary's signature", async () => {
    const offline = fresh("offline");
    const notary = fresh("notary");
    let sign = true;
    notary.routes.push((req) => {
      if (req.path !== "/_matrix/key/v2/query" || req.method !== "POST") return undefined;
      const asked = Object.keys((req.body as { server_keys: object }).server_keys);
      expect(asked).toEqual([offline.name]);
      const doc = offline.keyDocument();
      return json({ server_keys: [sign ? signJson(doc, notary.name, notary.key) : doc] });
    });
    restore = installFakeServers(notary); // `offline` is unreachable
    const trusted = JSON.stringify([{ server_name: notary.name, verify_keys: { [notary.key.keyId]: publicKeyBase64(notary.key) } }]);
    sign = false;
    expect(await new KeyStore(envWith({ TRUSTED_KEY_SERVERS: trusted })).key(offline.name, offline.key.keyId, 0)).toBeUndefined();
    sign = true;
    const k = await new KeyStore(envWith({ TRUSTED_KEY_SERVERS: trusted }), { now: () => Date.now() + 60_000 }).key(offline.name, offline.key.keyId, 0);
    expect(k?.publicKey).toBe(publicKeyBase64(offline.key));
    const row = await testEnv.DB.prepare("SELECT fetched_from FROM remote_server_keys WHERE server_name = ?").bind(offline.name).first<{ fetched_from: string }>();
    expect(row?.fetched_from).toBe(notary.name);
  });

  it("fetches an unpinned notary's own key from the notary", async () => {
    const offline = fresh("offline");
    const notary = fresh("notary");
    notary.routes.push((req) =>
      req.path === "/_matrix/key/v2/query" ? json({ server_keys: [signJson(offline.keyDocument(), notary.name, notary.key)] }) : undefined,
    );
    restore = installFakeServers(notary);
    const k = await new KeyStore(envWith({ TRUSTED_KEY_SERVERS: JSON.stringify([notary.name]) })).key(offline.name, offline.key.keyId, 0);
    expect(k).toBeDefined();
    expect(notary.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
  });

  it("uses no notary by default", async () => {
    const offline = fresh("offline");
    const notary = fresh("notary");
    restore = installFakeServers(notary);
    expect(await new KeyStore(testEnv).key(offline.name, offline.key.keyId, 0)).toBeUndefined();
    expect(notary.requests).toHaveLength(0);
  });
});

describe("verifyEventSignatures", () => {
  let remote: FakeServer;
  beforeEach(() => {
    remote = fresh("sig");
    restore = installFakeServers(remote);
  });

  it("accepts an event signed by the sender's server", async () => {
    expect(await verifyEventSignatures(message(remote), v10, new KeyStore(testEnv))).toEqual({ ok: true });
  });

  it("refuses a missing or bad signature", async () => {
    const pdu = message(remote);
    const unsigned = { ...pdu, signatures: {} };
    expect((await verifyEventSignatures(unsigned, v10, new KeyStore(testEnv))).ok).toBe(false);
    const tampered = { ...pdu, content: { body: "changed" }, type: "m.room.other" };
    expect(await verifyEventSignatures(tampered, v10, new KeyStore(testEnv))).toMatchObject({ ok: false, reason: expect.stringMatching(/bad signature/) });
    const byStranger = message(remote, v10, Date.now(), generateSigningKey("stranger"));
    expect((await verifyEventSignatures(byStranger, v10, new KeyStore(testEnv))).ok).toBe(false);
  });

  it("from room version 5 on, needs the key to be valid at origin_server_ts", async () => {
    remote.keyValidityMs = 60_000;
    const later = Date.now() + 3600_000;
    const store = new KeyStore(testEnv);
    expect((await verifyEventSignatures(message(remote, v10, later), v10, store)).ok).toBe(false);
    // Room version 4 ignores valid_until_ts.
    expect((await verifyEventSignatures(message(remote, v4, later), v4, store)).ok).toBe(true);
  });

  it("ignores keys that expired before the event, in every room version", async () => {
    const old = generateSigningKey("old");
    const expiredTs = Date.now() - 60_000;
    remote.oldKeys = [{ key: old, expiredTs }];
    const store = new KeyStore(testEnv);
    expect((await verifyEventSignatures(message(remote, v10, expiredTs - 1000, old), v10, store)).ok).toBe(true);
    expect((await verifyEventSignatures(message(remote, v4, expiredTs + 1000, old), v4, store)).ok).toBe(false);
  });

  it("needs the authorising server's signature on a restricted join", async () => {
    const authoriser = fresh("auth");
    restore!();
    restore = installFakeServers(remote, authoriser);
    const join = remote.event(v10, {
      room_id: `!room:${remote.name}`,
      type: "m.room.member",
      state_key: `@u:${remote.name}`,
      sender: `@u:${remote.name}`,
      content: { membership: "join", join_authorised_via_users_server: `@admin:${authoriser.name}` },
      prev_events: [],
      auth_events: [],
      depth: 1,
    }).pdu;
    const store = new KeyStore(testEnv);
    expect(await verifyEventSignatures(join, v10, store)).toMatchObject({ ok: false, reason: `not signed by ${authoriser.name}` });
    const { redactEvent } = await import("../../src/protocol/redaction");
    const cosigned = { ...join, signatures: { ...join.signatures, ...signJson(redactEvent(join, v10), authoriser.name, authoriser.key).signatures } };
    expect(await verifyEventSignatures(cosigned, v10, store)).toEqual({ ok: true });
  });

  it("checks many events at once, fetching each server's keys once", async () => {
    const events = Array.from({ length: 30 }, (_, i) => message(remote, v10, Date.now() + i));
    events[7] = { ...events[7]!, type: "m.tampered" };
    const results = await verifyEventsSignatures(events.map((pdu) => ({ pdu, roomVersion: v10 })), new KeyStore(testEnv));
    expect(results.filter((r) => r.ok)).toHaveLength(29);
    expect(results[7]!.ok).toBe(false);
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
  });
});

describe("notary endpoints", () => {
  it("serves our own keys", async () => {
    const res = await worker.fetch(`http://${RUNNER}/_matrix/key/v2/query/${RUNNER}`);
    const body = (await res.json()) as { server_keys: { server_name: string; verify_keys: Record<string, { key: string }> }[] };
    expect(body.server_keys).toHaveLength(1);
    const ours = (await getServerKeys(testEnv)).current;
    expect(body.server_keys[0]!.verify_keys[ours.keyId]!.key).toBe(publicKeyBase64(ours));
    expect(verifyJsonSignature(body.server_keys[0]!, RUNNER, ours.keyId, ours.publicKey)).toBe(true);
  });

  it("serves a remote server's document with its signature and ours, and keeps serving it once it is offline", async () => {
    const remote = fresh("notarised");
    restore = installFakeServers(remote);
    const ours = (await getServerKeys(testEnv)).current;
    const get = async () => {
      const res = await worker.fetch(`http://${RUNNER}/_matrix/key/v2/query/${remote.name}?minimum_valid_until_ts=${Date.now()}`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { server_keys: object[] }).server_keys;
    };
    const [doc] = await get();
    expect(verifyJsonSignature(doc!, remote.name, remote.key.keyId, remote.key.publicKey)).toBe(true);
    expect(verifyJsonSignature(doc!, RUNNER, ours.keyId, ours.publicKey)).toBe(true);
    restore();
    restore = installFakeServers(); // offline now
    const [again] = await get();
    expect(verifyJsonSignature(again!, remote.name, remote.key.keyId, remote.key.publicKey)).toBe(true);
  });

  it("answers a batch query and leaves unknown servers out", async () => {
    const remote = fresh("batch");
    restore = installFakeServers(remote);
    const res = await worker.fetch(`http://${RUNNER}/_matrix/key/v2/query`, {
      method: "POST",
      body: JSON.stringify({ server_keys: { [remote.name]: { [remote.key.keyId]: { minimum_valid_until_ts: 0 } }, "unknown.test": {}, [RUNNER]: {} } }),
    });
    const names = ((await res.json()) as { server_keys: { server_name: string }[] }).server_keys.map((d) => d.server_name).sort();
    expect(names).toEqual([remote.name, RUNNER].sort());
  });

  it("refuses a malformed batch query", async () => {
    for (const body of ["{}", JSON.stringify({ server_keys: [] }), JSON.stringify({ server_keys: "x" })]) {
      const res = await worker.fetch(`http://${RUNNER}/_matrix/key/v2/query`, { method: "POST", body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_BAD_JSON");
    }
    const empty = await worker.fetch(`http://${RUNNER}/_matrix/key/v2/query/not%20a%20server`);
    expect(await empty.json()).toEqual({ server_keys: [] });
  });
});
