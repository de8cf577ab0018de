/**
 * A room's events, DAG and state: the synchronous core of the RoomDO.
 *
 * Every method that writes runs inside one `transactionSync` and never awaits, so the state an event was
 * checked against is exactly the state it is committed on top of. Concurrent requests to the DO interleave only
 * between these transactions: two sends can never pick the same prev_events, and no other writer exists.
 */
import type { JsonObject, PDU, StateMap } from "../../src/protocol/events";
import { eventRefIds, isStateEvent, stateKey } from "../../src/protocol/events";
import type { AuthEvent, AuthStateLookup } from "../../src/protocol/auth/types";
import { checkEventAuth, checkAuthEventsSelection, authEventTypesFor, type AuthEventLike } from "../../src/protocol/auth";
import { userPowerLevel, powerLevelsFromContent } from "../../src/protocol/auth/power-levels";
import { resolveState } from "../../src/protocol/state-res";
import type { StateResEventStore } from "../../src/protocol/state-res/types";
import type { RoomVersion } from "../../src/protocol/room-versions";
import { roomVersion as lookupRoomVersion } from "../../src/protocol/room-versions";
import { addContentHash, signEvent } from "../../src/protocol/hashes";
import { computeEventId, generateEventIdV1 } from "../../src/protocol/event-id";
import { redactEvent } from "../../src/protocol/redaction";
import { checkPduFormat } from "../../src/protocol/pdu-format";
import { verifyJsonSignature, type SigningKey } from "../../src/protocol/signing";
import { serverNameOf } from "../../src/protocol/identifiers";
import { EventStore, toAuthEvent, redactsOf, type EventRow, type EventStatus } from "./event-store";
import { StateStore, diffStates, type NidStateMap } from "./state-store";
import { Outbox, Timers } from "./outbox";
import { indexRelation, unindexRelation } from "./relations"; // relations (docs/relations.md)
import { indexEvent, SEARCH_INDEX_DELAY_MS, unindexEvent } from "./search-index"; // search (docs/search.md)

/** The RoomDO task that indexes queued events (search-index.ts, `flushSearchIndex`). */
export const SEARCH_INDEX_TASK = "search_index";

/** The most prev_events a local event references (the spec allows 20). */
export const MAX_PREV_EVENTS = 10;
/** The largest depth the spec allows. */
const MAX_DEPTH = Number.MAX_SAFE_INTEGER;

/** What a local user asks to send. */
export interface EventTemplate extends AuthEventLike {
  /** Redaction target (placed in `content` or at the top level according to the room version). */
  redacts?: string;
  /** Timestamp massaging for appservices; defaults to now. */
  origin_server_ts?: number;
}

/** Where a new event goes in the DAG (`Room.placeNewEvent`). */
export interface NewEventPlacement {
  prevIds: string[];
  authIds: string[];
  depth: number;
  /** The state before the event (what its auth is checked against). */
  stateBefore: NidStateMap;
  /** `prev_events` / `auth_events` as the room version writes them. */
  prev_events: unknown[];
  auth_events: unknown[];
}

/** How an incoming event fared. */
export type Outcome =
  | { status: "accepted"; event_id: string; stream_ordering: number }
  | { status: "soft_failed"; event_id: string }
  | { status: "rejected"; event_id: string; reason: string }
  | { status: "duplicate"; event_id: string }
  | { status: "missing_prevs"; event_id: string; missing: string[] }
  | { status: "missing_auth"; event_id: string; missing: string[] }
  | { status: "invalid"; event_id?: string; reason: string };

/** How storing an outlier fared (federation: events fetched for a state or an auth chain). */
export type OutlierOutcome =
  | { status: "stored"; event_id: string }
  | { status: "rejected"; event_id: string; reason: string }
  | { status: "duplicate"; event_id: string }
  | { status: "missing_auth"; event_id: string; missing: string[] }
  | { status: "invalid"; event_id?: string; reason: string };

export interface AcceptOptions {
  /** A local user's event: no soft-fail check (the sender acted on the current state). */
  local?: boolean;
  /** States standing in for prev events that could not be fetched (see `prevStateGroups`). */
  prevStates?: ReadonlyMap<string, readonly string[]>;
  /** The stand-in states are partial (a faster join's state): the event is accepted with partial state. */
  partialState?: boolean;
  /**
   * Federation backfill: a past event placed in the DAG. It takes a negative stream ordering (below every other
   * event, so incremental syncs never report it as new), is not soft-failed, and changes neither the forward
   * extremities nor the current state, nor notifies anyone.
   */
  historical?: boolean;
}

