#!/usr/bin/env node
// Benchmark runner: `npm run bench` runs every group, `npm run bench -- crypto` one group (docs/benchmarks.md).
//
// A group is a module bench/<group>.mjs exporting `group`, `cases` (and optionally `worker`, `targets`,
// `info`, or its own `run(options)`); helpers shared by groups live in bench/lib.mjs. Each group's report is
// written to bench/results/<group>.json. stdout gets one JSON document: the group's report when one group
// runs, `{runtime, node, groups: [...]}` when several do. Progress goes to stderr.
//
// Options: --reps N (timed requests per case, default 9), --min-ms N (work per timed request, default 200),
// --filter S (only cases whose name contains S), --strict (exit 1 if a target is missed), --list.

// stdout is reserved for the JSON result: anything else that logs (wrangler, miniflare) goes to stderr.
for (const level of ["log", "info", "debug", "warn"]) console[level] = (...args) => console.error(...args);

const { mkdirSync, readdirSync, writeFileSync } = await import("node:fs");
const { join } = await import("node:path");
const { pathToFileURL } = await import("node:url");
const lib = await import("./lib.mjs");
const { BENCH_DIR, environment, log, runGroup, stopAllWorkers } = lib;

const NOT_GROUPS = new Set(["lib.mjs", "run.mjs"]);
const available = readdirSync(BENCH_DIR)
  .filter((f) => f.endsWith(".mjs") && !NOT_GROUPS.has(f) && !f.startsWith("_"))
  .map((f) => f.slice(0, -4))
  .sort();

function usage(code) {
  process.stderr.write(
    `usage: npm run bench [-- [group ...] [--reps N] [--min-ms N] [--filter S] [--strict] [--list]]\n` +
      `groups: ${available.join(", ")}\n`,
  );
  process.exit(code);
}

const groups = [];
const options = {};
let strict = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => {
    const v = argv[++i];
    if (v === undefined) usage(2);
    return v;
  };
  const positive = (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) usage(2);
    return n;
  };
  if (a === "--reps") options.reps = positive(value());
  else if (a === "--min-ms") options.minMs = positive(value());
  else if (a === "--filter") options.filter = value();
  else if (a === "--strict") strict = true;
  else if (a === "--list") {
    process.stdout.write(JSON.stringify({ groups: available }) + "\n");
    process.exit(0);
  } else if (a === "--help" || a === "-h") usage(0);
  else if (a.startsWith("-")) usage(2);
  else if (!available.includes(a)) {
    process.stderr.write(`bench: no group ${JSON.stringify(a)}\n`);
    usage(2);
  } else if (!groups.includes(a)) groups.push(a);
}
if (groups.length === 0) groups.push(...available);

let stopping = false;
async function stop(code, why) {
  if (stopping) return;
  stopping = true;
  if (why) log(why);
  await stopAllWorkers();
  process.exit(code);
}
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
  process.on(signal, () => void stop(code, `${signal}: stopping the benchmark worker`));
}
process.on("uncaughtException", (e) => void stop(1, `error: ${e?.stack ?? e}`));
process.on("unhandledRejection", (e) => void stop(1, `error: ${e?.stack ?? e}`));

const reports = [];
try {
  const resultsDir = join(BENCH_DIR, "results");
  mkdirSync(resultsDir, { recursive: true });
  for (const g of groups) {
    const mod = await import(pathToFileURL(join(BENCH_DIR, `${g}.mjs`)).href);
    log(`group ${g}: ${mod.description ?? ""}`);
    const started = performance.now();
    const report = mod.run ? await mod.run(options) : await runGroup(mod, options);
    report.duration_s = Math.round((performance.now() - started) / 100) / 10;
    writeFileSync(join(resultsDir, `${g}.json`), JSON.stringify(report, null, 2) + "\n");
    log(`group ${g} done in ${report.duration_s} s; written to bench/results/${g}.json`);
    for (const t of report.targets ?? []) log(`target ${t.name}: ${t.measured} vs ${t.target} ${t.unit ?? ""} → ${t.met ? "met" : "NOT met"}`);
    reports.push(report);
  }
} catch (e) {
  await stop(1, `error: ${e?.stack ?? e}`);
}

const { runtime, node } = environment();
const out = reports.length === 1 ? reports[0] : { runtime, node, groups: reports };
const missed = reports.some((r) => (r.targets ?? []).some((t) => !t.met));
await stopAllWorkers();
process.stdout.write(JSON.stringify(out, null, 2) + "\n", () => process.exit(strict && missed ? 1 : 0));
