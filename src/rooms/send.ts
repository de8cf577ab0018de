/**
 * Sending events for the client API: messages (PUT /send), state (PUT /state) and redactions (PUT /redact).
 * https://spec.matrix.org/v1.19/client-server-api/#sending-events-to-a-room
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { JsonObject } from "../protocol/events";
import { canonicalJson, utf8ByteLength } from "../protocol/canonical-json";
import { MAX_PDU_BYTES } from "../protocol/pdu-format";
import { badJson, tooLarge } from "../http/errors";
import type { ClientWriteRequest, TxnRef } from "../../durable-objects/room/queries";
import { checkCanonicalAliasContent } from "./aliases";
import { memberStateEvent } from "./membership";
import { roomStub, serverName, writeOutcome } from "./common";

/** What a PDU adds around its content at most (IDs, hashes, a signature, 10 prev and ~6 auth events). */
const ID = "$" + "x".repeat(43);

/**
 * Rejects content that cannot make an event: not canonical JSON (floats, out-of-range integers → 400
 * `M_BAD_JSON`), or an event that would exceed 65,536 bytes (413 `M_TOO_LARGE`). The RoomDO checks the real PDU
 * again; this catches the obvious cases before the room is bothered.
 */
export function checkEventContent(
  env: Env,
  roomId: string,
  sender: string,
  type: string,
  content: JsonObject,
  stateKey?: string,
): void {
  let json: string;
  try {
    json = canonicalJson(content, { strict: true });
  } catch (e) {
    throw badJson(`Event content is not valid canonical JSON: ${(e as Error).message}`);
  }
  if (json.length * 3 <= MAX_PDU_BYTES / 2) return;
  const skeleton = {
    auth_events: Array(6).fill(ID),
    depth: Number.MAX_SAFE_INTEGER,
    hashes: { sha256: "x".repeat(43) },
    origin_server_ts: Date.now(),
    prev_events: Array(10).fill(ID),
    room_id: roomId,
    sender,
    signatures: { [serverName(env)]: { "ed25519:a_xxxxxx": "x".repeat(86) } },
    type,
    ...(stateKey !== undefined ? { state_key: stateKey } : {}),
  };
  const size = utf8ByteLength(json) + utf8ByteLength(JSON.stringify(skeleton)) + 12;
  if (size > MAX_PDU_BYTES) throw tooLarge(`Event too large: about ${size} bytes; at most ${MAX_PDU_BYTES} are allowed`);
}

function txnOf(requester: Requester, txnId: string): TxnRef {
  return { userId: requester.userId, deviceId: requester.deviceId, txnId };
}

/** PUT /rooms/{roomId}/send/{eventType}/{txnId} */
export async function sendMessage(
  env: Env,
  requester: Requester,
  roomId: string,
  type: string,
  txnId: string,
  content: JsonObject,
): Promise<string> {
  checkEventContent(env, roomId, requester.userId, type, content);
  const txn = txnOf(requester, txnId);
  let req: ClientWriteRequest;
  // A redaction sent through /send names its target in content.redacts (as room version 11 puts it).
  if (type === "m.room.redaction") {
    if (typeof content.redacts !== "string") throw badJson("m.room.redaction needs content.redacts (or use /redact)");
    const { redacts, ...rest } = content;
    req = { kind: "redaction", sender: requester.userId, redacts, content: rest, txn };
  } else {
    req = { kind: "message", sender: requester.userId, type, content, txn, origin_server_ts: requester.timestamp };
  }
  return writeOutcome(await roomStub(env, roomId).clientWrite(req));
}

/** PUT /rooms/{roomId}/state/{eventType}/{stateKey} */
export async function sendState(
  env: Env,
  requester: Requester,
  roomId: string,
  type: string,
  stateKey: string,
  content: JsonObject,
): Promise<string> {
  checkEventContent(env, roomId, requester.userId, type, content, stateKey);
  if (type === "m.room.member") return memberStateEvent(env, requester, roomId, stateKey, content);
  if (type === "m.room.canonical_alias") await checkCanonicalAliasContent(env, roomId, content);
  const stub = roomStub(env, roomId);
  const eventId = writeOutcome(
    // origin_server_ts: application services' `?ts=` (Requester.timestamp, src/appservices/auth.ts)
    await stub.clientWrite({ kind: "state", sender: requester.userId, type, state_key: stateKey, content, origin_server_ts: requester.timestamp }),
  );
  await stub.syncDirectory();
  return eventId;
}

/** PUT /rooms/{roomId}/redact/{eventId}/{txnId} */
export async function redactEvent(
  env: Env,
  requester: Requester,
  roomId: string,
  eventId: string,
  txnId: string,
  reason: string | undefined,
): Promise<string> {
  const content: JsonObject = reason === undefined ? {} : { reason };
  checkEventContent(env, roomId, requester.userId, "m.room.redaction", content);
  return writeOutcome(
    await roomStub(env, roomId).clientWrite({
      kind: "redaction",
      sender: requester.userId,
      redacts: eventId,
      content,
      txn: txnOf(requester, txnId),
    }),
  );
}
