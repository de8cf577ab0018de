/**
 * Application-service test helpers: the registered test appservices (test/appservices/registrations.ts), a fake
 * appservice endpoint installed as the homeserver's transport (no network), and users acting as appservices.
 */
import { runInDurableObject } from "cloudflare:test";
import { setAppserviceFetch } from "../../src/appservices/transport";
import type { AppServiceDO, AppServiceStatus } from "../../durable-objects/appservice/AppServiceDO";
import { testEnv, type TestUser } from "../client/helpers";

export const SERVER = "test.local";

/** Host of each test appservice's URL → its id. */
const HOSTS: Record<string, string> = {
  "bridge.as.test": "bridge",
  "observer.as.test": "observer",
  "faulty.as.test": "faulty",
  "bulk.as.test": "bulk",
};
export const HS_TOKENS: Record<string, string> = {
  bridge: "hs-token-bridge",
  observer: "hs-token-observer",
  faulty: "hs-token-faulty",
  bulk: "hs-token-bulk",
};

/** The appservice's sender (acting with its as_token, no `user_id`). */
export function asSender(id: "bridge" | "observer" | "faulty" | "bulk" | "silent"): TestUser {
  const local = { bridge: "_asb_bot", observer: "_aso_bot", faulty: "_asf_bot", bulk: "_asl_bot", silent: "_ass_bot" }[id];
  return { userId: `@${local}:${SERVER}`, deviceId: "", accessToken: `as-token-${id}` };
}

/** `path` with `?user_id=` (masquerading), keeping an existing query. */
export function as(path: string, userId: string, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams({ user_id: userId, ...extra });
  return `${path}${path.includes("?") ? "&" : "?"}${q}`;
}

export interface ReceivedTxn {
  txnId: string;
  body: {
    events: { event_id: string; type: string; sender: string; room_id: string; content: Record<string, unknown>; state_key?: string; origin_server_ts: number; unsigned?: Record<string, unknown> }[];
    ephemeral?: { type: string; room_id?: string; content: Record<string, unknown> }[];
    [k: string]: unknown;
  };
  authorization: string | null;
  url: string;
}

export interface RecordedRequest {
  method: string;
  url: URL;
  authorization: string | null;
  body: unknown;
}

type Handler = (req: RecordedRequest) => Response | Promise<Response>;

/**
 * A fake for every test appservice. Transactions are recorded per appservice (each attempt, in order, so a
 * retry shows up twice); `fail(id, n)` makes the next n transactions fail; other routes answer what `routes`
 * says (default 404).
 */
export class FakeAppservices {
  readonly attempts = new Map<string, ReceivedTxn[]>();
  readonly requests: RecordedRequest[] = [];
  private failures = new Map<string, number | "always">();
  routes: Record<string, Handler> = {};

  /** Successful (acknowledged) transactions of `id`, deduplicated by txn id as a real appservice would. */
  accepted(id: string): ReceivedTxn[] {
    return (this.attempts.get(id) ?? []).filter((t) => !("failed" in t));
  }

  /** Every event delivered to `id`, in acknowledged order. */
  events(id: string): ReceivedTxn["body"]["events"] {
    const seen = new Set<string>();
    const out: ReceivedTxn["body"]["events"] = [];
    for (const t of this.accepted(id)) {
      if (seen.has(t.txnId)) continue;
      seen.add(t.txnId);
      out.push(...t.body.events);
    }
    return out;
  }

  fail(id: string, times: number | "always"): void {
    this.failures.set(id, times);
  }

  recover(id: string): void {
    this.failures.delete(id);
  }

  reset(): void {
    this.attempts.clear();
    this.requests.length = 0;
    this.failures.clear();
    this.routes = {};
  }

  async handle(url: string, init: RequestInit): Promise<Response> {
    const u = new URL(url);
    const id = HOSTS[u.host];
    const headers = new Headers(init.headers);
    const text = typeof init.body === "string" ? init.body : "";
    const req: RecordedRequest = { method: init.method ?? "GET", url: u, authorization: headers.get("authorization"), body: text ? (JSON.parse(text) as unknown) : undefined };
    this.requests.push(req);
    if (!id) throw new TypeError(`fetch failed: no host ${u.host}`);
    if (req.authorization !== `Bearer ${HS_TOKENS[id]}`) return Response.json({ errcode: "M_FORBIDDEN" }, { status: 403 });
    const m = /\/_matrix\/app\/v1\/transactions\/([^/]+)$/.exec(u.pathname);
    if (m && req.method === "PUT") {
      const failing = this.failures.get(id);
      const list = this.attempts.get(id) ?? [];
      this.attempts.set(id, list);
      const entry = { txnId: decodeURIComponent(m[1]!), body: req.body as ReceivedTxn["body"], authorization: req.authorization, url };
      if (failing !== undefined) {
        list.push({ ...entry, failed: true } as ReceivedTxn);
        if (failing !== "always") {
          if (failing <= 1) this.failures.delete(id);
          else this.failures.set(id, failing - 1);
        }
        return Response.json({ errcode: "M_UNKNOWN", error: "down" }, { status: 500 });
      }
      list.push(entry);
      return Response.json({});
    }
    for (const [pattern, handler] of Object.entries(this.routes)) {
      const [method, path] = pattern.split(" ");
      if (method === req.method && `${u.host}${u.pathname}` === path) return handler(req);
    }
    return Response.json({ errcode: "M_NOT_FOUND" }, { status: 404 });
  }
}

/** Installs a fresh fake as the homeserver's appservice transport. */
export function installFakeAppservices(): FakeAppservices {
  const fake = new FakeAppservices();
  setAppserviceFetch((url, init) => fake.handle(url, init));
  return fake;
}

export function appserviceStub(id: string) {
  return testEnv.APPSERVICES.get(testEnv.APPSERVICES.idFromName(id));
}

/** Runs the appservice's sender until it stops (nothing left, a failure, or a retry not yet due). */
export async function flush(id: string): Promise<AppServiceStatus> {
  return appserviceStub(id).flush();
}

/** Replaces the AppServiceDO's clock; returns a function that moves it forward. */
export async function controlClock(id: string, start = Date.now()): Promise<(ms: number) => number> {
  let now = start;
  await runInDurableObject(appserviceStub(id), (instance: AppServiceDO) => {
    instance.now = () => now;
  });
  return (ms: number) => (now += ms);
}

/** Polls until `check` passes (delivery is asynchronous), or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
