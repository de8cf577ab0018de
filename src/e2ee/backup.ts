/**
 * Server-side key backup: the shape of backed-up session keys and which of two copies of a session key the
 * server keeps. https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups
 */
import { canonicalJson } from "../protocol/canonical-json";
import { badJson } from "./result";
import { isObject } from "./keys";

/** A session key as backed up (`KeyBackupData`); session_data is kept as canonical JSON text. */
export interface BackupKey {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: string;
}

function nonNegativeInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw badJson(`${what} must be a non-negative integer`);
  return v;
}

/** Parses one `KeyBackupData` object; `where` locates it in error messages. */
export function parseBackupKey(v: unknown, where: string): BackupKey {
  if (!isObject(v)) throw badJson(`${where} must be an object`);
  if (typeof v.is_verified !== "boolean") throw badJson(`${where}.is_verified must be a boolean`);
  if (!isObject(v.session_data)) throw badJson(`${where}.session_data must be an object`);
  return {
    first_message_index: nonNegativeInt(v.first_message_index, `${where}.first_message_index`),
    forwarded_count: nonNegativeInt(v.forwarded_count, `${where}.forwarded_count`),
    is_verified: v.is_verified,
    session_data: canonicalJson(v.session_data),
  };
}

/** Parses `{"sessions": {sessionId: KeyBackupData}}` (`RoomKeyBackup`). */
export function parseRoomBackup(v: unknown, where: string): Map<string, BackupKey> {
  if (!isObject(v) || !isObject(v.sessions)) throw badJson(`${where}.sessions must be an object`);
  const out = new Map<string, BackupKey>();
  for (const [sessionId, key] of Object.entries(v.sessions)) out.set(sessionId, parseBackupKey(key, `${where}.sessions.${sessionId}`));
  return out;
}

/** Parses the body of `PUT /room_keys/keys`: `{"rooms": {roomId: RoomKeyBackup}}`. */
export function parseAllRoomsBackup(body: unknown): Map<string, Map<string, BackupKey>> {
  if (!isObject(body) || !isObject(body.rooms)) throw badJson("rooms must be an object");
  const out = new Map<string, Map<string, BackupKey>>();
  for (const [roomId, room] of Object.entries(body.rooms)) out.set(roomId, parseRoomBackup(room, `rooms.${roomId}`));
  return out;
}

/**
 * Whether an uploaded copy of a session key replaces the stored one (spec order): the verified one wins; then
 * the lower `first_message_index`; then the lower `forwarded_count`. A copy equal on all three keeps the stored
 * one.
 */
export function shouldReplaceBackupKey(stored: BackupKey, uploaded: BackupKey): boolean {
  if (stored.is_verified !== uploaded.is_verified) return uploaded.is_verified;
  if (stored.first_message_index !== uploaded.first_message_index) {
    return uploaded.first_message_index < stored.first_message_index;
  }
  return uploaded.forwarded_count < stored.forwarded_count;
}

/**
 * Checks the body of `POST /room_keys/version` / `PUT /room_keys/version/{v}`; returns canonical auth_data.
 * The algorithm is opaque to the server (clients encrypt and decrypt), so any string is accepted, as Synapse does.
 */
export function parseBackupVersionBody(body: JsonLike): { algorithm: string; auth_data: string } {
  if (typeof body.algorithm !== "string") throw badJson("algorithm must be a string");
  if (!isObject(body.auth_data)) throw badJson("auth_data must be an object");
  return { algorithm: body.algorithm, auth_data: canonicalJson(body.auth_data) };
}

type JsonLike = Record<string, unknown>;
