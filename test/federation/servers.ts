/**
 * Scenario helpers for the three-homeserver harness: users with access tokens on each server and their client
 * API (test.local through the runner Worker, hs2.test / hs3.test through their service bindings), `/sync`
 * helpers and polling. See harness-config.ts for how the servers reach each other.
 */
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { Env } from "../../src/env";
import type { TestControl } from "./aux-entry";
import { createUserDirect, request } from "../client/helpers";

export const e = env as unknown as Env & {
  HS2: Fetcher;
  HS3: Fetcher;
  HS2_CONTROL: Service<TestControl>;
  HS3_CONTROL: Service<TestControl>;
  FEDERATION_HARNESS_ERROR?: string;
};

export type ServerName = "test.local" | "hs2.test" | "hs3.test";

export interface ScenarioUser {
  server: ServerName;
  userId: string;
  deviceId: string;
  accessToken: string;
}

let seq = 0;

export function control(server: "hs2.test" | "hs3.test"): Service<TestControl> {
  return server === "hs2.test" ? e.HS2_CONTROL : e.HS3_CONTROL;
}

/** A new user on `server` with an access token. */
export async function newUser(server: ServerName, name = "u"): Promise<ScenarioUser> {
  const localpart = `${name}${++seq}_${Date.now().toString(36)}`;
  if (server === "test.local") {
    const u = await createUserDirect(localpart);
    return { server, ...u };
  }
  const u = await control(server).createUser(localpart);
  return { server, userId: u.user_id, deviceId: u.device_id, accessToken: u.access_token };
}

/** A client API request as `user` on their own server. */
export async function clientRequest(user: ScenarioUser, method: string, path: string, body?: unknown): Promise<Response> {
  if (user.server === "test.local") return request(method, path, { user: { userId: user.userId, deviceId: user.deviceId, accessToken: user.accessToken }, body });
  const fetcher = user.server === "hs2.test" ? e.HS2 : e.HS3;
  const headers: Record<string, string> = { authorization: `Bearer ${user.accessToken}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetcher.fetch(`http://${user.server}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** Like `clientRequest`, asserting the status; returns the JSON body. */
export async function api<T = Record<string, any>>(user: ScenarioUser, method: string, path: string, body?: unknown, status = 200): Promise<T> {
  const res = await clientRequest(user, method, path, body);
  const text = await res.text();
  if (res.status !== status) throw new Error(`${user.server} ${method} ${path}: expected ${status}, got ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : {}) as T;
}

export const enc = encodeURIComponent;
export const V3 = "/_matrix/client/v3";

/** Creates a room through the client API. */
export async function createRoom(user: ScenarioUser, body: Record<string, unknown> = { preset: "public_chat" }): Promise<string> {
  return (await api<{ room_id: string }>(user, "POST", `${V3}/createRoom`, body)).room_id;
}

export async function sendText(user: ScenarioUser, roomId: string, body: string): Promise<string> {
  const txn = `t${++seq}`;
  return (await api<{ event_id: string }>(user, "PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/${txn}`, { msgtype: "m.text", body })).event_id;
}

/** Polls `probe` until it returns a truthy value. */
export async function waitFor<T>(probe: () => Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}

/**
 * Faster joins (docs/faster-joins.md): waits until test.local holds `roomId` fully stated — a remote join is made
 * with partial state, and eager syncs show the room (and remote members' device lists are tracked) once its
 * resync is done.
 */
export async function fullyStated(roomId: string): Promise<void> {
  await waitFor(async () => (await e.ROOMS.get(e.ROOMS.idFromName(roomId)).partialStateInfo()) === null, `${roomId} fully stated here`);
}

/** A sync of `user` (initial, or since `since`), without waiting. */
export async function sync(user: ScenarioUser, since?: string, filter?: unknown): Promise<Record<string, any>> {
  const q = new URLSearchParams({ timeout: "0" });
  if (since) q.set("since", since);
  if (filter !== undefined) q.set("filter", JSON.stringify(filter));
  return api(user, "GET", `${V3}/sync?${q}`);
}

/** Message bodies of a list of client events. */
export function bodies(events: { type: string; content: { body?: unknown } }[]): string[] {
  return events.filter((ev) => ev.type === "m.room.message").map((ev) => String(ev.content.body));
}

/** Every message body `user` sees in the room through `/messages`, newest first, paging back until `end` is gone. */
export async function paginateBack(user: ScenarioUser, roomId: string, limit: number, from?: string): Promise<{ bodies: string[]; pages: number; eventIds: string[] }> {
  const out: string[] = [];
  const ids: string[] = [];
  let token = from;
  let pages = 0;
  for (;;) {
    const q = new URLSearchParams({ dir: "b", limit: String(limit) });
    if (token) q.set("from", token);
    const page = await api<{ chunk: { event_id: string; type: string; content: { body?: unknown } }[]; end?: string }>(
      user,
      "GET",
      `${V3}/rooms/${enc(roomId)}/messages?${q}`,
    );
    pages++;
    out.push(...bodies(page.chunk));
    ids.push(...page.chunk.map((ev) => ev.event_id));
    if (!page.end) break;
    token = page.end;
    expect(pages).toBeLessThan(1000);
  }
  return { bodies: out, pages, eventIds: ids };
}
