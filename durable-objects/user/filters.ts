/**
 * Stored filters (POST /user/{userId}/filter). The Worker validates the filter; this keeps its normal form
 * under a small integer ID, given out as a string.
 */

export class UserFilters {
  constructor(private readonly sql: SqlStorage) {}

  create(json: string): string {
    return String(this.sql.exec<{ id: number }>("INSERT INTO filters (json) VALUES (?) RETURNING filter_id AS id", json).one().id);
  }

  get(filterId: string): string | null {
    if (!/^\d{1,15}$/.test(filterId)) return null;
    return this.sql.exec<{ json: string }>("SELECT json FROM filters WHERE filter_id = ?", Number(filterId)).toArray()[0]?.json ?? null;
  }
}
