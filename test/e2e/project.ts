/**
 * The vitest project "e2e" (vitest.config.ts `test.projects`): Node-side end-to-end tests against the real Axon
 * Worker. `global-setup.ts` starts it once (wrangler's unstable_startWorker, wrangler.toml, a free loopback port,
 * a fresh temporary storage folder) and hands its base URL to the tests through `inject("axonBaseUrl")`.
 *
 * Test files are `test/e2e/**\/*.e2e.ts` (so the workerd project's `test/**\/*.test.ts` never picks them up).
 */
export const e2eProject = {
  test: {
    name: "e2e",
    environment: "node",
    include: ["test/e2e/**/*.e2e.ts"],
    globalSetup: ["./test/e2e/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One Worker for the whole project: files share it, so they run one after another.
    fileParallelism: false,
  },
};
