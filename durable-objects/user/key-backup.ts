/**
 * Server-side key backup in the UserDO (https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups).
 *
 * Versions are numbered 1, 2, … and never reused (a deleted version keeps its row, flagged). The current version
 * is the newest one not deleted; keys may only be written to it (M_WRONG_ROOM_KEYS_VERSION otherwise) but any
 * existing version can be read. Each write that changes the stored keys bumps the version's etag.
 */
import { shouldReplaceBackupKey, type BackupKey } from "../../src/e2ee/backup";
import { E2eeError, notFound } from "../../src/e2ee/result";

export interface BackupVersionInfo {
  version: string;
  algorithm: string;
  /** JSON text of the auth_data object. */
  auth_data: string;
  count: number;
  etag: string;
}

export interface BackupUpdateResult {
  etag: string;
  count: number;
}

/** One key to store: room, session, key data. */
export interface BackupKeyUpload extends BackupKey {
  room_id: string;
  session_id: string;
}

/** Stored keys as JSON text: `{"rooms": {roomId: {"sessions": {sessionId: KeyBackupData}}}}` (or a part). */
export type BackupKeysJson = string;

type VersionRow = { version: number; algorithm: string; auth_data: string; etag: number; deleted: number };
type KeyRow = {
  room_id: string;
  session_id: string;
  first_message_index: number;
  forwarded_count: number;
  is_verified: number;
  session_data: string;
};

/** Versions are decimal integers on the wire; anything else names no version. */
function versionNumber(version: string): number | undefined {
  return /^[1-9][0-9]{0,15}$/.test(version) ? Number(version) : undefined;
}

export class KeyBackup {
  constructor(private readonly sql: SqlStorage) {}

  private row(version: number): VersionRow | undefined {
    return this.sql.exec<VersionRow>("SELECT * FROM backup_versions WHERE version = ?", version).toArray()[0];
  }

  private current(): VersionRow | undefined {
    return this.sql.exec<VersionRow>("SELECT * FROM backup_versions WHERE deleted = 0 ORDER BY version DESC LIMIT 1").toArray()[0];
  }

