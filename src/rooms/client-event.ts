/**
 * PDUs as clients see them (https://spec.matrix.org/v1.19/client-server-api/#room-event-format): no hashes,
 * signatures, depth or DAG references; `unsigned` carries age, the sender's transaction ID and redaction info.
 */
import type { ClientEvent, JsonObject, PDU } from "../protocol/events";
import type { RoomVersion } from "../protocol/room-versions";

export interface ClientEventExtras {
  /** When the server received the event (for `unsigned.age`). Defaults to origin_server_ts. */
  receivedTs?: number;
  /** Set only for the sending device's own events. */
  transactionId?: string;
  /** The redaction event that redacted this one, already in client format. */
  redactedBecause?: ClientEvent;
  /** For state events: the content this event replaced (`unsigned.prev_content`). */
  prevContent?: JsonObject;
  /** For state events: the event this one replaced. */
  replacesState?: string;
  now?: number;
}

/** Converts a stored PDU to the client format. `eventId` and `roomId` come from storage, not from the PDU. */
export function toClientEvent(
  pdu: PDU,
  eventId: string,
  roomId: string,
  version: RoomVersion,
  extras: ClientEventExtras = {},
): ClientEvent {
  const event: ClientEvent = {
    event_id: eventId,
    room_id: roomId,
    sender: pdu.sender,
    type: pdu.type,
    content: pdu.content,
    origin_server_ts: pdu.origin_server_ts,
  };
  if (typeof pdu.state_key === "string") event.state_key = pdu.state_key;
  // Clients look for `redacts` at the top level in every room version; v11+ also keep it in content.
  const redacts = version.redactsInContent ? pdu.content.redacts : pdu.redacts;
  if (pdu.type === "m.room.redaction" && typeof redacts === "string") event.redacts = redacts;

  const unsigned: JsonObject = {};
  const now = extras.now ?? Date.now();
  unsigned.age = Math.max(0, now - (extras.receivedTs ?? pdu.origin_server_ts));
  if (extras.transactionId !== undefined) unsigned.transaction_id = extras.transactionId;
  if (extras.redactedBecause) unsigned.redacted_because = extras.redactedBecause as unknown as JsonObject;
  if (extras.prevContent !== undefined) unsigned.prev_content = extras.prevContent;
  if (extras.replacesState !== undefined) unsigned.replaces_state = extras.replacesState;
  event.unsigned = unsigned;
  return event;
}

/** Events servers exchange but clients never see. */
export function isHiddenFromClients(type: string): boolean {
  return type === "org.matrix.dummy_event";
}
