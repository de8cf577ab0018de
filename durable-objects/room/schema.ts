/**
 * RoomDO storage schema. One SQLite database per room; only the RoomDO writes it. Each entry of MIGRATIONS
 * takes the schema from version i to i+1 and runs once, inside the constructor's blockConcurrencyWhile.
 *
 * Internal numeric IDs ("nid") keep rows small: events and state keys are referenced by integer everywhere
 * except the `events` table itself.
 */
import { applyMigrations } from "../shared/migrations";

export const MIGRATIONS: readonly string[] = [
  /* v1 */ `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Every event the room knows, whatever its status.
  CREATE TABLE events (
    nid             INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    state_key       TEXT,                 -- NULL for non-state events
    membership      TEXT,                 -- content.membership of m.room.member events
    sender          TEXT NOT NULL,
    depth           INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    json            TEXT NOT NULL,        -- the PDU as persisted (redacted in place once a redaction applies)
    stream_ordering INTEGER UNIQUE,       -- room stream position; NULL for outliers
    outlier         INTEGER NOT NULL DEFAULT 0, -- known (auth/state fetched) but not placed in the DAG's timeline
    rejected        TEXT,                 -- rejection reason; rejected events never become state
    soft_failed     INTEGER NOT NULL DEFAULT 0, -- stored, not served to clients, never used as prev_events
    partial_state   INTEGER NOT NULL DEFAULT 0, -- accepted against partial state (faster joins)
    state_before    INTEGER,              -- state group before the event (NULL for outliers)
    state_after     INTEGER,              -- state group after the event (same as before for non-state)
    redacts         TEXT,                 -- for m.room.redaction: the target event ID
    redacted_by     TEXT,                 -- event ID of the redaction applied to this event
    received_ts     INTEGER NOT NULL
  );
  CREATE INDEX events_type_state_key ON events(type, state_key) WHERE state_key IS NOT NULL;
  CREATE INDEX events_redacts ON events(redacts) WHERE redacts IS NOT NULL;

  -- DAG edges. prev_id / auth_id are event IDs because the target may not be held (yet).
  CREATE TABLE prev_edges (
    event_nid INTEGER NOT NULL,
    prev_id   TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_id)
  ) WITHOUT ROWID;
  CREATE INDEX prev_edges_prev ON prev_edges(prev_id);

  CREATE TABLE auth_edges (
    event_nid INTEGER NOT NULL,
    auth_id   TEXT NOT NULL,
    PRIMARY KEY (event_nid, auth_id)
  ) WITHOUT ROWID;

  -- Events of the timeline with no known children: the prev_events of the next local event.
  CREATE TABLE forward_extremities (
    event_nid INTEGER PRIMARY KEY
  );

  -- Interned (type, state_key) pairs.
  CREATE TABLE state_keys (
    id        INTEGER PRIMARY KEY,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    UNIQUE (type, state_key)
  );

  -- State snapshots form a tree. A group at depth d stores:
  --   * its step delta against its parent (usually one entry: the state event that created it), and
  --   * its skip delta against its base, the ancestor at depth (d & (d-1)).
  -- Reconstructing a state walks at most popcount(d) skip deltas; storage per state change is O(log n),
  -- never a copy of the whole state.
  CREATE TABLE state_groups (
    id     INTEGER PRIMARY KEY,
    parent INTEGER,
    base   INTEGER,
    depth  INTEGER NOT NULL
  );
  CREATE TABLE state_step (
    group_id  INTEGER NOT NULL,
    key_id    INTEGER NOT NULL,
    event_nid INTEGER,                    -- NULL: the key is absent in this group
    PRIMARY KEY (group_id, key_id)
  ) WITHOUT ROWID;
  CREATE TABLE state_skip (
    group_id  INTEGER NOT NULL,
    key_id    INTEGER NOT NULL,
    event_nid INTEGER,
    PRIMARY KEY (group_id, key_id)
  ) WITHOUT ROWID;

  -- The room's current state (resolved over the forward extremities), kept whole for fast reads.
  CREATE TABLE current_state (
    key_id    INTEGER PRIMARY KEY,
    event_nid INTEGER NOT NULL
  );

  -- Membership summary of the current state: who is in the room, and from which servers.
  CREATE TABLE members (
    user_id    TEXT PRIMARY KEY,
    server     TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_nid  INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX members_by_server ON members(membership, server);

  -- Auth chain index: every (state event, ancestor-in-auth-DAG) pair, so auth chains and their differences
  -- are single queries. Only state events are indexed: state resolution only asks about state events, and
  -- message events would multiply the rows without ever being asked about.
  CREATE TABLE auth_chain (
    event_nid    INTEGER NOT NULL,
    ancestor_nid INTEGER NOT NULL,
    PRIMARY KEY (event_nid, ancestor_nid)
  ) WITHOUT ROWID;

  -- Client transaction IDs: the same (user, device, txn) always maps to the same event.
  CREATE TABLE txn_ids (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
  ) WITHOUT ROWID;

  -- Work that must follow from persisted events, written in the same transaction as the event.
  -- One row per (consumer, target): positions, not payloads, so later notifications coalesce.
  CREATE TABLE outbox (
    consumer        TEXT NOT NULL,        -- 'user' | 'destination' | 'appservice'
    target          TEXT NOT NULL,        -- user ID / server name / appservice ID
    position        INTEGER NOT NULL,     -- the room stream position to announce
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts INTEGER NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (consumer, target)
  ) WITHOUT ROWID;

  -- Timers multiplexed onto the single alarm.
  CREATE TABLE tasks (
    name   TEXT PRIMARY KEY,
    due_ts INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  /* v2 (sync): receipts, typing, and transaction IDs by event (for unsigned.transaction_id) */ `
  -- Receipts: one per (user, receipt type, thread); thread_id '' is unthreaded. eph_pos is the room's ephemeral
  -- stream position of the last change (see ephemeral.ts); data is the receipt content (ts, thread_id, ...).
  CREATE TABLE receipts (
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    data         TEXT NOT NULL,
    eph_pos      INTEGER NOT NULL,
    PRIMARY KEY (user_id, receipt_type, thread_id)
  ) WITHOUT ROWID;
  CREATE INDEX receipts_eph_pos ON receipts(eph_pos);

  -- Who is typing, until when.
  CREATE TABLE typing (
    user_id    TEXT PRIMARY KEY,
    expires_ts INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE INDEX txn_ids_event ON txn_ids(event_id);
  `,
  /* v3 (relations, docs/relations.md): m.relates_to of timeline events, and each thread's latest event */ `
  -- One row per event whose content has an m.relates_to with a string rel_type and event_id. Written in the event's
  -- transaction, deleted when the event is redacted. Readers still check the event's status (rejected, soft-failed).
  CREATE TABLE event_relations (
    event_nid       INTEGER PRIMARY KEY,  -- the child
    parent_id       TEXT NOT NULL,        -- m.relates_to.event_id (the parent need not be held)
    rel_type        TEXT NOT NULL,
    aggregation_key TEXT                  -- m.annotation's key
  );
  CREATE INDEX event_relations_parent ON event_relations(parent_id, rel_type);

  -- Threads by latest activity: the topologically latest served m.thread child of each root.
  CREATE TABLE threads (
    root_id       TEXT PRIMARY KEY,
    latest_nid    INTEGER NOT NULL,
    latest_depth  INTEGER NOT NULL,
    latest_stream INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX threads_latest ON threads(latest_depth, latest_stream);

  -- Rooms that existed before this version: index what they hold.
  INSERT INTO event_relations (event_nid, parent_id, rel_type, aggregation_key)
  SELECT nid, json_extract(json, '$.content."m.relates_to".event_id'), json_extract(json, '$.content."m.relates_to".rel_type'),
         CASE WHEN json_extract(json, '$.content."m.relates_to".rel_type') = 'm.annotation'
               AND json_type(json, '$.content."m.relates_to".key') = 'text'
              THEN json_extract(json, '$.content."m.relates_to".key') END
  FROM events
  WHERE outlier = 0 AND redacted_by IS NULL
    AND json_type(json, '$.content."m.relates_to".rel_type') = 'text'
    AND json_type(json, '$.content."m.relates_to".event_id') = 'text';
  INSERT INTO threads (root_id, latest_nid, latest_depth, latest_stream)
  SELECT parent_id, nid, depth, stream_ordering FROM (
    SELECT r.parent_id, e.nid, e.depth, e.stream_ordering,
           row_number() OVER (PARTITION BY r.parent_id ORDER BY e.depth DESC, e.stream_ordering DESC) AS rn
    FROM event_relations r JOIN events e ON e.nid = r.event_nid
    WHERE r.rel_type = 'm.thread' AND e.rejected IS NULL AND e.soft_failed = 0 AND e.stream_ordering IS NOT NULL
  ) WHERE rn = 1;
  `,
  /* v4 (search, docs/search.md): full-text index of message bodies, room names and topics (search-index.ts) */ `
  -- rowid = events.nid. Written in the event's transaction for accepted events, deleted on redaction.
  CREATE VIRTUAL TABLE search_index USING fts5(body, name, topic, tokenize = 'porter unicode61 remove_diacritics 2');

  -- Rooms that existed before this version: index what they hold (the plain topic only).
  INSERT INTO search_index (rowid, body, name, topic)
  SELECT nid,
         CASE WHEN type = 'm.room.message' THEN json_extract(json, '$.content.body') END,
         CASE WHEN type = 'm.room.name' THEN json_extract(json, '$.content.name') END,
         CASE WHEN type = 'm.room.topic' THEN json_extract(json, '$.content.topic') END
  FROM events
  WHERE stream_ordering IS NOT NULL AND rejected IS NULL AND soft_failed = 0 AND redacted_by IS NULL
    AND ((type = 'm.room.message' AND json_type(json, '$.content.body') = 'text')
      OR (type = 'm.room.name' AND json_type(json, '$.content.name') = 'text')
      OR (type = 'm.room.topic' AND json_type(json, '$.content.topic') = 'text'));
  `,
  /* v5 (search): events waiting to be indexed — the FTS5 insert is batched off the event's path (search-index.ts) */ `
  CREATE TABLE search_pending (nid INTEGER PRIMARY KEY);
  `,
];

/** Applies pending migrations. Call inside blockConcurrencyWhile; runs in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  applyMigrations(storage, MIGRATIONS);
}