/** A lookup that falls back to `events` (by type and state key) where `lookup` has nothing. */
function withFallback(lookup: AuthStateLookup, events: readonly AuthEvent[]): AuthStateLookup {
  if (events.length === 0) return lookup;
  const byKey = new Map<string, AuthEvent>();
  for (const e of events) if (e.state_key !== undefined) byKey.set(stateKey(e.type, e.state_key), e);
  return (type, sk) => lookup(type, sk) ?? byKey.get(stateKey(type, sk));
}

/** Raised for a local event the rules forbid; nothing is persisted. */
export class ForbiddenEvent extends Error {
  override readonly name = "ForbiddenEvent";
}

export class RoomNotFound extends Error {
  override readonly name = "RoomNotFound";
}

export interface RoomDeps {
  sql: SqlStorage;
  storage: DurableObjectStorage;
  serverName: string;
  signingKey: () => SigningKey;
  outbox: Outbox;
  timers: Timers;
  /** More forward extremities than this trigger a dummy event that merges them. */
  dummyEventThreshold: number;
}

export class Room {
  readonly events: EventStore;
  readonly states: StateStore;
  private readonly sql: SqlStorage;
  /** Application services (src/appservices/room-interest.ts): set by the RoomDO, called by `notify` in the event's transaction. */
  appserviceHook: ((pdu: PDU, position: number) => void) | undefined;
  private cachedVersion: RoomVersion | undefined;
  private cachedRoomId: string | undefined;

  constructor(private readonly deps: RoomDeps) {
    this.sql = deps.sql;
    this.events = new EventStore(deps.sql, () => this.version);
    this.states = new StateStore(deps.sql);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Room metadata

  get exists(): boolean {
    return this.meta("room_id") !== undefined;
  }

  get roomId(): string {
    this.cachedRoomId ??= this.meta("room_id");
    if (this.cachedRoomId === undefined) throw new RoomNotFound("room does not exist here");
    return this.cachedRoomId;
  }

  get version(): RoomVersion {
    if (!this.cachedVersion) {
      const id = this.meta("room_version");
      if (id === undefined) throw new RoomNotFound("room does not exist here");
      const v = lookupRoomVersion(id);
      if (!v) throw new Error(`unknown room version ${id}`);
      this.cachedVersion = v;
    }
    return this.cachedVersion;
  }

  meta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }

  /** Records the room's identity. Only the first call has an effect. */
  initialise(roomId: string, version: RoomVersion): void {
    const existing = this.meta("room_id");
    if (existing !== undefined && existing !== roomId) throw new Error(`room DO holds ${existing}, not ${roomId}`);
    this.setMeta("room_id", roomId);
    this.setMeta("room_version", version.id);
    this.cachedRoomId = roomId;
    this.cachedVersion = version;
  }

  /** The highest stream position used so far (0 for an empty room). */
  get streamPosition(): number {
    return this.sql.exec<{ p: number | null }>("SELECT max(stream_ordering) AS p FROM events").one().p ?? 0;
  }

  /** Federation backfill: the next position below every event held (negative; see AcceptOptions.historical). */
  historicalPosition(): number {
    return Math.min(0, this.sql.exec<{ p: number | null }>("SELECT min(stream_ordering) AS p FROM events").one().p ?? 0) - 1;
  }

  get currentStateGroup(): number | null {
    const v = this.meta("current_state_group");
    return v === undefined ? null : Number(v);
  }

  // ---------------------------------------------------------------------------------------------------------
  // State access

  /** An auth-rule lookup over a state held as nids. */
  lookupIn(state: NidStateMap): AuthStateLookup {
    return (type, sk) => {
      const keyId = this.states.existingKeyId(type, sk);
      if (keyId === undefined) return undefined;
      const nid = state.get(keyId);
      return nid === undefined ? undefined : this.events.authEvent(nid);
    };
  }

  currentState(): NidStateMap {
    return this.states.load(this.currentStateGroup);
  }

  /** Converts a nid state map to the protocol's StateMap (state key → event ID). */
  toStateMap(state: NidStateMap): StateMap {
    const out: StateMap = new Map();
    for (const [keyId, nid] of state) {
      const [type, sk] = this.keyOf(keyId);
      out.set(stateKey(type, sk), this.events.authEvent(nid).event_id);
    }
    return out;
  }

  private readonly keyNames = new Map<number, [string, string]>();
  keyOf(keyId: number): [string, string] {
    let k = this.keyNames.get(keyId);
    if (!k) {
      const r = this.sql.exec<{ type: string; state_key: string }>("SELECT type, state_key FROM state_keys WHERE id = ?", keyId).one();
      k = [r.type, r.state_key];
      this.keyNames.set(keyId, k);
    }
    return k;
  }

