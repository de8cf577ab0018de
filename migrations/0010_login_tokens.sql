-- Short-lived, single-use login tokens (`m.login.token`), handed out by POST /_matrix/client/v1/login/get_token
-- to an already logged-in user (after re-authentication) so that another device can log in. Only the token's
-- hash is stored, as for access tokens. See docs/accounts.md.
CREATE TABLE login_tokens (
  token_hash  TEXT PRIMARY KEY,
  user_id     TEXT NOT NULL,
  expires_ts  INTEGER NOT NULL,
  used_ts     INTEGER               -- set by the one login that consumed it
);
CREATE INDEX login_tokens_expires ON login_tokens(expires_ts);
