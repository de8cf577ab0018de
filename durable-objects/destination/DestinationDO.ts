/**
 * DestinationDO: one Durable Object per remote server, the only sender of transactions to it.
 *
 * - RoomDO outboxes tell it `roomAdvanced(roomId, position)`: positions, not payloads. When it builds a
 *   transaction it reads the PDUs it has not sent yet from each RoomDO (`eventsForDestination`).
 * - Other code queues EDUs with `queueEdu` (typing, receipts, presence, to-device, device lists, signing keys).
 * - One transaction in flight: ≤ 50 PDUs and ≤ 100 EDUs, stored before it is sent so that a retry resends the
 *   same transaction ID and body (the receiver deduplicates by ID).
 * - Failure: exponential backoff by alarm. A server that has been failing for `catchUpAfterMs` is "caught up"
 *   when it comes back: the stored transaction is dropped and each room gets only its latest event (the remote
 *   fetches the gap with `/get_missing_events`). Any sign of life (it sends us a transaction) resets the backoff.
 * - It also remembers the transactions the server sent us, so that inbound `/send` is processed once per ID.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { FederationClient, FederationRequestError, seg } from "../../src/federation/client";
import { getConfig } from "../../src/config";
import { migrate } from "./schema";
// Federation E2EE: the device lists of this server's users that we track (device-cache.ts)
import { RemoteDeviceCache, type CachedDeviceList, type DeviceListUpdateResult } from "./device-cache";

/** An EDU to send; `content` is its JSON content as a string. */
export interface OutboundEdu {
  edu_type: string;
  content: string;
  /** A newer EDU with the same key replaces an unsent older one (e.g. `typing:<room>:<user>`). */
  coalesce_key?: string;
}

export type InboundTxnState = { status: "new" } | { status: "in_progress" } | { status: "done"; response: string };

export interface DestinationStatus {
  destination: string | null;
  state: "idle" | "sending" | "backing_off";
  catching_up: boolean;
  failures: number;
  first_failure_ts: number | null;
  next_retry_ts: number | null;
  last_error: string | null;
  last_success_ts: number | null;
  last_seen_alive_ts: number | null;
  transactions_sent: number;
  backlog: { rooms: { room_id: string; notified: number; sent: number }[]; edus: number };
  in_flight: { txn_id: string; pdus: number; edus: number; attempts: number; created_ts: number } | null;
}

type TxnRow = {
  txn_id: string;
  body: string;
  rooms: string;
  max_edu_id: number;
  pdu_count: number;
  edu_count: number;
  attempts: number;
  created_ts: number;
};

/** Spec limits for one transaction. */
export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
/** EDUs beyond this many are dropped, oldest ephemeral ones first. */
const MAX_QUEUED_EDUS = 10_000;
/** Inbound transaction IDs are remembered this long. */
const INBOUND_MEMORY_MS = 24 * 3600 * 1000;
/** An inbound transaction still "processing" after this long was abandoned (the Worker died): process again. */
const INBOUND_STALE_MS = 120 * 1000;
/** EDU types that are worthless once old: dropped when a catch-up starts. */
const EPHEMERAL_EDU_TYPES = ["m.typing", "m.presence"];
/** Ephemeral EDUs older than this are dropped instead of sent. */
const EPHEMERAL_EDU_MAX_AGE_MS = 60 * 1000;
/** Scan rounds (one RoomDO call per backlogged room each) per transaction build. */
const MAX_SCAN_ROUNDS = 20;

