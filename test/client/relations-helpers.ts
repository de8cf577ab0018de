/** Helpers for the relations and threads tests (docs/relations.md). */
import { call, type TestUser } from "./helpers";
import { V3, enc, type ClientEventJson } from "./rooms-helpers";

export const V1 = "/_matrix/client/v1";

let txn = 0;

export async function sendEvent(user: TestUser, roomId: string, type: string, content: Record<string, unknown>): Promise<string> {
  return (
    await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/${enc(type)}/rel${++txn}_${Date.now()}`, { user, body: content })
  ).event_id;
}

export function threadReply(root: string, body: string): Record<string, unknown> {
  return { msgtype: "m.text", body, "m.relates_to": { rel_type: "m.thread", event_id: root } };
}

export function edit(target: string, body: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    msgtype: "m.text",
    body: `* ${body}`,
    "m.new_content": { msgtype: "m.text", body },
    "m.relates_to": { rel_type: "m.replace", event_id: target },
    ...extra,
  };
}

export function reference(target: string): Record<string, unknown> {
  return { body: "ref", "m.relates_to": { rel_type: "m.reference", event_id: target } };
}

export function reaction(target: string, key: string): Record<string, unknown> {
  return { "m.relates_to": { rel_type: "m.annotation", event_id: target, key } };
}

export async function redact(user: TestUser, roomId: string, eventId: string): Promise<string> {
  return (
    await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/redact/${enc(eventId)}/red${++txn}_${Date.now()}`, { user, body: {} })
  ).event_id;
}

export async function getEvent(user: TestUser, roomId: string, eventId: string): Promise<ClientEventJson> {
  return call<ClientEventJson>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { user });
}

export interface RelationsPage {
  chunk: ClientEventJson[];
  next_batch?: string;
  prev_batch?: string;
  recursion_depth?: number;
}

export function relationsPath(roomId: string, eventId: string, relType?: string, eventType?: string, params: Record<string, string | number | boolean> = {}): string {
  let path = `${V1}/rooms/${enc(roomId)}/relations/${enc(eventId)}`;
  if (relType !== undefined) path += `/${enc(relType)}`;
  if (eventType !== undefined) path += `/${enc(eventType)}`;
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  return qs.size > 0 ? `${path}?${qs}` : path;
}

export async function relations(
  user: TestUser,
  roomId: string,
  eventId: string,
  opts: { relType?: string; eventType?: string; params?: Record<string, string | number | boolean> } = {},
): Promise<RelationsPage> {
  return call<RelationsPage>("GET", relationsPath(roomId, eventId, opts.relType, opts.eventType, opts.params), { user });
}

/** The bundled aggregations of a client event. */
export function bundled(e: ClientEventJson): Record<string, any> | undefined {
  return (e.unsigned as Record<string, any> | undefined)?.["m.relations"];
}

export interface ThreadsPage {
  chunk: ClientEventJson[];
  next_batch?: string;
}

export async function threads(user: TestUser, roomId: string, params: Record<string, string | number> = {}): Promise<ThreadsPage> {
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  return call<ThreadsPage>("GET", `${V1}/rooms/${enc(roomId)}/threads${qs.size ? `?${qs}` : ""}`, { user });
}
