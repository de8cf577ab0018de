/**
 * Rule 1: `m.room.create` events. https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (and v1, v11)
 */
import { roomVersion, type RoomVersion } from "../room-versions";
import { isValidUserId, serverNameOf } from "./ids";
import { allow, reject } from "./rule-numbers";
import type { AuthEvent, AuthResult } from "./types";

export function checkCreateEvent(event: AuthEvent, version: RoomVersion): AuthResult {
  // 1.1
  if (event.prev_events.length > 0) return reject("1.1", "the create event has prev_events");
  // 1.2: v12 room IDs are derived from the create event, which therefore carries none.
  if (version.roomIdFromCreateEvent) {
    if (event.room_id !== undefined) return reject("1.2", "the create event has a room_id");
  } else if (serverNameOf(event.room_id) !== serverNameOf(event.sender)) {
    return reject("1.2", "the room_id's server name does not match the sender's");
  }
  // 1.3
  const declared = event.content.room_version;
  if (declared !== undefined && (typeof declared !== "string" || roomVersion(declared) === undefined)) {
    return reject("1.3", `content.room_version ${JSON.stringify(declared)} is not a recognised room version`);
  }
  // 1.4 (v1–v10): the creator is named in content; v11 dropped the property.
  if (!version.implicitRoomCreator && event.content.creator === undefined) {
    return reject("1.4", "content has no creator property");
  }
  // 1.4 (v12): additional_creators must be user IDs, validated as `sender` is.
  const additional = event.content.additional_creators;
  if (version.privilegedCreators && additional !== undefined) {
    if (!Array.isArray(additional) || !additional.every((id) => isValidUserId(id))) {
      return reject("1.4", "additional_creators is not an array of valid user IDs");
    }
  }
  return allow();
}

/** The v12 room ID a create event implies: its event ID with `!` instead of `$`. */
export function roomIdOfCreateEvent(create: AuthEvent): string {
  return `!${create.event_id.slice(1)}`;
}
