/**
 * AppServiceDO: one Durable Object per application service (`env.APPSERVICES.idFromName(id)`), the only sender
 * of its transactions (docs/appservices.md, "Delivery").
 *
 * Inputs are notices, not payloads: a RoomDO says "room R reached position P" (events its interest log holds
 * for this appservice) or "R's ephemeral stream reached P"; a UserDO says "user U has news". Each notice only
 * moves a cursor in storage. The sender pulls what is behind the cursors into its queue — each pull commits the
 * pulled items together with the advanced cursor, so an item enters the queue exactly once — and builds
 * transactions from the queue: at most 100 events, 100 ephemeral events and 100 to-device messages each, plus
 * the merged device-list summary and key counts. A transaction is stored with its id before it is sent and is
 * deleted only when the appservice answers 2xx; a failure retries the same stored transaction, with its
 * original id, after 2, 4, 8 … 512 s (the alarm), and nothing newer is sent meanwhile.
 *
 * State machine: UP —(send fails)→ DOWN(n=1, retry in 2 s) —(fails)→ DOWN(n+1, capped at 9: 512 s) …
 * DOWN —(send succeeds)→ still DOWN, backoff reset, keep sending (stored transactions, then the queue) —(nothing
 * left)→ UP. While DOWN, ephemeral notices are dropped (typing/receipts are stale by the time it recovers);
 * events, to-device messages and device-list changes wait.
 *
 * Only one sender runs (`pump` is single-flight). The alarm is the safety net: while DOWN it is the retry time;
 * while UP with work pending it is a few seconds out, so an eviction mid-delivery resumes by itself.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { getConfig } from "../../src/config";
import type { AppService } from "../../src/appservices/registration";
import { callAppservice } from "../../src/appservices/transport";
import type { AppserviceUserUpdates } from "../../src/appservices/user-updates";
import { migrate } from "./schema";
import { CoalescingRunner } from "../shared/coalescing-runner";

/** Per transaction, at most this many of each kind (protocol-notes §3). */
export const MAX_EVENTS_PER_TXN = 100;
export const MAX_EPHEMERAL_PER_TXN = 100;
export const MAX_TO_DEVICE_PER_TXN = 100;
/** Backoff: 2^n seconds, n from 1 to 9 (2 s … 512 s). */
export const MAX_BACKOFF_EXPONENT = 9;
/** How long the appservice may take to answer a transaction. */
const TXN_TIMEOUT_MS = 60_000;
/** While UP with work pending, the alarm that resumes delivery after an eviction. */
const SAFETY_ALARM_MS = 5_000;
/** Events pulled from a room per RPC, and rooms pulled at once. */
const PULL_LIMIT = 500;
const PULL_PARALLELISM = 8;

export interface AppServiceStatus {
  id: string;
  state: "up" | "down";
  /** Events, ephemeral events and to-device messages waiting in the queue (not yet in a transaction). */
  queued: number;
  /** Events held in stored, unacknowledged transactions. */
  in_transactions: number;
  /** Stored, unacknowledged transactions (the oldest is the next to be (re)sent). */
  stored_transactions: number;
  /** Rooms whose interest logs hold events not yet pulled. */
  rooms_behind: number;
  /** The id of the last transaction the appservice acknowledged (0: none yet). */
  last_txn_id: number;
  /** The id the next new transaction gets. */
  next_txn_id: number;
  /** While DOWN: when the next retry is due (ms since the epoch); null when UP. */
  next_retry_ts: number | null;
  backoff_exponent: number;
  last_error: string | null;
  /** Transactions acknowledged and events delivered since this DO's storage was created. */
  sent_transactions: number;
  sent_events: number;
}

type StoredTxn = {
  txn_id: number;
  body: string;
  events: number;
};

