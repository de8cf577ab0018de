// Starts the real Axon Worker (wrangler.toml, src/index.ts) from Node for end-to-end tests and benchmarks:
// D1 migrations applied to a fresh temporary storage folder, then wrangler's programmatic API
// (unstable_startWorker, as bench/lib.mjs uses it) on a free loopback port, offline, without file watching or
// inspector, with the given variables (e.g. SERVER_NAME, APPSERVICE_REGISTRATIONS) overriding wrangler.toml's.
//
//   const axon = await startAxon({ vars: { SERVER_NAME: "e2e.test" } });
//   ... fetch(new URL("/_matrix/client/versions", axon.url)) ...
//   await axon.dispose();
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A TCP port free on 127.0.0.1 right now (for a server the Worker must know about before it starts). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the Worker. Options: `vars` (name → string), `persistDir` (default: a new temporary folder, removed by
 * dispose), `config` (a wrangler config relative to the repository root; default `wrangler.toml`, the real app),
 * `port` (default: any free one; federation tests pick ports first so that each server's FEDERATION_OVERRIDES
 * can name the other). Returns `{ url, baseUrl, persistDir, dispose() }`; `baseUrl` has no trailing slash.
 */
export async function startAxon({ vars = {}, persistDir, config = "wrangler.toml", port = 0 } = {}) {
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
  process.env.WRANGLER_SEND_METRICS = "false";
  process.env.WRANGLER_LOG ??= "warn";
  const ownDir = persistDir === undefined;
  const dir = persistDir ?? mkdtempSync(join(tmpdir(), "axon-e2e-"));
  const wranglerBin = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const migrate = spawnSync(process.execPath, [wranglerBin, "d1", "migrations", "apply", "DB", "--local", "--persist-to", dir, "-c", config], {
    cwd: ROOT,
    env: { ...process.env, CI: "true" },
    encoding: "utf8",
  });
  if (migrate.status !== 0) {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
    throw new Error(`applying D1 migrations failed:\n${migrate.stdout}\n${migrate.stderr}`);
  }
  const { unstable_startWorker } = await import("wrangler");
  const bindings = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { type: "plain_text", value: String(v) }]));
  const worker = await unstable_startWorker({
    config: join(ROOT, config),
    bindings,
    dev: { server: { hostname: "127.0.0.1", port }, inspector: false, watch: false, persist: dir },
  });
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    try {
      await worker.dispose();
    } finally {
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    await worker.ready;
    const url = await worker.url;
    return { url: url.href, baseUrl: url.href.replace(/\/$/, ""), persistDir: dir, dispose };
  } catch (e) {
    await dispose().catch(() => {});
    throw e;
  }
}
