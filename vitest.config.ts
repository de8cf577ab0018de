import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
// Federation: auxiliary homeservers hs2.test / hs3.test next to test.local (see test/federation/harness-config.ts).
import { federationHarness } from "./test/federation/harness-config";

// Every test runs inside workerd with real Durable Object, D1 and R2 storage (isolated per test file).
const migrations = await readD1Migrations("./migrations");
const federation = await federationHarness(".", migrations);

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: { TEST_MIGRATIONS: migrations, SERVER_NAME: "test.local", ...federation.runner.bindings },
        serviceBindings: federation.runner.serviceBindings,
        outboundService: federation.runner.outboundService,
        workers: federation.workers,
      },
    }),
  ],
  test: {
    setupFiles: ["./test/setup.ts"],
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
