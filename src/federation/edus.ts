/**
 * Inbound EDUs (https://spec.matrix.org/v1.19/server-server-api/#edus). Each EDU is checked here — shape,
 * that the users it speaks for belong to the origin server (a server may only speak for its own users), and for
 * typing and receipts that the room's server ACL admits the origin — and then applied through the hooks in
 * edu-hooks.ts. EDUs are best effort: a bad or failing one is logged and
 * dropped, never failing the transaction.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { isValidRoomId, isValidUserId, serverNameOf } from "../protocol/identifiers";
import { inboundEduHooks, type RoomEphemeralEdu, type ToDeviceMessage } from "./edu-hooks";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether `userId` is a valid user ID on `server`. */
function isUserOf(userId: unknown, server: string): userId is string {
  return isValidUserId(userId) && serverNameOf(userId) === server;
}

/**
 * Applies a transaction's EDUs. Typing notifications and receipts are gathered per room and to-device messages
 * per recipient, and each group is applied with one call (one RoomDO / UserDO transaction and one delivery to
 * local users), in the order they came: a transaction holds up to 100 EDUs, one call each would cost far more.
 */
export async function handleEdus(env: Env, origin: string, edus: readonly unknown[]): Promise<void> {
  const batch: EduBatch = { ephemeral: new Map(), toDevice: new Map() };
  for (const edu of edus) {
    if (!isObject(edu) || typeof edu.edu_type !== "string" || !isObject(edu.content)) continue;
    try {
      await handleEdu(env, origin, edu.edu_type, edu.content, batch);
    } catch (e) {
      console.warn(`federation: ${edu.edu_type} EDU from ${origin} failed: ${(e as Error).message}`);
    }
  }
  await Promise.all([
    ...[...batch.ephemeral].map(async ([roomId, items]) => {
      try {
        await inboundEduHooks.ephemeral(env, origin, roomId, items);
      } catch (e) {
        console.warn(`federation: typing/receipt EDUs from ${origin} for ${roomId} failed: ${(e as Error).message}`);
      }
    }),
    ...[...batch.toDevice].map(async ([recipient, msgs]) => {
      try {
        await inboundEduHooks.toDeviceMany(env, origin, recipient, msgs);
      } catch (e) {
        console.warn(`federation: to-device EDUs from ${origin} for ${recipient} failed: ${(e as Error).message}`);
      }
    }),
  ]);
}

/** EDUs gathered for one call per room (typing, receipts) and per recipient (to-device). */
interface EduBatch {
  ephemeral: Map<string, RoomEphemeralEdu[]>;
  toDevice: Map<string, ToDeviceMessage[]>;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

async function handleEdu(env: Env, origin: string, type: string, content: Record<string, unknown>, batch: EduBatch): Promise<void> {
  const ours = getConfig(env).serverName;
  switch (type) {
    case "m.typing": {
      const { room_id, user_id, typing } = content;
      if (!isValidRoomId(room_id) || !isUserOf(user_id, origin) || typeof typing !== "boolean") return;
      // The room's ACL is checked by the RoomDO when the batch is applied.
      push(batch.ephemeral, room_id, { kind: "typing", userId: user_id, typing });
      return;
    }
    case "m.receipt": {
      for (const [roomId, byType] of Object.entries(content)) {
        if (!isValidRoomId(roomId) || !isObject(byType)) continue;
        const read = byType["m.read"]; // the only receipt type that is federated
        if (!isObject(read)) continue;
        for (const [userId, receipt] of Object.entries(read)) {
          if (!isUserOf(userId, origin) || !isObject(receipt)) continue;
          const eventIds = receipt.event_ids;
          if (!Array.isArray(eventIds) || !eventIds.every((id) => typeof id === "string")) continue;
          const data = isObject(receipt.data) ? receipt.data : {};
          const threadId = typeof data.thread_id === "string" ? data.thread_id : null;
          const ts = typeof data.ts === "number" ? data.ts : Date.now();
          for (const eventId of eventIds.slice(0, 10)) push(batch.ephemeral, roomId, { kind: "receipt", userId, eventId, threadId, ts });
        }
      }
      return;
    }
    case "m.presence": {
      const pushList = content.push;
      if (!Array.isArray(pushList)) return;
      for (const p of pushList) {
        if (!isObject(p) || !isUserOf(p.user_id, origin) || typeof p.presence !== "string") continue;
        await inboundEduHooks.presence(env, origin, { userId: p.user_id, content: p });
      }
      return;
    }
    case "m.direct_to_device": {
      const { sender, type: eventType, message_id, messages } = content;
      if (!isUserOf(sender, origin) || typeof eventType !== "string" || !isObject(messages)) return;
      const messageId = typeof message_id === "string" ? message_id : "";
      for (const [recipient, byDevice] of Object.entries(messages)) {
        // Only our own users can receive here.
        if (!isUserOf(recipient, ours) || !isObject(byDevice)) continue;
        for (const [deviceId, body] of Object.entries(byDevice)) {
          if (!isObject(body)) continue;
          push(batch.toDevice, recipient, { sender, type: eventType, messageId, recipient, deviceId, content: body });
        }
      }
      return;
    }
    case "m.device_list_update": {
      if (!isUserOf(content.user_id, origin) || typeof content.device_id !== "string") return;
      await inboundEduHooks.deviceListUpdate(env, origin, { userId: content.user_id, content });
      return;
    }
    case "m.signing_key_update": {
      if (!isUserOf(content.user_id, origin)) return;
      await inboundEduHooks.signingKeyUpdate(env, origin, { userId: content.user_id, content });
      return;
    }
    default:
      // Unknown EDU types are ignored.
      return;
  }
}
