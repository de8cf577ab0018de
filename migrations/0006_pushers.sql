-- E2EE/push engineer: pushers (POST /pushers/set, GET /pushers). In D1 rather than the UserDO because
-- `append: false` removes pushers with the same app_id and pushkey of *other* users. Sending notifications to
-- push gateways is not implemented yet; this only stores the configuration (docs/e2ee.md).
CREATE TABLE pushers (
  user_id              TEXT NOT NULL,
  app_id               TEXT NOT NULL,
  pushkey              TEXT NOT NULL,
  kind                 TEXT NOT NULL,         -- 'http'
  app_display_name     TEXT NOT NULL,
  device_display_name  TEXT NOT NULL,
  profile_tag          TEXT,
  lang                 TEXT NOT NULL,
  data                 TEXT NOT NULL,         -- JSON object (url, format, custom keys)
  device_id            TEXT,                  -- the device that set it; deleting the device deletes the pusher
  created_ts           INTEGER NOT NULL,
  PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers(app_id, pushkey);
CREATE INDEX pushers_device ON pushers(user_id, device_id);
