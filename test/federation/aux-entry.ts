/**
 * Entry module of the auxiliary homeservers of the federation test harness (bundled by harness-config.ts; never
 * deployed). It is the real Axon Worker plus two test conveniences:
 * - the D1 migrations are applied on first use (the runner's test/setup.ts does the same for `test.local`);
 * - `TestControl`, an RPC entrypoint the tests use to drive this server directly (create rooms, send events,
 *   read what was persisted) where no client API exists for it.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import app from "../../src/index";
import type { Env } from "../../src/env";

export * from "../../src/index";

type Migration = { name: string; queries: string[] };
type AuxEnv = Env & { TEST_MIGRATIONS: Migration[] };

let migrated: Promise<void> | undefined;

async function applyMigrations(env: AuxEnv): Promise<void> {
  await env.DB.prepare("CREATE TABLE IF NOT EXISTS _test_migrations (name TEXT PRIMARY KEY)").run();
  const done = new Set(
    (await env.DB.prepare("SELECT name FROM _test_migrations").all<{ name: string }>()).results.map((r) => r.name),
  );
  for (const m of env.TEST_MIGRATIONS) {
    if (done.has(m.name)) continue;
    await env.DB.batch([
      ...m.queries.map((q) => env.DB.prepare(q)),
      env.DB.prepare("INSERT INTO _test_migrations (name) VALUES (?)").bind(m.name),
    ]);
  }
}

function ensureMigrated(env: AuxEnv): Promise<void> {
  migrated ??= applyMigrations(env).catch((e) => {
    migrated = undefined;
    throw e;
  });
  return migrated;
}

export default {
  async fetch(request: Request, env: AuxEnv, ctx: ExecutionContext): Promise<Response> {
    await ensureMigrated(env);
    return app.fetch(request, env, ctx);
  },
};

export class TestControl extends WorkerEntrypoint<AuxEnv> {
  async serverName(): Promise<string> {
    await ensureMigrated(this.env);
    return this.env.SERVER_NAME;
  }
}
