/**
 * UserDO tables of the E2EE side (device keys, one-time and fallback keys, cross-signing, to-device inbox,
 * device-list changes, key backup) and of push rules. Appended to the UserDO MIGRATIONS list in schema.ts as
 * one entry; like every migration entry, this text never changes once shipped — later changes append a new entry.
 */

export const E2EE_PUSH_TABLES = `
  -- Device identity keys from /keys/upload, as uploaded (the self-signature covers them).
  CREATE TABLE e2e_device_keys (
    device_id TEXT PRIMARY KEY,
    json      TEXT NOT NULL,
    ts        INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- One-time keys. id is the upload order: /keys/claim hands out the oldest first, each exactly once.
  CREATE TABLE e2e_one_time_keys (
    id        INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    UNIQUE (device_id, algorithm, key_id)
  );
  CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys(device_id, algorithm, id);

  -- Fallback keys: one per device and algorithm, handed out (and marked used) when no one-time key is left.
  CREATE TABLE e2e_fallback_keys (
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, algorithm)
  ) WITHOUT ROWID;

  -- The user's current cross-signing keys. key_id is 'ed25519:<public key>'.
  CREATE TABLE e2e_cross_signing_keys (
    usage  TEXT PRIMARY KEY,            -- master | self_signing | user_signing
    key_id TEXT NOT NULL,
    json   TEXT NOT NULL,
    ts     INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- Signatures made by this user through /keys/signatures/upload: of their own devices (by the self-signing
  -- key), of their own master key (by a device), of other users' master keys (by the user-signing key).
  CREATE TABLE e2e_signatures (
    target_user   TEXT NOT NULL,
    target_key    TEXT NOT NULL,        -- a device ID, or a master key's public key
    signer_key_id TEXT NOT NULL,        -- 'ed25519:<public key or device ID>'
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_key_id)
  ) WITHOUT ROWID;

  -- To-device messages waiting for a device's /sync. pos is a user stream position; a message is deleted once
  -- the device syncs with a token at or past it. message_id deduplicates redelivery.
  CREATE TABLE to_device_inbox (
    pos        INTEGER PRIMARY KEY,
    device_id  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    message_id TEXT NOT NULL
  );
  CREATE INDEX to_device_inbox_device ON to_device_inbox(device_id, pos);

  -- Messages already accepted (even if acknowledged and deleted since), so that an outbox retry is not a
  -- second delivery. Pruned after a day.
  CREATE TABLE to_device_received (
    message_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    ts         INTEGER NOT NULL,
    PRIMARY KEY (message_id, device_id)
  ) WITHOUT ROWID;
  CREATE INDEX to_device_received_ts ON to_device_received(ts);

  -- Transaction IDs of this user's PUT /sendToDevice requests (idempotency), pruned after a day.
  CREATE TABLE to_device_txns (
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (device_id, txn_id)
  ) WITHOUT ROWID;
  CREATE INDEX to_device_txns_ts ON to_device_txns(ts);

  -- Work other UserDOs (or servers) must hear about, written in the same transaction as its cause and drained
  -- right after the commit, then by alarm with backoff. kind: 'to_device' | 'device_list'.
  CREATE TABLE e2ee_outbox (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ts   INTEGER NOT NULL
  );

  -- Users whose device lists (device keys, cross-signing keys) changed, or with whom this user stopped sharing a
  -- room, as seen by this user. pos is a user stream position. kind: 'changed' | 'left'.
  CREATE TABLE device_list_changes (
    pos     INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL
  );

  -- Server-side key backup versions. Deleted versions keep their row (deleted = 1) so a number is never reused
  -- and deleting twice succeeds.
  CREATE TABLE backup_versions (
    version   INTEGER PRIMARY KEY,      -- rows are never deleted, so numbers are never reused
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0
  );

  CREATE TABLE backup_keys (
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (version, room_id, session_id)
  ) WITHOUT ROWID;

  -- The user's own push rules. priority orders the rules of a kind: lower is more important.
  CREATE TABLE push_rules (
    kind       TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    priority   INTEGER NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    actions    TEXT NOT NULL,
    conditions TEXT,                    -- override / underride
    pattern    TEXT,                    -- content
    PRIMARY KEY (kind, rule_id)
  ) WITHOUT ROWID;

  -- The user's changes to server-default rules (NULL: unchanged).
  CREATE TABLE push_rule_settings (
    kind    TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled INTEGER,
    actions TEXT,
    PRIMARY KEY (kind, rule_id)
  ) WITHOUT ROWID;
`;
