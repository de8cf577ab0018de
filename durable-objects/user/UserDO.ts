/**
 * UserDO: one Durable Object per local user (`env.USERS.idFromName(userId)`), the only writer of the user's
 * sync stream.
 *
 * What lives here: the positions of the user's rooms (fed by the RoomDOs' outboxes), the user stream and its
 * long-poll waiters, filters and account data. The E2EE side adds devices, keys and to-device inboxes in their
 * own modules next to this file, with their own schema entries appended to `schema.ts` MIGRATIONS.
 *
 * Layout: each concern is a small class over `ctx.storage.sql` (stream.ts, rooms.ts, …); this class only holds
 * the RPC methods, each of which runs its writes in one `transactionSync` and wakes waiters after the commit.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { migrate } from "./schema";
import { UserStream } from "./stream";
import { UserRooms, asMembership } from "./rooms";
import type { WaitOutcome } from "./waiters";
import { UserFilters } from "./filters";
import { AccountData } from "./account-data";
import { planSync, type SyncPlanRequest } from "./sync-plan";

export class UserDO extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  readonly stream: UserStream;
  readonly rooms: UserRooms;
  readonly filters: UserFilters;
  readonly accountData: AccountData;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.stream = new UserStream(this.sql);
    this.rooms = new UserRooms(this.sql, this.stream);
    this.filters = new UserFilters(this.sql);
    this.accountData = new AccountData(this.sql, this.stream);
    ctx.blockConcurrencyWhile(async () => migrate(ctx.storage));
  }

  /** Runs `fn` in one storage transaction, then wakes long polls if the stream moved. */
  protected write<T>(fn: () => T): T {
    const before = this.stream.head;
    const result = this.ctx.storage.transactionSync(fn);
    if (this.stream.head !== before) this.stream.wake();
    return result;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Fed by the RoomDOs' outboxes

  /**
   * The room `roomId` reached event stream position `position`, where this user's membership is `membership`
   * (read by the RoomDO in the same instant as the position). Durably recorded before returning, so the
   * sender's next /sync sees its own event. Stale or repeated notifications are harmless.
   */
  async roomAdvanced(roomId: string, position: number, membership: string): Promise<void> {
    this.write(() => this.rooms.advance(roomId, position, asMembership(membership)));
  }

  /** The room's typing notifications or receipts reached ephemeral position `position`. */
  async ephemeralAdvanced(roomId: string, position: number): Promise<void> {
    this.write(() => this.rooms.advanceEphemeral(roomId, position));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Reads for other endpoints

  /** Rooms the user is joined to (membership `join` as last announced by each room). */
  async joinedRooms(): Promise<string[]> {
    return this.rooms.withMembership("join");
  }

  /** The user's membership in every room it has a relationship with. */
  async memberships(): Promise<{ room_id: string; membership: string }[]> {
    return this.rooms.all().map((r) => ({ room_id: r.room_id, membership: r.membership }));
  }

  /**
   * The room's event position the user's stream had reached at user stream position `at` (a sync token), or
   * null if the user had no relationship with the room then. Used to turn a sync token into a room token.
   */
  async roomPositionAt(roomId: string, at: number): Promise<number | null> {
    return this.rooms.eventsAt(roomId, at)?.room_pos ?? null;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Long polls

  /** The user's stream position now. */
  async streamHead(): Promise<number> {
    return this.stream.head;
  }

  /**
   * Waits until the user stream passes `since`, for at most `timeoutMs`. `waiterId` names this request's waiter
   * so that `cancelWait` can end it when the client disconnects.
   */
  async waitForChange(waiterId: string, since: number, timeoutMs: number): Promise<WaitOutcome> {
    return this.stream.waiters.wait(waiterId, since, this.stream.head, timeoutMs);
  }

  /** Ends a waiting request's waiter (its client went away). */
  async cancelWait(waiterId: string): Promise<boolean> {
    return this.stream.waiters.cancel(waiterId);
  }

  /** How many long polls are waiting (tests, metrics). */
  async waiterCount(): Promise<number> {
    return this.stream.waiters.size;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Sync

  /**
   * What changed since `since` (a user stream position, null for an initial sync), as positions: see
   * sync-plan.ts. Returned as JSON text (a SyncPlan), since account data contents are arbitrary JSON.
   */
  async syncPlan(req: SyncPlanRequest): Promise<string> {
    return JSON.stringify(
      this.ctx.storage.transactionSync(() => planSync(this.sql, this.rooms, this.accountData, this.stream.head, req)),
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // Filters

  /** Stores a validated filter (JSON text); returns its ID. */
  async createFilter(json: string): Promise<string> {
    return this.write(() => this.filters.create(json));
  }

  /** A stored filter as JSON text, or null. */
  async getFilter(filterId: string): Promise<string | null> {
    return this.filters.get(filterId);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Account data (also the server's own writers: m.fully_read via read markers, m.push_rules via push rules)

  /** Sets account data (`content` is JSON text of an object); roomId null means global. */
  async setAccountData(roomId: string | null, type: string, content: string): Promise<void> {
    this.write(() => this.accountData.set(roomId ?? "", type, content));
  }

  /** Account data content as JSON text, or null when unset. */
  async getAccountData(roomId: string | null, type: string): Promise<string | null> {
    return this.accountData.get(roomId ?? "", type);
  }

  /** Adds or replaces a room tag (`content` is JSON text of an object). */
  async setTag(roomId: string, tag: string, content: string): Promise<void> {
    this.write(() => this.accountData.setTag(roomId, tag, content));
  }

  /** Removes a room tag. */
  async removeTag(roomId: string, tag: string): Promise<void> {
    this.write(() => this.accountData.removeTag(roomId, tag));
  }

  /** The room's tags as JSON text: `{"tags": {...}}`. */
  async getTags(roomId: string): Promise<string> {
    return JSON.stringify({ tags: this.accountData.tags(roomId) });
  }
}
