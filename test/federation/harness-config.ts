/**
 * Multi-homeserver test harness, Node side (imported by vitest.config.ts).
 *
 * The Worker under test (the vitest "runner", server name `test.local`) federates with auxiliary Workers that run
 * the same Axon code under other server names (`hs2.test`, `hs3.test`), all inside one Miniflare instance:
 *
 * - `src/index.ts` is bundled with esbuild (through `test/federation/aux-entry.ts`, which adds D1 migrations on
 *   first use and a test-only `TestControl` RPC entrypoint) into one ES module that each auxiliary Worker runs,
 *   with its own D1 database, its own Durable Object namespaces and its own `SERVER_NAME`.
 * - Every Worker's outbound `fetch` goes to a tiny router Worker (`outboundService`) that dispatches on the host
 *   name: `http://hs2.test/...` to the `hs2` Worker, `http://test.local/...` to the runner, anything else 502.
 *   Nothing leaves the machine.
 * - Each server's `FEDERATION_OVERRIDES` maps the other server names to `http://<name>`, so discovery is skipped.
 */
import { build } from "esbuild";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import type { cloudflareTest } from "@cloudflare/vitest-plugin";

type PoolOptions = Exclude<Parameters<typeof cloudflareTest>[0], (...args: never[]) => unknown>;
type AuxiliaryWorkers = NonNullable<NonNullable<PoolOptions["miniflare"]>["workers"]>;

/** The servers of the harness: the runner first. */
export const RUNNER_SERVER = "test.local";
export const AUX_SERVERS = { hs2: "hs2.test", hs3: "hs3.test" } as const;
const ROUTER = "fed-router";

/** FEDERATION_OVERRIDES for a server of the harness: every other server at `http://<name>`. */
export function overridesFor(self: string): string {
  const all = [RUNNER_SERVER, ...Object.values(AUX_SERVERS)];
  return JSON.stringify(Object.fromEntries(all.filter((s) => s !== self).map((s) => [s, `http://${s}`])));
}

/** The runner Worker's name as @cloudflare/vitest-plugin assigns it (`getRunnerName` with the project name). */
export function runnerWorkerName(projectName = ""): string {
  return `vitest-plugin-runner-${projectName.replace(/[^a-z0-9-]/gi, "_")}`;
}

/** Joins path pieces with "/" (this file runs in Node, but is type-checked with the Workers types only). */
function join(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}

async function bundleAuxWorker(root: string): Promise<string> {
  // esbuild creates the output directory.
  const outfile = join(root, "node_modules", ".cache", "axon-federation-harness", "aux-worker.mjs");
  await build({
    entryPoints: [join(root, "test", "federation", "aux-entry.ts")],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser", "import"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "warning",
  });
  return outfile;
}

const ROUTER_SCRIPT = `
export default {
  async fetch(request, env) {
    const host = new URL(request.url).host;
    const target = env[host];
    if (!target) {
      await request.arrayBuffer().catch(() => {});
      return new Response("fed-router: no server " + host, { status: 502 });
    }
    return target.fetch(request);
  },
};`;

/**
 * Miniflare options for the harness: options to merge into the runner Worker's, and the auxiliary Workers.
 * `root` is the project directory (relative paths are resolved from the current directory, as vitest runs there);
 * `migrations` are the D1 migrations (readD1Migrations) the auxiliary servers apply to their databases.
 */
export async function federationHarness(root: string, migrations: unknown) {
  // A broken bundle (say, another engineer's half-written import) must not stop the whole test suite from
  // loading: the auxiliary servers are then left out and the harness tests report why.
  let scriptPath: string | undefined;
  let bundleError: string | undefined;
  try {
    scriptPath = await bundleAuxWorker(root);
  } catch (e) {
    bundleError = `the auxiliary homeservers could not be built: ${(e as Error).message}`;
    console.warn(`federation harness: ${bundleError}`);
  }
  const workerOptions = unstable_getMiniflareWorkerOptions(join(root, "wrangler.toml")).workerOptions as {
    compatibilityDate?: string;
    compatibilityFlags?: string[];
    bindings?: Record<string, unknown>;
    durableObjects?: Record<string, unknown>;
  };
  const runner = runnerWorkerName();

  const auxWorkers = Object.entries(scriptPath === undefined ? {} : AUX_SERVERS).map(([name, serverName]) => ({
    name,
    modules: true,
    scriptPath,
    compatibilityDate: workerOptions.compatibilityDate,
    compatibilityFlags: workerOptions.compatibilityFlags,
    bindings: {
      ...workerOptions.bindings,
      SERVER_NAME: serverName,
      FEDERATION_OVERRIDES: overridesFor(serverName),
      TEST_MIGRATIONS: migrations,
    },
    d1Databases: { DB: `${name}-db` },
    r2Buckets: { MEDIA: `${name}-media` }, // media repository (docs/media.md)
    durableObjects: workerOptions.durableObjects,
    outboundService: ROUTER,
  }));

  const router = {
    name: ROUTER,
    modules: true,
    script: ROUTER_SCRIPT,
    compatibilityDate: workerOptions.compatibilityDate,
    serviceBindings: {
      [RUNNER_SERVER]: runner,
      ...Object.fromEntries(auxWorkers.map((w) => [w.bindings.SERVER_NAME, w.name])),
    },
  };

  return {
    /** Merged into the runner Worker's miniflare options. */
    runner: {
      bindings: {
        FEDERATION_OVERRIDES: overridesFor(RUNNER_SERVER),
        ...(bundleError !== undefined ? { FEDERATION_HARNESS_ERROR: bundleError } : {}),
      },
      serviceBindings: Object.fromEntries(
        auxWorkers.flatMap(({ name }) => [
          [name.toUpperCase(), name],
          [`${name.toUpperCase()}_CONTROL`, { name, entrypoint: "TestControl" }],
        ]),
      ),
      outboundService: ROUTER,
    },
    workers: [...auxWorkers, router] as AuxiliaryWorkers,
  };
}
