/// <reference types="node" />
/**
 * Global setup of the "e2e" vitest project (test/e2e/project.ts): starts the real Axon Worker once for all e2e
 * test files and stops it afterwards. What tests get through `inject(...)`:
 * - `axonBaseUrl`: the Worker's base URL (`http://127.0.0.1:<port>`, no trailing slash);
 * - `axonServerName`: its server name;
 * - `appservice`: the application service registered with it (tokens, ids, the loopback port its HTTP server
 *   must listen on — the Worker knows the URL before the test starts the appservice).
 */
import type { TestProject } from "vitest/node";
// @ts-expect-error -- a plain ES module shared with the benchmarks (bench/appservices.mjs); no types.
import { freePort, startAxon } from "./axon-worker.mjs";

export interface E2eAppservice {
  id: string;
  port: number;
  url: string;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  /** Prefixes of its exclusive namespaces: users `@_e2e_…`, aliases `#_e2e_…`. */
  userPrefix: string;
  aliasPrefix: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    axonBaseUrl: string;
    axonServerName: string;
    appservice: E2eAppservice;
  }
}

export const E2E_SERVER_NAME = "e2e.localhost";

export function registrationYaml(as: E2eAppservice, serverName: string): string {
  const escaped = serverName.replace(/\./g, "\\\\.");
  return [
    `id: ${as.id}`,
    `url: "${as.url}"`,
    `as_token: ${as.asToken}`,
    `hs_token: ${as.hsToken}`,
    `sender_localpart: ${as.senderLocalpart}`,
    "rate_limited: false",
    "receive_ephemeral: true",
    "namespaces:",
    "  users:",
    `    - { exclusive: true, regex: "@${as.userPrefix}.*:${escaped}" }`,
    "  aliases:",
    `    - { exclusive: true, regex: "#${as.aliasPrefix}.*:${escaped}" }`,
    "  rooms: []",
    "",
  ].join("\n");
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const port = (await freePort()) as number;
  const appservice: E2eAppservice = {
    id: "e2e-bridge",
    port,
    url: `http://127.0.0.1:${port}`,
    asToken: `as-${crypto.randomUUID()}`,
    hsToken: `hs-${crypto.randomUUID()}`,
    senderLocalpart: "_e2e_bot",
    userPrefix: "_e2e_",
    aliasPrefix: "_e2e_",
  };
  const axon = (await startAxon({
    vars: {
      SERVER_NAME: E2E_SERVER_NAME,
      APPSERVICE_REGISTRATIONS: registrationYaml(appservice, E2E_SERVER_NAME),
      // Client e2e tests (matrix-js-sdk, matrix-nio) register and log in several users from one loopback IP;
      // the per-IP defaults (3 registrations, 5 logins) would make them wait minutes. Per-account limits stay.
      RATE_LIMITS: JSON.stringify({ registration: null, login_address: null, login_account: null }),
    },
  })) as { baseUrl: string; dispose(): Promise<void> };
  project.provide("axonBaseUrl", axon.baseUrl);
  project.provide("axonServerName", E2E_SERVER_NAME);
  project.provide("appservice", appservice);
  return () => axon.dispose();
}
