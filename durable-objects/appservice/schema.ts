/**
 * AppServiceDO storage schema (one SQLite database per application service). Each entry of MIGRATIONS takes
 * the schema from version i to i+1, once, inside the constructor's blockConcurrencyWhile.
 */
import { applyMigrations } from "../shared/migrations";

export const MIGRATIONS: readonly string[] = [
  /* v1 */ `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Per room: the room stream position up to which the room's interest log has been pulled into the queue
  -- (acked) and the newest position the room announced (known). Same for the room's ephemeral stream.
  CREATE TABLE room_cursors (
    room_id   TEXT PRIMARY KEY,
    acked     INTEGER NOT NULL DEFAULT 0,
    known     INTEGER NOT NULL DEFAULT 0,
    eph_acked INTEGER NOT NULL DEFAULT 0,
    eph_known INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE INDEX room_cursors_behind ON room_cursors(known, acked);

  -- Per appservice user (MSC2409 to-device, MSC3202 device lists and key counts): the user stream position
  -- pulled so far, and whether the UserDO announced something newer.
  CREATE TABLE user_cursors (
    user_id TEXT PRIMARY KEY,
    acked   INTEGER NOT NULL DEFAULT 0,
    dirty   INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;

  -- Work not yet in a transaction, in arrival order: kind 'event' | 'ephemeral' | 'to_device'; json is what
  -- goes into the transaction body.
  CREATE TABLE queue (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    room_id TEXT,
    json    TEXT NOT NULL
  );
  CREATE INDEX queue_kind ON queue(kind, seq);

  -- MSC3202 device-list summary not yet sent: one row per user, the latest kind wins ('changed' | 'left').
  CREATE TABLE device_lists (
    user_id TEXT PRIMARY KEY,
    kind    TEXT NOT NULL
  ) WITHOUT ROWID;

  -- MSC3202 one-time-key counts and unused fallback key types not yet sent: the latest snapshot per user.
  CREATE TABLE key_counts (
    user_id  TEXT PRIMARY KEY,
    counts   TEXT NOT NULL,          -- {device_id: {algorithm: count}}
    fallback TEXT NOT NULL           -- {device_id: [algorithm]}
  ) WITHOUT ROWID;

  -- Transactions built and not yet acknowledged, with their original id. The oldest is (re)sent first.
  CREATE TABLE txns (
    txn_id     INTEGER PRIMARY KEY,
    body       TEXT NOT NULL,
    events     INTEGER NOT NULL,
    created_ts INTEGER NOT NULL
  );
  `,
];

/** Applies pending migrations. Call inside blockConcurrencyWhile; runs in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  applyMigrations(storage, MIGRATIONS);
}