export class DestinationDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly client: FederationClient;
  private pumping: Promise<void> | undefined;
  private sending = false;
  private readonly inboundWaiters = new Map<string, Set<(response: string | undefined) => void>>();

  // Tunables (tests adjust them on the instance).
  /** First retry delay; doubles per failure. */
  retryBaseMs = 2_000;
  retryMaxMs = 3600 * 1000;
  /** A server failing for longer than this is caught up with only the latest event per room. */
  catchUpAfterMs = 10 * 60 * 1000;
  requestTimeoutMs = 60_000;
  maxPdus = MAX_PDUS_PER_TXN;
  maxEdus = MAX_EDUS_PER_TXN;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.client = new FederationClient(env);
    ctx.blockConcurrencyWhile(async () => migrate(ctx.storage));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Producers

  /** A room has events for this server up to `position`. Returns once that is durably recorded. */
  async roomAdvanced(destination: string, roomId: string, position: number): Promise<void> {
    this.bind(destination);
    this.sql.exec(
      `INSERT INTO rooms (room_id, notified, sent, updated_ts) VALUES (?, ?, 0, ?)
       ON CONFLICT (room_id) DO UPDATE SET notified = max(notified, excluded.notified), updated_ts = excluded.updated_ts`,
      roomId,
      position,
      Date.now(),
    );
    this.kick();
  }

  /** Queues an EDU for this server. */
  async queueEdu(destination: string, edu: OutboundEdu): Promise<void> {
    this.bind(destination);
    this.ctx.storage.transactionSync(() => {
      if (edu.coalesce_key !== undefined) this.sql.exec("DELETE FROM edus WHERE coalesce_key = ?", edu.coalesce_key);
      this.sql.exec(
        "INSERT INTO edus (edu_type, content, coalesce_key, queued_ts) VALUES (?, ?, ?, ?)",
        edu.edu_type,
        edu.content,
        edu.coalesce_key ?? null,
        Date.now(),
      );
      const count = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM edus").one().n;
      if (count > MAX_QUEUED_EDUS) this.dropEdus(count - MAX_QUEUED_EDUS);
    });
    this.kick();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Device lists of this server's users that we track (device-cache.ts; src/federation/remote-keys.ts)

  private deviceCache?: RemoteDeviceCache;
  private get devices(): RemoteDeviceCache {
    return (this.deviceCache ??= new RemoteDeviceCache(this.sql));
  }

  /** The cached device lists of those of `userIds` that are tracked (JSON: user ID → CachedDeviceList). */
  async cachedDeviceLists(userIds: string[]): Promise<string> {
    return JSON.stringify(this.devices.get(userIds));
  }

  /** Stores (or replaces) a user's device list, fetched with `/user/devices` (JSON of a CachedDeviceList). */
  async storeDeviceList(userId: string, listJson: string): Promise<void> {
    this.ctx.storage.transactionSync(() => this.devices.put(userId, JSON.parse(listJson) as CachedDeviceList));
  }

  /** Applies an `m.device_list_update` EDU (its content as JSON). */
  async deviceListUpdate(userId: string, contentJson: string): Promise<DeviceListUpdateResult> {
    return this.ctx.storage.transactionSync(() => this.devices.deviceListUpdate(userId, JSON.parse(contentJson) as Record<string, unknown>));
  }

  /** Applies an `m.signing_key_update` EDU (its content as JSON); false when the user is not tracked. */
  async signingKeyUpdate(userId: string, contentJson: string): Promise<boolean> {
    return this.ctx.storage.transactionSync(() => this.devices.signingKeyUpdate(userId, JSON.parse(contentJson) as Record<string, unknown>));
  }

  /** Stops tracking users (no local user shares a room with them any more). */
  async forgetDeviceLists(userIds: string[]): Promise<void> {
    this.ctx.storage.transactionSync(() => this.devices.forget(userIds));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Inbound transactions from this server

  /**
   * Claims an inbound transaction: "new" (the caller processes it and calls `finishInbound`), "done" with the
   * stored response, or "in_progress" (another request is processing it; see `waitInbound`). Receiving a
   * transaction shows the server is alive: any backoff towards it is reset.
   */
  async beginInbound(destination: string, txnId: string): Promise<InboundTxnState> {
    this.bind(destination);
    const now = Date.now();
    this.markAlive(now);
    const row = this.sql
      .exec<{ status: string; response: string | null; started_ts: number }>(
        "SELECT status, response, started_ts FROM inbound WHERE txn_id = ?",
        txnId,
      )
      .toArray()[0];
    if (row?.status === "done") return { status: "done", response: row.response ?? "{}" };
    if (row?.status === "processing" && now - row.started_ts < INBOUND_STALE_MS) return { status: "in_progress" };
    this.sql.exec(
      `INSERT INTO inbound (txn_id, status, started_ts) VALUES (?, 'processing', ?)
       ON CONFLICT (txn_id) DO UPDATE SET status = 'processing', started_ts = excluded.started_ts`,
      txnId,
      now,
    );
    return { status: "new" };
  }

  /** Records the response to an inbound transaction (replayed for retries) and wakes requests waiting for it. */
  async finishInbound(destination: string, txnId: string, response: string): Promise<void> {
    this.bind(destination);
    const now = Date.now();
    this.sql.exec("UPDATE inbound SET status = 'done', response = ?, finished_ts = ? WHERE txn_id = ?", response, now, txnId);
    this.sql.exec("DELETE FROM inbound WHERE finished_ts IS NOT NULL AND finished_ts < ?", now - INBOUND_MEMORY_MS);
    for (const wake of this.inboundWaiters.get(txnId) ?? []) wake(response);
    this.inboundWaiters.delete(txnId);
  }

  /** Forgets a claim whose processing failed, so a retry processes the transaction again. */
  async abandonInbound(destination: string, txnId: string): Promise<void> {
    this.bind(destination);
    this.sql.exec("DELETE FROM inbound WHERE txn_id = ? AND status = 'processing'", txnId);
    for (const wake of this.inboundWaiters.get(txnId) ?? []) wake(undefined);
    this.inboundWaiters.delete(txnId);
  }

  /** Waits (up to `timeoutMs`) for another request's processing of `txnId`; undefined if it did not finish. */
  async waitInbound(destination: string, txnId: string, timeoutMs: number): Promise<string | undefined> {
    this.bind(destination);
    const row = this.sql
      .exec<{ status: string; response: string | null }>("SELECT status, response FROM inbound WHERE txn_id = ?", txnId)
      .toArray()[0];
    if (row?.status === "done") return row.response ?? "{}";
    if (!row) return undefined;
    return new Promise<string | undefined>((resolve) => {
      let set = this.inboundWaiters.get(txnId);
      if (!set) this.inboundWaiters.set(txnId, (set = new Set()));
      const waiter = (response: string | undefined) => {
        clearTimeout(timer);
        resolve(response);
      };
      const timer = setTimeout(() => {
        set!.delete(waiter);
        resolve(undefined);
      }, timeoutMs);
      set.add(waiter);
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // Admin

  /** State, backlog and next retry, for admins and tests. */
  async status(): Promise<DestinationStatus> {
    const txn = this.inFlight();
    const retryAt = this.num("retry_at");
    const now = Date.now();
    return {
      destination: this.meta("destination") ?? null,
      state: this.sending ? "sending" : retryAt !== null && retryAt > now ? "backing_off" : "idle",
      catching_up: this.meta("catching_up") === "1",
      failures: this.num("failures") ?? 0,
      first_failure_ts: this.num("first_failure_ts"),
      next_retry_ts: retryAt !== null && retryAt > now ? retryAt : null,
      last_error: this.meta("last_error") ?? null,
      last_success_ts: this.num("last_success_ts"),
      last_seen_alive_ts: this.num("last_seen_alive_ts"),
      transactions_sent: this.num("txns_sent") ?? 0,
      backlog: {
        rooms: this.sql
          .exec<{ room_id: string; notified: number; sent: number }>(
            "SELECT room_id, notified, sent FROM rooms WHERE notified > sent ORDER BY updated_ts",
          )
          .toArray(),
        edus: this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM edus").one().n,
      },
      in_flight: txn
        ? { txn_id: txn.txn_id, pdus: txn.pdu_count, edus: txn.edu_count, attempts: txn.attempts, created_ts: txn.created_ts }
        : null,
    };
  }

  /** Clears the backoff and starts sending now (admin "reset connection"); does not wait for the result. */
  async retryNow(): Promise<void> {
    this.setMeta("retry_at", "0");
    this.kick();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Sending

  /** The alarm is the retry timer (or the watchdog of a transaction in flight): it always tries. */
  override async alarm(): Promise<void> {
    await this.pump(true);
  }

  /** Starts a sending loop unless one runs or the server is backing off. Never blocks the caller. */
  private kick(): void {
    const retryAt = this.num("retry_at");
    if (retryAt !== null && retryAt > Date.now()) {
      void this.ctx.storage.setAlarm(retryAt);
      return;
    }
    void this.pump();
  }

  /**
   * Sends transactions until nothing is left or one fails. Concurrent calls share one loop. `force` (the alarm)
   * ignores the backoff for the first attempt.
   */
  private pump(force = false): Promise<void> {
    this.pumping ??= (async () => {
      try {
        for (let first = true; ; first = false) {
          const retryAt = this.num("retry_at");
          if (!(force && first) && retryAt !== null && retryAt > Date.now()) {
            await this.ctx.storage.setAlarm(retryAt);
            return;
          }
          const txn = this.inFlight() ?? (await this.buildTransaction());
          if (!txn) {
            if ((this.num("retry_at") ?? 0) <= Date.now()) await this.ctx.storage.deleteAlarm();
            return;
          }
          if (!(await this.send(txn))) return;
        }
      } catch (e) {
        console.error(`destination ${this.meta("destination")}: sending loop failed`, e);
        this.recordFailure(String((e as Error)?.message ?? e));
      } finally {
        this.pumping = undefined;
      }
    })();
    return this.pumping;
  }

  private inFlight(): TxnRow | undefined {
    return this.sql.exec<TxnRow>("SELECT * FROM txn LIMIT 1").toArray()[0];
  }

  /**
   * Reads what is due from the RoomDOs and stores the next transaction. Rooms that turn out to have nothing for
   * this server just advance. Returns undefined when there is nothing to send.
   */
  private async buildTransaction(): Promise<TxnRow | undefined> {
    const destination = this.meta("destination");
    if (!destination) return undefined;
    const catchingUp = this.meta("catching_up") === "1";
    const pdus: string[] = [];
    // Typing and presence older than a minute are worthless: drop them rather than send them.
    this.sql.exec(
      `DELETE FROM edus WHERE queued_ts < ? AND edu_type IN (${EPHEMERAL_EDU_TYPES.map(() => "?").join(",")})`,
      Date.now() - EPHEMERAL_EDU_MAX_AGE_MS,
      ...EPHEMERAL_EDU_TYPES,
    );
    const edus = this.sql
      .exec<{ id: number; edu_type: string; content: string }>("SELECT id, edu_type, content FROM edus ORDER BY id LIMIT ?", this.maxEdus)
      .toArray();
    // Each round asks every room with a backlog for its next events. A room may answer with no events but some
    // progress (a stretch of events not meant for this server); the rounds are bounded so that one invocation
    // stays short, and the alarm continues where they stopped.
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const rooms = this.sql
        .exec<{ room_id: string; notified: number; sent: number }>(
          "SELECT room_id, notified, sent FROM rooms WHERE notified > sent ORDER BY updated_ts",
        )
        .toArray();
      if (rooms.length === 0) {
        this.finishCatchUp();
        break;
      }
      const reached = new Map<string, number>();
      let progressed = false;
      for (const room of rooms) {
        if (pdus.length >= this.maxPdus) break;
        const stub = this.env.ROOMS.get(this.env.ROOMS.idFromName(room.room_id));
        const got = await stub.eventsForDestination(destination, room.sent, this.maxPdus - pdus.length, catchingUp);
        pdus.push(...got.pdus);
        if (got.position > room.sent) progressed = true;
        reached.set(room.room_id, got.position);
      }
      if (pdus.length > 0) return this.storeTransaction(pdus, edus, reached);
      // Nothing in this round: those rooms are done up to where their scan got.
      this.ctx.storage.transactionSync(() => this.advanceRooms(reached));
      if (!progressed) break;
      if (round === MAX_SCAN_ROUNDS - 1) await this.ctx.storage.setAlarm(Date.now());
    }
    return edus.length > 0 ? this.storeTransaction(pdus, edus, new Map()) : undefined;
  }

  private storeTransaction(
    pdus: string[],
    edus: { id: number; edu_type: string; content: string }[],
    reached: Map<string, number>,
  ): TxnRow {
    const seq = (this.num("txn_seq") ?? 0) + 1;
    const txnId = `${Date.now()}_${seq}`;
    const origin = getConfig(this.env).serverName;
    const body = `{"origin":${JSON.stringify(origin)},"origin_server_ts":${Date.now()},"pdus":[${pdus.join(",")}],"edus":[${edus
      .map((e) => `{"edu_type":${JSON.stringify(e.edu_type)},"content":${e.content}}`)
      .join(",")}]}`;
    const row: TxnRow = {
      txn_id: txnId,
      body,
      rooms: JSON.stringify(Object.fromEntries(reached)),
      max_edu_id: edus.length ? edus[edus.length - 1]!.id : 0,
      pdu_count: pdus.length,
      edu_count: edus.length,
      attempts: 0,
      created_ts: Date.now(),
    };
    this.ctx.storage.transactionSync(() => {
      this.setMeta("txn_seq", String(seq));
      this.sql.exec(
        `INSERT INTO txn (txn_id, body, rooms, max_edu_id, pdu_count, edu_count, attempts, created_ts)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?)`,
        row.txn_id, row.body, row.rooms, row.max_edu_id, row.pdu_count, row.edu_count, row.created_ts,
      );
    });
    return row;
  }

  /** PUTs the transaction. Returns whether it was accepted (then the next one may be built). */
  private async send(txn: TxnRow): Promise<boolean> {
    const destination = this.meta("destination")!;
    this.sending = true;
    this.sql.exec("UPDATE txn SET attempts = attempts + 1 WHERE txn_id = ?", txn.txn_id);
    // Watchdog: if this object is evicted mid-request, the alarm resends the stored transaction.
    await this.ctx.storage.setAlarm(Date.now() + this.requestTimeoutMs + 5_000);
    let response: { pdus?: Record<string, { error?: string }> };
    try {
      response = await this.client.request(destination, "PUT", `/_matrix/federation/v1/send/${seg(txn.txn_id)}`, JSON.parse(txn.body), {
        timeoutMs: this.requestTimeoutMs,
      });
    } catch (e) {
      const message = e instanceof FederationRequestError ? e.message : String((e as Error)?.message ?? e);
      this.recordFailure(message);
      return false;
    } finally {
      this.sending = false;
    }
    for (const [eventId, result] of Object.entries(response.pdus ?? {})) {
      if (result && typeof result === "object" && typeof result.error === "string") {
        console.warn(`destination ${destination}: ${eventId} refused: ${result.error}`);
      }
    }
    this.ctx.storage.transactionSync(() => {
      this.advanceRooms(new Map(Object.entries(JSON.parse(txn.rooms) as Record<string, number>)));
      this.sql.exec("DELETE FROM edus WHERE id <= ?", txn.max_edu_id);
      this.sql.exec("DELETE FROM txn WHERE txn_id = ?", txn.txn_id);
      this.setMeta("failures", "0");
      this.deleteMeta("first_failure_ts");
      this.setMeta("retry_at", "0");
      this.deleteMeta("last_error");
      this.setMeta("last_success_ts", String(Date.now()));
      this.setMeta("last_seen_alive_ts", String(Date.now()));
      this.setMeta("txns_sent", String((this.num("txns_sent") ?? 0) + 1));
      if (this.sql.exec("SELECT 1 FROM rooms WHERE notified > sent LIMIT 1").toArray().length === 0) this.finishCatchUp();
    });
    return true;
  }

  private advanceRooms(reached: Map<string, number>): void {
    for (const [roomId, position] of reached) {
      this.sql.exec("UPDATE rooms SET sent = max(sent, ?) WHERE room_id = ?", position, roomId);
    }
  }

  /** Schedules the next attempt; after a long outage switches to catching up. */
  private recordFailure(error: string): void {
    const now = Date.now();
    const failures = (this.num("failures") ?? 0) + 1;
    const firstFailure = this.num("first_failure_ts") ?? now;
    const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** (failures - 1));
    const retryAt = now + delay;
    this.ctx.storage.transactionSync(() => {
      this.setMeta("failures", String(failures));
      this.setMeta("first_failure_ts", String(firstFailure));
      this.setMeta("retry_at", String(retryAt));
      this.setMeta("last_error", error.slice(0, 500));
      if (now - firstFailure >= this.catchUpAfterMs && this.meta("catching_up") !== "1") this.startCatchUp();
    });
    void this.ctx.storage.setAlarm(retryAt);
  }

  /**
   * The server has been down for long: forget the stored transaction (its rooms were not marked sent), send only
   * the newest event of each room from now on, and drop stale ephemeral EDUs.
   */
  private startCatchUp(): void {
    this.setMeta("catching_up", "1");
    this.sql.exec("DELETE FROM txn");
    this.sql.exec(
      `DELETE FROM edus WHERE edu_type IN (${EPHEMERAL_EDU_TYPES.map(() => "?").join(",")})`,
      ...EPHEMERAL_EDU_TYPES,
    );
  }

  private finishCatchUp(): void {
    if (this.meta("catching_up") === "1") this.setMeta("catching_up", "0");
  }

  /** The server showed it is up: retry now rather than waiting out the backoff. */
  private markAlive(now: number): void {
    this.setMeta("last_seen_alive_ts", String(now));
    const failures = this.num("failures") ?? 0;
    if (failures === 0) return;
    this.setMeta("failures", "0");
    this.setMeta("retry_at", "0");
    this.deleteMeta("first_failure_ts");
    this.kick();
  }

  /** Drops `n` queued EDUs: ephemeral ones first, then the oldest. */
  private dropEdus(n: number): void {
    this.sql.exec(
      `DELETE FROM edus WHERE id IN (SELECT id FROM edus ORDER BY edu_type IN (${EPHEMERAL_EDU_TYPES.map(() => "?").join(",")}) DESC, id LIMIT ?)`,
      ...EPHEMERAL_EDU_TYPES,
      n,
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // Meta

  /** Records which server this object is for (the first caller names it; a mismatch is a bug). */
  private bind(destination: string): void {
    const current = this.meta("destination");
    if (current === undefined) this.setMeta("destination", destination);
    else if (current !== destination) throw new Error(`DestinationDO for ${current} called for ${destination}`);
  }

  private meta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
  }

  private num(key: string): number | null {
    const v = this.meta(key);
    return v === undefined ? null : Number(v);
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }

  private deleteMeta(key: string): void {
    this.sql.exec("DELETE FROM meta WHERE key = ?", key);
  }
}
