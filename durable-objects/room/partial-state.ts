/**
 * Partial state ("faster joins", MSC3706/MSC3902): the synchronous bookkeeping of a room joined without its
 * member events, and of each event accepted against that incomplete state.
 *
 * The room row (`meta.partial_state`) says the room is partial, which server it was joined through and which
 * servers were in it. Each event accepted while partial carries `events.partial_state = 1`. The resync loop
 * (RoomDO alarm, `resync.ts`) takes those events one by one in the order they were stored, fetches the full state
 * before each from a resident server, and calls `complete`: one transaction that re-checks the event against
 * the full state (an accepted event may become rejected, and vice versa), stores its full state, and clears its
 * flag. `finish` un-partial-states the room in the same transaction that proves no flagged event remains.
 *
 * Because these are transactions of the RoomDO, and so is every event persisted meanwhile, an event can never be
 * computed against partial state and stored after the room became fully stated: the race the reference server
 * detects with a foreign-key failure and retries cannot occur here.
 */
import type { Room } from "./room";
import type { NidStateMap } from "./state-store";
import type { EventRow } from "./event-store";
import { reindexRelation } from "./relations"; // relations (docs/relations.md)

/** The room row of a partially stated room. */
export interface PartialStateInfo {
  /** The join event that the partial state came with. */
  join_event_id: string;
  /** Servers with joined members per the state before the join (`servers_in_room`), then any seen since. */
  servers_in_room: string[];
  /** The server that answered `send_join`. */
  joined_via: string;
  started_ts: number;
  /** Rotation: index into servers_in_room of the next server to ask. */
  next_server: number;
  /** Progress, for the admin view and logs. */
  events_completed: number;
  state_events_fetched: number;
  /** Consecutive failed steps (for backoff). */
  failures: number;
  last_error?: string;
}

export type CompleteResult =
  | { status: "completed"; event_id: string; rejected_before: boolean; rejected_now: boolean }
  | { status: "not_partial"; event_id: string }
  | { status: "missing"; event_id: string; missing: string[] };

const META_KEY = "partial_state";

export class PartialState {
  constructor(
    private readonly room: Room,
    private readonly sql: SqlStorage,
    /** Called when the room becomes fully stated (wakes requests waiting for full state). */
    private readonly onFullyStated: () => void = () => {},
  ) {}

  /** The room row, or undefined when the room is fully stated. */
  get info(): PartialStateInfo | undefined {
    const raw = this.room.meta(META_KEY);
    return raw === undefined ? undefined : (JSON.parse(raw) as PartialStateInfo);
  }

  get isPartial(): boolean {
    return this.room.meta(META_KEY) !== undefined;
  }

  /** Marks the room partially stated. Call in the transaction that persists the join. */
  begin(info: Pick<PartialStateInfo, "join_event_id" | "servers_in_room" | "joined_via">, now = Date.now()): void {
    this.write({ ...info, started_ts: now, next_server: 0, events_completed: 0, state_events_fetched: 0, failures: 0 });
  }

  update(patch: Partial<PartialStateInfo>): void {
    const info = this.info;
    if (info) this.write({ ...info, ...patch });
  }

  /** Adds servers seen since the join (events from them), so outgoing events reach them too. */
  addServers(servers: Iterable<string>): void {
    const info = this.info;
    if (!info) return;
    const all = new Set(info.servers_in_room);
    let changed = false;
    for (const s of servers) if (!all.has(s)) (all.add(s), (changed = true));
    if (changed) this.write({ ...info, servers_in_room: [...all] });
  }

  /** Timeline events still flagged partial. */
  eventsLeft(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM events WHERE partial_state = 1 AND outlier = 0").one().n;
  }

  /** The next event to resync: the earliest stored (its prev events were stored, and resynced, before it). */
  next(): { nid: number; event_id: string } | undefined {
    return this.sql
      .exec<{ nid: number; event_id: string }>(
        "SELECT nid, event_id FROM events WHERE partial_state = 1 AND outlier = 0 ORDER BY nid LIMIT 1",
      )
      .toArray()[0];
  }

  /**
   * Gives `eventId` its full state: `stateIds` is the complete state before it (event IDs, all held, as outliers
   * at least). Re-checks the event against it, records the result and clears the event's partial flag. Must be
   * called inside a storage transaction.
   */
  complete(eventId: string, stateIds: readonly string[]): CompleteResult {
    const row = this.room.events.byId(eventId);
    if (!row || row.partial_state === 0 || row.outlier === 1) return { status: "not_partial", event_id: eventId };

    const full: NidStateMap = new Map();
    const missing: string[] = [];
    for (const id of stateIds) {
      const r = this.room.events.statusById(id);
      if (!r) {
        missing.push(id);
        continue;
      }
      if (r.rejected !== null) continue; // a rejected event is never state
      const ev = this.room.events.authEvent(r.nid);
      if (ev.state_key === undefined) continue;
      full.set(this.room.states.keyId(ev.type, ev.state_key), r.nid);
    }
    if (missing.length > 0) return { status: "missing", event_id: eventId, missing };

    const before = this.room.states.createFromState(row.state_before, full);
    return this.completeWith(row, before);
  }

