/**
 * The checks every PDU from another server goes through before a RoomDO sees it (steps 1–3 of "Checks
 * performed on receipt of a PDU"): format for the room version, signatures of the required servers, content hash
 * (a mismatch means we were given, or must use, the redacted event). Used for pushed PDUs and for everything
 * fetched (missing events, auth chains, state).
 */
import type { PDU } from "../protocol/events";
import { eventRefIds } from "../protocol/events";
import { checkPduFormat } from "../protocol/pdu-format";
import { computeEventId, roomIdFromCreateEvent } from "../protocol/event-id";
import { checkContentHash } from "../protocol/hashes";
import { redactEvent } from "../protocol/redaction";
import type { RoomVersion } from "../protocol/room-versions";
import { verifyEventsSignatures, type KeyStore } from "./keys";

export type CheckedPdu =
  | { ok: true; pdu: PDU; eventId: string; redacted: boolean }
  | { ok: false; eventId: string | undefined; error: string };

/** A v12 create event carries no room_id: the room ID is derived from it. Whether `pdu` is the create event of `roomId`. */
export function isCreateEventOf(pdu: PDU, version: RoomVersion, roomId: string): boolean {
  if (!version.roomIdFromCreateEvent || pdu.type !== "m.room.create" || pdu.state_key !== "" || pdu.room_id !== undefined) return false;
  try {
    return roomIdFromCreateEvent(pdu, version) === roomId;
  } catch {
    return false;
  }
}

/** The event ID of a raw PDU if it can be computed (for error entries), else undefined. */
export function tryEventId(raw: unknown, version: RoomVersion): string | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  try {
    return computeEventId(raw, version);
  } catch {
    return undefined;
  }
}

/**
 * Checks raw PDUs of one room: format, `room_id` (must be `roomId`), signatures (verified together), content
 * hash (redacted on mismatch). Results are in input order.
 */
export async function checkPdus(
  raws: readonly unknown[],
  version: RoomVersion,
  roomId: string,
  keys: KeyStore,
): Promise<CheckedPdu[]> {
  const results: (CheckedPdu | undefined)[] = raws.map((raw) => {
    const format = checkPduFormat(raw, version);
    if (!format.ok) return { ok: false, eventId: tryEventId(raw, version), error: `invalid event: ${format.reason}` };
    const pdu = raw as PDU;
    let eventId: string;
    try {
      eventId = computeEventId(pdu, version);
    } catch (e) {
      return { ok: false, eventId: undefined, error: (e as Error).message };
    }
    if (pdu.room_id !== roomId && !isCreateEventOf(pdu, version, roomId)) {
      return { ok: false, eventId, error: `event is for room ${String(pdu.room_id)}, not ${roomId}` };
    }
    return undefined;
  });
  const pending = raws.map((raw, i) => ({ raw, i })).filter(({ i }) => results[i] === undefined);
  const signatures = await verifyEventsSignatures(
    pending.map(({ raw }) => ({ pdu: raw as object, roomVersion: version })),
    keys,
  );
  pending.forEach(({ raw, i }, j) => {
    const pdu = raw as PDU;
    const eventId = computeEventId(pdu, version);
    const sig = signatures[j]!;
    if (!sig.ok) {
      results[i] = { ok: false, eventId, error: `signature check failed: ${sig.reason}` };
      return;
    }
    if (checkContentHash(pdu)) {
      results[i] = { ok: true, pdu, eventId, redacted: false };
    } else {
      // Hash mismatch: use the redacted copy, as the spec says (its signatures and ID are unaffected).
      results[i] = { ok: true, pdu: redactEvent(pdu, version) as unknown as PDU, eventId, redacted: true };
    }
  });
  return results as CheckedPdu[];
}

/**
 * Orders events so that each comes after the events of the set it lists in `auth_events` (and, among
 * unrelated events, by depth): the order in which outliers can be stored.
 */
export function sortByAuthChain<T extends { pdu: PDU; eventId: string }>(events: readonly T[]): T[] {
  const byId = new Map(events.map((e) => [e.eventId, e]));
  const pending = new Map<string, number>();
  const children = new Map<string, string[]>();
  for (const e of events) {
    const deps = eventRefIds(e.pdu.auth_events).filter((id) => byId.has(id) && id !== e.eventId);
    pending.set(e.eventId, deps.length);
    for (const d of deps) (children.get(d) ?? children.set(d, []).get(d)!).push(e.eventId);
  }
  const byDepth = (a: string, b: string) => byId.get(a)!.pdu.depth - byId.get(b)!.pdu.depth || (a < b ? -1 : a > b ? 1 : 0);
  let ready = [...pending].filter(([, n]) => n === 0).map(([id]) => id).sort(byDepth);
  const out: T[] = [];
  while (ready.length > 0) {
    const id = ready.shift()!;
    out.push(byId.get(id)!);
    const next: string[] = [];
    for (const child of children.get(id) ?? []) {
      const n = pending.get(child)! - 1;
      pending.set(child, n);
      if (n === 0) next.push(child);
    }
    if (next.length) ready = [...ready, ...next].sort(byDepth);
  }
  // Cycles (impossible with hash-derived IDs) are left out.
  return out;
}
