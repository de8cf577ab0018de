/**
 * Outbound delivery through DestinationDO: signed transactions of at most 50 PDUs / 100 EDUs, one in flight,
 * retries with exponential backoff (same transaction ID), reset when the remote shows life, catch-up with only
 * the latest event per room after a long outage, EDU queueing, and the admin view.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { Env } from "../../src/env";
import type { DestinationDO } from "../../durable-objects/destination/DestinationDO";
import type { PDU } from "../../src/protocol/events";
import { getServerKeys } from "../../src/server-keys";
import { parseXMatrixHeader, verifyRequestSignature } from "../../src/federation/x-matrix";
import { queueEdu } from "../../src/federation/destinations";
import { computeEventId } from "../../src/protocol/event-id";
import { alice } from "../rooms/helpers";
import { createUserDirect, request } from "../client/helpers";
import { FakeServer, installFakeServers, json, RUNNER } from "./fake-server";
import { sharedRoom } from "./helpers";

const testEnv = env as unknown as Env;
let remote: FakeServer;
let restore: () => void;
let seq = 0;

beforeEach(() => {
  remote = new FakeServer(`dest${++seq}-${Date.now().toString(36)}.test`);
  restore = installFakeServers(remote);
});
afterEach(() => restore());

function destination(name = remote.name) {
  return testEnv.DESTINATIONS.get(testEnv.DESTINATIONS.idFromName(name));
}

async function waitFor<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 5000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Event IDs received by the fake remote, in order. */
function receivedIds(version: Parameters<typeof computeEventId>[1]): string[] {
  return remote.transactions.flatMap((t) => t.body.pdus.map((p) => computeEventId(p, version)));
}

/** Makes the remote answer /send with `status` while `failing()` is true. */
function failWhile(failing: () => boolean, status = 500) {
  remote.routes.push((req) =>
    req.path.startsWith("/_matrix/federation/v1/send/") && failing() ? json({ errcode: "M_UNKNOWN", error: "down" }, status) : undefined,
  );
}

async function tune(fn: (d: DestinationDO) => void) {
  await runInDurableObject(destination(), (inst: DestinationDO) => fn(inst));
}

