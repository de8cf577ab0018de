/**
 * The RoomDO's event rows: insert, look up by ID or nid, and the auth-chain index. Synchronous SQLite only, so
 * every caller can use it inside one storage transaction.
 */
import type { PDU } from "../../src/protocol/events";
import { eventRefIds, isStateEvent } from "../../src/protocol/events";
import type { AuthEvent } from "../../src/protocol/auth/types";
import type { RoomVersion } from "../../src/protocol/room-versions";

export type EventRow = {
  nid: number;
  event_id: string;
  type: string;
  state_key: string | null;
  membership: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  json: string;
  stream_ordering: number | null;
  outlier: number;
  rejected: string | null;
  soft_failed: number;
  partial_state: number;
  state_before: number | null;
  state_after: number | null;
  redacts: string | null;
  redacted_by: string | null;
};

/** The columns the acceptance pipeline reads about an event (no JSON: cheap to fetch on the hot path). */
export type EventStatus = {
  nid: number;
  event_id: string;
  outlier: number;
  rejected: string | null;
  soft_failed: number;
  partial_state: number;
  state_after: number | null;
  depth: number;
  stream_ordering: number | null;
};

const STATUS_COLUMNS = "nid, event_id, outlier, rejected, soft_failed, partial_state, state_after, depth, stream_ordering";

export type NewEventRow = {
  eventId: string;
  pdu: PDU;
  streamOrdering: number | null;
  outlier: boolean;
  rejected: string | null;
  softFailed: boolean;
  partialState: boolean;
  stateBefore: number | null;
  stateAfter: number | null;
};

/** The target of a redaction event, wherever the room version puts it. */
export function redactsOf(pdu: PDU, version: RoomVersion): string | undefined {
  if (pdu.type !== "m.room.redaction") return undefined;
  const target = version.redactsInContent ? pdu.content.redacts : pdu.redacts;
  return typeof target === "string" ? target : undefined;
}

/** A stored PDU in the shape the auth rules and state resolution read. */
export function toAuthEvent(eventId: string, pdu: PDU, version: RoomVersion): AuthEvent {
  const event: AuthEvent = {
    event_id: eventId,
    type: pdu.type,
    sender: pdu.sender,
    content: pdu.content,
    origin_server_ts: pdu.origin_server_ts,
    prev_events: eventRefIds(pdu.prev_events),
    auth_events: eventRefIds(pdu.auth_events),
    depth: pdu.depth,
  };
  if (pdu.room_id !== undefined) event.room_id = pdu.room_id;
  // Read by the v8+ rule that a restricted join is signed by the authorising user's server.
  if (pdu.signatures) event.signatures = pdu.signatures;
  if (isStateEvent(pdu)) event.state_key = pdu.state_key;
  const redacts = redactsOf(pdu, version);
  if (redacts !== undefined) event.redacts = redacts;
  return event;
}

