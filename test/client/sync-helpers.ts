/** Helpers for the sync tests: rooms made directly on RoomDOs, /sync calls over HTTP. */
import { createRoom, roomStub } from "../rooms/helpers";
import { call, type TestUser } from "./helpers";

export { createUserDirect, call, request, type TestUser } from "./helpers";

export interface SyncBody {
  next_batch: string;
  rooms: {
    join: Record<string, JoinedRoom>;
    invite: Record<string, { invite_state: { events: Ev[] } }>;
    leave: Record<string, JoinedRoom>;
    knock: Record<string, { knock_state: { events: Ev[] } }>;
  };
  account_data: { events: { type: string; content: Record<string, unknown> }[] };
  [k: string]: unknown;
}

export interface Ev {
  type: string;
  event_id?: string;
  sender: string;
  state_key?: string;
  content: Record<string, unknown>;
  unsigned?: Record<string, unknown>;
  room_id?: string;
}

export interface JoinedRoom {
  timeline: { events: Ev[]; limited: boolean; prev_batch?: string };
  state: { events: Ev[] };
  ephemeral?: { events: { type: string; content: Record<string, unknown> }[] };
  account_data?: { events: { type: string; content: Record<string, unknown> }[] };
  summary?: Record<string, unknown>;
  unread_notifications?: Record<string, number>;
}

/** A room created by `creator` (public, shared history), with its stub. */
export async function newRoom(creator: TestUser, opts: { joinRule?: string } = {}) {
  const r = await createRoom({ creator: creator.userId, ...opts });
  return { roomId: r.roomId, stub: roomStub(r.roomId) };
}

type Stub = ReturnType<typeof roomStub>;

export async function say(stub: Stub, sender: TestUser, body: string): Promise<string> {
  const r = await stub.send({ type: "m.room.message", sender: sender.userId, content: { msgtype: "m.text", body } });
  if (!r.ok) throw new Error(`send failed: ${r.error}`);
  return r.event_id;
}

export async function member(stub: Stub, sender: TestUser, target: string, membership: string, extra: Record<string, unknown> = {}) {
  const r = await stub.send({ type: "m.room.member", state_key: target, sender: sender.userId, content: { membership, ...extra } });
  if (!r.ok) throw new Error(`membership ${membership} failed: ${r.error}`);
  return r.event_id;
}

export async function sync(user: TestUser, params: Record<string, string | number | boolean> = {}, signal?: AbortSignal): Promise<SyncBody> {
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  return call<SyncBody>("GET", `/_matrix/client/v3/sync${qs ? `?${qs}` : ""}`, { user, ...(signal ? { signal } : {}) });
}

export function bodies(room: JoinedRoom | undefined): string[] {
  return (room?.timeline.events ?? []).filter((e) => e.type === "m.room.message").map((e) => String(e.content.body));
}
