/**
 * The RoomDO's side of application services (docs/appservices.md, "Interest").
 *
 * At persist time (Room.notify, inside the event's transaction) the room decides which appservices the event
 * interests and, for each, writes a row of its own interest log (`appservice_events`: appservice, stream
 * position) and an outbox row (consumer "appservice", target = appservice id, the position). The outbox row
 * coalesces like every other (positions, not payloads); the log says exactly which positions were decided
 * interesting, so the decision made at persist time is the one delivered, whatever the membership is later.
 * The AppServiceDO then pulls (`eventsAfter`) the logged events after its cursor for this room; rows at or
 * before the cursor it passes are deleted, since the AppServiceDO has committed them.
 *
 * An event interests an appservice when (Synapse's reading of the spec):
 * - its sender, or the state_key of an m.room.member event, is the appservice's sender or a local user in one
 *   of its user namespaces, or
 * - the room interests it: the room ID is in a rooms namespace, the canonical alias or an alt alias (current
 *   state) is in an alias namespace, or a local joined member (the `members` table) is one of its users.
 * The room-level answer is cached per current state group (membership and aliases only change with state);
 * a rolled-back transaction forgets the cache (`forget`).
 *
 * Ephemeral data (typing, receipts) follows the room-level rule: `roomInterested` names the appservices that
 * want it (those with `receive_ephemeral`).
 */
import type { AppServiceRegistry } from "./registry";
import type { AppService } from "./registration";
import type { ClientEvent, JsonObject, PDU } from "../protocol/events";
import { toClientEvent, isHiddenFromClients } from "../rooms/client-event";
import type { Room } from "../../durable-objects/room/room";
import type { Ephemeral } from "../../durable-objects/room/ephemeral";

export const APPSERVICE_SCHEMA = `
  CREATE TABLE IF NOT EXISTS appservice_events (
    as_id           TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (as_id, stream_ordering)
  ) WITHOUT ROWID;
`;

/** One event of the room for an appservice, in client format (JSON text), with its room stream position. */
export interface AppserviceEventRow {
  stream_ordering: number;
  json: string;
}

