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
import { inboundEduHooks } from "./edu-hooks";
import { serverAllowedByAcl } from "./acl";

/** Whether the room is known here and its server ACL lets `origin` in (room-scoped EDUs: typing, receipts). */
async function roomAdmits(env: Env, roomId: string, origin: string): Promise<boolean> {
  const info = await env.ROOMS.get(env.ROOMS.idFromName(roomId)).federationInfo();
  return info !== null && serverAllowedByAcl(origin, info.server_acl === null ? null : JSON.parse(info.server_acl));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether `userId` is a valid user ID on `server`. */
function isUserOf(userId: unknown, server: string): userId is string {
  return isValidUserId(userId) && serverNameOf(userId) === server;
}

export async function handleEdus(env: Env, origin: string, edus: readonly unknown[]): Promise<void> {
  for (const edu of edus) {
    if (!isObject(edu) || typeof edu.edu_type !== "string" || !isObject(edu.content)) continue;
    try {
      await handleEdu(env, origin, edu.edu_type, edu.content);
    } catch (e) {
      console.warn(`federation: ${edu.edu_type} EDU from ${origin} failed: ${(e as Error).message}`);
    }
  }
}

async function handleEdu(env: Env, origin: string, type: string, content: Record<string, unknown>): Promise<void> {
  const ours = getConfig(env).serverName;
  switch (type) {
    case "m.typing": {
      const { room_id, user_id, typing } = content;
      if (!isValidRoomId(room_id) || !isUserOf(user_id, origin) || typeof typing !== "boolean") return;
      if (!(await roomAdmits(env, room_id, origin))) return;
      await inboundEduHooks.typing(env, origin, { roomId: room_id, userId: user_id, typing });
      return;
    }
    case "m.receipt": {
      for (const [roomId, byType] of Object.entries(content)) {
        if (!isValidRoomId(roomId) || !isObject(byType)) continue;
        if (!(await roomAdmits(env, roomId, origin))) continue;
        const read = byType["m.read"]; // the only receipt type that is federated
        if (!isObject(read)) continue;
        for (const [userId, receipt] of Object.entries(read)) {
          if (!isUserOf(userId, origin) || !isObject(receipt)) continue;
          const eventIds = receipt.event_ids;
          if (!Array.isArray(eventIds) || !eventIds.every((id) => typeof id === "string")) continue;
          const data = isObject(receipt.data) ? receipt.data : {};
          const threadId = typeof data.thread_id === "string" ? data.thread_id : null;
          const ts = typeof data.ts === "number" ? data.ts : Date.now();
          await inboundEduHooks.receipt(env, origin, { roomId, userId, receiptType: "m.read", eventIds, threadId, ts });
        }
      }
      return;
    }
    case "m.presence": {
      const push = content.push;
      if (!Array.isArray(push)) return;
      for (const p of push) {
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
          await inboundEduHooks.toDevice(env, origin, { sender, type: eventType, messageId, recipient, deviceId, content: body });
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
