import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
// Federation: auxiliary homeservers hs2.test / hs3.test next to test.local (see test/federation/harness-config.ts).
import { federationHarness } from "./test/federation/harness-config";
// Application services: the test registrations, and the Node-side end-to-end project (test/e2e/project.ts).
import { TEST_APPSERVICE_REGISTRATIONS } from "./test/appservices/registrations";
import { e2eProject } from "./test/e2e/project";

// Every test runs inside workerd with real Durable Object, D1 and R2 storage (isolated per test file).
const migrations = await readD1Migrations("./migrations");
const federation = await federationHarness(".", migrations);

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: migrations, SERVER_NAME: "test.local", ...federation.runner.bindings,
          APPSERVICE_REGISTRATIONS: TEST_APPSERVICE_REGISTRATIONS,
        },
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
    // Two projects: this config itself (the workerd project above, unnamed) and "e2e" (Node: the real Worker
    // started by wrangler, real clients and bridges against it; files test/e2e/**/*.e2e.ts).
    projects: ["./vitest.config.ts", e2eProject],
  },
});
