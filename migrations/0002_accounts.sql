-- Local accounts, devices and access tokens. Tokens are stored only as SHA-256 hashes.
CREATE TABLE users (
  user_id         TEXT PRIMARY KEY,
  localpart       TEXT NOT NULL UNIQUE,
  password_hash   TEXT,                    -- NULL: no password login (appservice users, SSO-less puppets)
  created_ts      INTEGER NOT NULL,
  deactivated     INTEGER NOT NULL DEFAULT 0,
  is_guest        INTEGER NOT NULL DEFAULT 0,
  admin           INTEGER NOT NULL DEFAULT 0,
  appservice_id   TEXT                     -- set for users registered by an application service
);

CREATE TABLE devices (
  user_id       TEXT NOT NULL,
  device_id     TEXT NOT NULL,
  display_name  TEXT,
  created_ts    INTEGER NOT NULL,
  last_seen_ts  INTEGER,
  last_seen_ip  TEXT,
  PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
  token_hash      TEXT PRIMARY KEY,        -- unpadded base64 SHA-256 of the token
  user_id         TEXT NOT NULL,
  device_id       TEXT NOT NULL,
  created_ts      INTEGER NOT NULL,
  expires_ts      INTEGER,                 -- NULL: does not expire
  refresh_hash    TEXT UNIQUE,             -- the refresh token paired with this access token, if any
  refresh_used    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_tokens_device ON access_tokens(user_id, device_id);
