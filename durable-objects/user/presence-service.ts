/**
 * The UserDO's presence driver (docs/presence.md): runs the writes of presence.ts in the UserDO's transactions,
 * publishes committed changes in the background (src/presence/publish.ts) and keeps the alarm pointed at the
 * next presence timer. The UserDO only delegates to it.
 */
import type { Env } from "../../src/env";
import { getConfig } from "../../src/config";
import { publishLocalPresence, type PublishParts } from "../../src/presence/publish";
import { isPresenceState, type PresenceRecord, type PresenceState } from "../../src/presence/model";
import { UserPresence, type PlannedPresence } from "./presence";
import type { UserStream } from "./stream";

export interface PresenceHost {
  ctx: DurableObjectState;
  env: Env;
  sql: SqlStorage;
  stream: UserStream;
  /** The UserDO's write: one transaction, then waiters wake. */
  write<T>(fn: () => T): T;
  joinedRooms(): string[];
  userId(): string | undefined;
}

export class PresenceService {
  readonly state: UserPresence;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly host: PresenceHost) {
    this.state = new UserPresence(host.sql, host.stream);
  }

  get enabled(): boolean {
    return getConfig(this.host.env).presenceEnabled;
  }

  private get userId(): string {
    const id = this.host.userId();
    if (!id) throw new Error("presence: the UserDO has no user ID");
    return id;
  }

  /** PUT /presence. */
  async put(state: PresenceState, statusMsg: string | null): Promise<void> {
    const news = this.host.write(() => this.state.put(this.userId, state, statusMsg, Date.now()));
    await this.after(news);
  }

  /** The user's presence now (JSON-able). */
  get(): PresenceRecord {
    return this.state.record(this.userId);
  }

  /** Activity (sending, typing, receipts). */
  async active(): Promise<void> {
    if (!this.enabled) return;
    const news = this.host.write(() => this.state.active(this.userId, Date.now()));
    await this.after(news);
  }

  /** A sync with `set_presence` started or planned; a value that does not affect presence is ignored. */
  syncStarted(setPresence: string | null | undefined): void {
    if (!this.enabled || !isPresenceState(setPresence) || setPresence === "offline") return;
    const news = this.host.write(() => this.state.syncStarted(this.userId, setPresence, Date.now()));
    void this.after(news);
  }

  /** A presence-affecting long poll is about to wait; returns the function to call when it ends. */
  longPoll(setPresence: string | null | undefined): () => void {
    if (!this.enabled || !isPresenceState(setPresence) || setPresence === "offline") return () => {};
    this.state.syncing++;
    return () => {
      this.state.syncing--;
      this.host.ctx.storage.transactionSync(() => this.state.syncEnded(Date.now()));
      void this.arm();
    };
  }

  /** Others' presence changed for this user to see. */
  changed(userIds: string[]): void {
    this.host.write(() => this.state.markSeen(userIds));
  }

  /** The presence part of a sync plan (inside the plan's transaction). */
  plan(since: number | null, head: number): PlannedPresence | undefined {
    if (!this.enabled) return undefined;
    return this.state.plan(this.userId, since, head);
  }

  /** The user's membership changed to join: the new room's members should see this user's presence. */
  joined(): void {
    if (!this.enabled || this.state.record(this.host.userId() ?? "").state === "offline") return;
    this.kick({ local: true, remote: true, appservices: false });
  }

  /** The alarm fired: timers, then any fan-out still due. */
  async alarm(): Promise<void> {
    if (!this.enabled || !this.host.userId()) return;
    const now = Date.now();
    const t = this.host.write(() => this.state.timeout(this.userId, now));
    // A fan-out under way covers what is pending (it reruns if something new came meanwhile).
    if (this.running && !t.news) await this.running.catch(() => undefined);
    else if (t.news || this.state.publishing().pending) await this.publish({ local: true, remote: true, appservices: true });
    else if (t.ping) await this.publish({ local: false, remote: true, appservices: false });
    await this.arm();
  }

  /** After a committed change: publish it (in the background for callers that must not wait) and re-arm. */
  private async after(news: boolean): Promise<void> {
    if (news) this.kick({ local: true, remote: true, appservices: true });
    await this.arm();
  }

  private kick(parts: PublishParts): void {
    this.publish(parts).catch((e: unknown) => console.warn(`presence: publish failed: ${String((e as Error)?.message ?? e)}`));
  }

  /** One fan-out at a time; a request during one runs once more after it (with everything). */
  private async publish(parts: PublishParts): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        let p = parts;
        for (;;) {
          this.again = false;
          await this.publishOnce(p);
          if (!this.again) break;
          p = { local: true, remote: true, appservices: true };
        }
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async publishOnce(parts: PublishParts): Promise<void> {
    const userId = this.userId;
    const { serial } = this.state.publishing();
    const record = this.state.record(userId);
    const now = Date.now();
    try {
      await publishLocalPresence(this.host.env, record, serial, this.host.joinedRooms(), parts);
    } catch (e) {
      this.host.ctx.storage.transactionSync(() => this.state.failed(Date.now()));
      await this.arm();
      throw e;
    }
    this.host.ctx.storage.transactionSync(() => {
      if (parts.local) this.state.published(serial, parts.remote, now);
      else if (parts.remote) this.state.pinged(now);
    });
  }

  /** Points the alarm at the next presence timer, keeping an earlier alarm (the E2EE outbox shares it). */
  async arm(): Promise<void> {
    if (!this.enabled) return;
    const next = this.state.nextDue(Date.now());
    if (next === null) return;
    const current = await this.host.ctx.storage.getAlarm();
    if (current === null || current > next) await this.host.ctx.storage.setAlarm(next);
  }
}
