-- Authentication state beyond 0002: refresh-token rotation, user-interactive auth sessions, shared-secret
-- registration nonces, user types. See docs/accounts.md.

-- Refresh rotation: a token pair created by /refresh points at the pair it replaced until it is first used;
-- until then the old refresh token may be replayed (the client may have lost the response).
ALTER TABLE access_tokens ADD COLUMN parent_hash TEXT;
CREATE INDEX access_tokens_parent ON access_tokens(parent_hash) WHERE parent_hash IS NOT NULL;

-- Synapse's user types ("bot", "support"); NULL for ordinary users.
ALTER TABLE users ADD COLUMN user_type TEXT;
-- Login accepts a user ID in any letter case when it matches exactly one account (as Synapse does).
CREATE INDEX users_user_id_lower ON users(lower(user_id));

-- User-interactive authentication sessions. A session is bound to the request it started with
-- (method and path) and, for authenticated endpoints, to the requesting user.
CREATE TABLE uia_sessions (
  session_id  TEXT PRIMARY KEY,
  method      TEXT NOT NULL,
  path        TEXT NOT NULL,
  user_id     TEXT,                        -- NULL for registration
  completed   TEXT NOT NULL DEFAULT '[]',  -- JSON array of completed stage types, in order
  data        TEXT NOT NULL DEFAULT '{}',  -- server-side data (request parameters, password hash, registered user)
  created_ts  INTEGER NOT NULL
);
CREATE INDEX uia_sessions_created ON uia_sessions(created_ts);

-- Single-use nonces for /_synapse/admin/v1/register.
CREATE TABLE registration_nonces (
  nonce       TEXT PRIMARY KEY,
  created_ts  INTEGER NOT NULL
);
CREATE INDEX registration_nonces_created ON registration_nonces(created_ts);