  private fromStateMap(state: StateMap): NidStateMap {
    const out: NidStateMap = new Map();
    for (const [key, eventId] of state) {
      const i = key.indexOf("\u0000");
      const nid = this.events.nidOf(eventId);
      if (nid === undefined) continue; // unknown events cannot be state (partial state keeps only what it holds)
      out.set(this.states.keyId(key.slice(0, i), key.slice(i + 1)), nid);
    }
    return out;
  }

  /**
   * The state group resolving the given groups. Identical inputs short-circuit; otherwise state resolution runs
   * and the result is stored as a child of the first group.
   */
  resolveGroups(groups: readonly (number | null)[]): number | null {
    const distinct = [...new Set(groups)];
    if (distinct.length === 1) return distinct[0]!;
    // The same set of forks is often resolved repeatedly (each new event on one fork re-resolves current state).
    const cacheKey = distinct.map(String).sort().join(",");
    const cached = this.resolved.get(cacheKey);
    if (cached !== undefined) return cached;
    const maps = distinct.map((g) => this.states.load(g));
    const resolved = this.fromStateMap(
      resolveState(maps.map((m) => this.toStateMap(m)), this.version, this.stateResStore()),
    );
    const group = this.states.createFromState(distinct[0]!, resolved);
    this.resolved.set(cacheKey, group);
    if (this.resolved.size > 256) this.resolved.delete(this.resolved.keys().next().value!);
    return group;
  }
  /** Resolutions already stored: sorted input groups → result group. Cleared with the state cache on rollback. */
  private readonly resolved = new Map<string, number | null>();

  /** Forgets in-memory caches that may describe rows of a rolled-back transaction. */
  forgetCaches(): void {
    this.states.clearCache();
    this.events.forget();
    this.resolved.clear();
  }

