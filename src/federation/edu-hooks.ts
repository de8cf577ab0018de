/**
 * Where inbound EDUs land. src/federation/edus.ts has already checked each EDU's shape and that the users it
 * names belong to the sending server (and, for to-device, that the recipient is one of ours).
 *
 * HOOKS for other parts of the server — replace the body of the named function (or assign
 * `inboundEduHooks.<name>` from a module that src/index.ts imports):
 * - `typing`, `receipt`: the room's ephemeral stream (RoomDO.setTyping / RoomDO.putReceipt, which check that the
 *   user is joined and, for receipts, that the event exists). Implemented.
 * - `presence`: stored (D1) only if a local user shares a room with the remote user, then local sharers' syncs
 *   and interested appservices hear of it (src/presence/publish.ts, docs/presence.md). Implemented.
 * - `toDevice`: the recipient's UserDO to-device inbox, deduplicated by (sender, messageId); `deviceId` may be
 *   "*" for all devices. Implemented (src/e2ee/federation.ts).
 * - `deviceListUpdate`, `signingKeyUpdate`: the remote key cache (src/federation/remote-keys.ts) is updated (or
 *   resynced), then local users sharing a room with the remote user see them in `device_lists.changed` and
 *   refetch. Implemented.
 */
import type { Env } from "../env";
import { receiveRemoteToDevice, receiveRemoteToDeviceMany, remoteDeviceListChanged } from "../e2ee/federation";
import { applyDeviceListUpdate, applySigningKeyUpdate } from "./remote-keys";
import { receiveRemotePresence } from "../presence/publish";

/** How long a remote user's typing notification lasts (federation EDUs carry no timeout). */
export const FEDERATION_TYPING_TIMEOUT_MS = 30_000;

export interface TypingEdu {
  roomId: string;
  userId: string;
  typing: boolean;
}
export interface ReceiptEdu {
  roomId: string;
  userId: string;
  receiptType: string;
  eventIds: string[];
  threadId: string | null;
  ts: number;
}
export interface PresenceEdu {
  userId: string;
  /** One entry of the EDU's `push` array (presence, status_msg, last_active_ago, currently_active). */
  content: Record<string, unknown>;
}
export interface ToDeviceMessage {
  sender: string;
  type: string;
  messageId: string;
  recipient: string;
  /** A device ID, or "*" for all the recipient's devices. */
  deviceId: string;
  content: Record<string, unknown>;
}
export interface UserEdu {
  userId: string;
  content: Record<string, unknown>;
}

/** A typing notification or read receipt of one room, as applied in a batch (`ephemeral`). */
export type RoomEphemeralEdu =
  | { kind: "typing"; userId: string; typing: boolean }
  | { kind: "receipt"; userId: string; eventId: string; threadId: string | null; ts: number };

export interface InboundEduHooks {
  /** A transaction's typing notifications and read receipts for one room, in order (one RoomDO call). */
  ephemeral(env: Env, origin: string, roomId: string, edus: RoomEphemeralEdu[]): Promise<void>;
  /** A transaction's to-device messages for one local user (one UserDO call). */
  toDeviceMany(env: Env, origin: string, recipient: string, msgs: ToDeviceMessage[]): Promise<void>;
  typing(env: Env, origin: string, edu: TypingEdu): Promise<void>;
  receipt(env: Env, origin: string, edu: ReceiptEdu): Promise<void>;
  presence(env: Env, origin: string, edu: PresenceEdu): Promise<void>;
  toDevice(env: Env, origin: string, msg: ToDeviceMessage): Promise<void>;
  deviceListUpdate(env: Env, origin: string, edu: UserEdu): Promise<void>;
  signingKeyUpdate(env: Env, origin: string, edu: UserEdu): Promise<void>;
}

function room(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

export const inboundEduHooks: InboundEduHooks = {
  async ephemeral(env, origin, roomId, edus) {
    // The RoomDO checks the room's ACL, that each user is joined, and that receipts name events they can see.
    await room(env, roomId).fedRemoteEphemeral(origin, JSON.stringify(edus), FEDERATION_TYPING_TIMEOUT_MS);
  },
  async toDeviceMany(env, _origin, recipient, msgs) {
    await receiveRemoteToDeviceMany(env, recipient, msgs);
  },
  async typing(env, _origin, edu) {
    // Not joined / unknown room: the RoomDO refuses, and the EDU is dropped.
    await room(env, edu.roomId).setTyping(edu.userId, edu.typing, FEDERATION_TYPING_TIMEOUT_MS);
  },
  async receipt(env, _origin, edu) {
    for (const eventId of edu.eventIds) {
      await room(env, edu.roomId).putReceipt(edu.userId, edu.receiptType, eventId, edu.threadId, edu.ts);
    }
  },
  async presence(env, _origin, edu) {
    // edus.ts checked that the user belongs to the origin; presence disabled or nobody here sharing a room: dropped.
    await receiveRemotePresence(env, edu.userId, edu.content);
  },
  // E2EE (src/e2ee/federation.ts): to-device inbox; device-list and signing-key updates notify local users
  // sharing a room (no remote key cache: /keys/query asks the remote server).
  async toDevice(env, _origin, msg) {
    await receiveRemoteToDevice(env, msg);
  },
  // The remote key cache first (src/federation/remote-keys.ts), so that clients refetching see the change.
  async deviceListUpdate(env, origin, edu) {
    await applyDeviceListUpdate(env, origin, edu.userId, edu.content).catch((e: unknown) =>
      console.warn(`federation: device list of ${edu.userId}: ${(e as Error).message}`),
    );
    await remoteDeviceListChanged(env, edu.userId);
  },
  async signingKeyUpdate(env, origin, edu) {
    await applySigningKeyUpdate(env, origin, edu.userId, edu.content);
    await remoteDeviceListChanged(env, edu.userId);
  },
};
