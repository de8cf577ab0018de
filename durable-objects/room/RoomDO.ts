/**
 * RoomDO: one Durable Object per room, the only writer of the room's events, DAG, state and flags.
 *
 * RPC methods run the synchronous `Room` core inside `transactionSync`, then do their asynchronous follow-up
 * (outbox delivery) after the commit. Nothing that yields sits between reading the state and committing.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { getConfig } from "../../src/config";
import { getServerKeys } from "../../src/server-keys";
import type { SigningKey } from "../../src/protocol/signing";
import type { JsonObject, PDU } from "../../src/protocol/events";
import { roomVersion } from "../../src/protocol/room-versions";
import { migrate } from "./schema";
import { Outbox, Timers, type Consumer, type Deliver } from "./outbox";
import { ForbiddenEvent, Room, SEARCH_INDEX_TASK, type EventTemplate, type Outcome } from "./room";
// --- partial state (faster joins): the room row, per-event completion, and the alarm-driven resync ---
import { PartialState, type PartialStateInfo } from "./partial-state";
import { fetchStateBefore } from "../../src/federation/resync";
import { computeEventId as computeEventIdFor } from "../../src/protocol/event-id";
// --- sync (sync engineer): the typing/receipts stream and the per-user sync view; RPCs at "Sync" below ---
import { Ephemeral, TYPING_TASK, DEFAULT_TYPING_TIMEOUT_MS } from "./ephemeral";
import { SyncView, type SyncRoomRequest } from "./sync-view";
// --- federation (src/federation; see the federation block at the end of the class) ---
import type { OutlierOutcome } from "./room";
import { toFederationPdu } from "../../src/protocol/event-id";
import { serverNameOf } from "../../src/protocol/identifiers";
// --- federation: serving room data, membership handshakes, remote joins, backfill (see "Federation: serving" below) ---
import { FederationRoom, isFedError, fedError, fedAnswer, type FedAnswer } from "./federation-room";
import { eventRefIds } from "../../src/protocol/events";
import { computeEventId } from "../../src/protocol/event-id";
import { toAuthEvent } from "./event-store";
import { serverAllowedByAcl } from "../../src/federation/acl";
// --- client-server room endpoints (rooms engineer; see the block at the end of the class) ---
import {
  ClientChecks, RoomQueries, runClientRead,
  type ClientReadRequest, type ClientRoomInfo, type ClientWriteRequest, type QueryResponse, type Viewer,
} from "./queries";
import { writeRoomDirectoryData } from "../../src/rooms/directory-store";
// --- application services (src/appservices; see the block at the end of the class) ---
import { RoomAppservices, type AppserviceEventRow } from "../../src/appservices/room-interest";
// --- search and room upgrades (docs/search.md, docs/room-upgrades.md; see the block after application services) ---
import { flushSearchIndex, RoomSearch, type RoomSearchRequest } from "./search-index";
import { RoomUpgrade, type UpgradeClaim } from "./upgrade";
// --- push notifications (docs/push.md; see the block after the sync block) ---
import { PushView } from "./push-eval";
import type { Ruleset } from "../../src/push/types";
import { CoalescingRunner } from "../shared/coalescing-runner";

/** Where a local user's request for an event stands. */
export type SendResult =
  | { ok: true; event_id: string; stream_ordering: number }
  | { ok: false; errcode: "M_FORBIDDEN" | "M_NOT_FOUND" | "M_BAD_JSON"; error: string };

/** Outcome of `clientWrite` (rooms engineer): like SendResult, with the HTTP status to answer. */
export type ClientWriteResult =
  | { ok: true; event_id: string; stream_ordering: number }
  | { ok: false; status: number; errcode: string; error: string };

export interface TxnKey {
  userId: string;
  deviceId: string;
  txnId: string;
}

/** Outcome of a typing or receipt update (sync). */
export type SyncWriteResult = { ok: true } | { ok: false; errcode: "M_FORBIDDEN" | "M_NOT_FOUND"; error: string };

/** The alarm task that drives the partial-state resync. */
const RESYNC_TASK = "resync";
/** Events completed per alarm invocation: bounded work, then the alarm is rescheduled (progress is in storage). */
const RESYNC_EVENTS_PER_ALARM = 20;
/** Faster joins: completions from prev events (no network) per alarm invocation, besides the network steps. */
const RESYNC_LOCAL_STEPS_PER_ALARM = 1000;
/** Faster joins: `last_error` while the resync waits for a local user to be in the room again. */
const RESYNC_PAUSED = "paused: no local member in the room";
/** Faster joins: outliers stored per transaction by `storeOutliers` (a resync stores a whole room state). */
const OUTLIER_BATCH = 250;
/** Faster joins: how long after an interrupted resync step (eviction, restart) the alarm tries again. */
const RESYNC_WATCHDOG_MS = 60_000;
/** Backoff after failed resync steps: 1 s doubling to 1 minute (the server rotates on each failure). */
const resyncBackoffMs = (failures: number) => Math.min(60_000, 1000 * 2 ** Math.max(0, failures - 1));

/** Thrown inside the partial-join transaction to roll it back with the join's outcome. */
class PartialJoinFailed extends Error {
  constructor(readonly outcome: Outcome) {
    super(`partial join not accepted: ${outcome.status}`);
  }
}

/** The prev events of `pdu` not held here as timeline events (outliers count as missing): none, and it can be placed on our own state. */
function missingPrevEvents(room: Room, pdu: PDU): string[] {
  const prevs = (pdu.prev_events as unknown[]).map((p) => (typeof p === "string" ? p : (p as [string])[0]));
  return prevs.filter((id) => {
    const status = room.events.statusById(id);
    return status === undefined || status.outlier;
  });
}

/** Federation: an out-of-band membership event as `fedRemoteInfo` reports it (`io.axon.resident`: where a knock went). */
function outOfBandSummary(oob: { event_id: string; membership: string; json: string }) {
  const pdu = JSON.parse(oob.json) as PDU;
  const resident = (pdu.unsigned as JsonObject | undefined)?.["io.axon.resident"];
  return { event_id: oob.event_id, membership: oob.membership, sender: pdu.sender, resident: typeof resident === "string" ? resident : null };
}

/** Federation: thrown inside a remote join's transaction to roll it back with the join's outcome. */
class RemoteJoinFailed extends Error {
  constructor(readonly outcome: Outcome) {
    super(`remote join not accepted: ${outcome.status}`);
  }
}

/** Default number of forward extremities above which a dummy event merges them. */
const DEFAULT_DUMMY_EVENT_THRESHOLD = 10;

