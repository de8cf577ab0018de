-- Presence (docs/presence.md): the latest presence of every user some local user may see.
-- A local user's row is a copy written by their UserDO (the owner of that user's presence) after each change,
-- guarded by `serial` so that a late write never replaces a newer one. A remote user's row is written when an
-- m.presence EDU arrives and some local user shares a room with them (serial: the time it arrived).
-- /sync and GET /presence read it; last_active_ago is computed at read time from last_active_ts.
CREATE TABLE presence (
  user_id          TEXT PRIMARY KEY,
  state            TEXT NOT NULL,          -- online | unavailable | offline
  status_msg       TEXT,
  last_active_ts   INTEGER NOT NULL,       -- 0: never active
  currently_active INTEGER NOT NULL DEFAULT 0,
  updated_ts       INTEGER NOT NULL,       -- when this server last heard of it (remote rows time out from here)
  serial           INTEGER NOT NULL
);
