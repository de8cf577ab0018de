-- Federation: remote servers' signing keys (fetched directly or through a notary), the key documents we serve
-- again as a notary, and inbound transaction IDs already processed.

-- One row per (server, key). valid_until_ts is when the key stops being usable for new signatures:
-- for a current key min(the document's valid_until_ts, fetch time + 7 days); for an old key its expired_ts.
CREATE TABLE remote_server_keys (
  server_name     TEXT NOT NULL,
  key_id          TEXT NOT NULL,          -- "ed25519:<version>"
  public_key      TEXT NOT NULL,          -- unpadded base64
  valid_until_ts  INTEGER NOT NULL,
  expired_ts      INTEGER,                -- set when the key was listed in old_verify_keys
  fetched_ts      INTEGER NOT NULL,
  fetched_from    TEXT NOT NULL,          -- the server itself, or the notary that vouched for it
  PRIMARY KEY (server_name, key_id)
);

-- The newest key document each server signed, as received (its own signatures only). The notary endpoint
-- (/_matrix/key/v2/query) serves it with our signature added, also after the server went offline.
CREATE TABLE remote_server_key_documents (
  server_name     TEXT PRIMARY KEY,
  document        TEXT NOT NULL,
  valid_until_ts  INTEGER NOT NULL,       -- the document's own valid_until_ts
  fetched_ts      INTEGER NOT NULL
);