describe("outbound transactions", () => {
  it("sends our events to a server in the room, signed, in federation format", async () => {
    const room = await sharedRoom(remote);
    const sent = await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "hi carol" } });
    expect(sent.ok).toBe(true);
    await waitFor(() => remote.transactions.length > 0, "a transaction");
    const [txn] = remote.transactions;
    expect(txn!.body).toMatchObject({ origin: RUNNER, pdus: [expect.objectContaining({ type: "m.room.message", sender: alice })] });
    expect(txn!.body.pdus[0]).not.toHaveProperty("event_id");
    expect(computeEventId(txn!.body.pdus[0]!, room.version)).toBe(sent.ok && sent.event_id);
    // Events from before carol's server was in the room are not sent.
    expect(txn!.body.pdus).toHaveLength(1);

    expect(remote.requestsTo("/_matrix/federation/v1/send/")[0]!.method).toBe("PUT");
    const status = await destination().status();
    expect(status).toMatchObject({ destination: remote.name, failures: 0, transactions_sent: 1, in_flight: null, backlog: { rooms: [], edus: 0 } });
  });

  it("signs each transaction with our key", async () => {
    const room = await sharedRoom(remote);
    const seen: { header: string | null; body: unknown; uri: string }[] = [];
    const original = remote.handle.bind(remote);
    remote.handle = async (r: Request) => {
      const u = new URL(r.url);
      if (u.pathname.startsWith("/_matrix/federation/v1/send/")) {
        seen.push({ header: r.headers.get("authorization"), body: await r.clone().json(), uri: u.pathname + u.search });
      }
      return original(r);
    };
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "signed?" } });
    await waitFor(() => seen.length > 0, "a transaction");
    const creds = parseXMatrixHeader(seen[0]!.header!);
    const ours = (await getServerKeys(testEnv)).current;
    expect(creds).toMatchObject({ origin: RUNNER, destination: remote.name, key: ours.keyId });
    expect(await verifyRequestSignature({ method: "PUT", uri: seen[0]!.uri, destination: remote.name, content: seen[0]!.body }, creds, ours.publicKey)).toBe(true);
  });

  it("does not make the sender wait for a slow remote", async () => {
    const room = await sharedRoom(remote);
    let release!: () => void;
    const hanging = new Promise<void>((r) => (release = r));
    remote.routes.push(async (req) => {
      if (!req.path.startsWith("/_matrix/federation/v1/send/")) return undefined;
      await hanging;
      return undefined;
    });
    const started = Date.now();
    const sent = await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "fire and forget" } });
    expect(sent.ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
    await waitFor(async () => (await destination().status()).state === "sending", "the transaction in flight");
    release();
    await waitFor(() => remote.transactions.length === 1, "delivery");
  });

  it("retries a failed transaction with the same ID and exponential backoff, then recovers", async () => {
    const room = await sharedRoom(remote);
    let failing = true;
    failWhile(() => failing);
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "one" } });
    const s1 = await waitFor(async () => {
      const s = await destination().status();
      return s.failures === 1 ? s : undefined;
    }, "the first failure");
    expect(s1.state).toBe("backing_off");
    expect(s1.in_flight).toMatchObject({ pdus: 1, attempts: 1 });
    expect(s1.next_retry_ts! - Date.now()).toBeGreaterThan(1000);
    expect(s1.next_retry_ts! - Date.now()).toBeLessThanOrEqual(2000);
    expect(s1.last_error).toMatch(/500/);

    // More events queue up behind the transaction in flight.
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "two" } });
    await runDurableObjectAlarm(destination());
    const s2 = await destination().status();
    expect(s2.failures).toBe(2);
    expect(s2.next_retry_ts! - Date.now()).toBeGreaterThan(3000); // 4 s
    expect(s2.in_flight).toMatchObject({ txn_id: s1.in_flight!.txn_id, attempts: 2 });

    failing = false;
    await runDurableObjectAlarm(destination());
    await waitFor(() => remote.transactions.length === 2, "both transactions");
    const putIds = remote.requestsTo("/_matrix/federation/v1/send/").map((r) => r.path);
    expect(putIds[0]).toBe(putIds[1]); // the retry reused the transaction ID
    expect(putIds[2]).toBe(putIds[1]);
    expect(remote.transactions[0]!.txnId).not.toBe(remote.transactions[1]!.txnId);
    expect(remote.transactions.map((t) => t.body.pdus.map((p) => (p.content as { body: string }).body))).toEqual([["one"], ["two"]]);
    expect(await destination().status()).toMatchObject({ failures: 0, next_retry_ts: null, in_flight: null, last_error: null });
  });

  it("resets the backoff when the remote sends us a transaction", async () => {
    const room = await sharedRoom(remote);
    let failing = true;
    failWhile(() => failing);
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "queued" } });
    await waitFor(async () => (await destination().status()).failures === 1, "a failure");
    failing = false;
    await remote.send("i-am-back", []);
    await waitFor(() => remote.transactions.length === 1, "delivery after the remote showed life");
    expect((await destination().status()).failures).toBe(0);
  });

  it("splits a backlog into transactions of at most 50 PDUs, in order", async () => {
    const room = await sharedRoom(remote);
    let failing = true;
    failWhile(() => failing);
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "m0" } });
    await waitFor(async () => (await destination().status()).failures === 1, "a failure");
    for (let i = 1; i <= 110; i++) await room.stub.send({ type: "m.room.message", sender: alice, content: { body: `m${i}` } });
    failing = false;
    await runDurableObjectAlarm(destination());
    await waitFor(() => receivedIds(room.version).length === 111, "all 111 events", 10_000);
    expect(remote.transactions.every((t) => t.body.pdus.length <= 50)).toBe(true);
    const bodies = remote.transactions.flatMap((t) => t.body.pdus.map((p) => (p.content as { body: string }).body));
    expect(bodies).toEqual(Array.from({ length: 111 }, (_, i) => `m${i}`));
  });

  it("after a long outage sends only the latest event of each room", async () => {
    const room = await sharedRoom(remote);
    const other = await sharedRoom(remote);
    await tune((d) => {
      d.catchUpAfterMs = 0; // any failure counts as a long outage
    });
    let failing = true;
    failWhile(() => failing);
    // A typing notification and an event are in the transaction that fails.
    await queueEdu(testEnv, remote.name, "m.typing", { room_id: room.roomId, user_id: alice, typing: true });
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "lost 1" } });
    await waitFor(async () => (await destination().status()).catching_up, "catch-up mode");
    for (const body of ["lost 2", "latest A"]) await room.stub.send({ type: "m.room.message", sender: alice, content: { body } });
    await other.stub.send({ type: "m.room.message", sender: alice, content: { body: "latest B" } });
    const before = await destination().status();
    expect(before.in_flight).toBeNull(); // the failed transaction was dropped
    expect(before.backlog.rooms.map((r) => r.room_id).sort()).toEqual([room.roomId, other.roomId].sort());

    failing = false;
    await destination().retryNow();
    await waitFor(async () => (await destination().status()).backlog.rooms.length === 0 && remote.transactions.length > 0, "catch-up");
    const bodies = remote.transactions.flatMap((t) => t.body.pdus.map((p) => (p.content as { body: string }).body));
    expect(bodies.sort()).toEqual(["latest A", "latest B"]);
    // Stale typing notifications were dropped with the outage.
    expect(remote.transactions.flatMap((t) => t.body.edus ?? []).filter((e) => e.edu_type === "m.typing")).toEqual([]);
    const after = await destination().status();
    expect(after.catching_up).toBe(false);
    // Back to normal: the next event is sent as usual.
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "normal" } });
    await waitFor(() => remote.transactions.some((t) => t.body.pdus.some((p: PDU) => (p.content as { body?: string }).body === "normal")), "normal delivery");
  });
});