export class RoomAppservices {
  private cacheGroup: number | null | undefined = undefined;
  private cache = new Map<string, boolean>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly room: Room,
    private readonly registry: () => AppServiceRegistry,
  ) {}

  /** Creates the interest log. Call from the RoomDO constructor's blockConcurrencyWhile (idempotent). */
  migrate(): void {
    this.sql.exec(APPSERVICE_SCHEMA);
  }

  /** Drops cached answers (after a rolled-back transaction: state groups may be reused). */
  forget(): void {
    this.cacheGroup = undefined;
    this.cache.clear();
  }

  /** Appservices interested in the accepted event at `position`. Call inside its transaction (Room.notify). */
  interestedIn(pdu: PDU): AppService[] {
    const registry = this.registry();
    if (registry.size === 0 || isHiddenFromClients(pdu.type)) return [];
    return registry.all.filter(
      (as) =>
        as.url !== null &&
        (registry.interestedInUser(as, pdu.sender) ||
        (pdu.type === "m.room.member" && typeof pdu.state_key === "string" && registry.interestedInUser(as, pdu.state_key)) ||
        this.roomInterests(as)),
    );
  }

  /** Logs the event for each interested appservice and writes its outbox row. Call inside the transaction. */
  record(pdu: PDU, position: number, addOutbox: (asId: string) => void): void {
    for (const as of this.interestedIn(pdu)) {
      this.sql.exec("INSERT OR IGNORE INTO appservice_events (as_id, stream_ordering) VALUES (?, ?)", as.id, position);
      addOutbox(as.id);
    }
  }

  /** Appservices with `receive_ephemeral` that the room (as a whole) interests: typing and receipts go there. */
  ephemeralTargets(): AppService[] {
    const registry = this.registry();
    return registry.all.filter((as) => as.url !== null && as.receiveEphemeral && this.roomInterests(as));
  }

  /**
   * Typing and receipts of the room's ephemeral stream after `after`, as appservice ephemeral events (JSON
   * text, with `room_id`), and the position reached. Private receipts only of the appservice's own users (spec).
   * Nothing if the room no longer interests the appservice.
   */
  ephemeralAfter(asId: string, after: number, ephemeral: Ephemeral): { events: string[]; position: number } {
    const position = ephemeral.position;
    const registry = this.registry();
    const as = registry.get(asId);
    if (!as || !as.receiveEphemeral || !this.roomInterests(as) || position <= after) return { events: [], position };
    const roomId = this.room.roomId;
    const events: string[] = [];
    if (ephemeral.typingPosition > after) {
      events.push(JSON.stringify({ type: "m.typing", room_id: roomId, content: { user_ids: ephemeral.typingUsers() } }));
    }
    const rows = this.sql
      .exec<{ user_id: string; receipt_type: string; event_id: string; data: string }>(
        "SELECT user_id, receipt_type, event_id, data FROM receipts WHERE eph_pos > ? AND eph_pos <= ? ORDER BY eph_pos",
        after, position,
      )
      .toArray()
      .filter((r) => r.receipt_type !== "m.read.private" || registry.interestedInUser(as, r.user_id));
    if (rows.length) {
      const content: Record<string, Record<string, Record<string, unknown>>> = {};
      for (const r of rows) ((content[r.event_id] ??= {})[r.receipt_type] ??= {})[r.user_id] = JSON.parse(r.data) as unknown;
      events.push(JSON.stringify({ type: "m.receipt", room_id: roomId, content }));
    }
    return { events, position };
  }

  /** Whether the room as a whole interests `as` (room ID, aliases, a local joined member), cached per state. */
  roomInterests(as: AppService): boolean {
    const group = this.room.currentStateGroup;
    if (group !== this.cacheGroup) {
      this.cache.clear();
      this.cacheGroup = group;
    }
    let v = this.cache.get(as.id);
    if (v === undefined) {
      v = this.computeRoomInterest(as);
      this.cache.set(as.id, v);
    }
    return v;
  }

  private computeRoomInterest(as: AppService): boolean {
    const registry = this.registry();
    if (registry.roomInNamespace(as, this.room.roomId)) return true;
    if (as.namespaces.aliases.length > 0) {
      for (const alias of this.currentAliases()) if (registry.aliasInNamespace(as, alias)) return true;
    }
    const members = this.sql.exec<{ user_id: string }>(
      "SELECT user_id FROM members WHERE server = ? AND membership = 'join'",
      registry.serverName,
    );
    for (const { user_id } of members) if (registry.interestedInUser(as, user_id)) return true;
    return false;
  }

  /** The canonical alias and alt aliases of the current state. */
  private currentAliases(): string[] {
    const row = this.sql
      .exec<{ json: string }>(
        `SELECT e.json FROM current_state c JOIN state_keys k ON k.id = c.key_id JOIN events e ON e.nid = c.event_nid
         WHERE k.type = 'm.room.canonical_alias' AND k.state_key = ''`,
      )
      .toArray()[0];
    if (!row) return [];
    const content = (JSON.parse(row.json) as PDU).content;
    const out: string[] = [];
    if (typeof content.alias === "string") out.push(content.alias);
    if (Array.isArray(content.alt_aliases)) for (const a of content.alt_aliases) if (typeof a === "string") out.push(a);
    return out;
  }

  /**
   * The events logged for `asId` after `after` (at most `limit`), in client format, and the position the
   * appservice may advance its cursor to. Rows at or before `after` are deleted first: the caller passes the
   * cursor it has committed, so those were delivered into its queue.
   */
  eventsAfter(asId: string, after: number, limit: number): { events: AppserviceEventRow[]; position: number } {
    this.sql.exec("DELETE FROM appservice_events WHERE as_id = ? AND stream_ordering <= ?", asId, after);
    const rows = this.sql
      .exec<{ stream_ordering: number; json: string; event_id: string; state_before: number | null; received_ts: number; type: string; state_key: string | null }>(
        `SELECT a.stream_ordering, e.json, e.event_id, e.state_before, e.received_ts, e.type, e.state_key
         FROM appservice_events a JOIN events e ON e.stream_ordering = a.stream_ordering
         WHERE a.as_id = ? AND a.stream_ordering > ? ORDER BY a.stream_ordering LIMIT ?`,
        asId, after, limit,
      )
      .toArray();
    const roomId = this.room.roomId;
    const version = this.room.version;
    const now = Date.now();
    const events = rows.map((r) => {
      const pdu = JSON.parse(r.json) as PDU;
      const extras: { receivedTs: number; now: number; prevContent?: JsonObject; replacesState?: string } = { receivedTs: r.received_ts, now };
      if (r.state_key !== null) {
        const prev = this.previousState(r.type, r.state_key, r.state_before);
        if (prev) {
          extras.prevContent = prev.content;
          extras.replacesState = prev.event_id;
        }
      }
      const ev: ClientEvent = toClientEvent(pdu, r.event_id, roomId, version, extras);
      return { stream_ordering: r.stream_ordering, json: JSON.stringify(ev) };
    });
    // Fewer than asked: everything logged up to the room's current position has been handed out.
    const position = rows.length < limit ? Math.max(after, this.room.streamPosition) : rows[rows.length - 1]!.stream_ordering;
    return { events, position };
  }

  /** The state event a state event replaced (for `unsigned.prev_content`). */
  private previousState(type: string, stateKey: string, stateBefore: number | null): { event_id: string; content: JsonObject } | undefined {
    const keyId = this.room.states.existingKeyId(type, stateKey);
    if (keyId === undefined) return undefined;
    const nid = this.room.states.load(stateBefore).get(keyId);
    if (nid === undefined) return undefined;
    const ev = this.room.events.authEvent(nid);
    return { event_id: ev.event_id, content: ev.content };
  }
}
