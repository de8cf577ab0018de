/**
 * Building a new room's `m.room.create` event. This happens in the Worker, before any RoomDO is addressed,
 * because a v12 room's ID is derived from its create event (MSC4291) and the RoomDO is named by room ID.
 */
import type { JsonObject, PDU } from "../protocol/events";
import type { RoomVersion } from "../protocol/room-versions";
import { addContentHash, signEvent } from "../protocol/hashes";
import { generateEventIdV1, generateRoomIdLegacy, roomIdFromCreateEvent } from "../protocol/event-id";
import type { SigningKey } from "../protocol/signing";

export interface CreateEventParams {
  creator: string;
  version: RoomVersion;
  serverName: string;
  signingKey: SigningKey;
  /** `creation_content` from the client (additional_creators, m.federate, type, predecessor…). */
  content?: JsonObject;
  now?: number;
  /** Room upgrades (src/rooms/upgrade.ts): the ID of a pre-v12 room, chosen beforehand (ignored from v12 on). */
  roomId?: string;
}

/** Returns the signed create event and the ID of the room it creates. */
export function buildCreateEvent(p: CreateEventParams): { pdu: PDU; roomId: string } {
  const { version } = p;
  const content: JsonObject = { ...(p.content ?? {}), room_version: version.id };
  // Before v11 the creator is named in the content; from v11 on, the sender is the creator.
  if (!version.implicitRoomCreator) content.creator = p.creator;
  else delete content.creator;

  const event: Record<string, unknown> = {
    type: "m.room.create",
    state_key: "",
    sender: p.creator,
    content,
    origin_server_ts: p.now ?? Date.now(),
    depth: 1,
    prev_events: [],
    auth_events: [],
  };
  let roomId: string | undefined;
  if (!version.roomIdFromCreateEvent) {
    roomId = p.roomId ?? generateRoomIdLegacy(p.serverName);
    event.room_id = roomId;
  }
  if (version.eventFormat === "v1") event.event_id = generateEventIdV1(p.serverName);
  const pdu = signEvent(addContentHash(event), p.serverName, p.signingKey, version) as unknown as PDU;
  return { pdu, roomId: roomId ?? roomIdFromCreateEvent(pdu, version) };
}