export class RoomDO extends DurableObject<Env> {
  private readonly room: Room;
  private readonly outbox: Outbox;
  private readonly timers: Timers;
  private signingKey: SigningKey | undefined;
  /** Partial state (faster joins): see partial-state.ts and the resync block below. */
  private readonly partial: PartialState;
  /** Requests waiting for the room to become fully stated, by waiter ID (each its own promise and timer). */
  private readonly fullStateWaiters = new Map<string, (full: boolean) => void>();
  /** Deliverers by consumer; tests replace them to simulate failures. */
  deliverers: Partial<Record<Consumer, Deliver>> = {};
  /** Sync: typing and receipts (ephemeral.ts) and the per-user view of the room for /sync (sync-view.ts). */
  private readonly ephemeral: Ephemeral;
  private readonly syncView: SyncView;
  /** Application services: the room's interest log and ephemeral hand-off (src/appservices/room-interest.ts). */
  private readonly appservices: RoomAppservices;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    this.timers = new Timers(sql, ctx.storage);
    this.outbox = new Outbox(sql, this.timers, () => this.deliverers);
    this.room = new Room({
      sql,
      storage: ctx.storage,
      serverName: getConfig(env).serverName,
      signingKey: () => {
        if (!this.signingKey) throw new Error("signing key not loaded");
        return this.signingKey;
      },
      outbox: this.outbox,
      timers: this.timers,
      dummyEventThreshold: Number(env.DUMMY_EVENT_THRESHOLD ?? DEFAULT_DUMMY_EVENT_THRESHOLD),
    });
    this.partial = new PartialState(this.room, sql, () => {
      for (const wake of [...this.fullStateWaiters.values()]) wake(true);
      // Faster joins: local members' sync streams learn that the room is fully stated (in this transaction).
      for (const { user_id } of sql.exec<{ user_id: string }>("SELECT user_id FROM members WHERE server = ? AND membership = 'join'", getConfig(env).serverName)) {
        this.outbox.add("user_full_state", user_id, this.room.streamPosition);
      }
      void this.outbox.drain();
    });
    this.deliverers.user_full_state = (target) => env.USERS.get(env.USERS.idFromName(target)).roomFullyStated(this.room.roomId);
    // Sync streams (UserDO): tell a local user where the room stands now and its membership there. Both are
    // read in the same synchronous instant, so the pair is consistent whatever position the outbox row named.
    this.ephemeral = new Ephemeral(sql, this.timers, this.outbox, getConfig(env).serverName);
    this.syncView = new SyncView(this.room, sql, this.ephemeral);
    this.deliverers.user = (target) =>
      env.USERS.get(env.USERS.idFromName(target))
        .roomAdvanced(this.room.roomId, this.room.streamPosition, this.syncView.membershipOf(target));
    this.deliverers.user_ephemeral = (target) =>
      env.USERS.get(env.USERS.idFromName(target)).ephemeralAdvanced(this.room.roomId, this.ephemeral.position);
    // Federation (DestinationDO): tell a remote server's queue that this room has events for it up to `position`;
    // the DestinationDO reads them back with `eventsForDestination` when it builds a transaction.
    this.deliverers.destination = (server, position) =>
      env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).roomAdvanced(server, this.room.roomId, position);
    // Application services: interest decided in Room.notify / on each ephemeral change (same transaction), then
    // the AppServiceDO named by the outbox row pulls (appserviceEvents / appserviceEphemeral below).
    this.appservices = new RoomAppservices(sql, this.room, () => getConfig(env).appservices);
    this.room.appserviceHook = (pdu, position) =>
      this.appservices.record(pdu, position, (id) => this.outbox.add("appservice", id, position));
    this.ephemeral.appserviceHook = (position) => {
      for (const as of this.appservices.ephemeralTargets()) this.outbox.add("appservice_ephemeral", as.id, position);
    };
    this.deliverers.appservice = (id, position) =>
      env.APPSERVICES.get(env.APPSERVICES.idFromName(id)).roomAdvanced(id, this.room.roomId, position);
    this.deliverers.appservice_ephemeral = (id, position) =>
      env.APPSERVICES.get(env.APPSERVICES.idFromName(id)).ephemeralAdvanced(id, this.room.roomId, position);
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage);
      this.appservices.migrate(); // its own table, created if missing (no RoomDO schema version taken)
      this.federation.migrate(); // federation: its own tables, created if missing (federation-room.ts)
      this.signingKey = (await getServerKeys(env)).current;
    });
  }

  /** Runs `fn` in one storage transaction; on failure, forgets in-memory caches that may describe rolled-back rows. */
  private transact<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(fn);
    } catch (e) {
      this.room.forgetCaches();
      this.appservices.forget(); // application services: cached room interest may describe rolled-back state
      throw e;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Writes

  /**
   * Creates the room: persists the (already signed) create event, then each initial event in order, all in one
   * transaction — a room is created completely or not at all.
   */
  async createRoom(createPdu: PDU, roomId: string, versionId: string, initial: EventTemplate[]): Promise<SendResult[]> {
    const version = roomVersion(versionId);
    if (!version) return [{ ok: false, errcode: "M_BAD_JSON", error: `unknown room version ${versionId}` }];
    let results: SendResult[];
    try {
      results = this.transact(() => {
        const create = this.room.createRoom(createPdu, roomId, version);
        if (create.status !== "accepted") throw new ForbiddenEvent(create.status);
        const out: SendResult[] = [{ ok: true, event_id: create.event_id, stream_ordering: create.stream_ordering }];
        for (const t of initial) out.push({ ok: true, ...this.room.createLocal(t) });
        return out;
      });
    } catch (e) {
      if (e instanceof ForbiddenEvent) return [{ ok: false, errcode: "M_FORBIDDEN", error: e.message }];
      throw e;
    }
    await this.afterCommit(createPdu.sender);
    return results;
  }

  /** Sends a local event. The same (user, device, txnId) always yields the same event, sent once. */
  async send(template: EventTemplate, txn?: TxnKey): Promise<SendResult> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    let result: SendResult;
    try {
      result = this.transact(() => {
        if (txn) {
          const seen = this.ctx.storage.sql
            .exec<{ event_id: string }>(
              "SELECT event_id FROM txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
              txn.userId, txn.deviceId, txn.txnId,
            )
            .toArray()[0];
          if (seen) {
            const row = this.room.events.byId(seen.event_id)!;
            return { ok: true as const, event_id: seen.event_id, stream_ordering: row.stream_ordering! };
          }
        }
        const sent = this.room.createLocal(template);
        if (txn) {
          this.ctx.storage.sql.exec(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id) VALUES (?, ?, ?, ?)",
            txn.userId, txn.deviceId, txn.txnId, sent.event_id,
          );
        }
        return { ok: true as const, ...sent };
      });
    } catch (e) {
      if (e instanceof ForbiddenEvent) return { ok: false, errcode: "M_FORBIDDEN", error: e.message };
      throw e;
    }
    await this.afterCommit(template.sender);
    return result;
  }

  /**
   * Accepts events from other servers, in order. The caller has checked their signatures and content hashes;
   * everything else (format, auth against auth events, state before, soft-fail) happens here. Each event is its
   * own transaction, so one bad event never takes others down with it.
   */
  async receive(pdus: PDU[]): Promise<Outcome[]> {
    const outcomes = pdus.map((pdu) => {
      try {
        return this.transact(() => {
          const outcome = this.room.accept(pdu);
          // Faster joins: while partial, servers we hear from get our events too (servers_in_room).
          if (outcome.status === "accepted") this.partial.addServers([serverNameOf(pdu.sender)]);
          return outcome;
        });
      } catch (e) {
        return { status: "invalid" as const, reason: String((e as Error).message ?? e) };
      }
    });
    void this.outbox.drain();
    return outcomes;
  }

  /** Read-your-writes for the sender, then everyone else in the background. */
  private async afterCommit(sender: string): Promise<void> {
    await this.outbox.deliverNow("user", sender);
    void this.outbox.drain();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Timers

  override async alarm(): Promise<void> {
    this.timers.alarmFired();
    // Whatever woke the alarm, deliver the outbox rows that are due (the outbox task is only their safety net).
    await this.outbox.drain();
    const now = Date.now();
    for (const task of this.timers.due(now)) {
      switch (task) {
        case "outbox":
          break; // drained above; drain() reschedules or retires the task

        case RESYNC_TASK:
          await this.resync();
          break;
        case SEARCH_INDEX_TASK: // search: index the events queued since the last batch
          this.transact(() => {
            flushSearchIndex(this.ctx.storage.sql);
            this.timers.done(SEARCH_INDEX_TASK);
          });
          break;
        case "dummy_event":
          this.transact(() => {
            this.room.sendDummyEvent();
            this.timers.done("dummy_event");
          });
          void this.outbox.drain();
          break;
        // --- client-server room endpoints: refresh the D1 directory rows (rooms engineer) ---
        case "directory":
          this.timers.done("directory");
          try {
            await this.syncDirectory();
          } catch (e) {
            console.warn(`room: directory sync failed: ${String((e as Error)?.message ?? e)}`);
            this.timers.schedule("directory", Date.now() + 30_000);
          }
          break;
        // --- sync: typing notifications expire ---
        case TYPING_TASK:
          this.transact(() => this.ephemeral.expireTyping(Date.now()));
          void this.outbox.drain();
          break;
        default:
          console.warn(`room: unknown task ${task}`);
          this.timers.done(task);
      }
    }
    this.timers.arm();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Reads

  /** Admin/debug view of the room's shape. */
  async summary() {
    if (!this.room.exists) return null;
    const sql = this.ctx.storage.sql;
    return {
      room_id: this.room.roomId,
      room_version: this.room.version.id,
      stream_position: this.room.streamPosition,
      forward_extremities: this.room.forwardExtremities().map((n) => this.room.events.eventIdOf(n)),
      events: sql.exec<{ n: number }>("SELECT count(*) AS n FROM events").one().n,
      joined_members: sql.exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE membership = 'join'").one().n,
      outbox: this.outbox.pending(),
    };
  }

  /** Storage figures for benchmarks and the admin view: database size, state snapshot rows, events. JSON. */
  async storageStats(): Promise<string> {
    const sql = this.ctx.storage.sql;
    const count = (table: string) => sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).one().n;
    return JSON.stringify({
      database_bytes: sql.databaseSize,
      state_rows: count("state_step") + count("state_skip"),
      state_groups: count("state_groups"),
      events: count("events"),
    });
  }

  /** The events of the room in stream order after `since` (accepted, client-visible ones). */
  async eventsAfter(since: number, limit: number): Promise<{ event_id: string; stream_ordering: number; json: string }[]> {
    return this.ctx.storage.sql
      .exec<{ event_id: string; stream_ordering: number; json: string }>(
        `SELECT event_id, stream_ordering, json FROM events WHERE stream_ordering > ? ORDER BY stream_ordering LIMIT ?`,
        since, limit,
      )
      .toArray();
  }

  // =========================================================================================================
  // Push notifications (docs/push.md): a user's UserDO asks, in the background, which of the room's events after
  // its last evaluated position notify the user, and what a notification shows (push-eval.ts). Read-only.

  private pushViewInstance?: PushView;
  private get pushView(): PushView {
    return (this.pushViewInstance ??= new PushView(this.room, this.ctx.storage.sql, this.ephemeral));
  }

  /** The user's push rules (`rulesJson`, a Ruleset) against at most `limit` events after `after`: a PushEvaluation as JSON. */
  async pushEvaluate(userId: string, after: number, rulesJson: string, limit: number, ignoredUsers: string[] = []): Promise<string> {
    return JSON.stringify(this.pushView.evaluate(userId, after, JSON.parse(rulesJson) as Ruleset, limit, ignoredUsers));
  }

  /** The user's read mark (stream ordering of their latest main/unthreaded read receipt; 0: none). */
  async pushReadMark(userId: string): Promise<number> {
    return this.room.exists ? this.pushView.readMark(userId) : 0;
  }

  /** What notifications show about these events for the user, as JSON (`{read_pos, events: PushDetail[]}`). */
  async pushDetails(userId: string, eventIds: string[]): Promise<string> {
    return JSON.stringify(this.pushView.details(userId, eventIds));
  }
  // ================================================================== end of push notifications ============

  // =========================================================================================================
  // Sync (sync engineer): the room's part of a user's /sync, typing and receipts. Typing and receipts of
  // remote users (federation EDUs) use the same methods; each change takes the next ephemeral position and
  // tells local members' UserDOs through the outbox (consumer "user_ephemeral").

  /** One room's /sync entry for one user as JSON text (a SyncRoomResult), or null if the room is not held here. */
  async syncRoom(req: SyncRoomRequest): Promise<string | null> {
    const result = this.syncView.sync(req);
    return result ? JSON.stringify(result) : null;
  }

  /**
   * Starts or stops `userId` typing (timeout in ms, capped at 2 minutes). Only joined members may type.
   * Local users' own sync streams hear of it before this returns.
   */
  async setTyping(userId: string, typing: boolean, timeoutMs = DEFAULT_TYPING_TIMEOUT_MS): Promise<SyncWriteResult> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    const changed = this.transact(() => {
      // Faster joins: a remote user the partial state does not know may well be in the room; accept.
      if (this.syncView.membershipOf(userId) !== "join" && !this.partialUnknownMember(userId)) return null;
      return this.ephemeral.setTyping(userId, typing, timeoutMs);
    });
    if (changed === null) return { ok: false, errcode: "M_FORBIDDEN", error: `${userId} is not in the room` };
    if (changed) await this.afterEphemeral(userId);
    return { ok: true };
  }

  /** Users typing in the room now (federation and tests). */
  async typingUsers(): Promise<string[]> {
    return this.room.exists ? this.ephemeral.typingUsers() : [];
  }

  /**
   * Records a receipt of `userId` for `eventId` (`threadId` null: unthreaded). The user must be joined and the
   * event must be one of the room's events the user can see. A receipt older than the user's current one of
   * the same kind is accepted and ignored.
   */
  async putReceipt(userId: string, receiptType: string, eventId: string, threadId: string | null, ts = Date.now()): Promise<SyncWriteResult> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    const outcome = this.transact((): SyncWriteResult | boolean => {
      const refused = this.receiptRefusal(userId, eventId);
      if (refused) return refused;
      return this.ephemeral.putReceipt(userId, receiptType, threadId, eventId, ts);
    });
    if (typeof outcome !== "boolean") return outcome;
    if (outcome) await this.afterEphemeral(userId);
    return { ok: true };
  }

  /** The checks of a receipt, for markers stored elsewhere (m.fully_read lives in the user's account data). */
  async checkReadMarker(userId: string, eventId: string): Promise<SyncWriteResult> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    return this.receiptRefusal(userId, eventId) ?? { ok: true };
  }

  /** Why `userId` may not mark `eventId` (not joined; not an event they can see), or undefined if they may. */
  private receiptRefusal(userId: string, eventId: string): SyncWriteResult | undefined {
    // Faster joins: a remote user the partial state does not know may well be in the room; any event of the
    // room's timeline will do.
    if (this.partialUnknownMember(userId)) {
      return this.room.events.statusById(eventId)?.stream_ordering != null ? undefined : { ok: false, errcode: "M_NOT_FOUND", error: "Event not found" };
    }
    if (this.syncView.membershipOf(userId) !== "join") {
      return { ok: false, errcode: "M_FORBIDDEN", error: `${userId} is not in the room` };
    }
    if (!this.syncView.canSee(userId, eventId)) return { ok: false, errcode: "M_NOT_FOUND", error: "Event not found" };
    return undefined;
  }

  /** Read-your-writes for the user who changed typing/receipts, then everyone else in the background. */
  private async afterEphemeral(userId: string): Promise<void> {
    await this.outbox.deliverNow("user_ephemeral", userId);
    void this.outbox.drain();
  }

  // =========================================================================================================
  // Client-server room endpoints (rooms engineer). Reads run in ./queries.ts; a write is checked read-only
  // (ClientChecks.precheck) and then handed to `send`, whose transaction starts before its first await, so
  // nothing interleaves between the check and the commit. Results are plain JSON-able data.

  private clientQueries: RoomQueries | undefined;
  private clientChecks: ClientChecks | undefined;

  private get queries(): RoomQueries {
    return (this.clientQueries ??= new RoomQueries(this.room, this.ctx.storage.sql));
  }

  private get checks(): ClientChecks {
    return (this.clientChecks ??= new ClientChecks(this.room, this.ctx.storage.sql, this.queries, getConfig(this.env).serverName));
  }

  /** What the Worker needs to know before acting for `userId`; null when this server does not hold the room. */
  async clientInfo(userId: string): Promise<ClientRoomInfo | null> {
    // Federation: a room known only from out-of-band memberships (a remote invite, a rejected one) has no state
    // here; this server is not resident, so joins, knocks and leaves go over federation.
    return this.room.exists && this.room.currentStateGroup !== null ? this.checks.info(userId) : null;
  }

  /** Sends a client's event after the client-API checks; see ClientChecks.precheck. */
  async clientWrite(req: ClientWriteRequest): Promise<ClientWriteResult> {
    if (!this.room.exists) return { ok: false, status: 404, errcode: "M_NOT_FOUND", error: "Unknown room" };
    const pre = this.checks.precheck(req);
    if (pre.kind === "error") return { ok: false, status: pre.status, errcode: pre.errcode, error: pre.error };
    if (pre.kind === "existing") return { ok: true, event_id: pre.event_id, stream_ordering: pre.stream_ordering };
    const txn = req.kind === "membership" ? undefined : req.txn;
    const sent = await this.send(pre.template, txn);
    if (sent.ok) return sent;
    const status = sent.errcode === "M_NOT_FOUND" ? 404 : sent.errcode === "M_BAD_JSON" ? 400 : 403;
    return { ok: false, status, errcode: sent.errcode, error: sent.error };
  }

  /** Answers a client read (messages, context, event, state, members …) as an HTTP status and JSON body. */
  async clientRead(viewer: Viewer, req: ClientReadRequest): Promise<QueryResponse> {
    return runClientRead(this.queries, viewer, req);
  }

  /** History visibility for other readers (sync): the IDs among `eventIds` that `userId` may see, in order. */
  async filterVisibleEvents(userId: string, eventIds: string[]): Promise<string[]> {
    return this.room.exists ? this.queries.filterVisibleIds(userId, eventIds) : [];
  }

  /** Stripped state for invites and knocks (contents as JSON text). */
  async strippedState(): Promise<string> {
    return JSON.stringify(this.room.exists ? this.queries.strippedState() : []);
  }

  /** Servers with joined members, this server first (alias resolution). */
  async joinedServers(): Promise<string[]> {
    return this.room.exists ? this.queries.joinedServers(getConfig(this.env).serverName) : [];
  }

  // E2EE (device lists, durable-objects/user/keys-service.ts): who shares this room, for device-list fan-out.
  /** User IDs whose current membership is `join` (local and remote). */
  async joinedUserIds(): Promise<string[]> {
    if (!this.room.exists) return [];
    return this.ctx.storage.sql
      .exec<{ user_id: string }>("SELECT user_id FROM members WHERE membership = 'join'")
      .toArray()
      .map((r) => r.user_id);
  }

  private readonly directoryPasses = new CoalescingRunner(() => this.syncDirectoryOnce());

  /**
   * Brings the room's D1 rows (room_stats, room_members) up to date. Passes never overlap; a call during a
   * pass makes it run once more. Idempotent: it reads the current state and writes only what changed.
   */
  async syncDirectory(): Promise<void> {
    return this.directoryPasses.run();
  }

  private async syncDirectoryOnce(): Promise<void> {
    if (!this.room.exists) return;
    const sql = this.ctx.storage.sql;
    const stats = this.checks.directoryStats();
    const statsJson = JSON.stringify(stats);
    const since = Number(this.room.meta("directory_position") ?? 0);
    const { position, changes } = this.checks.memberChangesSince(since);
    const statsChanged = statsJson !== this.room.meta("directory_stats");
    if (statsChanged || changes.length > 0) await writeRoomDirectoryData(this.env.DB, stats, changes, statsChanged);
    const setMeta = (k: string, v: string) =>
      sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, v);
    this.ctx.storage.transactionSync(() => {
      setMeta("directory_stats", statsJson);
      setMeta("directory_position", String(position));
    });
  }

  // =========================================================================================================
  // Federation (src/federation, durable-objects/destination): outbound reads, inbound outliers and gaps.
  // =========================================================================================================

  /**
   * What inbound `/send` needs to know before handing PDUs over: the room version, whether we are in it, and
   * the content of its current `m.room.server_acl` (JSON, or null without one).
   */
  async federationInfo(): Promise<{ room_id: string; room_version: string; local_joined: number; partial_state: boolean; server_acl: string | null } | null> {
    if (!this.room.exists) return null;
    const ours = getConfig(this.env).serverName;
    const acl = this.room.lookupIn(this.room.currentState())("m.room.server_acl", "");
    return {
      server_acl: acl ? JSON.stringify(acl.content) : null,
      room_id: this.room.roomId,
      room_version: this.room.version.id,
      local_joined: this.ctx.storage.sql
        .exec<{ n: number }>("SELECT count(*) AS n FROM members WHERE server = ? AND membership = 'join'", ours)
        .one().n,
      partial_state: this.room.meta("partial_state") !== undefined,
    };
  }

  /**
   * The events we originated after `afterPosition` that `server` should receive, in federation format (JSON
   * strings), at most `limit`, and the stream position the scan reached (pass it back as `afterPosition`).
   * An event is for `server` if one of its users is joined in the state before or after it, if it is a
   * membership event about one of its users, or if the server is listed in a partial-state room's servers.
   * `latestOnly` (catching up after an outage): only the newest such event; the remote fetches the rest.
   */
  async eventsForDestination(
    server: string,
    afterPosition: number,
    limit: number,
    latestOnly = false,
  ): Promise<{ pdus: string[]; position: number }> {
    if (!this.room.exists) return { pdus: [], position: Number.MAX_SAFE_INTEGER };
    const sql = this.ctx.storage.sql;
    const ours = getConfig(this.env).serverName;
    const version = this.room.version;
    const end = this.room.streamPosition;
    const suffix = `:${server}`;
    const memberKeys = sql
      .exec<{ id: number }>("SELECT id FROM state_keys WHERE type = 'm.room.member' AND substr(state_key, -?) = ?", suffix.length, suffix)
      .toArray()
      .map((r) => r.id);
    const listed = (this.room.meta("servers_in_room") ?? "").split(",").includes(server);
    if (memberKeys.length === 0 && !listed) return { pdus: [], position: end };
    // Nothing before the server's first membership event can be for it. Memberships known from a state we were
    // given (outliers of a remote join) or from backfill (negative positions) count as known from the start.
    let start = afterPosition;
    if (!listed) {
      const first = sql
        .exec<{ p: number | null }>(
          `SELECT min(CASE WHEN stream_ordering IS NULL OR stream_ordering < 0 THEN 0 ELSE stream_ordering END) AS p FROM events
           WHERE type = 'm.room.member' AND rejected IS NULL AND substr(state_key, -?) = ?`,
          suffix.length, suffix,
        )
        .one().p;
      if (first === null) return { pdus: [], position: end };
      start = Math.max(start, first - 1);
    }
    type Row = { stream_ordering: number; sender: string; type: string; state_key: string | null; json: string; state_before: number | null; state_after: number | null };
    const joinedIn = (group: number | null): boolean => {
      const state = this.room.states.load(group);
      for (const keyId of memberKeys) {
        const nid = state.get(keyId);
        if (nid !== undefined && this.room.events.authEvent(nid).content.membership === "join") return true;
      }
      return false;
    };
    const isFor = (r: Row): boolean =>
      // Ours, or a remote event we accepted as resident (send_join and friends) and pass on.
      (serverNameOf(r.sender) === ours || this.federation.isForwarded(r.stream_ordering)) &&
      (listed ||
        (r.type === "m.room.member" && r.state_key !== null && r.state_key.endsWith(suffix)) ||
        joinedIn(r.state_before) ||
        joinedIn(r.state_after));
    const toPdu = (r: Row) => JSON.stringify(toFederationPdu(JSON.parse(r.json) as PDU, version));
    const cols = "stream_ordering, sender, type, state_key, json, state_before, state_after";
    const PAGE = 200;
    const MAX_SCANNED = 2000;

    if (latestOnly) {
      for (let upper = end, scanned = 0; upper > start && scanned < MAX_SCANNED; scanned += PAGE) {
        const rows = sql
          .exec<Row>(`SELECT ${cols} FROM events WHERE stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT ?`, start, upper, PAGE)
          .toArray();
        if (rows.length === 0) break;
        const hit = rows.find(isFor);
        if (hit) return { pdus: [toPdu(hit)], position: end };
        upper = rows[rows.length - 1]!.stream_ordering - 1;
      }
      return { pdus: [], position: end };
    }

    const pdus: string[] = [];
    let position = start;
    for (let scanned = 0; scanned < MAX_SCANNED && pdus.length < limit; scanned += PAGE) {
      const rows = sql
        .exec<Row>(`SELECT ${cols} FROM events WHERE stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?`, position, end, PAGE)
        .toArray();
      if (rows.length === 0) {
        position = end;
        break;
      }
      for (const r of rows) {
        if (isFor(r)) pdus.push(toPdu(r));
        position = r.stream_ordering;
        if (pdus.length >= limit) break;
      }
    }
    return { pdus, position: Math.max(position, afterPosition) };
  }

  /** Which of `eventIds` the room holds (in any status: accepted, rejected, soft-failed, outlier). */
  async heldEvents(eventIds: string[]): Promise<string[]> {
    if (!this.room.exists) return [];
    // Faster joins: a resync asks about a whole state (10,000s of IDs) at once: one query, not one per ID.
    if (eventIds.length > 64) {
      const held = new Set(
        this.ctx.storage.sql
          .exec<{ event_id: string }>("SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", JSON.stringify(eventIds))
          .toArray()
          .map((r) => r.event_id),
      );
      return eventIds.filter((id) => held.has(id));
    }
    return eventIds.filter((id) => this.room.events.nidOf(id) !== undefined);
  }

  /**
   * The forward extremities (the `earliest_events` of get_missing_events) and the smallest depth of the room's
   * timeline (its `min_depth`, as the reference server sends: a fork that started below our extremities must
   * still come back whole).
   */
  async extremities(): Promise<{ event_ids: string[]; min_depth: number }> {
    if (!this.room.exists) return { event_ids: [], min_depth: 0 };
    const nids = this.room.forwardExtremities();
    const rows = nids.map((n) => this.room.events.statusByNid(n));
    const minDepth = this.ctx.storage.sql
      .exec<{ d: number | null }>("SELECT min(depth) AS d FROM events WHERE outlier = 0 AND stream_ordering IS NOT NULL")
      .one().d;
    return { event_ids: rows.map((r) => r.event_id), min_depth: minDepth ?? 0 };
  }

  /**
   * Stores fetched events as outliers, in the order given (auth events first). Each is its own transaction —
   * faster joins: in batches of up to OUTLIER_BATCH per transaction (a resync stores a whole state); a batch
   * that throws is redone one event per transaction, so one bad event never takes others down with it.
   */
  async storeOutliers(pdusJson: string[]): Promise<OutlierOutcome[]> {
    if (!this.room.exists) return pdusJson.map(() => ({ status: "invalid" as const, reason: "room not known here" }));
    const one = (json: string): OutlierOutcome => {
      try {
        return this.transact(() => this.room.storeOutlier(JSON.parse(json) as PDU));
      } catch (e) {
        return { status: "invalid" as const, reason: String((e as Error).message ?? e) };
      }
    };
    const out: OutlierOutcome[] = [];
    for (let i = 0; i < pdusJson.length; i += OUTLIER_BATCH) {
      const batch = pdusJson.slice(i, i + OUTLIER_BATCH);
      if (batch.length === 1) {
        out.push(one(batch[0]!));
        continue;
      }
      try {
        out.push(...this.transact(() => batch.map((json) => this.room.storeOutlier(JSON.parse(json) as PDU))));
      } catch {
        out.push(...batch.map(one));
      }
    }
    return out;
  }

  /**
   * Accepts an event whose missing prev events could not be fetched, given the state after each of them
   * (`prevStates`: prev event ID → state event IDs, all held). See `Room.acceptWithPrevStates`.
   */
  async receiveWithPrevStates(pduJson: string, prevStates: [string, string[]][]): Promise<Outcome> {
    if (!this.room.exists) return { status: "invalid", reason: "room not known here" };
    let outcome: Outcome;
    try {
      outcome = this.transact(() => this.room.acceptWithPrevStates(JSON.parse(pduJson) as PDU, new Map(prevStates)));
    } catch (e) {
      return { status: "invalid", reason: String((e as Error).message ?? e) };
    }
    void this.outbox.drain();
    return outcome;
  }
  // ===== end of the federation block =====

  // =========================================================================================================
  // Federation: serving room data to other servers and the membership handshakes (federation-room.ts; the
  // Worker side is src/routes/federation/* and src/federation/{join,leave,invite,backfill}.ts). Reads answer
  // `{status, body}` (FedAnswer); every write is one transaction.
  // =========================================================================================================

  private fedRoom: FederationRoom | undefined;
  private get federation(): FederationRoom {
    return (this.fedRoom ??= new FederationRoom(this.room, this.ctx.storage.sql, this.outbox, getConfig(this.env).serverName));
  }

  /** Room-scoped read access of `server` (404 unknown room, 403 ACL or not in the room). */
  private fedAccess(server: string, requireJoined = true): FedAnswer | undefined {
    const problem = this.federation.accessProblem(server, requireJoined);
    return problem ? fedAnswer(problem) : undefined;
  }

  /** `GET /event/{eventId}` (the PDU, redacted if `server` may not see it). */
  async fedEvent(server: string, eventId: string): Promise<FedAnswer> {
    const denied = this.fedAccess(server);
    if (denied) return denied;
    const pdu = this.federation.event(server, eventId);
    if (isFedError(pdu)) return fedAnswer(pdu);
    return fedAnswer({ origin: getConfig(this.env).serverName, origin_server_ts: Date.now(), pdus: [pdu] });
  }

  /** `GET /state_ids/{roomId}?event_id=` */
  async fedStateIds(server: string, eventId: string): Promise<FedAnswer> {
    return this.fedAccess(server) ?? fedAnswer(this.federation.stateIds(eventId));
  }

  /** `GET /state/{roomId}?event_id=` */
  async fedState(server: string, eventId: string): Promise<FedAnswer> {
    return this.fedAccess(server) ?? fedAnswer(this.federation.stateJson(eventId));
  }

  /** `GET /event_auth/{roomId}/{eventId}` */
  async fedEventAuth(server: string, eventId: string): Promise<FedAnswer> {
    const denied = this.fedAccess(server);
    if (denied) return denied;
    const chain = this.federation.eventAuth(eventId);
    return fedAnswer(isFedError(chain) ? chain : { auth_chain: chain });
  }

  /** `GET /backfill/{roomId}?v=&limit=` */
  async fedBackfill(server: string, from: string[], limit: number): Promise<FedAnswer> {
    const denied = this.fedAccess(server);
    if (denied) return denied;
    const pdus = this.federation.backfill(server, from, limit);
    return fedAnswer({ origin: getConfig(this.env).serverName, origin_server_ts: Date.now(), pdus });
  }

  /** `POST /get_missing_events/{roomId}` */
  async fedMissingEvents(server: string, earliest: string[], latest: string[], limit: number, minDepth: number): Promise<FedAnswer> {
    return this.fedAccess(server) ?? fedAnswer({ events: this.federation.missingEvents(server, earliest, latest, limit, minDepth) });
  }

  /** `GET /timestamp_to_event/{roomId}?ts=&dir=` */
  async fedTimestampToEvent(server: string, ts: number, dir: "f" | "b"): Promise<FedAnswer> {
    return this.fedAccess(server) ?? fedAnswer(this.federation.timestampToEvent(server, ts, dir));
  }

  /**
   * What the Worker checks before handing out a join template: whether we can act as resident, the ACL, the
   * room version, the join rule (restricted: the rooms whose members may join) and the user's membership.
   */
  async fedJoinInfo(server: string, userId: string): Promise<
    | { ok: true; room_version: string; join_rule: string; allow_rooms: string[]; membership: string; authoriser: string | null }
    | { ok: false; answer: FedAnswer }
  > {
    const problem = this.federation.residentProblem() ?? this.federation.accessProblem(server, false);
    if (problem) return { ok: false, answer: fedAnswer(problem) };
    const rules = this.federation.joinRules();
    return {
      ok: true,
      room_version: this.room.version.id,
      ...rules,
      membership: this.federation.membershipOf(userId),
      authoriser: this.federation.restrictedAuthoriser() ?? null,
    };
  }

  /** Whether `userId` is joined here now (restricted joins: membership of an allowed room). */
  async fedIsJoined(userId: string): Promise<boolean> {
    return this.room.exists && this.federation.membershipOf(userId) === "join";
  }

  /**
   * make_join / make_leave / make_knock: an unsigned template of `userId`'s membership event, checked against
   * the current state. `versions`: the room versions the asking server supports (null: any).
   */
  async fedMakeMembership(server: string, userId: string, membership: "join" | "leave" | "knock", versions: string[] | null, authoriser: string | null): Promise<FedAnswer> {
    const problem = this.federation.residentProblem() ?? this.federation.accessProblem(server, false);
    if (problem) return fedAnswer(problem);
    if (versions && !versions.includes(this.room.version.id)) {
      return fedAnswer(fedError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Your server does not support room version ${this.room.version.id}`, { room_version: this.room.version.id }));
    }
    if (membership === "knock" && !this.room.version.knocking) {
      return fedAnswer(fedError(400, "M_FORBIDDEN", `Room version ${this.room.version.id} does not support knocking`));
    }
    return fedAnswer(this.transact(() => this.federation.membershipTemplate(userId, membership, authoriser ?? undefined)));
  }

  /**
   * send_join / send_leave / send_knock as resident: accepts `origin`'s membership event (its signatures and
   * hash checked by the Worker, ours added there for a restricted join) and passes it on to the room's other
   * servers. Answers with the send_join state, the knock's stripped state, or `{}`.
   */
  async fedSendMembership(
    origin: string, pduJson: string, membership: "join" | "leave" | "knock", signedByUs: boolean,
    omitMembers = false, // faster joins: send_join v2 with omit_members (docs/faster-joins.md)
  ): Promise<FedAnswer> {
    const problem = this.federation.residentProblem() ?? this.federation.accessProblem(origin, false);
    if (problem) return fedAnswer(problem);
    const pdu = JSON.parse(pduJson) as PDU;
    let outcome: Outcome;
    try {
      outcome = this.transact(() => {
        const r = this.room.accept(pdu);
        if (r.status === "accepted") this.federation.forward(r.stream_ordering, origin);
        return r;
      });
    } catch (e) {
      return fedAnswer(fedError(400, "M_BAD_JSON", `Could not accept the event: ${String((e as Error).message ?? e)}`));
    }
    void this.outbox.drain();
    switch (outcome.status) {
      case "accepted":
      case "duplicate":
        break;
      case "soft_failed":
      case "rejected":
        return fedAnswer(fedError(403, "M_FORBIDDEN", `The ${membership} event was not allowed: ${"reason" in outcome ? outcome.reason : "it fails the current state"}`));
      case "missing_prevs":
        return fedAnswer(fedError(400, "M_BAD_JSON", `Unknown prev events ${outcome.missing.join(", ")}: use a template from this server`));
      default:
        return fedAnswer(fedError(400, "M_BAD_JSON", `Invalid event: ${JSON.stringify(outcome)}`));
    }
    // The joiner's users now count in the directory (room_members), which is also how /event finds the room.
    // (Faster joins: the answer is built while the directory write is under way; both are done before it goes.)
    const directory = this.syncDirectory().catch((e: unknown) => console.warn(`room: directory sync failed: ${String((e as Error)?.message ?? e)}`));
    if (membership === "knock") return directory.then(() => fedAnswer({ knock_room_state: this.federation.strippedStatePdus() }));
    if (membership === "leave") return directory.then(() => fedAnswer({}));
    const eventId = computeEventId(pdu, this.room.version);
    // Something arrived between make_join and send_join that the join does not descend from: merge at once.
    await this.mergeExtremitiesAfterJoin();
    const answer = fedAnswer(this.federation.sendJoinAnswerJson(eventId, signedByUs ? { event: this.federation.pduOf(pduJson) } : {}, omitMembers));
    await directory;
    return answer;
  }

  /**
   * Stores an out-of-band membership event (a remote invite; our own leave or knock made through another server)
   * for a room this server does not follow, creating the room's record if needed. The local user's sync stream
   * hears of it before this returns. `unsignedJson`: `{invite_room_state}` / `{knock_room_state}` (stripped).
   */
  async fedStoreOutOfBand(roomId: string, versionId: string, pduJson: string, unsignedJson: string): Promise<{ event_id: string } | { error: string }> {
    const version = roomVersion(versionId);
    if (!version) return { error: `unknown room version ${versionId}` };
    const pdu = JSON.parse(pduJson) as PDU;
    const eventId = computeEventId(pdu, version);
    const result = this.transact(() => {
      if (!this.room.exists) this.room.initialise(roomId, version);
      else if (this.room.version.id !== version.id) return { error: `room ${roomId} has version ${this.room.version.id}, not ${version.id}` };
      return this.federation.storeOutOfBand(pdu, eventId, JSON.parse(unsignedJson) as JsonObject);
    });
    if ("error" in result) return result;
    if (typeof pdu.state_key === "string" && serverNameOf(pdu.state_key) === getConfig(this.env).serverName) {
      await this.outbox.deliverNow("user", pdu.state_key);
    }
    void this.outbox.drain();
    return { event_id: result.event_id };
  }

  /**
   * What this server knows of a room it may not be in, for a local user's remote membership change: the room
   * version, whether local users are joined, the servers in its (possibly stale) state, and the user's newest
   * out-of-band membership event (its sender's server is where an invite came from).
   */
  async fedRemoteInfo(userId: string): Promise<{
    exists: boolean; room_version: string | null; local_joined: number; servers: string[];
    out_of_band: { event_id: string; membership: string; sender: string; resident: string | null } | null;
  }> {
    if (!this.room.exists) return { exists: false, room_version: null, local_joined: 0, servers: [], out_of_band: null };
    const oob = this.federation.outOfBandMembership(userId);
    return {
      exists: true,
      room_version: this.room.version.id,
      local_joined: this.federation.localJoined(),
      // Faster joins: a partial state knows few members; the servers from the join (joined_via first) come first.
      servers: [...new Set([...(this.partial.info?.servers_in_room ?? []), ...this.queries.joinedServers(getConfig(this.env).serverName)])],
      out_of_band: oob ? outOfBandSummary(oob) : null,
    };
  }

  /** The user's newest out-of-band membership event as stored (JSON), or "null". */
  async fedOutOfBandJson(userId: string): Promise<string> {
    return this.room.exists ? (this.federation.outOfBandMembership(userId)?.json ?? "null") : "null";
  }

  /**
   * Persists a local user's join made through a resident server (a full send_join answer, checked by the
   * Worker): the room's identity, the auth chain and state as outliers (auth events first), then the join on top
   * of that state — one transaction. The join becomes the only forward extremity; its unknown prev events are
   * where backfill starts. The joiner's sync stream hears of it before this returns.
   */
  async fedPersistRemoteJoin(roomId: string, versionId: string, outliersJson: string[], stateIds: string[], joinJson: string): Promise<Outcome> {
    const version = roomVersion(versionId);
    if (!version) return { status: "invalid", reason: `unknown room version ${versionId}` };
    const pdu = JSON.parse(joinJson) as PDU;
    let outcome: Outcome;
    try {
      outcome = this.transact(() => {
        if (!this.room.exists) this.room.initialise(roomId, version);
        else if (this.room.version.id !== version.id) throw new RemoteJoinFailed({ status: "invalid", reason: `room version mismatch` });
        for (const json of outliersJson) this.room.storeOutlier(JSON.parse(json) as PDU);
        // Only what could be stored counts as state (events failing their own auth events are left out).
        const held = stateIds.filter((id) => this.room.events.nidOf(id) !== undefined);
        this.federation.beforeRemoteJoin();
        const prevStates = new Map(eventRefIds(pdu.prev_events).map((p) => [p, held] as const));
        const r = this.room.accept(pdu, { local: true, prevStates });
        if (r.status !== "accepted" && r.status !== "duplicate") throw new RemoteJoinFailed(r);
        this.federation.afterRemoteJoin(pdu);
        return r;
      });
    } catch (e) {
      if (e instanceof RemoteJoinFailed) return e.outcome;
      throw e;
    }
    await this.afterCommit(pdu.sender);
    await this.fedDirectoryAllMembers();
    return outcome;
  }

  /**
   * After a remote join: the members known from the resident's state are outliers, which the directory's
   * incremental pass (member events by stream position) never sees; write every current member once.
   */
  private async fedDirectoryAllMembers(): Promise<void> {
    const changes = this.ctx.storage.sql
      .exec<{ user_id: string; membership: string; event_nid: number }>("SELECT user_id, membership, event_nid FROM members")
      .toArray()
      .map((m) => {
        if (m.membership !== "join") return { user_id: m.user_id, joined: false, displayname: null, avatar_url: null };
        const content = this.room.events.authEvent(m.event_nid).content;
        const str = (v: unknown) => (typeof v === "string" ? v : null);
        return { user_id: m.user_id, joined: true, displayname: str(content.displayname), avatar_url: str(content.avatar_url) };
      });
    await writeRoomDirectoryData(this.env.DB, this.checks.directoryStats(), changes, true).catch((e: unknown) =>
      console.warn(`room: directory write after a remote join failed: ${String((e as Error)?.message ?? e)}`),
    );
  }

  /**
   * Builds and signs a local event without persisting it (an invite for a user of another server, who must
   * co-sign it first). Checked against the current state. JSON of the PDU, or the refusal.
   */
  async fedBuildLocal(template: EventTemplate): Promise<{ ok: true; pdu: string } | { ok: false; errcode: string; error: string }> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    return this.transact(() => {
      const pdu = this.room.buildLocal(template);
      const check = this.room.checkAuthAgainst(toAuthEvent(computeEventId(pdu, this.room.version), pdu, this.room.version), this.room.currentState());
      if (!check.allowed) return { ok: false as const, errcode: "M_FORBIDDEN", error: check.reason };
      return { ok: true as const, pdu: JSON.stringify(pdu) };
    });
  }

  /** Stripped state for an invite or knock as PDUs (JSON array): create, join rules, name … and `memberOf`'s member event. */
  async fedStrippedState(memberOf: string | null): Promise<string> {
    return JSON.stringify(this.room.exists ? this.federation.strippedStatePdus(memberOf ?? undefined) : []);
  }

  /** Persists a local event built with `fedBuildLocal` (e.g. the invite, now co-signed). Read-your-writes for its sender. */
  async fedAcceptLocal(pduJson: string): Promise<SendResult> {
    if (!this.room.exists) return { ok: false, errcode: "M_NOT_FOUND", error: "Unknown room" };
    const pdu = JSON.parse(pduJson) as PDU;
    const outcome = this.transact(() => this.room.accept(pdu, { local: true }));
    if (outcome.status === "duplicate") return { ok: true, event_id: outcome.event_id, stream_ordering: this.room.events.statusById(outcome.event_id)?.stream_ordering ?? 0 };
    if (outcome.status !== "accepted") return { ok: false, errcode: "M_FORBIDDEN", error: "reason" in outcome ? outcome.reason : outcome.status };
    await this.afterCommit(pdu.sender);
    return { ok: true, event_id: outcome.event_id, stream_ordering: outcome.stream_ordering };
  }

  /**
   * Backfill: places a past event (checked by the Worker) in the DAG without making it new — see
   * `AcceptOptions.historical`. `prevStates` stand in for prev events that could not be fetched.
   */
  async fedReceiveHistorical(pduJson: string, prevStates: [string, string[]][]): Promise<Outcome> {
    if (!this.room.exists) return { status: "invalid", reason: "room not known here" };
    const pdu = JSON.parse(pduJson) as PDU;
    try {
      return this.transact(() => {
        const r = this.room.accept(pdu, { historical: true, prevStates: new Map(prevStates) });
        if (r.status === "accepted" && prevStates.length > 0) this.federation.recordBackwardExtremities(pdu);
        return r;
      });
    } catch (e) {
      return { status: "invalid", reason: String((e as Error).message ?? e) };
    }
  }

  /**
   * Where `/messages` going back from `from` (a room token; the live end when null) would run out of local
   * history within `limit` events: the backward extremities to backfill from, and the servers to ask. Null
   * when there is enough history here (or nowhere to ask).
   */
  async fedBackfillPoint(from: string | null, limit: number): Promise<{ extremities: string[]; servers: string[] } | null> {
    if (!this.room.exists || this.room.currentStateGroup === null) return null;
    const cut = from === null ? this.queries.endPosition() : this.queries.resolveToken(from);
    if (!cut) return null;
    const extremities = this.federation.backwardExtremities(cut.depth);
    if (extremities.length === 0) return null;
    if (this.federation.eventsDownTo(extremities[0]!.depth, cut, limit + 1) > limit) return null;
    const ours = getConfig(this.env).serverName;
    const servers = this.queries.joinedServers(ours).filter((s) => s !== ours);
    if (servers.length === 0) return null;
    return { extremities: extremities.slice(0, 5).map((e) => e.event_id), servers };
  }
  /**
   * Inbound typing notifications and read receipts of remote users for this room (one transaction's, in order):
   * admitted by the room's server ACL, for joined users only, receipts for events the user can see. One
   * transaction and one delivery to local users for the lot. Returns how many changed something.
   */
  async fedRemoteEphemeral(origin: string, itemsJson: string, typingTimeoutMs: number): Promise<number> {
    if (!this.room.exists || !serverAllowedByAcl(origin, this.federation.acl())) return 0;
    type Item =
      | { kind: "typing"; userId: string; typing: boolean }
      | { kind: "receipt"; userId: string; eventId: string; threadId: string | null; ts: number };
    const items = JSON.parse(itemsJson) as Item[];
    const changed = this.transact(() => {
      let n = 0;
      for (const it of items) {
        // Faster joins: a remote user the partial state does not know may well be in the room; accept.
        const unknown = this.partialUnknownMember(it.userId);
        if (this.syncView.membershipOf(it.userId) !== "join" && !unknown) continue;
        const visible = (eventId: string) => (unknown ? this.room.events.statusById(eventId)?.stream_ordering != null : this.syncView.canSee(it.userId, eventId));
        if (it.kind === "typing") {
          if (this.ephemeral.setTyping(it.userId, it.typing, typingTimeoutMs)) n++;
        } else if (visible(it.eventId) && this.ephemeral.putReceipt(it.userId, "m.read", it.threadId, it.eventId, it.ts)) {
          n++;
        }
      }
      return n;
    });
    if (changed > 0) void this.outbox.drain();
    return changed;
  }

  /**
   * A room's entry for `/hierarchy` (spaces) as seen by `server`: its directory summary, its `m.space.child`
   * events, the rooms a restricted join rule allows, and whether the server has users in it. JSON, or null when
   * the room is not held here.
   */
  async fedHierarchyEntry(server: string): Promise<string | null> {
    if (!this.room.exists || this.room.currentStateGroup === null) return null;
    if (!serverAllowedByAcl(server, this.federation.acl())) return JSON.stringify({ denied: true });
    const { children_state, server_member } = this.federation.spaceChildren(server);
    return JSON.stringify({ stats: this.checks.directoryStats(), children_state, server_member, allow_rooms: this.federation.joinRules().allow_rooms });
  }
  // ===== end of the federation serving block =====

  // =========================================================================================================
  // Application services (src/appservices, durable-objects/appservice): what an AppServiceDO pulls.

  /**
   * Events logged for appservice `asId` after room position `after` (its cursor, which it has committed: rows up
   * to it are dropped), at most `limit`, in client format, and the position its cursor may move to.
   */
  async appserviceEvents(asId: string, after: number, limit: number): Promise<{ events: AppserviceEventRow[]; position: number }> {
    if (!this.room.exists) return { events: [], position: after };
    return this.transact(() => this.appservices.eventsAfter(asId, after, limit));
  }

  /** Typing and receipts for appservice `asId` after ephemeral position `after` (JSON texts), and the position reached. */
  async appserviceEphemeral(asId: string, after: number): Promise<{ events: string[]; position: number }> {
    if (!this.room.exists) return { events: [], position: after };
    return this.appservices.ephemeralAfter(asId, after, this.ephemeral);
  }
  // ===== end of the application services block =====

  // =========================================================================================================
  // Search and room upgrades (docs/search.md, docs/room-upgrades.md): the room's half of POST /search
  // (search-index.ts; the index itself is written by Room.commit) and of POST /rooms/{roomId}/upgrade
  // (upgrade.ts). Requests and answers cross RPC as JSON text.

  private roomSearchCore: RoomSearch | undefined;
  private get roomSearch(): RoomSearch {
    return (this.roomSearchCore ??= new RoomSearch(this.room, this.ctx.storage.sql, this.queries));
  }
  private roomUpgradeCore: RoomUpgrade | undefined;
  private get roomUpgrade(): RoomUpgrade {
    return (this.roomUpgradeCore ??= new RoomUpgrade(this.room, this.ctx.storage.sql, (u) => this.checks.canSendState(u, "m.room.tombstone")));
  }

  /** One room's search matches for one user: a RoomSearchRequest in, a RoomSearchAnswer out (JSON). */
  async searchRoom(requestJson: string): Promise<string> {
    return JSON.stringify(this.roomSearch.search(JSON.parse(requestJson) as RoomSearchRequest));
  }

  /** Context around kept search results and the room's state for the user (JSON: {contexts, state?}). */
  async searchDetails(viewer: Viewer, eventIds: string[], context: { before: number; after: number; profile: boolean } | null, includeState: boolean): Promise<string> {
    return JSON.stringify(this.roomSearch.details(viewer, eventIds, context, includeState));
  }

  /** The room this one replaced (`predecessor.room_id` of its create event), if any. */
  async roomPredecessor(): Promise<string | null> {
    const p = this.room.exists ? this.room.createEvent()?.content.predecessor : undefined;
    const id = p && typeof p === "object" && !Array.isArray(p) ? (p as JsonObject).room_id : undefined;
    return typeof id === "string" ? id : null;
  }

  /** What an upgrade by `userId` copies from this room (JSON UpgradeSnapshot), or null when the room is not held. */
  async upgradeSnapshot(userId: string): Promise<string | null> {
    if (!this.room.exists || this.room.currentStateGroup === null) return null;
    return JSON.stringify(this.roomUpgrade.snapshot(userId));
  }

  /** Claims this room for an upgrade by `userId` (see upgrade.ts: one replacement room, never two). */
  async upgradeClaim(userId: string): Promise<UpgradeClaim> {
    return this.transact(() => this.roomUpgrade.claim(userId, Date.now()));
  }

  /** Ends `userId`'s upgrade with its replacement room, or (null) forgets the failed claim. */
  async upgradeFinish(userId: string, replacementRoom: string | null): Promise<void> {
    this.transact(() => this.roomUpgrade.finish(userId, replacementRoom, Date.now()));
  }

  /** Where `userId`'s upgrade stands (a repeated request waiting for the first one polls this). */
  async upgradeResult(userId: string): Promise<{ done: boolean; replacement_room: string | null }> {
    return this.roomUpgrade.result(userId);
  }
  // ===== end of the search and room upgrades block =====

  // =========================================================================================================
  // Spaces and room previews for clients (src/rooms/summary.ts, src/rooms/spaces.ts, docs/spaces.md): one
  // read, and the `/hierarchy` pagination sessions of walks rooted here (table `hierarchy_sessions`, own).

  /**
   * What the client `/hierarchy` and `/room_summary` need of this room for `userId` (null: unauthenticated), as
   * JSON: the user's membership (the newer of the current one and the newest out-of-band one), servers that may
   * know the room, and — when state is held — its directory summary, `m.space.child` events, the rooms a
   * restricted join rule allows and the number of local users joined.
   */
  async clientSpaceEntry(userId: string | null): Promise<string> {
    if (!this.room.exists) return JSON.stringify({ membership: null, servers: [], room: null });
    const ours = getConfig(this.env).serverName;
    const held = this.room.currentStateGroup !== null;
    let membership: string | null = null;
    let at = -1;
    const oob = userId === null ? undefined : this.federation.outOfBandMembership(userId);
    if (userId !== null && held) {
      const m = this.queries.currentMember(userId);
      if (m) {
        membership = m.membership;
        at = this.ctx.storage.sql.exec<{ s: number | null }>("SELECT stream_ordering AS s FROM events WHERE nid = ?", m.event_nid).toArray()[0]?.s ?? -1;
      }
    }
    const oobSummary = oob ? outOfBandSummary(oob) : null;
    if (oob && oobSummary && (membership === null || (this.room.events.statusById(oob.event_id)?.stream_ordering ?? -1) > at)) membership = oob.membership;
    const inviter = oobSummary?.membership === "invite" ? oobSummary.sender.slice(oobSummary.sender.indexOf(":") + 1) : undefined;
    const servers = [...new Set([...(inviter ? [inviter] : []), ...(this.partial.info?.servers_in_room ?? []), ...(held ? this.queries.joinedServers(ours) : [])])];
    const stats = held ? this.checks.directoryStats() : null;
    // Only a space's children are walked (and listing them scans the current state: skipped for other rooms).
    const children = stats?.room_type === "m.space" ? this.federation.spaceChildren(ours).children_state : [];
    const room = stats ? { stats, children_state: children, allow_rooms: this.federation.joinRules().allow_rooms, local_joined: this.federation.localJoined() } : null;
    return JSON.stringify({ membership, servers, room });
  }

  private hierarchySessionsReady = false;

  /** The sessions table, created if missing on first use (no RoomDO schema version taken; rows live minutes). */
  private hierarchySessions(): SqlStorage {
    const sql = this.ctx.storage.sql;
    if (!this.hierarchySessionsReady) {
      sql.exec("CREATE TABLE IF NOT EXISTS hierarchy_sessions (token TEXT PRIMARY KEY, json TEXT NOT NULL, expires_ts INTEGER NOT NULL)");
      this.hierarchySessionsReady = true;
    }
    return sql;
  }

  /** Keeps a `/hierarchy` pagination session (JSON) until `expiresTs`, and drops the expired ones. */
  async hierarchySessionPut(token: string, json: string, expiresTs: number): Promise<void> {
    const sql = this.hierarchySessions();
    this.ctx.storage.transactionSync(() => {
      sql.exec("DELETE FROM hierarchy_sessions WHERE expires_ts <= ?", Date.now());
      sql.exec("INSERT OR REPLACE INTO hierarchy_sessions (token, json, expires_ts) VALUES (?, ?, ?)", token, json, expiresTs);
    });
  }

  /** A live `/hierarchy` pagination session (JSON), or null when unknown or expired. */
  async hierarchySessionGet(token: string): Promise<string | null> {
    const row = this.hierarchySessions()
      .exec<{ json: string; expires_ts: number }>("SELECT json, expires_ts FROM hierarchy_sessions WHERE token = ?", token)
      .toArray()[0];
    return row && row.expires_ts > Date.now() ? row.json : null;
  }
  // ===== end of the spaces block =====

  // =========================================================================================================
  // Partial state (faster joins): joining with partial state, the resync loop, waiting for full state.
  // =========================================================================================================

  /**
   * Persists a join made with partial state: the room's identity, the join event accepted on top of the state
   * the resident returned (`stateIds`, all stored as outliers beforehand through `storeOutliers`), and the room
   * row marking it partial — one transaction. Then starts the resync.
   */
  async beginPartialJoin(
    roomId: string,
    versionId: string,
    joinPduJson: string,
    stateIds: string[],
    info: { servers_in_room: string[]; joined_via: string },
    // Faster joins, joining side (src/federation/partial-join.ts): the state and its auth chain, checked by the
    // Worker, in auth-chain order — stored as outliers in this same transaction (a fresh room has no row yet
    // for storeOutliers to use).
    outliersJson: string[] = [],
  ): Promise<Outcome> {
    const version = roomVersion(versionId);
    if (!version) return { status: "invalid", reason: `unknown room version ${versionId}` };
    const pdu = JSON.parse(joinPduJson) as PDU;
    let outcome: Outcome;
    try {
      outcome = this.transact(() => {
        // Rejoining a room held from before (or still partial): same identity, the join is new or a retry.
        if (this.room.exists && this.room.version.id !== version.id) throw new PartialJoinFailed({ status: "invalid", reason: "room version mismatch" });
        this.room.initialise(roomId, version);
        const joinId = computeEventIdFor(pdu, version);
        const held = this.room.events.statusById(joinId);
        if (held && !held.outlier) return { status: "duplicate" as const, event_id: joinId };
        for (const json of outliersJson) this.room.storeOutlier(JSON.parse(json) as PDU);
        const prior = this.partial.info; // still partial from an earlier join: keep its progress and servers
        // A second local join went through a resident while the room was partial, and the resync finished before
        // the answer came: the room is fully stated and followed by our members, so the join is an ordinary event
        // on our own state (entering partial state again would make the room partial for nothing). Prev events we
        // lack are fetched by the caller, which then hands the join in like any other remote event.
        if (!prior && this.federation.localJoined() > 0) {
          const missing = missingPrevEvents(this.room, pdu);
          if (missing.length > 0) throw new PartialJoinFailed({ status: "missing_prevs", event_id: joinId, missing });
          const result = this.room.accept(pdu, { local: true });
          if (result.status !== "accepted") throw new PartialJoinFailed(result);
          return result;
        }
        this.partial.begin({ join_event_id: joinId, servers_in_room: info.servers_in_room, joined_via: info.joined_via });
        if (prior) {
          this.partial.update({ started_ts: prior.started_ts, events_completed: prior.events_completed, state_events_fetched: prior.state_events_fetched });
          this.partial.addServers(prior.servers_in_room);
        }
        // Stale forward extremities (nobody of ours was in the room) are superseded by the join's state.
        if (this.federation.localJoined() === 0) this.federation.beforeRemoteJoin();
        const prevStates = new Map((pdu.prev_events as string[]).map((p) => [typeof p === "string" ? p : (p as [string])[0], stateIds]));
        const result = this.room.accept(pdu, { local: true, prevStates, partialState: true });
        if (result.status !== "accepted") throw new PartialJoinFailed(result);
        this.federation.afterRemoteJoin(pdu); // out-of-band memberships leave the timeline; backfill starts at the join
        this.timers.schedule(RESYNC_TASK, Date.now());
        return result;
      });
    } catch (e) {
      if (e instanceof PartialJoinFailed) return e.outcome;
      throw e;
    }
    await this.afterCommit(pdu.sender);
    return outcome;
  }

  /** Read-your-writes for a local user whose event arrived the federation way (a join placed through a resident). */
  async deliverToUser(userId: string): Promise<void> {
    await this.outbox.deliverNow("user", userId);
  }

  /**
   * As resident, right after accepting a remote server's join (send_join): if the room now has more than one
   * forward extremity — an event arrived between its make_join and send_join that the join does not descend
   * from — merge them at once with a dummy event. It goes to every server in the room, the joiner included,
   * which then fetches the event it would otherwise never see as a missing prev event.
   */
  async mergeExtremitiesAfterJoin(): Promise<string | null> {
    if (!this.room.exists || this.room.forwardExtremities().length <= 1) return null;
    const id = this.transact(() => this.room.sendDummyEvent()) ?? null;
    void this.outbox.drain();
    return id;
  }

  /** The room row and progress while partial (admin view, logs); null when fully stated. */
  async partialStateInfo(): Promise<(PartialStateInfo & { events_left: number; resync_due_ts: number | null }) | null> {
    const info = this.room.exists ? this.partial.info : undefined;
    // Faster joins (admin view): when the next resync step is due (null: paused or running now).
    const due = this.ctx.storage.sql.exec<{ due_ts: number }>("SELECT due_ts FROM tasks WHERE name = ?", RESYNC_TASK).toArray()[0];
    return info ? { ...info, events_left: this.partial.eventsLeft(), resync_due_ts: due?.due_ts ?? null } : null;
  }

  /**
   * Waits until the room is fully stated (or `timeoutMs` passes): `/members`, `/state` and eager syncs of a
   * partial room wait here. Each request owns its waiter, named `waiterId`; when the client disconnects, the
   * Worker calls `cancelFullStateWait(waiterId)` and the waiter is removed.
   */
  async waitForFullState(waiterId: string, timeoutMs: number): Promise<boolean> {
    if (!this.room.exists || !this.partial.isPartial) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(!this.partial.isPartial), timeoutMs);
      const done = (full: boolean) => {
        clearTimeout(timer);
        this.fullStateWaiters.delete(waiterId);
        resolve(full);
      };
      this.fullStateWaiters.get(waiterId)?.(false);
      this.fullStateWaiters.set(waiterId, done);
    });
  }

  /** Ends a waiting request's full-state waiter (its client went away). Returns whether one was waiting. */
  async cancelFullStateWait(waiterId: string): Promise<boolean> {
    const waiter = this.fullStateWaiters.get(waiterId);
    waiter?.(false);
    return waiter !== undefined;
  }

  /**
   * Faster joins: whether `userId` is a remote user about whom a partially stated room knows nothing (their
   * membership was omitted from the join's state): typing and receipts from them are accepted while partial.
   */
  private partialUnknownMember(userId: string): boolean {
    if (!this.room.exists || !this.partial.isPartial) return false;
    if (serverNameOf(userId) === getConfig(this.env).serverName) return false;
    return this.ctx.storage.sql.exec("SELECT 1 FROM members WHERE user_id = ?", userId).toArray().length === 0;
  }

  /** How many requests wait for full state (tests, metrics). */
  async fullStateWaiterCount(): Promise<number> {
    return this.fullStateWaiters.size;
  }

  /**
   * The resync task. Faster joins: while a step is in flight the task stays scheduled a while ahead (a
   * watchdog), so an eviction or restart in the middle of a network step resumes by alarm; the batch then moves
   * it to when the next step is due, or drops it when there is nothing left to do.
   */
  private async resync(): Promise<void> {
    const watchdog = Date.now() + RESYNC_WATCHDOG_MS;
    this.transact(() => {
      this.timers.done(RESYNC_TASK);
      this.timers.schedule(RESYNC_TASK, watchdog);
    });
    const scheduled = await this.resyncBatch();
    // Nothing more to do: drop the watchdog (unless a join scheduled a step meanwhile, which moved it earlier).
    const due = this.ctx.storage.sql.exec<{ due_ts: number }>("SELECT due_ts FROM tasks WHERE name = ?", RESYNC_TASK).toArray()[0];
    if (!scheduled && due?.due_ts === watchdog) this.transact(() => this.timers.done(RESYNC_TASK));
  }

  /**
   * Runs resync steps until the room is fully stated, a step fails, or this invocation's batch is done. Returns
   * whether it scheduled the next step (false: nothing left to do for now).
   */
  private async resyncBatch(): Promise<boolean> {
    let localSteps = 0; // faster joins: completions from prev events (no network), bounded separately
    for (let i = 0; i < RESYNC_EVENTS_PER_ALARM; i++) {
      const info = this.partial.info;
      if (!info) return false;
      // Faster joins: with nobody of ours in the room, residents refuse our requests and nobody here needs the
      // state; the resync pauses until a local user joins again (beginPartialJoin schedules it).
      if (this.federation.localJoined() === 0) {
        if (info.last_error !== RESYNC_PAUSED) this.transact(() => this.partial.update({ last_error: RESYNC_PAUSED }));
        console.log(`resync: ${this.room.roomId} paused: no local member in the room`);
        return false;
      }
      const next = this.partial.nextReady();
      if (!next) {
        if (this.transact(() => this.partial.finish())) {
          console.log(`resync: ${this.room.roomId} is fully stated (${info.events_completed} events, ${info.state_events_fetched} state events fetched, ${Date.now() - info.started_ts} ms after the join)`);
          // Faster joins: every member is known now; the D1 directory (device-list tracking, user directory)
          // gets them all — members known only from the state are outliers, unseen by the incremental pass.
          await this.fedDirectoryAllMembers();
          return false;
        }
        continue; // an event arrived meanwhile: complete it too
      }
      // Faster joins: an event whose prev events are all fully stated takes their state; no resident needed.
      if (next.local) {
        if (localSteps >= RESYNC_LOCAL_STEPS_PER_ALARM) break; // bounded work: the alarm comes back at once
        const r = this.transact(() => this.partial.completeFromPrevs(next.event_id));
        if (r.status !== "missing") {
          localSteps++;
          i--; // not a network step
          continue;
        }
      }
      const ours = getConfig(this.env).serverName;
      const servers = info.servers_in_room.filter((s) => s !== ours);
      if (servers.length === 0) {
        this.transact(() => this.partial.update({ last_error: "no server to resync from" }));
        return false;
      }
      const server = servers[info.next_server % servers.length]!;
      try {
        const stepStarted = Date.now();
        // Faster joins: the first step (nothing fetched yet: the join's state is almost all unknown) takes the
        // whole state with /state at once.
        const { stateIds, fetched } = await fetchStateBefore(this.env, server, this.room.roomId, next.event_id, { bulk: info.state_events_fetched === 0 });
        const result = this.transact(() => {
          const r = this.partial.complete(next.event_id, stateIds);
          const now = this.partial.info;
          if (now && r.status === "completed") this.partial.update({ state_events_fetched: now.state_events_fetched + fetched });
          return r;
        });
        if (result.status === "missing") throw new Error(`${server} named state events it could not provide: ${result.missing.slice(0, 3).join(", ")}`);
        console.log(`resync: ${this.room.roomId} at ${next.event_id} via ${server}: ${stateIds.length} state events (${fetched} fetched) in ${Date.now() - stepStarted} ms; ${this.partial.eventsLeft()} events left`);
      } catch (e) {
        const failures = info.failures + 1;
        const message = String((e as Error)?.message ?? e).slice(0, 300);
        console.warn(`resync: ${this.room.roomId} at ${next.event_id} via ${server} failed (${failures}): ${message}`);
        this.transact(() => {
          this.partial.update({ failures, last_error: message, next_server: info.next_server + 1 });
          this.timers.done(RESYNC_TASK); // replaces the watchdog
          this.timers.schedule(RESYNC_TASK, Date.now() + resyncBackoffMs(failures));
        });
        return true;
      }
    }
    this.transact(() => this.timers.schedule(RESYNC_TASK, Date.now()));
    return true;
  }
  // ===== end of the partial state block =====
}
