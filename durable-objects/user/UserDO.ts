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
// E2EE and push rules (keys-service.ts and the modules it gathers)
import { E2eeService } from "./keys-service";
import type { ClaimRequest, ClaimedKey, CrossSigningUpload, KeyUpload } from "./keys";
import type { ToDeviceDelivery } from "./to-device";
import type { BackupKeyUpload, BackupUpdateResult, BackupVersionInfo } from "./key-backup";
import type { DeviceListDelta } from "./device-lists";
import type { Outcome } from "../../src/e2ee/result";
import type { PushAction, RuleKind } from "../../src/push/types";
import type { UserRule } from "../../src/push/ruleset";
import { UserStream } from "./stream";
import { UserRooms, asMembership } from "./rooms";
import type { WaitOutcome } from "./waiters";
import { UserFilters } from "./filters";
import { AccountData } from "./account-data";
import { planSync, type SyncPlanRequest } from "./sync-plan";
// Application services (MSC2409 to-device, MSC3202): see src/appservices/user-updates.ts
import { AppserviceWatch, userUpdates } from "../../src/appservices/user-updates";
// Presence (docs/presence.md): presence-service.ts
import { PresenceService } from "./presence-service";
import type { PresenceState } from "../../src/presence/model";
// Push notifications (docs/push.md): push-actions.ts
import { PushService } from "./push-actions";

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
    const asFingerprint = this.appserviceWatch.before(); // application services: only for their users
    const result = this.ctx.storage.transactionSync(fn);
    if (this.stream.head !== before) this.stream.wake();
    this.appserviceWatch.after(asFingerprint);
    return result;
  }

  // Application services: tells the AppServiceDOs watching this user (to-device, MSC3202) that it has news.
  private asWatch?: AppserviceWatch;
  private get appserviceWatch(): AppserviceWatch {
    return (this.asWatch ??= new AppserviceWatch(this.env, this.sql, () => this.ctx.id.name));
  }

  /** Application services: this user's to-device messages, device-list changes (and key counts) after `since`, as JSON. */
  async appserviceUpdates(since: number, withCounts: boolean): Promise<string> {
    return JSON.stringify(userUpdates(this.sql, since, this.stream.head, withCounts));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Fed by the RoomDOs' outboxes

  /**
   * The room `roomId` reached event stream position `position`, where this user's membership is `membership`
   * (read by the RoomDO in the same instant as the position). Durably recorded before returning, so the
   * sender's next /sync sees its own event. Stale or repeated notifications are harmless.
   */
  async roomAdvanced(roomId: string, position: number, membership: string): Promise<void> {
    const joined = this.write(() => {
      const before = this.rooms.get(roomId)?.membership; // E2EE: device lists follow joins and leaves
      const changed = this.rooms.advance(roomId, position, asMembership(membership));
      if (changed) this.e2eeMembershipChanged(roomId, before, membership);
      this.push.noteAdvance(roomId, position, membership); // push: evaluated in the background (push-actions.ts)
      return changed && before !== "join" && membership === "join";
    });
    this.push.kick(); // push: not awaited, the sender's send does not wait for it
    this.e2eeKick(); // E2EE: deliver a queued device-list notice in the background (the alarm retries)
    if (joined) this.presence.joined(); // presence: the room's members see this user's presence
  }

  /**
   * Faster joins: the room, joined with partial state, is now fully stated (RoomDO outbox, consumer
   * "user_full_state"). Eager syncs show it from now on, with its full state; and since its member list is now
   * complete, device lists of everyone in it are re-announced (a remote member's list was not tracked while
   * only the partial state was known).
   */
  async roomFullyStated(roomId: string): Promise<void> {
    this.write(() => {
      const row = this.rooms.get(roomId);
      if (this.rooms.markFullyStated(roomId) && row?.membership === "join") this.e2eeMembershipChanged(roomId, "leave", "join");
    });
    this.e2eeKick();
  }

  /** The room's typing notifications or receipts reached ephemeral position `position`. */
  async ephemeralAdvanced(roomId: string, position: number): Promise<void> {
    const readCheck = this.write(() => {
      this.rooms.advanceEphemeral(roomId, position);
      return this.push.noteEphemeral(roomId); // push: a receipt may have read notifications
    });
    if (readCheck) this.push.kick();
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
  async waitForChange(waiterId: string, since: number, timeoutMs: number, setPresence?: string | null): Promise<WaitOutcome> {
    // Presence: a syncing client marks the user online (set_presence) and keeps them from timing out while it waits.
    this.presence.syncStarted(setPresence);
    const ended = this.presence.longPoll(setPresence);
    try {
      return await this.stream.waiters.wait(waiterId, since, this.stream.head, timeoutMs);
    } finally {
      ended();
    }
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
    this.presence.syncStarted(req.setPresence); // presence: set_presence (presence-service.ts)
    return JSON.stringify(
      this.ctx.storage.transactionSync(() => {
        const head = this.stream.head;
        const plan = planSync(this.sql, this.rooms, this.accountData, head, req);
        const presence = this.presence.plan(req.since === null ? null : Math.min(req.since, head), head);
        if (presence) plan.presence = presence;
        return plan;
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // Presence (docs/presence.md): this user's presence, and whose presence changed for this user to see

  private presenceService?: PresenceService;
  private get presence(): PresenceService {
    return (this.presenceService ??= new PresenceService({
      ctx: this.ctx,
      env: this.env,
      sql: this.sql,
      stream: this.stream,
      write: (fn) => this.write(fn),
      joinedRooms: () => this.rooms.withMembership("join"),
      userId: () => this.ctx.id.name,
    }));
  }

  /** PUT /presence: sets this user's presence (and status message; null clears it). */
  async presenceSet(state: PresenceState, statusMsg: string | null): Promise<void> {
    await this.presence.put(state, statusMsg);
  }

  /** This user's presence as JSON text (a PresenceRecord). */
  async presenceGet(): Promise<string> {
    return JSON.stringify(this.presence.get());
  }

  /** The user did something (sent an event, typed, sent a receipt). */
  async presenceActive(): Promise<void> {
    await this.presence.active();
  }

  /** The presence of these users (sharing a room with this one) changed: the next sync reports them. */
  async presenceChanged(userIds: string[]): Promise<void> {
    this.presence.changed(userIds);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Push notifications (docs/push.md): which events notify the user, and delivery to push gateways

  private pushService?: PushService;
  private get push(): PushService {
    return (this.pushService ??= new PushService({
      ctx: this.ctx,
      env: this.env,
      sql: this.sql,
      userId: () => this.ctx.id.name,
    }));
  }

  /** GET /notifications: stored notifications before `from` (an id), newest first, as JSON `{rows, more}`. */
  async pushNotifications(from: number | null, limit: number, onlyHighlight: boolean): Promise<string> {
    return JSON.stringify(this.push.list(from, limit, onlyHighlight));
  }

  /** Runs the push pass now and waits for it (tests; the alarm does the same). */
  async pushFlush(): Promise<void> {
    await this.push.alarm();
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

  // =========================================================================================================
  // E2EE (keys, cross-signing, to-device, device lists, key backup) and push rules: thin delegates to
  // keys-service.ts, which owns the logic (keys.ts, to-device.ts, device-lists.ts, key-backup.ts, push-rules.ts).
  // Errors come back as Outcome values (see src/e2ee/result.ts); `userId` is always the UserDO's own user.

  private e2eeService?: E2eeService;
  private get e2ee(): E2eeService {
    return (this.e2eeService ??= new E2eeService({
      ctx: this.ctx,
      env: this.env,
      sql: this.sql,
      stream: this.stream,
      write: (fn) => this.write(fn),
      setGlobalAccountData: (type, content) => void this.accountData.set("", type, content),
      joinedRooms: () => this.rooms.withMembership("join"),
    }));
  }

  /** Inside roomAdvanced's transaction: a join or leave changes whom the user shares rooms with. */
  private e2eeMembershipChanged(roomId: string, before: string | undefined, after: string): void {
    const userId = this.ctx.id.name; // named by user ID (idFromName)
    if (userId) this.e2ee.membershipChanged(userId, roomId, before, asMembership(after));
  }

  private e2eeKick(): void {
    this.e2ee.kick().catch((e) => console.error("e2ee outbox", e));
  }

  /** The E2EE outbox retries by alarm (the only alarm user so far; share it through a task table if needed). */
  override async alarm(): Promise<void> {
    // Presence timers share the alarm (presence-service.ts); each side re-arms for its own next time.
    try {
      await this.presence.alarm();
    } catch (e) {
      console.warn("presence alarm", e);
    }
    // Push notifications: evaluation and delivery retries (push-actions.ts).
    try {
      await this.push.alarm();
    } catch (e) {
      console.warn("push alarm", e);
    }
    await this.e2ee.drain();
  }

  async uploadKeys(userId: string, deviceId: string, upload: KeyUpload): Promise<Outcome<Record<string, number>>> {
    return this.e2ee.uploadKeys(userId, deviceId, upload);
  }
  async claimKeys(requests: ClaimRequest[]): Promise<ClaimedKey[]> {
    return this.e2ee.claimKeys(requests);
  }
  async queryKeys(userId: string, viewer: string, deviceIds: string[] | null): Promise<string> {
    return this.e2ee.queryKeys(userId, viewer, deviceIds);
  }
  async keySignaturesByMe(targets: [string, string][]): Promise<string> {
    return this.e2ee.signaturesByMe(targets);
  }
  async masterKey(): Promise<string | null> {
    return this.e2ee.masterKey();
  }
  async uploadCrossSigningKeys(
    userId: string, upload: CrossSigningUpload, deviceIds: string[], authenticated: boolean,
  ): Promise<Outcome<"ok" | "needs_auth">> {
    return this.e2ee.uploadCrossSigning(userId, upload, deviceIds, authenticated);
  }
  async uploadKeySignatures(userId: string, signedJson: string, otherMastersJson: string): Promise<Outcome<string>> {
    return this.e2ee.uploadSignatures(userId, signedJson, otherMastersJson);
  }
  /** A device was deleted: its keys and to-device inbox go, and its device list changes. */
  async deleteDeviceKeys(userId: string, deviceId: string): Promise<void> {
    return this.e2ee.deleteDevice(userId, deviceId);
  }
  async deviceListChanges(from: number, to: number): Promise<DeviceListDelta> {
    return this.e2ee.deviceListChanges(from, to);
  }
  async deviceListPeerChanged(peer: string): Promise<void> {
    this.e2ee.peerChanged(peer);
  }
  async deviceListPeerLeft(peer: string, peerRooms: string[]): Promise<boolean> {
    return this.e2ee.peerLeft(peer, peerRooms);
  }
  async sendToDevice(
    sender: string, deviceId: string, txnId: string, type: string, byRecipient: Record<string, Record<string, string>>,
  ): Promise<boolean> {
    return this.e2ee.sendToDevice(sender, deviceId, txnId, type, byRecipient);
  }
  async receiveToDevice(userId: string, d: Pick<ToDeviceDelivery, "sender" | "type" | "message_id" | "messages">): Promise<number> {
    return this.e2ee.receiveToDevice(userId, d);
  }
  /** Federation: the to-device messages of one inbound transaction for this user, in one write. */
  async receiveToDeviceMany(userId: string, ds: Pick<ToDeviceDelivery, "sender" | "type" | "message_id" | "messages">[]): Promise<number> {
    return this.e2ee.receiveToDeviceMany(userId, ds);
  }
  async createKeyBackup(algorithm: string, authData: string): Promise<Outcome<string>> {
    return this.e2ee.createBackup(algorithm, authData);
  }
  async getKeyBackup(version: string | null): Promise<Outcome<BackupVersionInfo>> {
    return this.e2ee.getBackup(version);
  }
  async updateKeyBackup(version: string, algorithm: string, authData: string): Promise<Outcome<void>> {
    return this.e2ee.updateBackup(version, algorithm, authData);
  }
  async deleteKeyBackup(version: string): Promise<Outcome<void>> {
    return this.e2ee.deleteBackup(version);
  }
  async putBackupKeys(version: string, keys: BackupKeyUpload[]): Promise<Outcome<BackupUpdateResult>> {
    return this.e2ee.putBackupKeys(version, keys);
  }
  async getBackupKeys(version: string, roomId: string | null, sessionId: string | null): Promise<Outcome<string>> {
    return this.e2ee.getBackupKeys(version, roomId, sessionId);
  }
  async deleteBackupKeys(version: string, roomId: string | null, sessionId: string | null): Promise<Outcome<BackupUpdateResult>> {
    return this.e2ee.deleteBackupKeys(version, roomId, sessionId);
  }
  async pushRules(userId: string): Promise<string> {
    return this.e2ee.pushRuleset(userId);
  }
  async getPushRule(userId: string, kind: RuleKind, ruleId: string): Promise<Outcome<string>> {
    return this.e2ee.getPushRule(userId, kind, ruleId);
  }
  async putPushRule(userId: string, rule: UserRule, before: string | null, after: string | null): Promise<Outcome<void>> {
    return this.e2ee.putPushRule(userId, rule, before, after);
  }
  async deletePushRule(userId: string, kind: RuleKind, ruleId: string): Promise<Outcome<void>> {
    return this.e2ee.deletePushRule(userId, kind, ruleId);
  }
  async setPushRuleAttribute(
    userId: string, kind: RuleKind, ruleId: string, attr: { enabled: boolean } | { actions: PushAction[] },
  ): Promise<Outcome<void>> {
    return this.e2ee.setPushRuleAttribute(userId, kind, ruleId, attr);
  }
  // ====================================================================== end of E2EE and push rules ========
}
