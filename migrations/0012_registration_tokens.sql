-- Registration tokens (`m.login.registration_token`): with REGISTRATION_REQUIRES_TOKEN, /register asks for one.
-- Created and managed by server admins through Synapse's admin API (/_synapse/admin/v1/registration_tokens).
-- `completed` counts accounts registered with the token; pending uses are not stored but counted from the live
-- UIA sessions that passed the token stage and have not registered yet (so abandoned sessions free their use
-- when they expire). See docs/accounts.md.
CREATE TABLE registration_tokens (
  token         TEXT PRIMARY KEY,
  uses_allowed  INTEGER,            -- NULL: unlimited
  completed     INTEGER NOT NULL DEFAULT 0,
  expiry_time   INTEGER,            -- ms since the epoch; NULL: never
  created_ts    INTEGER NOT NULL
);
