/**
 * X-Matrix request authentication on /_matrix/federation/*: signed requests pass, everything else is a 401
 * M_UNAUTHORIZED, and the remote key is fetched once and cached in D1.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { env, exports } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { generateSigningKey } from "../../src/protocol/signing";
import { FakeServer, installFakeServers, RUNNER } from "./fake-server";

const testEnv = env as unknown as Env;
const worker = (exports as unknown as { default: Fetcher }).default;

let remote: FakeServer;
let restore: () => void;

beforeEach(() => {
  remote = new FakeServer(`auth${Math.random().toString(36).slice(2, 8)}.test`);
  restore = installFakeServers(remote);
});
afterEach(() => restore());

async function errcode(res: Response): Promise<string> {
  return ((await res.json()) as { errcode: string }).errcode;
}

const EMPTY_TXN = () => ({ origin: remote.name, origin_server_ts: Date.now(), pdus: [], edus: [] });

describe("X-Matrix authentication", () => {
  it("accepts a signed transaction and exposes the origin", async () => {
    const res = await remote.request("PUT", "/_matrix/federation/v1/send/t1", EMPTY_TXN());
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ pdus: {} });
    // The key was fetched from the origin itself.
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
  });

  it("fetches the key once and then serves it from D1", async () => {
    await remote.request("PUT", "/_matrix/federation/v1/send/a", EMPTY_TXN());
    await remote.request("PUT", "/_matrix/federation/v1/send/b", EMPTY_TXN());
    expect(remote.requestsTo("/_matrix/key/v2/server")).toHaveLength(1);
    const row = await testEnv.DB.prepare("SELECT public_key, valid_until_ts FROM remote_server_keys WHERE server_name = ?")
      .bind(remote.name)
      .first<{ public_key: string; valid_until_ts: number }>();
    expect(row?.public_key).toBeTruthy();
    expect(row!.valid_until_ts).toBeGreaterThan(Date.now());
  });

  it("checks GET requests with their exact path and query", async () => {
    const uri = "/_matrix/federation/v1/unknown_endpoint?b=2&a=%20x";
    const ok = await remote.request("GET", uri);
    // Authenticated, then the path is unknown.
    expect(ok.status).toBe(404);
    expect(await errcode(ok)).toBe("M_UNRECOGNIZED");
    // The same signature presented for another query string fails.
    const headers = { authorization: remote.authorization("GET", uri) };
    const other = await worker.fetch(`http://${RUNNER}/_matrix/federation/v1/unknown_endpoint?b=3&a=%20x`, { headers });
    expect(other.status).toBe(401);
  });

  it("refuses a request without Authorization", async () => {
    const res = await worker.fetch(`http://${RUNNER}/_matrix/federation/v1/send/x`, {
      method: "PUT",
      body: JSON.stringify(EMPTY_TXN()),
    });
    expect(res.status).toBe(401);
    expect(await errcode(res)).toBe("M_UNAUTHORIZED");
  });

  it("refuses a bearer token and malformed X-Matrix headers", async () => {
    for (const authorization of [
      "Bearer abc",
      "X-Matrix",
      `X-Matrix origin="${remote.name}",key="ed25519:x"`,
      `X-Matrix origin="${remote.name}",key="ed25519:x",sig="unterminated`,
      `X-Matrix origin=${remote.name},origin=${remote.name},key=ed25519:x,sig=abc`,
    ]) {
      const res = await worker.fetch(`http://${RUNNER}/_matrix/federation/v1/send/x`, {
        method: "PUT",
        headers: { authorization },
        body: "{}",
      });
      expect(res.status, authorization).toBe(401);
      expect(await errcode(res)).toBe("M_UNAUTHORIZED");
    }
  });

  it("refuses a request signed for another destination", async () => {
    const res = await remote.request("PUT", "/_matrix/federation/v1/send/x", EMPTY_TXN(), { destination: "elsewhere.test" });
    expect(res.status).toBe(401);
  });

  it("refuses a tampered body", async () => {
    const txn = EMPTY_TXN();
    const headers = {
      authorization: remote.authorization("PUT", "/_matrix/federation/v1/send/x", txn),
      "content-type": "application/json",
    };
    const res = await worker.fetch(`http://${RUNNER}/_matrix/federation/v1/send/x`, {
      method: "PUT",
      headers,
      body: JSON.stringify({ ...txn, pdus: [{ evil: true }] }),
    });
    expect(res.status).toBe(401);
  });

  it("refuses a signature by a key the origin does not publish (spoofed origin)", async () => {
    // An attacker claims to be `remote` but signs with its own key.
    const res = await remote.request("PUT", "/_matrix/federation/v1/send/x", EMPTY_TXN(), { key: generateSigningKey("fake1") });
    expect(res.status).toBe(401);
    // Same key ID as the real one, different key material: a bad signature.
    const impostor = generateSigningKey(remote.key.keyId.slice("ed25519:".length));
    const res2 = await remote.request("PUT", "/_matrix/federation/v1/send/y", EMPTY_TXN(), { key: impostor });
    expect(res2.status).toBe(401);
  });

  it("refuses an origin whose keys cannot be fetched", async () => {
    const ghost = new FakeServer("ghost.test"); // not installed: unreachable
    const res = await ghost.request("PUT", "/_matrix/federation/v1/send/x", EMPTY_TXN());
    expect(res.status).toBe(401);
  });

  it("refuses a key that the origin lists only as old", async () => {
    const old = remote.key;
    remote.oldKeys = [{ key: old, expiredTs: Date.now() - 1000 }];
    remote.key = generateSigningKey("newer");
    const res = await remote.request("PUT", "/_matrix/federation/v1/send/x", EMPTY_TXN(), { key: old });
    expect(res.status).toBe(401);
  });

  it("accepts parameters in any order, with spaces and without quotes", async () => {
    const txn = EMPTY_TXN();
    const uri = "/_matrix/federation/v1/send/unquoted";
    const signed = remote.authorization("PUT", uri, txn);
    const params = Object.fromEntries(
      [...signed.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    const reordered = `X-Matrix  SIG=${params.sig} , Key="${params.key}",destination=${params.destination},origin=${params.origin}`;
    const res = await worker.fetch(`http://${RUNNER}${uri}`, {
      method: "PUT",
      headers: { authorization: reordered, "content-type": "application/json" },
      body: JSON.stringify(txn),
    });
    expect(res.status).toBe(200);
  });

  it("does not require authentication for /version", async () => {
    const res = await worker.fetch(`http://${RUNNER}/_matrix/federation/v1/version`);
    expect(res.status).toBe(200);
  });
});
