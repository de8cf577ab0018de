/** Room-level helpers for federation tests: rooms on test.local shared with a fake remote server. */
import { runInDurableObject } from "cloudflare:test";
import { expect } from "vitest";
import type { RoomDO } from "../../durable-objects/room/RoomDO";
import type { RoomVersion } from "../../src/protocol/room-versions";
import { createRoom } from "../rooms/helpers";
import type { FakeServer } from "./fake-server";

export type RoomStub = Awaited<ReturnType<typeof createRoom>>["stub"];

export function query<T extends Record<string, SqlStorageValue>>(stub: RoomStub, sql: string, ...args: SqlStorageValue[]): Promise<T[]> {
  return runInDurableObject(stub, (_: RoomDO, state) => state.storage.sql.exec<T>(sql, ...args).toArray());
}

export interface EventRowView {
  event_id: string;
  json: string;
  outlier: number;
  rejected: string | null;
  soft_failed: number;
  stream_ordering: number | null;
}

export async function eventRow(stub: RoomStub, eventId: string): Promise<EventRowView | undefined> {
  return (
    await query<EventRowView & Record<string, SqlStorageValue>>(
      stub,
      "SELECT event_id, json, outlier, rejected, soft_failed, stream_ordering FROM events WHERE event_id = ?",
      eventId,
    )
  )[0];
}

export async function stateId(stub: RoomStub, type: string, sk: string): Promise<string | undefined> {
  const rows = await query<{ event_id: string }>(
    stub,
    `SELECT e.event_id FROM current_state c JOIN state_keys k ON k.id = c.key_id JOIN events e ON e.nid = c.event_nid
     WHERE k.type = ? AND k.state_key = ?`,
    type,
    sk,
  );
  return rows[0]?.event_id;
}

export async function extremities(stub: RoomStub): Promise<string[]> {
  return (await stub.summary())!.forward_extremities;
}

export async function depthOf(stub: RoomStub, eventId: string): Promise<number> {
  return (await query<{ depth: number }>(stub, "SELECT depth FROM events WHERE event_id = ?", eventId))[0]!.depth;
}

/** Auth event IDs for an event from the room's current state (the create event is implicit in v12). */
export async function authFor(stub: RoomStub, version: RoomVersion, keys: [string, string][]): Promise<string[]> {
  const ids: string[] = [];
  for (const [t, k] of keys) {
    if (t === "m.room.create" && version.roomIdFromCreateEvent) continue;
    const id = await stateId(stub, t, k);
    if (id) ids.push(id);
  }
  return ids;
}

/** Timeline event IDs in stream order. */
export async function timeline(stub: RoomStub): Promise<string[]> {
  return (
    await query<{ event_id: string }>(stub, "SELECT event_id FROM events WHERE stream_ordering IS NOT NULL ORDER BY stream_ordering")
  ).map((r) => r.event_id);
}

/**
 * A room on test.local (alice, public) that `remote`'s user has joined through a pushed transaction.
 * Returns the room, the remote user and its join.
 */
export async function sharedRoom(remote: FakeServer, versionId = "10") {
  const room = await createRoom({ versionId });
  const user = `@carol:${remote.name}`;
  const [prev] = await extremities(room.stub);
  const auth = await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""]]);
  const join = remote.event(room.version, {
    room_id: room.roomId,
    type: "m.room.member",
    state_key: user,
    sender: user,
    content: { membership: "join" },
    prev_events: [prev!],
    auth_events: auth,
    depth: (await depthOf(room.stub, prev!)) + 1,
  });
  const res = await remote.send(`join-${join.eventId}`, [join.pdu]);
  expect(res.body).toEqual({ pdus: { [join.eventId]: {} } });
  return { ...room, user, joinId: join.eventId };
}

/** A message from `user` (a member on `remote`) on top of `prev` (default: the current extremity). */
export async function remoteMessage(
  remote: FakeServer,
  room: { stub: RoomStub; roomId: string; version: RoomVersion },
  user: string,
  body: string,
  opts: { prev?: string; content?: Record<string, unknown>; depth?: number } = {},
) {
  const prev = opts.prev ?? (await extremities(room.stub))[0]!;
  const auth = await authFor(room.stub, room.version, [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.member", user]]);
  return remote.event(room.version, {
    room_id: room.roomId,
    type: "m.room.message",
    sender: user,
    content: (opts.content ?? { msgtype: "m.text", body }) as never,
    prev_events: [prev],
    auth_events: auth,
    depth: opts.depth ?? (await depthOf(room.stub, prev)) + 1,
  });
}
