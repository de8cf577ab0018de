/**
 * The UserDO's E2EE outbox: work that other UserDOs (or remote servers) must hear about because of something this
 * user did — to-device messages to deliver, device-list changes to fan out. A row is written in the same
 * transaction as its cause, delivered right after the commit, and retried by alarm with exponential backoff
 * until it succeeds. Deliveries are idempotent on the receiving side (to-device messages carry a message ID;
 * a repeated device-list notice is merged away), so a retry after a lost reply is harmless.
 */
import { CoalescingRunner } from "../shared/coalescing-runner";

export type OutboxKind = "to_device" | "device_list";

export type OutboxRow = {
  id: number;
  kind: OutboxKind;
  payload: string;
  attempts: number;
  due_ts: number;
};

/** Delivers one row; throws to have it retried later. */
export type OutboxDeliver = (row: OutboxRow) => Promise<void>;

/** First retry after 1 s, doubling up to 10 minutes. */
const BASE_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 10 * 60_000;
/** After this many failed attempts a row is dropped (about a day of retries at the cap). */
const MAX_ATTEMPTS = 160;

export function backoffMs(attempts: number): number {
  return Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.max(0, attempts - 1));
}

export class E2eeOutbox {
  private readonly drainer = new CoalescingRunner(() => this.pass(this.deliver!));
  /** The deliverer of the latest drain request (the same for every caller in practice). */
  private deliver: OutboxDeliver | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** Queues work. Call inside the transaction that records its cause. */
  add(kind: OutboxKind, payload: unknown, now = Date.now()): void {
    this.sql.exec("INSERT INTO e2ee_outbox (kind, payload, due_ts) VALUES (?, ?, ?)", kind, JSON.stringify(payload), now);
  }

  pending(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM e2ee_outbox").one().n;
  }

  /**
   * Delivers every due row (one at a time, in order), rescheduling failures with backoff, then sets the alarm
   * for the earliest row still waiting. Concurrent calls share one pass plus one more if work arrived meanwhile.
   */
  drain(deliver: OutboxDeliver): Promise<void> {
    this.deliver = deliver;
    return this.drainer.run();
  }

  private async pass(deliver: OutboxDeliver): Promise<void> {
    const now = Date.now();
    const rows = this.sql
      .exec<OutboxRow>("SELECT id, kind, payload, attempts, due_ts FROM e2ee_outbox WHERE due_ts <= ? ORDER BY id", now)
      .toArray();
    for (const row of rows) {
      try {
        await deliver(row);
        this.sql.exec("DELETE FROM e2ee_outbox WHERE id = ?", row.id);
      } catch (e) {
        const attempts = row.attempts + 1;
        if (attempts >= MAX_ATTEMPTS) {
          console.error(`e2ee outbox: dropping ${row.kind} row ${row.id} after ${attempts} attempts`, e);
          this.sql.exec("DELETE FROM e2ee_outbox WHERE id = ?", row.id);
        } else {
          console.warn(`e2ee outbox: ${row.kind} row ${row.id} failed (attempt ${attempts})`, e);
          this.sql.exec("UPDATE e2ee_outbox SET attempts = ?, due_ts = ? WHERE id = ?", attempts, Date.now() + backoffMs(attempts), row.id);
        }
      }
    }
    await this.arm();
  }

  /** Sets the alarm for the earliest waiting row (keeps an earlier alarm someone else set). */
  async arm(): Promise<void> {
    const next = this.sql.exec<{ t: number | null }>("SELECT min(due_ts) AS t FROM e2ee_outbox").one().t;
    if (next === null) return;
    const current = await this.storage.getAlarm();
    if (current === null || current > next) await this.storage.setAlarm(next);
  }
}
