/**
 * Helpers for the faster-joins tests (partial-join*.test.ts) on the three-server harness: a gate on test.local's
 * outbound federation (hold, fail or answer the resync's `/state_ids` requests, pass everything else), the
 * RoomDO's partial-state row and event flags, federation requests signed as test.local, and a room on a
 * resident server with members from several servers.
 */
import { runInDurableObject } from "cloudflare:test";
import { setFederationFetch } from "../../src/federation/fetch";
import { FederationClient, seg } from "../../src/federation/client";
import { supportedRoomVersions } from "../../src/protocol/room-versions";
import { signedFromTemplate } from "../../src/federation/join";
import { toFederationPdu } from "../../src/protocol/event-id";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import { api, createRoom, e, enc, newUser, V3, waitFor, type ScenarioUser } from "./servers";

export { e };

export function room(roomId: string) {
  return e.ROOMS.get(e.ROOMS.idFromName(roomId));
}

/** What the gate does with a request to `/state_ids` (or `/state`). */
export type GateAction = "hold" | "pass" | { status: number; body: unknown };

interface Held {
  host: string;
  path: string;
  released: boolean;
}

/**
 * Sits on test.local's outbound federation fetch. Requests for `/state_ids` and `/state` (the resync's) are
 * held (default), passed, or answered with a canned response, per host; everything else passes. Every request is
 * logged. `restore()` puts the previous fetch back.
 */
export class FederationGate {
  readonly log: { host: string; method: string; path: string; query: string }[] = [];
  private readonly held: Held[] = [];
  private readonly actions = new Map<string, GateAction>();
  private fallback: GateAction = "hold";
  /**
   * Called before a request leaves (after logging); a test can act in between (e.g. send a message), or answer
   * the request itself by returning a Response.
   */
  onRequest: ((url: URL, request: Request) => Promise<Response | void> | Response | void) | undefined;
  readonly restore: () => void;

  constructor() {
    this.restore = setFederationFetch(async (input, init) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      this.log.push({ host: url.host, method: request.method, path: url.pathname, query: url.search });
      const answered = await this.onRequest?.(url, request);
      if (answered) return answered;
      if (/\/_matrix\/federation\/v1\/state(_ids)?\//.test(url.pathname)) {
        const action = this.actions.get(url.host) ?? this.fallback;
        if (action === "hold") {
          // Polls its own flag: a promise resolved from the test's context would cross I/O contexts.
          const h: Held = { host: url.host, path: url.pathname, released: false };
          this.held.push(h);
          while (!h.released) await new Promise((r) => setTimeout(r, 10));
        } else if (action !== "pass") {
          return new Response(JSON.stringify(action.body), { status: action.status, headers: { "content-type": "application/json" } });
        }
      }
      return fetch(request);
    });
  }

  /** Sets what happens to state requests to `host` (or to any host not named). */
  set(action: GateAction, host?: string): void {
    if (host === undefined) this.fallback = action;
    else this.actions.set(host, action);
  }

  /** State requests waiting. */
  get waiting(): number {
    return this.held.length;
  }

  /** Lets the held requests (and, unless `keep`, every later one) through. */
  open(keep = false): void {
    if (!keep) this.fallback = "pass";
    for (const h of this.held.splice(0)) h.released = true;
  }

  /** Waits until a state request is held. */
  async held1(): Promise<void> {
    await waitFor(async () => this.held.length > 0, "a held /state_ids request");
  }

  stateRequests(host?: string): number {
    return this.log.filter((r) => /\/state(_ids)?\//.test(r.path) && (host === undefined || r.host === host)).length;
  }
}

/** The RoomDO's timeline events with their flags. */
export async function timelineFlags(roomId: string) {
  return runInDurableObject(room(roomId), (_: RoomDO, state) =>
    state.storage.sql
      .exec<{ event_id: string; type: string; sender: string; partial_state: number; rejected: string | null; stream_ordering: number | null }>(
        "SELECT event_id, type, sender, partial_state, rejected, stream_ordering FROM events WHERE outlier = 0 ORDER BY nid",
      )
      .toArray(),
  );
}

/** Waits until the room is fully stated here (the resync finished). */
export async function awaitFullyStated(roomId: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await room(roomId).partialStateInfo()) === null, `${roomId} fully stated`, timeoutMs);
}

/** A federation client signing as test.local (the runner). */
export function fedClient(): FederationClient {
  return new FederationClient(e);
}

/**
 * make_join + send_join v2 from test.local to `resident` for `userId` (a test.local user), with `query` on the
 * send_join (e.g. `{omit_members: "true"}`); returns the raw answer. Nothing is persisted here.
 */
export async function rawJoin(resident: string, roomId: string, userId: string, query: Record<string, string> = {}) {
  const client = fedClient();
  const template = await client.request<{ room_version?: unknown; event?: unknown }>(
    resident, "GET", `/_matrix/federation/v1/make_join/${seg(roomId)}/${seg(userId)}`, undefined, { query: { ver: supportedRoomVersions() } },
  );
  const { pdu, eventId, version } = await signedFromTemplate(e, template, { roomId, userId, membership: "join", content: {} });
  const answer = await client.request<Record<string, any>>(
    resident, "PUT", `/_matrix/federation/v2/send_join/${seg(roomId)}/${seg(eventId)}`, toFederationPdu(pdu, version), { query },
  );
  return { answer, eventId, pdu };
}

/** A public room on `owner`'s server with `members` (users of any server) joined through the client API. */
export async function populatedRoom(owner: ScenarioUser, members: ScenarioUser[], body: Record<string, unknown> = { preset: "public_chat" }): Promise<string> {
  const roomId = await createRoom(owner, body);
  for (const m of members) await api(m, "POST", `${V3}/join/${enc(roomId)}?server_name=${owner.server}`, {});
  return roomId;
}

/** `n` users on `server`. */
export async function users(server: ScenarioUser["server"], n: number, name = "m"): Promise<ScenarioUser[]> {
  const out: ScenarioUser[] = [];
  for (let i = 0; i < n; i++) out.push(await newUser(server, name));
  return out;
}

/** An initial or incremental sync with a filter, as `user`, without waiting (or long-polling with `timeout`). */
export async function syncWith(user: ScenarioUser, opts: { since?: string; lazy?: boolean; timeout?: number; signal?: AbortSignal } = {}) {
  const q = new URLSearchParams({ timeout: String(opts.timeout ?? 0) });
  if (opts.since) q.set("since", opts.since);
  if (opts.lazy) q.set("filter", JSON.stringify({ room: { state: { lazy_load_members: true } } }));
  return api(user, "GET", `${V3}/sync?${q}`);
}

export const LAZY = { room: { state: { lazy_load_members: true }, timeline: { limit: 50 } } };