describe("EDUs", () => {
  it("sends queued EDUs, coalescing by key, at most 100 per transaction", async () => {
    let failing = true;
    failWhile(() => failing);
    await queueEdu(testEnv, remote.name, "m.receipt", { n: 0 });
    await waitFor(async () => (await destination().status()).failures === 1, "a failure");
    for (let i = 1; i <= 130; i++) await queueEdu(testEnv, remote.name, "m.receipt", { n: i });
    await queueEdu(testEnv, remote.name, "m.typing", { typing: true }, "typing:r:u");
    await queueEdu(testEnv, remote.name, "m.typing", { typing: false }, "typing:r:u");
    failing = false;
    await runDurableObjectAlarm(destination());
    await waitFor(() => remote.transactions.reduce((n, t) => n + (t.body.edus?.length ?? 0), 0) === 132, "all EDUs");
    expect(remote.transactions.every((t) => (t.body.edus?.length ?? 0) <= 100)).toBe(true);
    const edus = remote.transactions.flatMap((t) => t.body.edus ?? []);
    expect(edus.filter((e) => e.edu_type === "m.typing")).toEqual([{ edu_type: "m.typing", content: { typing: false } }]);
    expect(edus.filter((e) => e.edu_type === "m.receipt").map((e) => (e.content as { n: number }).n)).toEqual(Array.from({ length: 131 }, (_, i) => i));
  });

  it("never queues EDUs for ourselves", async () => {
    await queueEdu(testEnv, RUNNER, "m.typing", {});
    expect((await destination(RUNNER).status()).backlog.edus).toBe(0);
  });
});

describe("admin view", () => {
  it("shows a destination's state to server admins only", async () => {
    const room = await sharedRoom(remote);
    failWhile(() => true);
    await room.stub.send({ type: "m.room.message", sender: alice, content: { body: "x" } });
    await waitFor(async () => (await destination().status()).failures === 1, "a failure");
    const user = await createUserDirect();
    const path = `/_synapse/admin/v1/federation/destinations/${remote.name}`;
    expect((await request("GET", path, { user })).status).toBe(403);
    expect((await request("GET", path)).status).toBe(401);
    const admin = await createUserDirect();
    await testEnv.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(admin.userId).run();
    const res = await request("GET", path, { user: admin });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ destination: remote.name, failures: 1, state: "backing_off", in_flight: { pdus: 1 } });
    expect(body.retry_interval).toBeGreaterThan(0);
    expect((await request("GET", "/_synapse/admin/v1/federation/destinations/bad%20name", { user: admin })).status).toBe(400);
    expect((await request("POST", `${path}/reset_connection`, { user: admin, body: {} })).status).toBe(200);
  });
});
