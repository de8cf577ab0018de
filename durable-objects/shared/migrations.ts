/**
 * Schema migrations for SQLite-backed Durable Objects. Each DO keeps its list of migrations next to its class;
 * entry i takes the schema from version i to i + 1. Call from the constructor inside blockConcurrencyWhile:
 * pending migrations run once, in one transaction, and the version is recorded in `_schema`.
 */
export function applyMigrations(storage: DurableObjectStorage, migrations: readonly string[]): void {
  const sql = storage.sql;
  storage.transactionSync(() => {
    sql.exec("CREATE TABLE IF NOT EXISTS _schema (version INTEGER NOT NULL)");
    const row = sql.exec<{ version: number }>("SELECT version FROM _schema").toArray()[0];
    let version = row?.version ?? 0;
    if (!row) sql.exec("INSERT INTO _schema (version) VALUES (0)");
    while (version < migrations.length) {
      sql.exec(migrations[version]!);
      version++;
    }
    sql.exec("UPDATE _schema SET version = ?", version);
  });
}
