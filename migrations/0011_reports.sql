-- Content reports from users (POST /rooms/{roomId}/report[/{eventId}], POST /users/{userId}/report), kept for the
-- server's administrators (GET /_synapse/admin/v1/event_reports lists event reports). See docs/moderation.md.
CREATE TABLE reports (
  report_id   INTEGER PRIMARY KEY AUTOINCREMENT,
  kind        TEXT NOT NULL,            -- 'event' | 'room' | 'user'
  reporter    TEXT NOT NULL,
  room_id     TEXT,                     -- 'event' and 'room'
  event_id    TEXT,                     -- 'event'
  user_id     TEXT,                     -- 'user'
  reason      TEXT,
  score       INTEGER,                  -- 'event' (deprecated by the spec, still accepted)
  received_ts INTEGER NOT NULL
);
CREATE INDEX reports_received ON reports(received_ts);

-- OpenID tokens (POST /user/{userId}/openid/request_token): good only for GET
-- /_matrix/federation/v1/openid/userinfo, where a third party (an integration manager, a widget) learns whose
-- token it holds. Hashes only, as for access tokens.
CREATE TABLE openid_tokens (
  token_hash  TEXT PRIMARY KEY,
  user_id     TEXT NOT NULL,
  expires_ts  INTEGER NOT NULL
);
CREATE INDEX openid_tokens_expires ON openid_tokens(expires_ts);
