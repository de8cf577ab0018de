-- Rooms engineer: aliases, the published room directory, room summaries, profiles, the user directory and
-- forgotten rooms. See docs/client-rooms.md.

-- Local room aliases (#localpart:this.server). Remote aliases are resolved over federation, never stored here.
CREATE TABLE room_aliases (
  alias       TEXT PRIMARY KEY,
  room_id     TEXT NOT NULL,
  creator     TEXT NOT NULL,            -- who created the alias (may delete it without room power)
  created_ts  INTEGER NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases(room_id);

-- Rooms published in this server's room directory (visibility "public"); absent means "private".
CREATE TABLE room_directory (
  room_id       TEXT PRIMARY KEY,
  published_ts  INTEGER NOT NULL
);

-- A summary of every room this server holds, written by the room's RoomDO whenever its state changes.
CREATE TABLE room_stats (
  room_id             TEXT PRIMARY KEY,
  room_version        TEXT NOT NULL,
  creator             TEXT,
  name                TEXT,
  topic               TEXT,
  avatar_url          TEXT,
  canonical_alias     TEXT,
  join_rule           TEXT,
  history_visibility  TEXT NOT NULL,
  guest_can_join      INTEGER NOT NULL DEFAULT 0,
  room_type           TEXT,
  encryption          TEXT,
  joined_members      INTEGER NOT NULL DEFAULT 0,
  updated_ts          INTEGER NOT NULL
);

-- Joined members (local and remote) of the rooms this server holds, with the profile of their member event.
-- Written by the RoomDOs; read by the user directory.
CREATE TABLE room_members (
  room_id      TEXT NOT NULL,
  user_id      TEXT NOT NULL,
  displayname  TEXT,
  avatar_url   TEXT,
  PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members(user_id);

-- Global profiles of local users. displayname / avatar_url are columns (searched, propagated into rooms);
-- every other field (m.tz, custom namespaced keys) lives in `fields` as a JSON object.
CREATE TABLE profiles (
  user_id      TEXT PRIMARY KEY,
  displayname  TEXT,
  avatar_url   TEXT,
  fields       TEXT NOT NULL DEFAULT '{}',
  updated_ts   INTEGER NOT NULL
);

-- Rooms a user has forgotten (POST /forget). The room counts as forgotten while the user's membership event
-- in it is still `membership_event_id`; any later membership change ends it.
CREATE TABLE forgotten_rooms (
  user_id              TEXT NOT NULL,
  room_id              TEXT NOT NULL,
  membership_event_id  TEXT NOT NULL,
  forgotten_ts         INTEGER NOT NULL,
  PRIMARY KEY (user_id, room_id)
);
