/**
 * The room's outbox and its timers.
 *
 * Persisting an event writes, in the same transaction, one outbox row per party to tell: (consumer, target,
 * position). Rows carry stream positions, not payloads, so a newer position simply replaces an undelivered
 * older one and the consumer reads whatever it has not seen from the room. Delivery happens right after the
 * commit and, for anything that failed or was interrupted, from the alarm with exponential backoff.
 *
 * The DO has one alarm; `Timers` keeps named due times in the `tasks` table and points the alarm at the
 * earliest. Every task is idempotent, so an alarm that fires early, late or twice is harmless.
 */
import { CoalescingRunner } from "../shared/coalescing-runner";

export type Consumer = "user" | "destination" | "appservice" | "user_ephemeral" | "appservice_ephemeral" | "user_full_state";
// "user_ephemeral": a local user's sync stream, for the room's typing/receipts stream (ephemeral.ts).
// "appservice_ephemeral": an appservice (target = its id), for the same stream (src/appservices/room-interest.ts).
// "user_full_state": a local member's sync stream, told that the room is no longer partial (faster joins): eager
// syncs show it from then on, with its full state.

/** Tells one consumer that the room advanced to `position`. Throwing means "try again later". */
export type Deliver = (target: string, position: number) => Promise<void>;

export type OutboxRow = {
  consumer: Consumer;
  target: string;
  position: number;
  attempts: number;
  next_attempt_ts: number;
  last_error: string | null;
};

/** First retry after 1 s, doubling up to 10 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempts - 1), 10 * 60 * 1000);
}

/**
 * How long after a write the alarm re-checks the outbox. Delivery normally happens right after the commit; the
 * alarm is the safety net for an eviction in between, so it need not fire at once (an alarm per event would be
 * a second invocation of the object for every send).
 */
export const OUTBOX_SAFETY_NET_MS = 2_000;

export class Timers {
  /** The alarm time last set by this instance (undefined: unknown, e.g. after a restart or a fired alarm). */
  private armedAt: number | null | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** Call when the alarm fires: the storage alarm is no longer set. */
  alarmFired(): void {
    this.armedAt = undefined;
  }

  /** Makes `name` due at `dueTs` (or earlier, if it already is). */
  schedule(name: string, dueTs: number): void {
    this.sql.exec(
      `INSERT INTO tasks (name, due_ts) VALUES (?, ?)
       ON CONFLICT (name) DO UPDATE SET due_ts = min(due_ts, excluded.due_ts)`,
      name,
      dueTs,
    );
    this.arm();
  }

  /** Removes a task that is done. */
  done(name: string): void {
    this.sql.exec("DELETE FROM tasks WHERE name = ?", name);
  }

  /** Names of the tasks due at `now`. */
  due(now: number): string[] {
    return this.sql
      .exec<{ name: string }>("SELECT name FROM tasks WHERE due_ts <= ? ORDER BY due_ts", now)
      .toArray()
      .map((r) => r.name);
  }

  /** Points the alarm at the earliest task (or clears it). Storage writes, alarm included, commit together. */
  arm(): void {
    const next = this.sql.exec<{ t: number | null }>("SELECT min(due_ts) AS t FROM tasks").one().t;
    // An alarm that fires with nothing due is harmless (the handler re-arms), so the alarm is only ever moved
    // earlier, never deleted or pushed back: a busy room does not pay an alarm write per event.
    if (next === null) return;
    if (typeof this.armedAt === "number" && this.armedAt <= next) return;
    this.armedAt = next;
    void this.storage.setAlarm(next);
  }
}

export class Outbox {
  /** Draining passes, one at a time (a drain asked for during one makes it go once more). */
  private readonly drainer = new CoalescingRunner(
    () => this.drainOnce(),
    () => this.reschedule(),
  );

  constructor(
    private readonly sql: SqlStorage,
    private readonly timers: Timers,
    private readonly deliverers: () => Partial<Record<Consumer, Deliver>>,
  ) {}

