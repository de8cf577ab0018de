/**
 * Hand-built remote servers living inside the test isolate. `installFakeServers` replaces the federation fetch
 * (src/federation/fetch.ts) with a dispatcher: requests to a fake server's host name go to its handler; DNS over
 * HTTPS lookups get NXDOMAIN; the harness servers (hs2.test, hs3.test) go to the real fetch, which Miniflare
 * routes to their Workers; anything else fails. Nothing reaches the internet.
 *
 * A fake server serves its key document, records every request, signs events and requests with its own key, and
 * answers the federation reads the server under test makes (`/event`, `/event_auth`, `/get_missing_events`,
 * `/state_ids`, `/state`, `/send`) from what the test put in it. Tests can replace any answer (`routes`).
 */
import { exports } from "cloudflare:workers";
import { setFederationFetch } from "../../src/federation/fetch";
import { signRequest } from "../../src/federation/x-matrix";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { computeEventId } from "../../src/protocol/event-id";
import { generateSigningKey, publicKeyBase64, signJson, type SigningKey } from "../../src/protocol/signing";
import type { JsonObject, PDU } from "../../src/protocol/events";
import type { RoomVersion } from "../../src/protocol/room-versions";

export const RUNNER = "test.local";
const worker = (exports as unknown as { default: Fetcher }).default;

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export type Route = (req: RecordedRequest) => Response | undefined | Promise<Response | undefined>;

let keySeq = 0;

export class FakeServer {
  key: SigningKey = generateSigningKey(`fake${++keySeq}`);
  /** Old keys, served as old_verify_keys. */
  oldKeys: { key: SigningKey; expiredTs: number }[] = [];
  /** valid_until_ts of the served key document (relative to now when the document is served). */
  keyValidityMs = 24 * 3600 * 1000;
  readonly requests: RecordedRequest[] = [];
  /** Events it can serve, by ID. */
  readonly events = new Map<string, PDU>();
  /** Overrides, tried in order before the default answers. */
  routes: Route[] = [];
  /** Transactions received (`PUT /send`). */
  readonly transactions: { txnId: string; body: { pdus: PDU[]; edus?: { edu_type: string; content: unknown }[] } }[] = [];

  constructor(readonly name: string) {}

  /** The key document it serves at /_matrix/key/v2/server. */
  keyDocument(now = Date.now()): object {
    return signJson(
      {
        server_name: this.name,
        valid_until_ts: now + this.keyValidityMs,
        verify_keys: { [this.key.keyId]: { key: publicKeyBase64(this.key) } },
        old_verify_keys: Object.fromEntries(
          this.oldKeys.map((k) => [k.key.keyId, { key: publicKeyBase64(k.key), expired_ts: k.expiredTs }]),
        ),
      },
      this.name,
      this.key,
    );
  }

  /** Builds, hashes and signs an event, remembers it (so /event can serve it) and returns it with its ID. */
  event(
    version: RoomVersion,
    fields: {
      room_id: string;
      type: string;
      sender: string;
      content: JsonObject;
      state_key?: string;
      prev_events: string[];
      auth_events: string[];
      depth: number;
      origin_server_ts?: number;
      [extra: string]: unknown;
    },
    signWith: SigningKey = this.key,
  ): { pdu: PDU; eventId: string } {
    const event: Record<string, unknown> = { origin_server_ts: Date.now(), ...fields };
    if (fields.state_key === undefined) delete event.state_key;
    const pdu = signEvent(addContentHash(event), this.name, signWith, version) as unknown as PDU;
    const eventId = computeEventId(pdu, version);
    this.events.set(eventId, pdu);
    return { pdu, eventId };
  }

  /** Headers for a request signed by this server (override pieces to build bad requests). */
  authorization(
    method: string,
    uri: string,
    content?: unknown,
    opts: { destination?: string; origin?: string; key?: SigningKey } = {},
  ): string {
    return signRequest(
      {
        method,
        uri,
        origin: opts.origin ?? this.name,
        destination: opts.destination ?? RUNNER,
        ...(content !== undefined ? { content } : {}),
      },
      opts.key ?? this.key,
    );
  }

  /** Sends a signed request to the server under test. */
  async request(method: string, uri: string, content?: unknown, opts: Parameters<FakeServer["authorization"]>[3] = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: this.authorization(method, uri, content, opts) };
    let body: string | undefined;
    if (content !== undefined) {
      body = JSON.stringify(content);
      headers["content-type"] = "application/json";
    }
    return worker.fetch(`http://${RUNNER}${uri}`, { method, headers, body });
  }

  /** PUTs a transaction to the server under test and returns the parsed response (and its status). */
  async send(txnId: string, pdus: unknown[], edus: unknown[] = []): Promise<{ status: number; body: { pdus?: Record<string, { error?: string }> } & Record<string, unknown> }> {
    const res = await this.request("PUT", `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`, {
      origin: this.name,
      origin_server_ts: Date.now(),
      pdus,
      edus,
    });
    return { status: res.status, body: (await res.json()) as { pdus?: Record<string, { error?: string }> } };
  }

  /** Handles a request made to this server. */
  async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const text = request.method === "GET" || request.method === "HEAD" ? "" : await request.text();
    const req: RecordedRequest = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      body: text ? JSON.parse(text) : undefined,
    };
    this.requests.push(req);
    for (const route of this.routes) {
      const res = await route(req);
      if (res) return res;
    }
    return this.defaultAnswer(req);
  }

  private defaultAnswer(req: RecordedRequest): Response {
    const p = req.path;
    if (p === "/_matrix/key/v2/server") return json(this.keyDocument());
    if (p.startsWith("/_matrix/federation/v1/send/") && req.method === "PUT") {
      const txnId = decodeURIComponent(p.slice("/_matrix/federation/v1/send/".length));
      const body = req.body as FakeServer["transactions"][number]["body"];
      this.transactions.push({ txnId, body });
      return json({ pdus: {} });
    }
    if (p.startsWith("/_matrix/federation/v1/event/")) {
      const id = decodeURIComponent(p.slice("/_matrix/federation/v1/event/".length));
      const pdu = this.events.get(id);
      return pdu ? json({ origin: this.name, origin_server_ts: Date.now(), pdus: [pdu] }) : notFound();
    }
    return notFound();
  }

  /** Requests received for a path prefix. */
  requestsTo(prefix: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path.startsWith(prefix));
  }
}

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

export function notFound(): Response {
  return json({ errcode: "M_NOT_FOUND", error: "Not found" }, 404);
}

/** Hosts the harness serves for real (FEDERATION_OVERRIDES of test.local). */
const HARNESS_HOSTS = new Set(["hs2.test", "hs3.test"]);

/**
 * Routes the federation fetch of this isolate (the Worker under test and its Durable Objects) to the fake
 * servers. Returns a function that restores the previous fetch.
 */
export function installFakeServers(...servers: FakeServer[]): () => void {
  const byHost = new Map(servers.map((s) => [s.name, s]));
  return setFederationFetch(async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    if (url.hostname === "cloudflare-dns.com") {
      return json({ Status: 3, Answer: [] }); // NXDOMAIN for every SRV lookup
    }
    const fake = byHost.get(url.hostname) ?? byHost.get(url.host);
    if (fake) {
      if (url.pathname.startsWith("/.well-known/")) return notFound();
      return fake.handle(request);
    }
    if (HARNESS_HOSTS.has(url.hostname)) return fetch(request);
    throw new Error(`test federation fetch: no route to ${url.host}`);
  });
}
