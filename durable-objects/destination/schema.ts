/**
 * DestinationDO storage schema: one SQLite database per remote server, written only by its DestinationDO.
 * Each entry of MIGRATIONS takes the schema from version i to i+1 (run in the constructor).
 */
import { applyMigrations } from "../shared/migrations";
export const MIGRATIONS: readonly string[] = [
  /* v1 */ `
  -- destination name, backoff state, catch-up flag, transaction counter
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Rooms with events for this server: the newest room position we were told about, and how far we have sent.
  -- Positions, not payloads: the PDUs are read from the RoomDO when a transaction is built.
  CREATE TABLE rooms (
    room_id     TEXT PRIMARY KEY,
    notified    INTEGER NOT NULL,
    sent        INTEGER NOT NULL DEFAULT 0,
    updated_ts  INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- EDUs waiting to be sent, oldest first. coalesce_key: a newer EDU with the same key replaces an unsent one
  -- (typing state of a user in a room, a user's presence).
  CREATE TABLE edus (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    edu_type      TEXT NOT NULL,
    content       TEXT NOT NULL,
    coalesce_key  TEXT UNIQUE,
    queued_ts     INTEGER NOT NULL
  );

  -- The transaction in flight (at most one), kept so that a retry resends the same transaction ID and body.
  CREATE TABLE txn (
    txn_id      TEXT PRIMARY KEY,
    body        TEXT NOT NULL,        -- the JSON sent
    rooms       TEXT NOT NULL,        -- JSON {room_id: position reached}: applied to rooms.sent on success
    max_edu_id  INTEGER NOT NULL,     -- EDUs up to this id are in the transaction
    pdu_count   INTEGER NOT NULL,
    edu_count   INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_ts  INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- Transactions this server sent us: processed once per transaction ID; the response is replayed.
  CREATE TABLE inbound (
    txn_id       TEXT PRIMARY KEY,
    status       TEXT NOT NULL,       -- 'processing' | 'done'
    response     TEXT,
    started_ts   INTEGER NOT NULL,
    finished_ts  INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX inbound_finished ON inbound(finished_ts);
  `,
  /* v2 (federation E2EE): device lists of this server's users that we track (device-cache.ts) */ `
  -- One row per remote user whose device list we follow (we share a room): what /user/devices said, updated by
  -- m.device_list_update and m.signing_key_update EDUs. stream_id: the remote's position of the last change applied.
  CREATE TABLE remote_device_lists (
    user_id           TEXT PRIMARY KEY,
    stream_id         INTEGER NOT NULL,
    devices           TEXT NOT NULL,      -- JSON {device_id: {keys?, device_display_name?}}
    master_key        TEXT,               -- JSON, or NULL
    self_signing_key  TEXT,               -- JSON, or NULL
    updated_ts        INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
];

/** Applies pending migrations. Call inside blockConcurrencyWhile; runs in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  applyMigrations(storage, MIGRATIONS);
}