export class AppServiceDO extends DurableObject<Env> {
  /** The clock (tests replace it to step through the backoff schedule). */
  now: () => number = () => Date.now();
  private readonly sql: SqlStorage;
  private readonly sender = new CoalescingRunner(
    () => this.sendAll(),
    () => this.ctx.storage.transactionSync(() => this.arm()),
  );

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => migrate(ctx.storage));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Notices (RPC): each records a cursor and starts the sender.

  /** Room `roomId`'s interest log holds events for this appservice up to `position`. */
  async roomAdvanced(asId: string, roomId: string, position: number): Promise<void> {
    this.ctx.storage.transactionSync(() => {
      this.setMeta("as_id", asId);
      this.sql.exec(
        `INSERT INTO room_cursors (room_id, known) VALUES (?, ?)
         ON CONFLICT (room_id) DO UPDATE SET known = max(known, excluded.known)`,
        roomId, position,
      );
      this.arm();
    });
    this.kick();
  }

  /** Room `roomId`'s typing/receipts stream reached `position`. Dropped while DOWN. */
  async ephemeralAdvanced(asId: string, roomId: string, position: number): Promise<void> {
    const down = this.ctx.storage.transactionSync(() => {
      this.setMeta("as_id", asId);
      const down = this.state().down;
      // While DOWN ephemeral work is dropped: the cursor skips it.
      this.sql.exec(
        `INSERT INTO room_cursors (room_id, eph_known, eph_acked) VALUES (?, ?, ?)
         ON CONFLICT (room_id) DO UPDATE SET eph_known = max(eph_known, excluded.eph_known),
           eph_acked = CASE WHEN ? THEN max(eph_acked, excluded.eph_known) ELSE eph_acked END`,
        roomId, position, down ? position : 0, down ? 1 : 0,
      );
      this.arm();
      return down;
    });
    if (!down) this.kick();
  }

  /**
   * Presence (docs/presence.md): an `m.presence` ephemeral event (JSON text) for this appservice, queued as is.
   * Presence is the latest state, not a stream to catch up on, so the event itself is the notice. Dropped while
   * DOWN, like typing and receipts.
   */
  async presenceEvent(asId: string, json: string): Promise<void> {
    const down = this.ctx.storage.transactionSync(() => {
      this.setMeta("as_id", asId);
      if (this.state().down) return true;
      this.sql.exec("INSERT INTO queue (kind, json) VALUES ('ephemeral', ?)", json);
      this.arm();
      return false;
    });
    if (!down) this.kick();
  }

  /** User `userId` (one of this appservice's) has news: to-device messages, device-list changes, key counts. */
  async userAdvanced(asId: string, userId: string): Promise<void> {
    this.ctx.storage.transactionSync(() => {
      this.setMeta("as_id", asId);
      this.sql.exec(
        "INSERT INTO user_cursors (user_id, dirty) VALUES (?, 1) ON CONFLICT (user_id) DO UPDATE SET dirty = 1",
        userId,
      );
      this.arm();
    });
    this.kick();
  }

  /** Admin view and tests. */
  async status(asId?: string): Promise<AppServiceStatus> {
    if (asId) this.ctx.storage.transactionSync(() => this.setMeta("as_id", asId));
    const st = this.state();
    const one = (q: string) => this.sql.exec<{ n: number | null }>(q).one().n ?? 0;
    return {
      id: this.meta("as_id") ?? asId ?? "",
      state: st.down ? "down" : "up",
      queued: one("SELECT count(*) AS n FROM queue"),
      in_transactions: one("SELECT sum(events) AS n FROM txns"),
      stored_transactions: one("SELECT count(*) AS n FROM txns"),
      rooms_behind: one("SELECT count(*) AS n FROM room_cursors WHERE known > acked"),
      last_txn_id: Number(this.meta("last_sent_txn") ?? 0),
      next_txn_id: Number(this.meta("last_txn_id") ?? 0) + 1,
      next_retry_ts: st.down ? st.retryAt : null,
      backoff_exponent: st.backoff,
      last_error: this.meta("last_error") ?? null,
      sent_transactions: Number(this.meta("sent_txns") ?? 0),
      sent_events: Number(this.meta("sent_events") ?? 0),
    };
  }

  /**
   * The appservice proved it is reachable (a successful ping through the client API): a DOWN appservice retries
   * now instead of at the end of its backoff. Returns the state before.
   */
  async reachable(asId: string): Promise<"up" | "down"> {
    const was = this.ctx.storage.transactionSync(() => {
      this.setMeta("as_id", asId);
      const st = this.state();
      if (st.down) this.setState({ down: true, backoff: st.backoff, retryAt: 0 });
      this.arm();
      return st.down ? ("down" as const) : ("up" as const);
    });
    if (was === "down") this.kick();
    return was;
  }

  /** Runs the sender now (admin, tests) and waits for it. */
  async flush(): Promise<AppServiceStatus> {
    await this.pump();
    return this.status();
  }

  override async alarm(): Promise<void> {
    await this.pump();
  }

  // ---------------------------------------------------------------------------------------------------------
  // The sender

  private kick(): void {
    this.pump().catch((e: unknown) => console.error(`appservice ${this.meta("as_id")}: sender failed`, e));
  }

  /** Runs the sender; concurrent calls share one run plus one more if a notice arrived meanwhile. */
  private pump(): Promise<void> {
    return this.sender.run();
  }

  private registration(): AppService | undefined {
    const id = this.meta("as_id") ?? this.ctx.id.name;
    return id === undefined ? undefined : getConfig(this.env).appservices.get(id);
  }

  /** Sends transactions until there is nothing left, the appservice fails, or a retry is not due yet. */
  private async sendAll(): Promise<void> {
    const as = this.registration();
    if (!as || as.url === null) return;
    for (;;) {
      const st = this.state();
      if (st.down && this.now() < st.retryAt) return;
      let txn = this.oldestTxn();
      if (!txn) {
        await this.fill(as);
        txn = this.ctx.storage.transactionSync(() => this.createTxn(as));
        if (!txn) {
          if (st.down) this.ctx.storage.transactionSync(() => this.setState({ down: false, backoff: 0, retryAt: 0 }));
          return;
        }
      }
      const error = await this.send(as, txn);
      this.ctx.storage.transactionSync(() => {
        if (error === undefined) {
          this.sql.exec("DELETE FROM txns WHERE txn_id = ?", txn.txn_id);
          this.setMeta("last_sent_txn", String(txn.txn_id));
          this.setMeta("sent_txns", String(Number(this.meta("sent_txns") ?? 0) + 1));
          this.setMeta("sent_events", String(Number(this.meta("sent_events") ?? 0) + txn.events));
          // A success resets the backoff; the appservice stays DOWN until everything stored has gone out.
          if (st.down) this.setState({ down: true, backoff: 0, retryAt: 0 });
        } else {
          const backoff = Math.min(st.backoff + 1, MAX_BACKOFF_EXPONENT);
          this.setState({ down: true, backoff, retryAt: this.now() + 1000 * 2 ** backoff });
          this.setMeta("last_error", error.slice(0, 500));
        }
      });
      if (error !== undefined) return;
    }
  }

  /** PUTs a stored transaction; undefined on success, else why it failed. */
  private async send(as: AppService, txn: StoredTxn): Promise<string | undefined> {
    try {
      const res = await callAppservice(as, {
        method: "PUT",
        path: `/_matrix/app/v1/transactions/${txn.txn_id}`,
        body: JSON.parse(txn.body) as unknown,
        timeoutMs: TXN_TIMEOUT_MS,
      });
      if (res.ok) return undefined;
      return `transaction ${txn.txn_id}: HTTP ${res.status} ${res.text.slice(0, 200)}`;
    } catch (e) {
      return `transaction ${txn.txn_id}: ${String((e as Error)?.message ?? e)}`;
    }
  }

  private oldestTxn(): StoredTxn | undefined {
    return this.sql.exec<StoredTxn>("SELECT txn_id, body, events FROM txns ORDER BY txn_id LIMIT 1").toArray()[0];
  }

  /**
   * Takes up to 100 events, 100 ephemeral events and 100 to-device messages from the queue, plus the pending
   * device-list summary and key counts, and stores them as the next transaction. Call inside a transaction.
   */
  private createTxn(as: AppService): StoredTxn | undefined {
    type Q = { seq: number; json: string };
    const take = (kind: string, limit: number) =>
      this.sql.exec<Q>("SELECT seq, json FROM queue WHERE kind = ? ORDER BY seq LIMIT ?", kind, limit).toArray();
    const events = take("event", MAX_EVENTS_PER_TXN);
    const ephemeral = take("ephemeral", MAX_EPHEMERAL_PER_TXN);
    const toDevice = take("to_device", MAX_TO_DEVICE_PER_TXN);
    const lists = this.sql.exec<{ user_id: string; kind: string }>("SELECT user_id, kind FROM device_lists ORDER BY user_id").toArray();
    const counts = this.sql.exec<{ user_id: string; counts: string; fallback: string }>("SELECT * FROM key_counts ORDER BY user_id").toArray();
    if (events.length + ephemeral.length + toDevice.length + lists.length + counts.length === 0) return undefined;

    const parse = (rows: Q[]) => rows.map((r) => JSON.parse(r.json) as unknown);
    const body: Record<string, unknown> = { events: parse(events) };
    if (ephemeral.length) {
      body.ephemeral = parse(ephemeral);
      body["de.sorunome.msc2409.ephemeral"] = body.ephemeral; // the unstable name, for older bridges
    }
    if (toDevice.length) body["de.sorunome.msc2409.to_device"] = parse(toDevice);
    if (as.msc3202 && lists.length) {
      body["org.matrix.msc3202.device_lists"] = {
        changed: lists.filter((l) => l.kind === "changed").map((l) => l.user_id),
        left: lists.filter((l) => l.kind === "left").map((l) => l.user_id),
      };
    }
    if (as.msc3202 && counts.length) {
      const otk: Record<string, unknown> = {};
      const fallback: Record<string, unknown> = {};
      for (const c of counts) {
        otk[c.user_id] = JSON.parse(c.counts) as unknown;
        fallback[c.user_id] = JSON.parse(c.fallback) as unknown;
      }
      body["org.matrix.msc3202.device_one_time_keys_count"] = otk;
      body["org.matrix.msc3202.device_one_time_key_counts"] = otk; // the name used before MSC3202's rename
      body["org.matrix.msc3202.device_unused_fallback_key_types"] = fallback;
    }

    const id = Number(this.meta("last_txn_id") ?? 0) + 1;
    this.setMeta("last_txn_id", String(id));
    const text = JSON.stringify(body);
    this.sql.exec("INSERT INTO txns (txn_id, body, events, created_ts) VALUES (?, ?, ?, ?)", id, text, events.length, this.now());
    // The rows taken are exactly the oldest of their kind, up to the last one taken.
    for (const [kind, rows] of [["event", events], ["ephemeral", ephemeral], ["to_device", toDevice]] as const) {
      if (rows.length) this.sql.exec("DELETE FROM queue WHERE kind = ? AND seq <= ?", kind, rows[rows.length - 1]!.seq);
    }
    this.sql.exec("DELETE FROM device_lists");
    this.sql.exec("DELETE FROM key_counts");
    return { txn_id: id, body: text, events: events.length };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Pulling from the sources

  /** Pulls from rooms and users that are behind until the queue holds a full transaction's worth of events. */
  private async fill(as: AppService): Promise<void> {
    const down = this.state().down;
    if (!down) await this.pullEphemeral(as);
    await this.pullUsers(as);
    for (;;) {
      const queued = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM queue WHERE kind = 'event'").one().n;
      if (queued >= MAX_EVENTS_PER_TXN) return;
      const rooms = this.sql
        .exec<{ room_id: string; acked: number }>(
          "SELECT room_id, acked FROM room_cursors WHERE known > acked ORDER BY room_id LIMIT ?",
          PULL_PARALLELISM,
        )
        .toArray();
      if (rooms.length === 0) return;
      const progress = await Promise.all(rooms.map((r) => this.pullRoom(as, r.room_id, r.acked)));
      if (!progress.some(Boolean)) return;
    }
  }

  /** Pulls one room's logged events after `after`; true if the cursor moved. */
  private async pullRoom(as: AppService, roomId: string, after: number): Promise<boolean> {
    const stub = this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId));
    let got: { events: { stream_ordering: number; json: string }[]; position: number };
    try {
      got = await stub.appserviceEvents(as.id, after, PULL_LIMIT);
    } catch (e) {
      console.warn(`appservice ${as.id}: pulling ${roomId} failed: ${String((e as Error)?.message ?? e)}`);
      return false;
    }
    return this.ctx.storage.transactionSync(() => {
      // Re-checked inside the transaction: only a pull from the cursor as it stands now may advance it.
      const cur = this.sql.exec<{ acked: number; known: number }>("SELECT acked, known FROM room_cursors WHERE room_id = ?", roomId).one();
      if (cur.acked !== after) return false;
      for (const ev of got.events) this.sql.exec("INSERT INTO queue (kind, room_id, json) VALUES ('event', ?, ?)", roomId, ev.json);
      // The room may have reached further than it announced (or announced further than it logged).
      const position = Math.max(after, got.position);
      this.sql.exec("UPDATE room_cursors SET acked = ?, known = max(known, ?) WHERE room_id = ?", position, position, roomId);
      return position > after || got.events.length > 0;
    });
  }

  /** Pulls typing and receipts of rooms whose ephemeral streams moved. */
  private async pullEphemeral(as: AppService): Promise<void> {
    if (!as.receiveEphemeral) return;
    const rooms = this.sql
      .exec<{ room_id: string; eph_acked: number }>("SELECT room_id, eph_acked FROM room_cursors WHERE eph_known > eph_acked LIMIT 50")
      .toArray();
    await Promise.all(
      rooms.map(async (r) => {
        let got: { events: string[]; position: number };
        try {
          got = await this.env.ROOMS.get(this.env.ROOMS.idFromName(r.room_id)).appserviceEphemeral(as.id, r.eph_acked);
        } catch (e) {
          console.warn(`appservice ${as.id}: ephemeral of ${r.room_id} failed: ${String((e as Error)?.message ?? e)}`);
          return;
        }
        this.ctx.storage.transactionSync(() => {
          const cur = this.sql.exec<{ eph_acked: number }>("SELECT eph_acked FROM room_cursors WHERE room_id = ?", r.room_id).one();
          if (cur.eph_acked !== r.eph_acked) return;
          for (const json of got.events) this.sql.exec("INSERT INTO queue (kind, room_id, json) VALUES ('ephemeral', ?, ?)", r.room_id, json);
          this.sql.exec(
            "UPDATE room_cursors SET eph_acked = ?, eph_known = max(eph_known, ?) WHERE room_id = ?",
            Math.max(r.eph_acked, got.position), got.position, r.room_id,
          );
        });
      }),
    );
  }

  /** Pulls to-device messages, device-list changes and key counts of users that announced news. */
  private async pullUsers(as: AppService): Promise<void> {
    if (!as.pushToDevice && !as.msc3202) return;
    const users = this.sql.exec<{ user_id: string; acked: number }>("SELECT user_id, acked FROM user_cursors WHERE dirty = 1 LIMIT 50").toArray();
    await Promise.all(
      users.map(async (u) => {
        let got: AppserviceUserUpdates;
        try {
          got = JSON.parse(await this.env.USERS.get(this.env.USERS.idFromName(u.user_id)).appserviceUpdates(u.acked, as.msc3202)) as AppserviceUserUpdates;
        } catch (e) {
          console.warn(`appservice ${as.id}: updates of ${u.user_id} failed: ${String((e as Error)?.message ?? e)}`);
          return;
        }
        this.ctx.storage.transactionSync(() => {
          const cur = this.sql.exec<{ acked: number }>("SELECT acked FROM user_cursors WHERE user_id = ?", u.user_id).one();
          if (cur.acked !== u.acked) return;
          if (as.pushToDevice) {
            for (const m of got.to_device) {
              const msg = { type: m.type, sender: m.sender, content: JSON.parse(m.content) as unknown, to_user_id: u.user_id, to_device_id: m.device_id };
              this.sql.exec("INSERT INTO queue (kind, json) VALUES ('to_device', ?)", JSON.stringify(msg));
            }
          }
          if (as.msc3202) {
            for (const [kind, ids] of [["changed", got.device_lists.changed], ["left", got.device_lists.left]] as const) {
              for (const id of ids) {
                this.sql.exec("INSERT INTO device_lists (user_id, kind) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET kind = excluded.kind", id, kind);
              }
            }
            if (got.counts && got.fallback) {
              this.sql.exec(
                "INSERT INTO key_counts (user_id, counts, fallback) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET counts = excluded.counts, fallback = excluded.fallback",
                u.user_id, JSON.stringify(got.counts), JSON.stringify(got.fallback),
              );
            }
          }
          // More to read (a long to-device backlog) keeps the user dirty.
          const more = got.to_device.length >= 500;
          this.sql.exec("UPDATE user_cursors SET acked = ?, dirty = ? WHERE user_id = ?", Math.max(u.acked, got.position), more ? 1 : 0, u.user_id);
        });
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // State and the alarm

  private state(): { down: boolean; backoff: number; retryAt: number } {
    return {
      down: this.meta("state") === "down",
      backoff: Number(this.meta("backoff") ?? 0),
      retryAt: Number(this.meta("retry_at") ?? 0),
    };
  }

  private setState(s: { down: boolean; backoff: number; retryAt: number }): void {
    this.setMeta("state", s.down ? "down" : "up");
    this.setMeta("backoff", String(s.backoff));
    this.setMeta("retry_at", String(s.retryAt));
    if (!s.down) this.sql.exec("DELETE FROM meta WHERE key = 'last_error'");
  }

  /** Points the alarm at the retry (DOWN) or, with work pending, a little ahead (UP). Call inside a transaction. */
  private arm(): void {
    const st = this.state();
    // Alarm times are never earlier than a second from now by the runtime's clock: an alarm in the past fires at
    // once, and a retry that is not due yet by `now()` (a test clock) would otherwise re-arm it in a tight loop.
    if (st.down) {
      void this.ctx.storage.setAlarm(Math.max(st.retryAt, Date.now() + 1000));
      return;
    }
    const pending =
      this.sql.exec<{ n: number }>(
        `SELECT (SELECT count(*) FROM queue) + (SELECT count(*) FROM txns)
              + (SELECT count(*) FROM room_cursors WHERE known > acked OR eph_known > eph_acked)
              + (SELECT count(*) FROM user_cursors WHERE dirty = 1)
              + (SELECT count(*) FROM device_lists) + (SELECT count(*) FROM key_counts) AS n`,
      ).one().n > 0;
    if (pending) void this.ctx.storage.setAlarm(Date.now() + SAFETY_ALARM_MS);
    else void this.ctx.storage.deleteAlarm();
  }

  private meta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }
}
