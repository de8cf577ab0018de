/** Helpers shared by the room endpoint tests (rooms*, membership*, messages*, directory*, profile*). */
import { call, request, type TestUser } from "./helpers";

export const V3 = "/_matrix/client/v3";
export const enc = encodeURIComponent;

export async function newRoom(user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  return (await call<{ room_id: string }>("POST", `${V3}/createRoom`, { user, body })).room_id;
}

let txn = 0;
export async function sendText(user: TestUser, roomId: string, body: string): Promise<string> {
  const r = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/t${++txn}_${Date.now()}`, {
    user,
    body: { msgtype: "m.text", body },
  });
  return r.event_id;
}

export async function putState(user: TestUser, roomId: string, type: string, content: unknown, stateKey = ""): Promise<string> {
  return (await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/state/${type}/${enc(stateKey)}`, { user, body: content })).event_id;
}

export async function join(user: TestUser, roomIdOrAlias: string): Promise<void> {
  await call("POST", `${V3}/join/${enc(roomIdOrAlias)}`, { user, body: {} });
}

export async function invite(user: TestUser, roomId: string, userId: string): Promise<void> {
  await call("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user, body: { user_id: userId } });
}

export async function leave(user: TestUser, roomId: string): Promise<void> {
  await call("POST", `${V3}/rooms/${enc(roomId)}/leave`, { user, body: {} });
}

export interface ClientEventJson {
  event_id: string;
  type: string;
  sender: string;
  state_key?: string;
  content: Record<string, unknown>;
  unsigned?: Record<string, unknown>;
  redacts?: string;
  origin_server_ts: number;
}

export async function stateList(user: TestUser, roomId: string): Promise<ClientEventJson[]> {
  return call<ClientEventJson[]>("GET", `${V3}/rooms/${enc(roomId)}/state`, { user });
}

/** Asserts a Matrix error: status and errcode. */
export async function expectError(
  method: string,
  path: string,
  opts: Parameters<typeof request>[2],
  status: number,
  errcode: string,
): Promise<Record<string, unknown>> {
  const res = await request(method, path, opts);
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  if (res.status !== status || body.errcode !== errcode) {
    throw new Error(`${method} ${path}: expected ${status} ${errcode}, got ${res.status}: ${text}`);
  }
  return body;
}