  /** Records that `target` must learn about `position`. Call inside the transaction that persisted the event. */
  add(consumer: Consumer, target: string, position: number, now = Date.now()): void {
    this.sql.exec(
      `INSERT INTO outbox (consumer, target, position, attempts, next_attempt_ts) VALUES (?, ?, ?, 0, ?)
       ON CONFLICT (consumer, target) DO UPDATE SET position = max(position, excluded.position),
         attempts = 0, next_attempt_ts = excluded.next_attempt_ts`,
      consumer,
      target,
      position,
      now,
    );
    this.timers.schedule("outbox", now + OUTBOX_SAFETY_NET_MS);
  }

  pending(): OutboxRow[] {
    return this.sql.exec<OutboxRow>("SELECT * FROM outbox ORDER BY next_attempt_ts").toArray();
  }

  /**
   * Delivers one row now (the read-your-writes path: the sender's own sync stream). Resolves once the target
   * has been told a position at least as new as the row's when called, or false if that failed (the row then
   * waits for its retry).
   */
  deliverNow(consumer: Consumer, target: string): Promise<boolean> {
    return this.deliverLatest(consumer, target, true);
  }

  /** Delivers every due row. Concurrent calls share one pass and trigger another when it ends. */
  drain(): Promise<void> {
    return this.drainer.run();
  }

  private async drainOnce(): Promise<void> {
    const due = this.sql
      .exec<{ consumer: Consumer; target: string }>(
        "SELECT consumer, target FROM outbox WHERE next_attempt_ts <= ? ORDER BY next_attempt_ts",
        Date.now(),
      )
      .toArray();
    await Promise.all(due.map((row) => this.deliverLatest(row.consumer, row.target, false)));
  }

  /** One delivery in flight per (consumer, target); a request arriving meanwhile makes it deliver again after. */
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly rerun = new Set<string>();

  /**
   * Delivers the row of (consumer, target) — `force`: even if its retry is not due yet. Concurrent sends to the
   * same target share one delivery at a time instead of each making its own call with an older position:
   * whoever arrives while one is in flight gets the in-flight promise, which delivers once more, with the newest
   * position, before it resolves.
   */
  private deliverLatest(consumer: Consumer, target: string, force: boolean): Promise<boolean> {
    const key = `${consumer}\u0000${target}`;
    const running = this.inflight.get(key);
    if (running) {
      this.rerun.add(key);
      return running;
    }
    const run = (async () => {
      let ok = true;
      do {
        this.rerun.delete(key);
        const row = this.sql
          .exec<OutboxRow>("SELECT * FROM outbox WHERE consumer = ? AND target = ?", consumer, target)
          .toArray()[0];
        const now = Date.now();
        if (!row) return ok;
        if (!force && row.next_attempt_ts > now) return ok;
        ok = await this.attempt(row, now);
        force ||= this.rerun.has(key); // a sender is waiting on this very call
      } while (ok && this.rerun.has(key));
      return ok;
    })().finally(() => this.inflight.delete(key));
    this.inflight.set(key, run);
    return run;
  }

  private async attempt(row: OutboxRow, now: number): Promise<boolean> {
    const deliver = this.deliverers()[row.consumer];
    try {
      if (!deliver) throw new Error(`no deliverer for ${row.consumer}`);
      await deliver(row.target, row.position);
      // Only clear the row if no newer position arrived while we were delivering.
      this.sql.exec(
        "DELETE FROM outbox WHERE consumer = ? AND target = ? AND position = ?",
        row.consumer,
        row.target,
        row.position,
      );
      return true;
    } catch (e) {
      const attempts = row.attempts + 1;
      this.sql.exec(
        `UPDATE outbox SET attempts = ?, next_attempt_ts = ?, last_error = ?
         WHERE consumer = ? AND target = ? AND position = ?`,
        attempts,
        now + retryDelayMs(attempts),
        String((e as Error)?.message ?? e).slice(0, 500),
        row.consumer,
        row.target,
        row.position,
      );
      return false;
    }
  }

  /** Points the outbox timer at the next retry, or retires it when nothing is left. */
  private reschedule(): void {
    const next = this.sql.exec<{ t: number | null }>("SELECT min(next_attempt_ts) AS t FROM outbox").one().t;
    this.timers.done("outbox");
    if (next !== null) this.timers.schedule("outbox", next);
    else this.timers.arm();
  }
}