export class EventStore {
  /** Parsed events by nid; events are immutable apart from redaction, which clears the entry. */
  private readonly parsed = new Map<number, AuthEvent>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly version: () => RoomVersion,
  ) {}

  byId(eventId: string): EventRow | undefined {
    return this.sql.exec<EventRow>("SELECT * FROM events WHERE event_id = ?", eventId).toArray()[0];
  }

  byNid(nid: number): EventRow {
    return this.sql.exec<EventRow>("SELECT * FROM events WHERE nid = ?", nid).one();
  }

  statusById(eventId: string): EventStatus | undefined {
    return this.sql.exec<EventStatus>(`SELECT ${STATUS_COLUMNS} FROM events WHERE event_id = ?`, eventId).toArray()[0];
  }

  statusByNid(nid: number): EventStatus {
    return this.sql.exec<EventStatus>(`SELECT ${STATUS_COLUMNS} FROM events WHERE nid = ?`, nid).one();
  }

  nidOf(eventId: string): number | undefined {
    return this.sql.exec<{ nid: number }>("SELECT nid FROM events WHERE event_id = ?", eventId).toArray()[0]?.nid;
  }

  eventIdOf(nid: number): string {
    return this.sql.exec<{ event_id: string }>("SELECT event_id FROM events WHERE nid = ?", nid).one().event_id;
  }

  /** The event as the auth rules see it (cached). Redaction keeps every key the auth rules read. */
  authEvent(nid: number): AuthEvent {
    let event = this.parsed.get(nid);
    if (!event) {
      const row = this.byNid(nid);
      event = toAuthEvent(row.event_id, JSON.parse(row.json) as PDU, this.version());
      this.parsed.set(nid, event);
      if (this.parsed.size > 50_000) this.parsed.delete(this.parsed.keys().next().value!);
    }
    return event;
  }

  insert(row: NewEventRow): number {
    const { pdu } = row;
    const version = this.version();
    const membership =
      pdu.type === "m.room.member" && typeof pdu.content.membership === "string" ? pdu.content.membership : null;
    const nid = this.sql
      .exec<{ nid: number }>(
        `INSERT INTO events (event_id, type, state_key, membership, sender, depth, origin_server_ts, json,
           stream_ordering, outlier, rejected, soft_failed, partial_state, state_before, state_after, redacts,
           received_ts)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING nid`,
        row.eventId,
        pdu.type,
        isStateEvent(pdu) ? pdu.state_key : null,
        membership,
        pdu.sender,
        pdu.depth,
        pdu.origin_server_ts,
        JSON.stringify(pdu),
        row.streamOrdering,
        row.outlier ? 1 : 0,
        row.rejected,
        row.softFailed ? 1 : 0,
        row.partialState ? 1 : 0,
        row.stateBefore,
        row.stateAfter,
        redactsOf(pdu, version) ?? null,
        Date.now(),
      )
      .one().nid;
    for (const prev of new Set(eventRefIds(pdu.prev_events))) {
      this.sql.exec("INSERT INTO prev_edges (event_nid, prev_id) VALUES (?, ?)", nid, prev);
    }
    for (const auth of new Set(eventRefIds(pdu.auth_events))) {
      this.sql.exec("INSERT INTO auth_edges (event_nid, auth_id) VALUES (?, ?)", nid, auth);
    }
    if (isStateEvent(pdu)) this.indexAuthChain(nid, eventRefIds(pdu.auth_events));
    return nid;
  }

  /**
   * Records the auth chain of a state event: its auth events and their chains. Auth events not held are skipped
   * (partial state); their chains arrive when they do, through `reindexAuthChain`.
   */
  private indexAuthChain(nid: number, authIds: string[]): void {
    for (const authId of authIds) {
      const authNid = this.nidOf(authId);
      if (authNid === undefined) continue;
      this.sql.exec("INSERT OR IGNORE INTO auth_chain (event_nid, ancestor_nid) VALUES (?, ?)", nid, authNid);
      this.sql.exec(
        `INSERT OR IGNORE INTO auth_chain (event_nid, ancestor_nid)
         SELECT ?, ancestor_nid FROM auth_chain WHERE event_nid = ?`,
        nid,
        authNid,
      );
    }
  }

  /** The auth chain of an event (not including itself), as nids. */
  authChainNids(nid: number): number[] {
    const row = this.byNid(nid);
    if (row.state_key !== null) {
      return this.sql
        .exec<{ a: number }>("SELECT ancestor_nid AS a FROM auth_chain WHERE event_nid = ?", nid)
        .toArray()
        .map((r) => r.a);
    }
    // Non-state events are not indexed: their chain is their auth events' chains.
    const chain = new Set<number>();
    for (const { auth_id } of this.sql.exec<{ auth_id: string }>(
      "SELECT auth_id FROM auth_edges WHERE event_nid = ?",
      nid,
    )) {
      const authNid = this.nidOf(auth_id);
      if (authNid === undefined) continue;
      chain.add(authNid);
      for (const a of this.authChainNids(authNid)) chain.add(a);
    }
    return [...chain];
  }

  /** Drops cached parses (after a rollback or a redaction). */
  forget(nid?: number): void {
    if (nid === undefined) this.parsed.clear();
    else this.parsed.delete(nid);
  }
}
