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
import type { PDU } from "../../src/protocol/events";
import { roomVersion } from "../../src/protocol/room-versions";
import { migrate } from "./schema";
import { Outbox, Timers, type Consumer, type Deliver } from "./outbox";
import { ForbiddenEvent, Room, type EventTemplate, type Outcome } from "./room";

/** Where a local user's request for an event stands. */
export type SendResult =
  | { ok: true; event_id: string; stream_ordering: number }
  | { ok: false; errcode: "M_FORBIDDEN" | "M_NOT_FOUND" | "M_BAD_JSON"; error: string };

export interface TxnKey {
  userId: string;
  deviceId: string;
  txnId: string;
}

/** Default number of forward extremities above which a dummy event merges them. */
const DEFAULT_DUMMY_EVENT_THRESHOLD = 10;

export class RoomDO extends DurableObject<Env> {
  private readonly room: Room;
  private readonly outbox: Outbox;
  private readonly timers: Timers;
  private signingKey: SigningKey | undefined;
  /** Deliverers by consumer; tests replace them to simulate failures. */
  deliverers: Partial<Record<Consumer, Deliver>> = {};

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
    // Sync streams (UserDO): tell a local user where the room stands now and its membership there. Both are
    // read in the same synchronous instant, so the pair is consistent whatever position the outbox row named.
    this.deliverers.user = (target) => {
      const row = sql.exec<{ membership: string }>("SELECT membership FROM members WHERE user_id = ?", target).toArray()[0];
      return env.USERS.get(env.USERS.idFromName(target))
        .roomAdvanced(this.room.roomId, this.room.streamPosition, row?.membership ?? "leave");
    };
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage);
      this.signingKey = (await getServerKeys(env)).current;
    });
  }

  /** Runs `fn` in one storage transaction; on failure, forgets in-memory caches that may describe rolled-back rows. */
  private transact<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(fn);
    } catch (e) {
      this.room.forgetCaches();
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
        return this.transact(() => this.room.accept(pdu));
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
    const now = Date.now();
    for (const task of this.timers.due(now)) {
      switch (task) {
        case "outbox":
          await this.outbox.drain();
          break;
        case "dummy_event":
          this.transact(() => {
            this.room.sendDummyEvent();
            this.timers.done("dummy_event");
          });
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

  /** The events of the room in stream order after `since` (accepted, client-visible ones). */
  async eventsAfter(since: number, limit: number): Promise<{ event_id: string; stream_ordering: number; json: string }[]> {
    return this.ctx.storage.sql
      .exec<{ event_id: string; stream_ordering: number; json: string }>(
        `SELECT event_id, stream_ordering, json FROM events WHERE stream_ordering > ? ORDER BY stream_ordering LIMIT ?`,
        since, limit,
      )
      .toArray();
  }
}