  private stateResStore(): StateResEventStore {
    return {
      getEvent: (id) => {
        const nid = this.events.nidOf(id);
        return nid === undefined ? undefined : this.events.authEvent(nid);
      },
      isRejected: (id) => this.events.statusById(id)?.rejected != null,
    };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Accepting events

  /**
   * Runs the acceptance pipeline for an event whose signatures and hashes the caller has checked:
   * format → auth against its auth events → auth against the state before it → soft-fail against the current
   * state. Rejected events are stored as rejected; soft-failed ones are stored but never served or built upon.
   * Must be called inside a storage transaction.
   */
  accept(pdu: PDU, opts: AcceptOptions = {}): Outcome {
    const version = this.version;
    const format = checkPduFormat(pdu, version);
    if (!format.ok) return { status: "invalid", reason: format.reason };
    const eventId = computeEventId(pdu, version);
    if (pdu.room_id !== undefined && pdu.room_id !== this.roomId) {
      return { status: "invalid", event_id: eventId, reason: "event is for another room" };
    }
    const existing = this.events.statusById(eventId);
    if (existing && !existing.outlier) return { status: "duplicate", event_id: eventId };

    const authEvent = toAuthEvent(eventId, pdu, version);
    const authCheck = this.checkAgainstAuthEvents(authEvent, pdu);
    if (authCheck.status === "missing_auth") return { ...authCheck, event_id: eventId };

    const prevs = this.prevStateGroups(pdu, opts.prevStates);
    if (prevs.status !== "ok") return { ...prevs, event_id: eventId };
    if (opts.partialState) prevs.partialState = true;
    const stateBefore = this.resolveGroups(prevs.groups.length ? prevs.groups : [null]);

    let rejected = authCheck.status === "rejected" ? authCheck.reason : null;
    if (rejected === null) {
      let lookup = this.lookupIn(this.states.load(stateBefore));
      // Partial state lacks most remote memberships: the event's own (already checked) auth events fill the gaps.
      if (prevs.partialState) lookup = withFallback(lookup, authCheck.status === "ok" ? authCheck.authEvents : []);
      const result = checkEventAuth(authEvent, lookup, version, this.authOptions());
      if (!result.allowed) rejected = `state before event: ${result.reason}`;
    }
    // No soft-failing while the room has partial state: the current state cannot be trusted to judge.
    let softFailed = false;
    if (rejected === null && !opts.local && !opts.historical && this.meta("partial_state") === undefined) {
      const result = checkEventAuth(authEvent, this.lookupIn(this.currentState()), version, this.authOptions());
      softFailed = !result.allowed;
    }
    return this.commit(eventId, pdu, {
      stateBefore, rejected, softFailed, partialState: prevs.partialState, replacesOutlier: existing,
      historical: opts.historical === true, // federation backfill
    });
  }

  /**
   * The state groups after each prev event. A prev event not held in the timeline may be stood in for by its
   * state (`prevStates`: event IDs, all held at least as outliers), when the federation layer could not fetch it.
   */
  private prevStateGroups(
    pdu: PDU,
    prevStates?: ReadonlyMap<string, readonly string[]>,
  ):
    | { status: "ok"; groups: (number | null)[]; partialState: boolean }
    | { status: "missing_prevs" | "missing_auth"; missing: string[] } {
    const groups: (number | null)[] = [];
    const missing: string[] = [];
    let partialState = false;
    for (const id of eventRefIds(pdu.prev_events)) {
      const row = this.events.statusById(id);
      if (row && !row.outlier && row.state_after !== null) {
        groups.push(row.state_after);
        partialState ||= row.partial_state === 1;
        continue;
      }
      const ids = prevStates?.get(id);
      if (!ids) {
        missing.push(id);
        continue;
      }
      const state: NidStateMap = new Map();
      const unknownIds: string[] = [];
      for (const stateId of ids) {
        const r = this.events.byId(stateId);
        if (!r) unknownIds.push(stateId);
        else if (r.rejected === null && r.state_key !== null) state.set(this.states.keyId(r.type, r.state_key), r.nid);
      }
      if (unknownIds.length > 0) return { status: "missing_auth", missing: unknownIds };
      groups.push(this.states.createFromState(this.currentStateGroup, state));
    }
    if (missing.length > 0) return { status: "missing_prevs", missing };
    return { status: "ok", groups, partialState };
  }

  /** Rule 2 of the auth rules plus the check against the event's own auth events. */
  private checkAgainstAuthEvents(
    event: AuthEvent,
    pdu: PDU,
  ): { status: "ok"; authEvents: AuthEvent[] } | { status: "rejected"; reason: string } | { status: "missing_auth"; missing: string[] } {
    const authIds = eventRefIds(pdu.auth_events);
    const authEvents: AuthEvent[] = [];
    const missing: string[] = [];
    for (const id of authIds) {
      const row = this.events.statusById(id);
      if (!row) {
        missing.push(id);
        continue;
      }
      if (row.rejected !== null) return { status: "rejected", reason: `auth event ${id} was rejected` };
      authEvents.push(this.events.authEvent(row.nid));
    }
    if (missing.length > 0) return { status: "missing_auth", missing };
    const create = this.createEvent();
    const selection = checkAuthEventsSelection(event, authEvents, this.version, create);
    if (!selection.allowed) return { status: "rejected", reason: `auth events: ${selection.reason}` };
    const byKey = new Map<string, AuthEvent>();
    for (const e of authEvents) if (e.state_key !== undefined) byKey.set(stateKey(e.type, e.state_key), e);
    // v12 create events are never listed in auth_events: the room ID names them.
    if (create && !byKey.has(stateKey("m.room.create", ""))) byKey.set(stateKey("m.room.create", ""), create);
    const result = checkEventAuth(event, (t, k) => byKey.get(stateKey(t, k)), this.version, this.authOptions());
    return result.allowed ? { status: "ok", authEvents } : { status: "rejected", reason: `auth events: ${result.reason}` };
  }

  private authOptions() {
    return { verifyJsonSignature };
  }

  /** The room's create event, once known. */
  createEvent(): AuthEvent | undefined {
    // The create event never changes once accepted, so its nid is looked up once.
    this.createNid ??= this.sql
      .exec<{ nid: number }>("SELECT nid FROM events WHERE type = 'm.room.create' AND state_key = '' AND rejected IS NULL LIMIT 1")
      .toArray()[0]?.nid;
    return this.createNid === undefined ? undefined : this.events.authEvent(this.createNid);
  }
  private createNid: number | undefined;

  /** Writes an event that passed (or failed) the checks, and everything that follows from it. */
  private commit(
    eventId: string,
    pdu: PDU,
    d: {
      stateBefore: number | null; rejected: string | null; softFailed: boolean; partialState: boolean; replacesOutlier?: EventStatus | undefined;
      historical?: boolean; // federation backfill: see AcceptOptions.historical
    },
  ): Outcome {
    const accepted = d.rejected === null && !d.softFailed;
    const isState = isStateEvent(pdu);
    let stateAfter = d.stateBefore;
    let nid: number;
    const streamOrdering = accepted ? (d.historical ? this.historicalPosition() : this.streamPosition + 1) : null;
    if (d.replacesOutlier) {
      nid = d.replacesOutlier.nid;
      this.sql.exec(
        `UPDATE events SET outlier = 0, stream_ordering = ?, rejected = ?, soft_failed = ?, partial_state = ?,
           state_before = ? WHERE nid = ?`,
        streamOrdering, d.rejected, d.softFailed ? 1 : 0, d.partialState ? 1 : 0, d.stateBefore, nid,
      );
    } else {
      nid = this.events.insert({
        eventId, pdu, streamOrdering, outlier: false, rejected: d.rejected, softFailed: d.softFailed,
        partialState: d.partialState, stateBefore: d.stateBefore, stateAfter: null,
      });
    }
    if (isState && d.rejected === null) {
      const keyId = this.states.keyId(pdu.type, pdu.state_key!);
      const before = this.states.load(d.stateBefore);
      const after = new Map(before).set(keyId, nid);
      stateAfter = this.states.create(d.stateBefore, new Map([[keyId, nid]]), after);
    }
    this.sql.exec("UPDATE events SET state_after = ? WHERE nid = ?", stateAfter, nid);

    if (d.rejected !== null) return { status: "rejected", event_id: eventId, reason: d.rejected };
    if (d.softFailed) return { status: "soft_failed", event_id: eventId };
    indexRelation(this.sql, nid, pdu); // relations (docs/relations.md): in the event's transaction, before redactions apply
    // Search (docs/search.md): accepted events only, queued in the event's transaction, indexed in batches.
    if (indexEvent(this.sql, nid, pdu)) this.deps.timers.schedule(SEARCH_INDEX_TASK, Date.now() + SEARCH_INDEX_DELAY_MS);
    // Federation backfill: history changes neither the extremities nor the current state, and notifies nobody.
    if (d.historical) {
      this.applyRedactions(nid, pdu);
      return { status: "accepted", event_id: eventId, stream_ordering: streamOrdering! };
    }

    this.updateExtremities(nid, eventRefIds(pdu.prev_events));
    this.applyRedactions(nid, pdu);
    this.notify(pdu, streamOrdering!);
    return { status: "accepted", event_id: eventId, stream_ordering: streamOrdering! };
  }

  /** The new event replaces its prev events as an extremity; current state follows the extremities. */
  private updateExtremities(nid: number, prevIds: string[]): void {
    for (const prev of prevIds) {
      const prevNid = this.events.nidOf(prev);
      if (prevNid !== undefined) this.sql.exec("DELETE FROM forward_extremities WHERE event_nid = ?", prevNid);
    }
    // An event that already has accepted children (it arrived late, e.g. via backfill) is not an extremity.
    const hasChild = this.sql
      .exec(
        `SELECT 1 FROM prev_edges p JOIN events e ON e.nid = p.event_nid
         WHERE p.prev_id = ? AND e.outlier = 0 AND e.rejected IS NULL AND e.soft_failed = 0 LIMIT 1`,
        this.events.eventIdOf(nid),
      )
      .toArray().length > 0;
    if (!hasChild) this.sql.exec("INSERT OR IGNORE INTO forward_extremities (event_nid) VALUES (?)", nid);

    const extremities = this.forwardExtremities();
    const groups = extremities.map((e) => this.events.statusByNid(e).state_after);
    const newGroup = this.resolveGroups(groups);
    this.setCurrentState(newGroup);
    if (extremities.length > this.deps.dummyEventThreshold) this.deps.timers.schedule("dummy_event", Date.now());
  }

  /** Re-derives the current state from the forward extremities (after a past event's state was corrected). */
  refreshCurrentState(): void {
    const groups = this.forwardExtremities().map((e) => this.events.statusByNid(e).state_after);
    this.setCurrentState(this.resolveGroups(groups.length ? groups : [this.currentStateGroup]));
  }

  /**
   * Re-places an event among the forward extremities after its rejection status changed: an accepted event with
   * no accepted children is an extremity; a rejected one is not, and its prev events may be extremities again.
   */
  replaceInExtremities(nid: number): void {
    const row = this.events.statusByNid(nid);
    const hasAcceptedChild = (eventId: string) =>
      this.sql.exec(
        `SELECT 1 FROM prev_edges p JOIN events e ON e.nid = p.event_nid
         WHERE p.prev_id = ? AND e.outlier = 0 AND e.rejected IS NULL AND e.soft_failed = 0 LIMIT 1`,
        eventId,
      ).toArray().length > 0;
    const prevNids = this.sql
      .exec<{ nid: number }>("SELECT e.nid FROM prev_edges p JOIN events e ON e.event_id = p.prev_id WHERE p.event_nid = ?", nid)
      .toArray().map((r) => r.nid);
    if (row.rejected === null && row.soft_failed === 0) {
      for (const p of prevNids) this.sql.exec("DELETE FROM forward_extremities WHERE event_nid = ?", p);
      if (!hasAcceptedChild(row.event_id)) this.sql.exec("INSERT OR IGNORE INTO forward_extremities (event_nid) VALUES (?)", nid);
    } else {
      this.sql.exec("DELETE FROM forward_extremities WHERE event_nid = ?", nid);
      for (const p of prevNids) {
        const prev = this.events.statusByNid(p);
        if (prev.outlier === 0 && prev.rejected === null && prev.soft_failed === 0 && !hasAcceptedChild(prev.event_id)) {
          this.sql.exec("INSERT OR IGNORE INTO forward_extremities (event_nid) VALUES (?)", p);
        }
      }
    }
  }

  /** Announces the room's current position to every local user with a relationship to the room. */
  notifyLocalMembers(): void {
    const position = this.streamPosition;
    for (const { user_id } of this.sql
      .exec<{ user_id: string }>("SELECT user_id FROM members WHERE server = ? AND membership IN ('join', 'invite', 'knock')", this.deps.serverName)
      .toArray()) {
      this.deps.outbox.add("user", user_id, position);
    }
  }

  /** Checks an event against a state (and only that): the authorization rules, with this room's options. */
  checkAuthAgainst(event: AuthEvent, state: NidStateMap): ReturnType<typeof checkEventAuth> {
    return checkEventAuth(event, this.lookupIn(state), this.version, this.authOptions());
  }

  forwardExtremities(): number[] {
    return this.sql.exec<{ event_nid: number }>("SELECT event_nid FROM forward_extremities").toArray().map((r) => r.event_nid);
  }

  /** Moves the current state to `group`, updating the current_state table and the membership summary. */
  private setCurrentState(group: number | null): void {
    const old = this.currentStateGroup;
    if (old === group) return;
    const delta = diffStates(this.states.load(old), this.states.load(group));
    for (const [keyId, nid] of delta) {
      if (nid === null) this.sql.exec("DELETE FROM current_state WHERE key_id = ?", keyId);
      else this.sql.exec("INSERT INTO current_state (key_id, event_nid) VALUES (?, ?) ON CONFLICT (key_id) DO UPDATE SET event_nid = excluded.event_nid", keyId, nid);
      const [type, sk] = this.keyOf(keyId);
      if (type !== "m.room.member") continue;
      if (nid === null) {
        this.sql.exec("DELETE FROM members WHERE user_id = ?", sk);
      } else {
        // The events row's membership column, not the parsed event (faster joins: a resync's first full state
        // brings thousands of members here at once).
        const membership = this.sql.exec<{ m: string | null }>("SELECT membership AS m FROM events WHERE nid = ?", nid).one().m;
        this.sql.exec(
          `INSERT INTO members (user_id, server, membership, event_nid) VALUES (?, ?, ?, ?)
           ON CONFLICT (user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid`,
          sk, serverNameOf(sk) ?? "", typeof membership === "string" ? membership : "leave", nid,
        );
      }
    }
    this.setMeta("current_state_group", String(group));
  }

  /**
   * Applies redactions: this event's, if it redacts a held event, and any earlier redaction of this event that
   * arrived before it. From v3 on the rules let any redaction in; it only takes effect if the redacter may
   * redact others' events or is on the same server as the original sender.
   */
  private applyRedactions(nid: number, pdu: PDU): void {
    const target = redactsOf(pdu, this.version);
    if (target !== undefined) {
      const targetRow = this.events.byId(target);
      if (targetRow) this.redactIfAllowed(targetRow, nid);
    }
    const eventId = this.events.eventIdOf(nid);
    for (const r of this.sql.exec<{ nid: number }>(
      "SELECT nid FROM events WHERE redacts = ? AND rejected IS NULL AND soft_failed = 0 AND outlier = 0",
      eventId,
    ).toArray()) {
      this.redactIfAllowed(this.events.byNid(nid), r.nid);
    }
  }

  private redactIfAllowed(target: EventRow, redactionNid: number): void {
    if (target.redacted_by !== null) return;
    const redaction = this.events.authEvent(redactionNid);
    const sameServer = serverNameOf(redaction.sender) === serverNameOf(target.sender);
    if (!sameServer) {
      const state = this.lookupIn(this.currentState());
      const pl = powerLevelsFromContent(state("m.room.power_levels", "")?.content, this.version);
      if (userPowerLevel(redaction.sender, state, this.version) < pl.redact) return;
    }
    const redacted = redactEvent(JSON.parse(target.json) as PDU, this.version);
    this.sql.exec("UPDATE events SET json = ?, redacted_by = ? WHERE nid = ?", JSON.stringify(redacted), redaction.event_id, target.nid);
    unindexRelation(this.sql, target.nid); // relations: a redacted event relates to nothing any more
    unindexEvent(this.sql, target.nid); // search: a redacted event is no longer found
    this.events.forget(target.nid);
  }

  /** Writes the outbox rows for an accepted event: local members' sync streams and remote servers. */
  private notify(pdu: PDU, position: number): void {
    // Rooms engineer: a state change refreshes the room's D1 directory rows (RoomDO "directory" task).
    if (typeof pdu.state_key === "string") this.deps.timers.schedule("directory", Date.now());
    const outbox = this.deps.outbox;
    const ours = this.deps.serverName;
    const users = new Set(
      this.sql.exec<{ user_id: string }>("SELECT user_id FROM members WHERE server = ? AND membership IN ('join', 'invite', 'knock')", ours)
        .toArray().map((r) => r.user_id),
    );
    // The target of a membership change hears about it even if it is no longer in the room (kick, ban, leave).
    if (pdu.type === "m.room.member" && serverNameOf(pdu.state_key!) === ours) users.add(pdu.state_key!);
    if (serverNameOf(pdu.sender) === ours) users.add(pdu.sender);
    for (const user of users) outbox.add("user", user, position);
    // Application services: log the event for each interested appservice and write its outbox row.
    this.appserviceHook?.(pdu, position);

    if (serverNameOf(pdu.sender) !== ours) return; // we only forward what we originate
    const servers = new Set(
      this.sql.exec<{ server: string }>("SELECT DISTINCT server FROM members WHERE membership = 'join'").toArray().map((r) => r.server),
    );
    for (const s of (this.meta("servers_in_room") ?? "").split(",")) if (s) servers.add(s);
    if (pdu.type === "m.room.member") {
      const targetServer = serverNameOf(pdu.state_key!);
      if (targetServer) servers.add(targetServer);
    }
    servers.delete(ours);
    for (const server of servers) outbox.add("destination", server, position);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Creating local events

  /**
   * Builds, signs and persists a local event on top of the current forward extremities. Throws ForbiddenEvent
   * (and persists nothing) if the rules refuse it. Must be called inside a storage transaction.
   */
  createLocal(template: EventTemplate, maxPrevEvents = MAX_PREV_EVENTS): { event_id: string; stream_ordering: number } {
    const pdu = this.buildLocal(template, maxPrevEvents);
    const outcome = this.accept(pdu, { local: true });
    switch (outcome.status) {
      case "accepted":
        return { event_id: outcome.event_id, stream_ordering: outcome.stream_ordering };
      case "rejected":
        throw new ForbiddenEvent(outcome.reason);
      case "invalid":
        throw new ForbiddenEvent(outcome.reason);
      default:
        throw new Error(`local event not accepted: ${outcome.status}`);
    }
  }

  /**
   * Where a new event goes in the DAG: its prev events (the newest forward extremities, at most
   * `maxPrevEvents`), its auth events chosen from the state before it (resolved over those prev events when they
   * are not all the extremities), its depth, and both reference lists in the room version's format (v1/v2
   * events reference others as [event_id, hashes]). Used for local events and for make_join/leave/knock templates.
   */
  placeNewEvent(sketch: AuthEventLike, maxPrevEvents = MAX_PREV_EVENTS): NewEventPlacement {
    const version = this.version;
    const prevNids = this.sql
      .exec<{ nid: number }>(
        `SELECT f.event_nid AS nid FROM forward_extremities f JOIN events e ON e.nid = f.event_nid
         ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT ?`,
        maxPrevEvents,
      )
      .toArray()
      .map((r) => r.nid);
    const prevRows = prevNids.map((n) => this.events.statusByNid(n));
    const stateBefore =
      prevRows.length === this.forwardExtremities().length
        ? this.currentStateGroup
        : this.resolveGroups(prevRows.map((r) => r.state_after));
    const state = this.states.load(stateBefore);
    const lookup = this.lookupIn(state);
    const authIds: string[] = [];
    for (const [type, sk] of authEventTypesFor(sketch, version)) {
      const e = lookup(type, sk);
      if (e) authIds.push(e.event_id);
    }
    const ref = (eventId: string) =>
      version.eventFormat === "v1" ? [eventId, (JSON.parse(this.events.byId(eventId)!.json) as PDU).hashes] : eventId;
    const prevIds = prevRows.map((r) => r.event_id);
    return {
      prevIds,
      authIds,
      depth: Math.min(MAX_DEPTH, Math.max(0, ...prevRows.map((r) => r.depth)) + 1),
      stateBefore: state,
      prev_events: prevIds.map(ref),
      auth_events: authIds.map(ref),
    };
  }

  /** Prev events, auth events, depth, hashes and signature for a new local event. */
  buildLocal(template: EventTemplate, maxPrevEvents = MAX_PREV_EVENTS): PDU {
    const version = this.version;
    const place = this.placeNewEvent(template, maxPrevEvents);
    const pdu: Record<string, unknown> = {
      room_id: this.roomId,
      sender: template.sender,
      type: template.type,
      content: template.content,
      origin_server_ts: template.origin_server_ts ?? Date.now(),
      depth: place.depth,
      prev_events: place.prev_events,
      auth_events: place.auth_events,
    };
    if (template.state_key !== undefined) pdu.state_key = template.state_key;
    if (template.redacts !== undefined) {
      if (version.redactsInContent) pdu.content = { ...template.content, redacts: template.redacts };
      else pdu.redacts = template.redacts;
    }
    if (version.eventFormat === "v1") pdu.event_id = generateEventIdV1(this.deps.serverName);
    return signEvent(addContentHash(pdu), this.deps.serverName, this.deps.signingKey(), version) as unknown as PDU;
  }

  /**
   * Persists the create event of a new room and records the room's identity. The caller built and signed it
   * (for v12 the room ID is derived from it, so it exists before the DO is addressed).
   */
  createRoom(createPdu: PDU, roomId: string, version: RoomVersion): Outcome {
    if (this.exists) throw new ForbiddenEvent("room already exists");
    this.initialise(roomId, version);
    const outcome = this.accept(createPdu, { local: true });
    if (outcome.status !== "accepted") throw new ForbiddenEvent(`create event not accepted: ${JSON.stringify(outcome)}`);
    return outcome;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Forward-extremity hygiene

  /**
   * Merges the forward extremities with an `org.matrix.dummy_event` sent by a local member who may send it.
   * Returns the new event's ID, or undefined if nothing needed merging or no local member can send.
   */
  sendDummyEvent(): string | undefined {
    if (this.forwardExtremities().length <= 1) return undefined;
    const members = this.sql
      .exec<{ user_id: string }>("SELECT user_id FROM members WHERE server = ? AND membership = 'join' ORDER BY user_id", this.deps.serverName)
      .toArray();
    for (const { user_id } of members) {
      try {
        // Reference as many extremities as the spec allows (20) so one event merges them.
        return this.createLocal({ type: "org.matrix.dummy_event", sender: user_id, content: {} }, 20).event_id;
      } catch (e) {
        if (!(e instanceof ForbiddenEvent)) throw e;
      }
    }
    return undefined;
  }

  // =========================================================================================================
  // Federation (src/federation/inbound.ts): outliers, and events whose prev events could not be fetched.
  // =========================================================================================================

  /**
   * Stores an event fetched as part of a room state or an auth chain as an outlier: known, usable as an auth
   * event or state, but not in the timeline and without state of its own. It is checked against its own auth
   * events (which must be held: store chains oldest first) and stored as rejected if it fails them.
   * Must be called inside a storage transaction.
   */
  storeOutlier(pdu: PDU): OutlierOutcome {
    const version = this.version;
    const format = checkPduFormat(pdu, version);
    if (!format.ok) return { status: "invalid", reason: format.reason };
    const eventId = computeEventId(pdu, version);
    if (pdu.room_id !== undefined && pdu.room_id !== this.roomId) {
      return { status: "invalid", event_id: eventId, reason: "event is for another room" };
    }
    if (this.events.byId(eventId)) return { status: "duplicate", event_id: eventId };
    const authCheck = this.checkAgainstAuthEvents(toAuthEvent(eventId, pdu, version), pdu);
    if (authCheck.status === "missing_auth") return { status: "missing_auth", event_id: eventId, missing: authCheck.missing };
    const rejected = authCheck.status === "rejected" ? authCheck.reason : null;
    this.events.insert({
      eventId, pdu, streamOrdering: null, outlier: true, rejected, softFailed: false, partialState: false,
      stateBefore: null, stateAfter: null,
    });
    return rejected === null ? { status: "stored", event_id: eventId } : { status: "rejected", event_id: eventId, reason: rejected };
  }

  /**
   * Accepts an event some of whose prev events are not held and could not be fetched: `prevStates` gives, for
   * each such prev event, the state after it (event IDs, all held — as outliers at least). The state before the
   * event resolves those states with the state after the prev events that are held; then the usual checks run
   * (auth events, state before, soft-fail against the current state). The missing prev events stay missing.
   * Must be called inside a storage transaction.
   */
  acceptWithPrevStates(pdu: PDU, prevStates: ReadonlyMap<string, readonly string[]>): Outcome {
    return this.accept(pdu, { prevStates });
  }
  // ===== end of the federation block =====
}