  /**
   * Faster joins (resync order): the earliest flagged event none of whose prev events is itself flagged, so
   * events are completed parents first — also when some arrived before their prev events (stored first as
   * outliers, placed later with a smaller nid). A DAG always has one while any event is flagged, so the resync
   * terminates. `local`: all its prev events are held in the timeline (and, not being flagged, fully stated),
   * so its full state is theirs resolved, with no network (`completeFromPrevs`); otherwise (the join, whose
   * prev events we never held) a resident is asked for the state (`complete`).
   */
  nextReady(): { nid: number; event_id: string; local: boolean } | undefined {
    const row = this.sql
      .exec<{ nid: number; event_id: string }>(
        `SELECT e.nid, e.event_id FROM events e WHERE e.partial_state = 1 AND e.outlier = 0
           AND NOT EXISTS (SELECT 1 FROM prev_edges p JOIN events pe ON pe.event_id = p.prev_id
                           WHERE p.event_nid = e.nid AND pe.partial_state = 1 AND pe.outlier = 0)
         ORDER BY e.nid LIMIT 1`,
      )
      .toArray()[0];
    if (!row) return undefined;
    const prevs = this.sql
      .exec<{ held: number }>(
        `SELECT (pe.nid IS NOT NULL AND pe.outlier = 0 AND pe.state_after IS NOT NULL) AS held
           FROM prev_edges p LEFT JOIN events pe ON pe.event_id = p.prev_id WHERE p.event_nid = ?`,
        row.nid,
      )
      .toArray();
    return { ...row, local: prevs.length > 0 && prevs.every((p) => p.held === 1) };
  }

  /**
   * Faster joins: completes `eventId` from its prev events' (full) states — the state before it is their
   * resolution, exactly as when an event is accepted. "missing" when a prev event is not held in the timeline
   * or still partial (ask a resident instead). Must be called inside a storage transaction.
   */
  completeFromPrevs(eventId: string): CompleteResult {
    const row = this.room.events.byId(eventId);
    if (!row || row.partial_state === 0 || row.outlier === 1) return { status: "not_partial", event_id: eventId };
    const groups: (number | null)[] = [];
    const missing: string[] = [];
    for (const { prev_id } of this.sql.exec<{ prev_id: string }>("SELECT prev_id FROM prev_edges WHERE event_nid = ?", row.nid).toArray()) {
      const prev = this.room.events.statusById(prev_id);
      if (!prev || prev.outlier === 1 || prev.state_after === null || prev.partial_state === 1) missing.push(prev_id);
      else groups.push(prev.state_after);
    }
    if (missing.length > 0 || groups.length === 0) return { status: "missing", event_id: eventId, missing };
    return this.completeWith(row, this.room.resolveGroups(groups));
  }

  /** Re-checks a flagged event against its full state `before` (a state group), records it, clears the flag. */
  private completeWith(row: EventRow, before: number | null): CompleteResult {
    const eventId = row.event_id;
    const event = this.room.events.authEvent(row.nid);
    const rejectedBefore = row.rejected !== null;
    // A failure against its own auth events does not depend on the room's state: it stays.
    let rejected = row.rejected !== null && row.rejected.startsWith("auth events:") ? row.rejected : null;
    if (rejected === null) {
      const result = this.room.checkAuthAgainst(event, this.room.states.load(before));
      if (!result.allowed) rejected = `state before event: ${result.reason}`;
    }
    let after = before;
    if (rejected === null && event.state_key !== undefined) {
      const keyId = this.room.states.keyId(event.type, event.state_key);
      after = this.room.states.create(before, new Map([[keyId, row.nid]]), new Map(this.room.states.load(before)).set(keyId, row.nid));
    }
    // An event that becomes accepted is new to clients: it gets a stream position now.
    const streamOrdering = rejected === null && row.stream_ordering === null ? this.room.streamPosition + 1 : row.stream_ordering;
    this.sql.exec(
      "UPDATE events SET state_before = ?, state_after = ?, rejected = ?, partial_state = 0, stream_ordering = ? WHERE nid = ?",
      before, after, rejected, streamOrdering, row.nid,
    );
    this.room.events.forget(row.nid);
    const rejectedNow = rejected !== null;
    if (rejectedNow !== rejectedBefore) this.room.replaceInExtremities(row.nid);
    if (rejectedNow !== rejectedBefore) reindexRelation(this.sql, row.nid); // relations (docs/relations.md)
    this.room.refreshCurrentState();
    if (rejectedNow !== rejectedBefore) this.room.notifyLocalMembers();

    const info = this.info;
    if (info) this.write({ ...info, events_completed: info.events_completed + 1, failures: 0, last_error: undefined });
    return { status: "completed", event_id: eventId, rejected_before: rejectedBefore, rejected_now: rejectedNow };
  }

  /**
   * Un-partial-states the room if no flagged event remains: in this same transaction, so no event can be stored
   * against partial state afterwards. Returns whether the room is now fully stated.
   */
  finish(): boolean {
    if (!this.isPartial) return true;
    if (this.eventsLeft() > 0) return false;
    this.sql.exec("DELETE FROM meta WHERE key = ?", META_KEY);
    // Faster joins: from now on the full membership says which servers get our events.
    this.sql.exec("DELETE FROM meta WHERE key = 'servers_in_room'");
    this.room.refreshCurrentState();
    // Members' sync streams now include the room in eager syncs; tell them.
    this.room.notifyLocalMembers();
    // Waiters resume after this transaction commits (promise continuations run later).
    this.onFullyStated();
    return true;
  }

  private write(info: PartialStateInfo): void {
    this.sql.exec(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      META_KEY,
      JSON.stringify(info),
    );
    // Outgoing events go to the servers in the room at the join plus those seen since (Room.notify reads this).
    this.sql.exec(
      "INSERT INTO meta (key, value) VALUES ('servers_in_room', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      info.servers_in_room.join(","),
    );
  }
}
