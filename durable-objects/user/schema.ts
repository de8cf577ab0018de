/**
 * UserDO storage schema. One SQLite database per local user; only that user's UserDO writes it.
 *
 * MIGRATIONS is append-only: each entry takes the schema from version i to i+1 and runs once, inside the
 * constructor's blockConcurrencyWhile. Modules that own tables (sync stream, filters, account data; devices,
 * keys and to-device messages from the E2EE side) append their own entry — never edit an entry that has shipped.
 */
import { applyMigrations } from "../shared/migrations";

import { E2EE_PUSH_TABLES } from "./keys-schema";
import { PRESENCE_TABLES } from "./presence";
import { PUSH_TABLES } from "./push-actions";

export const MIGRATIONS: readonly string[] = [
  /* v1: the sync stream, room positions, filters, account data */ `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- The user's stream head: every change a /sync response depends on takes the next position (see stream.ts).
  CREATE TABLE stream_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
  );
  INSERT INTO stream_head (id, pos) VALUES (1, 0);

  -- Latest known position of every room the user has a relationship with (fed by the rooms' outboxes).
  CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    membership   TEXT NOT NULL,          -- the user's membership as of room_pos: join | invite | knock | leave | ban
    room_pos     INTEGER NOT NULL,       -- the room's event stream position last announced
    eph_pos      INTEGER NOT NULL DEFAULT 0, -- the room's ephemeral (typing, receipts) position last announced
    updated_pos  INTEGER NOT NULL        -- user stream position of the last change to this row
  ) WITHOUT ROWID;
  CREATE INDEX rooms_by_membership ON rooms(membership);

  -- History of room advances, so an incremental sync can tell where each room stood at its since token.
  -- kind: 'events' (room_pos = room event stream position) | 'ephemeral' (room_pos = room ephemeral position).
  CREATE TABLE room_log (
    pos        INTEGER PRIMARY KEY,      -- user stream position
    room_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    room_pos   INTEGER NOT NULL,
    membership TEXT NOT NULL,
    ts         INTEGER NOT NULL
  );
  CREATE INDEX room_log_room ON room_log(room_id, kind, pos);

  -- Filters uploaded with POST /user/{userId}/filter. IDs are small integers, as strings on the wire.
  CREATE TABLE filters (
    filter_id INTEGER PRIMARY KEY,
    json      TEXT NOT NULL
  );

  -- Account data: room_id '' is global. pos is the user stream position of the last write.
  CREATE TABLE account_data (
    room_id TEXT NOT NULL,
    type    TEXT NOT NULL,
    content TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (room_id, type)
  ) WITHOUT ROWID;
  CREATE INDEX account_data_pos ON account_data(pos);
  `,
  /* v2: E2EE (device/one-time/fallback/cross-signing keys, to-device, device lists, key backup) and push rules */
  E2EE_PUSH_TABLES,
  /* v3: presence (presence.ts): the user's own presence and whose presence changed for the user to see */
  PRESENCE_TABLES,
  /* v4: push notifications (push-actions.ts): rooms evaluated, notifying events, delivery state per pusher */
  PUSH_TABLES,
];

/** Applies pending migrations. Call inside blockConcurrencyWhile; runs in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  applyMigrations(storage, MIGRATIONS);
}
