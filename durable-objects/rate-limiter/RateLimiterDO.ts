/**
 * RateLimiterDO: one token bucket, named `<action>\0<key>` (say `login_address\0203.0.113.7`). Isolates share
 * nothing, so a per-isolate counter would let a client multiply its allowance by the number of isolates it
 * reaches; one object per bucket gives a single, serialised view of it, and a hot key never slows another one.
 *
 * The bucket holds up to `burst` tokens and refills at `perSecond`; an action costs one token. The rule is sent
 * with every call, so changing the configuration takes effect at once. State is kept in SQLite storage so that an
 * eviction does not hand out a fresh burst; when the bucket is full again the storage is dropped (by alarm), so
 * idle buckets cost nothing.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../src/env";

export interface BucketRule {
  perSecond: number;
  burst: number;
}

export interface BucketResult {
  /** Whether the action may go ahead (and, if `consume`, has been counted). */
  allowed: boolean;
  /** When not allowed: how long until it would be, in ms. */
  retryAfterMs: number;
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS bucket (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  tokens      REAL NOT NULL,
  updated_ms  INTEGER NOT NULL,
  per_second  REAL NOT NULL,
  burst       REAL NOT NULL
)`;

type BucketRow = {
  tokens: number;
  updated_ms: number;
  per_second: number;
  burst: number;
};

export class RateLimiterDO extends DurableObject<Env> {
  /** undefined: the bucket is full (no row stored). */
  private state: BucketRow | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(SCHEMA);
      this.state = ctx.storage.sql.exec<BucketRow>("SELECT tokens, updated_ms, per_second, burst FROM bucket").toArray()[0];
    });
  }

  /**
   * Asks for `cost` tokens (default 1). With `consume` false, only reports whether one action would be allowed
   * now, without counting it (used to refuse early and count only what happened, e.g. failed logins).
   */
  async take(rule: BucketRule, consume = true, cost = 1): Promise<BucketResult> {
    const now = Date.now();
    const available = this.available(rule, now);
    const need = consume ? cost : 1;
    if (available < need) {
      return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(((need - available) / rule.perSecond) * 1000)) };
    }
    if (consume && cost > 0) this.save({ tokens: available - cost, updated_ms: now, per_second: rule.perSecond, burst: rule.burst });
    return { allowed: true, retryAfterMs: 0 };
  }

  /** Forgets the bucket (it is full again). */
  async reset(): Promise<void> {
    this.state = undefined;
    this.ctx.storage.sql.exec("DELETE FROM bucket");
    await this.ctx.storage.deleteAlarm();
  }

  /** Drops the stored row once the bucket has refilled under the last rule it was used with. */
  override async alarm(): Promise<void> {
    const s = this.state;
    if (!s) return;
    const rule = { perSecond: s.per_second, burst: s.burst };
    const now = Date.now();
    if (this.available(rule, now) >= rule.burst) {
      this.state = undefined;
      this.ctx.storage.sql.exec("DELETE FROM bucket");
    } else {
      await this.ctx.storage.setAlarm(now + this.msUntilFull(s));
    }
  }

  private available(rule: BucketRule, now: number): number {
    const s = this.state;
    if (!s) return rule.burst;
    const elapsed = Math.max(0, now - s.updated_ms) / 1000;
    return Math.min(rule.burst, s.tokens + elapsed * rule.perSecond);
  }

  private msUntilFull(s: BucketRow): number {
    return Math.ceil(((s.burst - s.tokens) / s.per_second) * 1000) + 1000;
  }

  private save(s: BucketRow): void {
    this.state = s;
    this.ctx.storage.sql.exec(
      `INSERT INTO bucket (id, tokens, updated_ms, per_second, burst) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET tokens = excluded.tokens, updated_ms = excluded.updated_ms,
         per_second = excluded.per_second, burst = excluded.burst`,
      s.tokens,
      s.updated_ms,
      s.per_second,
      s.burst,
    );
    // Output gates hold the reply until this is durable; no await needed between decide and commit.
    void this.ctx.storage.setAlarm(s.updated_ms + this.msUntilFull(s));
  }
}
