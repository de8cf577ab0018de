/** Test helpers: rooms created directly on a RoomDO, and hand-built events from a pretend remote server. */
import { env } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { buildCreateEvent } from "../../src/rooms/create-event";
import { getServerKeys } from "../../src/server-keys";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { computeEventId } from "../../src/protocol/event-id";
import { generateSigningKey, type SigningKey } from "../../src/protocol/signing";
import type { JsonObject, PDU } from "../../src/protocol/events";
import type { EventTemplate } from "../../durable-objects/room/room";

export const testEnv = env as unknown as Env;
export const SERVER = "test.local";

let counter = 0;
export const alice = `@alice:${SERVER}`;
export const bob = `@bob:${SERVER}`;

export function roomStub(roomId: string) {
  return testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
}

/** The initial events of a public-chat-like room created by `creator`. */
export function initialEvents(creator: string, version: RoomVersion, extra: Partial<{ joinRule: string }> = {}): EventTemplate[] {
  const users: Record<string, number> = version.privilegedCreators ? {} : { [creator]: 100 };
  return [
    { type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join" } },
    {
      type: "m.room.power_levels",
      state_key: "",
      sender: creator,
      content: { users, users_default: 0, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0 },
    },
    { type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: extra.joinRule ?? "public" } },
    { type: "m.room.history_visibility", state_key: "", sender: creator, content: { history_visibility: "shared" } },
  ];
}

/** Creates a room on its RoomDO and returns its ID and stub. */
export async function createRoom(opts: { versionId?: string; creator?: string; joinRule?: string } = {}) {
  const version = roomVersion(opts.versionId ?? "12")!;
  const creator = opts.creator ?? alice;
  const keys = await getServerKeys(testEnv);
  const { pdu, roomId } = buildCreateEvent({ creator, version, serverName: SERVER, signingKey: keys.current, now: Date.now() + counter++ });
  const stub = roomStub(roomId);
  const results = await stub.createRoom(pdu, roomId, version.id, initialEvents(creator, version, opts));
  for (const r of results) if (!r.ok) throw new Error(`createRoom failed: ${r.error}`);
  return { roomId, stub, version, createEventId: results[0]!.ok ? results[0]!.event_id : "" };
}

/** A pretend remote server that signs events with its own key. */
export class RemoteServer {
  readonly key: SigningKey = generateSigningKey("remote1");
  constructor(readonly name: string) {}

  /** Builds a signed PDU; returns it with its event ID. */
  event(version: RoomVersion, fields: { room_id: string; type: string; sender: string; content: JsonObject; state_key?: string; prev_events: string[]; auth_events: string[]; depth: number; origin_server_ts?: number }): { pdu: PDU; eventId: string } {
    const event: Record<string, unknown> = { origin_server_ts: Date.now(), ...fields };
    if (fields.state_key === undefined) delete event.state_key;
    const pdu = signEvent(addContentHash(event), this.name, this.key, version) as unknown as PDU;
    return { pdu, eventId: computeEventId(pdu, version) };
  }
}