  private count(version: number): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM backup_keys WHERE version = ?", version).one().n;
  }

  /** A live (not deleted) version, or 404. */
  private live(version: string): VersionRow {
    const n = versionNumber(version);
    const row = n === undefined ? undefined : this.row(n);
    if (!row || row.deleted) throw notFound("Unknown backup version");
    return row;
  }

  private info(row: VersionRow): BackupVersionInfo {
    return {
      version: String(row.version),
      algorithm: row.algorithm,
      auth_data: row.auth_data,
      count: this.count(row.version),
      etag: String(row.etag),
    };
  }

  /** POST /room_keys/version: the new version becomes current. */
  create(algorithm: string, authData: string): string {
    const last = this.sql.exec<{ v: number | null }>("SELECT max(version) AS v FROM backup_versions").one().v ?? 0;
    const version = last + 1;
    this.sql.exec("INSERT INTO backup_versions (version, algorithm, auth_data) VALUES (?, ?, ?)", version, algorithm, authData);
    return String(version);
  }

  /** GET /room_keys/version[/{version}]. */
  get(version: string | null): BackupVersionInfo {
    if (version === null) {
      const row = this.current();
      if (!row) throw notFound("No current backup version");
      return this.info(row);
    }
    return this.info(this.live(version));
  }

  /** PUT /room_keys/version/{version}: only auth_data changes; the algorithm must stay the same. */
  update(version: string, algorithm: string, authData: string): void {
    const row = this.live(version);
    if (algorithm !== row.algorithm) throw new E2eeError(400, "M_INVALID_PARAM", "Algorithm does not match");
    this.sql.exec("UPDATE backup_versions SET auth_data = ? WHERE version = ?", authData, row.version);
  }

  /** DELETE /room_keys/version/{version}: deleting an already deleted version succeeds; an unknown one is 404. */
  delete(version: string): void {
    const n = versionNumber(version);
    const row = n === undefined ? undefined : this.row(n);
    if (!row) throw notFound("Unknown backup version");
    this.sql.exec("DELETE FROM backup_keys WHERE version = ?", row.version);
    this.sql.exec("UPDATE backup_versions SET deleted = 1 WHERE version = ?", row.version);
  }

  /**
   * PUT /room_keys/keys…: stores keys in `version`, which must be the current one (403 M_WRONG_ROOM_KEYS_VERSION
   * naming the current version otherwise, 404 if it does not exist). For a session already stored, the spec's
   * rule decides which copy stays.
   */
  put(version: string, keys: readonly BackupKeyUpload[]): BackupUpdateResult {
    const current = this.current();
    const n = versionNumber(version);
    if (!current || n !== current.version) {
      const row = n === undefined ? undefined : this.row(n);
      if (!row || row.deleted || !current) throw notFound(`Unknown backup version ${JSON.stringify(version)}`);
      throw new E2eeError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", { current_version: String(current.version) });
    }
    let changed = false;
    for (const k of keys) {
      const stored = this.sql
        .exec<KeyRow>(
          "SELECT * FROM backup_keys WHERE version = ? AND room_id = ? AND session_id = ?",
          current.version, k.room_id, k.session_id,
        )
        .toArray()[0];
      if (stored && !shouldReplaceBackupKey(toBackupKey(stored), k)) continue;
      this.sql.exec(
        `INSERT INTO backup_keys (version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
           forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
        current.version, k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified ? 1 : 0, k.session_data,
      );
      changed = true;
    }
    let etag = current.etag;
    if (changed) {
      etag++;
      this.sql.exec("UPDATE backup_versions SET etag = ? WHERE version = ?", etag, current.version);
    }
    return { etag: String(etag), count: this.count(current.version) };
  }

  /** GET /room_keys/keys…: `{"rooms": …}` of a live version, optionally narrowed to a room or one session. */
  keys(version: string, roomId: string | null, sessionId: string | null): BackupKeysJson {
    const row = this.live(version);
    const rows =
      roomId === null
        ? this.sql.exec<KeyRow>("SELECT * FROM backup_keys WHERE version = ?", row.version).toArray()
        : sessionId === null
          ? this.sql.exec<KeyRow>("SELECT * FROM backup_keys WHERE version = ? AND room_id = ?", row.version, roomId).toArray()
          : this.sql
              .exec<KeyRow>("SELECT * FROM backup_keys WHERE version = ? AND room_id = ? AND session_id = ?", row.version, roomId, sessionId)
              .toArray();
    const rooms: Record<string, { sessions: Record<string, unknown> }> = {};
    for (const r of rows) {
      (rooms[r.room_id] ??= { sessions: {} }).sessions[r.session_id] = {
        first_message_index: r.first_message_index,
        forwarded_count: r.forwarded_count,
        is_verified: r.is_verified === 1,
        session_data: JSON.parse(r.session_data) as unknown,
      };
    }
    return JSON.stringify({ rooms });
  }

  /** DELETE /room_keys/keys…: removes keys of a live version (all, a room's, or one session); bumps the etag. */
  deleteKeys(version: string, roomId: string | null, sessionId: string | null): BackupUpdateResult {
    const row = this.live(version);
    if (roomId === null) this.sql.exec("DELETE FROM backup_keys WHERE version = ?", row.version);
    else if (sessionId === null) this.sql.exec("DELETE FROM backup_keys WHERE version = ? AND room_id = ?", row.version, roomId);
    else this.sql.exec("DELETE FROM backup_keys WHERE version = ? AND room_id = ? AND session_id = ?", row.version, roomId, sessionId);
    const etag = row.etag + 1;
    this.sql.exec("UPDATE backup_versions SET etag = ? WHERE version = ?", etag, row.version);
    return { etag: String(etag), count: this.count(row.version) };
  }
}

function toBackupKey(r: KeyRow): BackupKey {
  return {
    first_message_index: r.first_message_index,
    forwarded_count: r.forwarded_count,
    is_verified: r.is_verified === 1,
    session_data: r.session_data,
  };
}
