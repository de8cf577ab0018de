-- Signing keys this server has used. The current key has expired_ts NULL; older keys are served as
-- old_verify_keys so that remote servers can still verify events we signed with them.
-- seed is stored only for keys generated here (when SIGNING_KEY is not configured).
CREATE TABLE server_signing_keys (
  key_id      TEXT PRIMARY KEY,      -- "ed25519:<version>"
  public_key  TEXT NOT NULL,         -- unpadded base64
  seed        TEXT,                  -- unpadded base64, generated keys only
  created_ts  INTEGER NOT NULL,
  expired_ts  INTEGER
);
