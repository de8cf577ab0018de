-- Media repository (docs/media.md): one row per piece of media this server holds or has reserved, local or
-- cached from another server. The bytes live in the R2 bucket MEDIA under `object_key`; a row whose `size` is
-- set always has its object (the object is written first, the row second), so a row without `size` is a
-- reservation made with POST /_matrix/media/v1/create that has not been uploaded to yet.
CREATE TABLE media (
  origin        TEXT NOT NULL,            -- server name of the mxc:// URI (ours for local media)
  media_id      TEXT NOT NULL,            -- [A-Za-z0-9_-]+
  uploader      TEXT,                     -- local user who created or uploaded it; NULL for remote media
  created_ts    INTEGER NOT NULL,         -- reservation or upload time; for remote media, when it was cached
  expires_ts    INTEGER,                  -- reservations only: unused after this, the ID is gone
  content_type  TEXT,                     -- as uploaded (or as the origin served it); NULL until uploaded
  upload_name   TEXT,                     -- the `filename` of the upload (or of the origin's Content-Disposition)
  size          INTEGER,                  -- bytes; NULL until uploaded
  sha256        TEXT,                     -- hex digest of the bytes
  object_key    TEXT,                     -- R2 key of the bytes; NULL until uploaded
  uploaded_ts   INTEGER,                  -- when the bytes arrived
  -- What the bytes are when they are an image we recognise (sniffed, not the declared type): used to decide
  -- whether the original can answer a thumbnail request (docs/media.md, "Thumbnails").
  image_type    TEXT,                     -- image/png, image/jpeg, image/gif or image/webp
  image_width   INTEGER,
  image_height  INTEGER,
  animated      INTEGER,                  -- 1 for an animated GIF, APNG or WebP
  PRIMARY KEY (origin, media_id)
);

-- Pending reservations of a user (the limit on concurrent pending uploads).
CREATE INDEX media_pending_by_uploader ON media (uploader, expires_ts) WHERE size IS NULL;
