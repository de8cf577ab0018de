#!/usr/bin/env node
// `npm run dev [-- wrangler dev options]`: apply D1 migrations to the local storage folder, then start
// `wrangler dev` with the same options. Works offline: no telemetry, no Request.cf download.
//
//   npm run dev
//   npm run dev -- --port 8801 --persist-to .state/hs1 --var SERVER_NAME:hs1.test \
//                  --var FEDERATION_OVERRIDES:'{"hs2.test":"http://127.0.0.1:8802"}'
//
// Without an explicit SERVER_NAME, a non-default --port gives the server name `localhost:<port>`.
import { spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const args = process.argv.slice(2);

function optionValue(name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

const persistTo = optionValue("--persist-to") ?? ".wrangler/state";
const port = optionValue("--port");
const setsServerName = args.some((a, i) => (a === "--var" && args[i + 1]?.startsWith("SERVER_NAME:")) || a.startsWith("--var=SERVER_NAME:"));
const extra = [];
if (!optionValue("--persist-to")) extra.push("--persist-to", persistTo);
if (port && port !== "8787" && !setsServerName) extra.push("--var", `SERVER_NAME:localhost:${port}`);

const env = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

const migrate = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], {
  cwd: root,
  env: { ...env, CI: "true" },
  stdio: ["ignore", "pipe", "inherit"],
  encoding: "utf8",
});
if (migrate.status !== 0) {
  process.stdout.write(migrate.stdout ?? "");
  console.error("axon: applying D1 migrations failed");
  process.exit(migrate.status ?? 1);
}
console.log(`axon: D1 migrations applied (storage: ${persistTo})`);

const child = spawn(process.execPath, [wrangler, "dev", ...args, ...extra], { cwd: root, env, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
