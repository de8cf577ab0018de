// Benchmark group `rooms` (issue 3): local sends through one RoomDO, sequential and concurrent, against a raw
// Worker→DO→SQLite insert in the same run; state resolution of two forks of a 10,000-member room; state storage
// bytes per event in a 10,000-member room. Runs the real Axon Worker (bench/axon-worker.ts) with fresh local
// storage. `npm run bench -- rooms`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, environment, log, measureCases, round, startWorker, timedGet } from "./lib.mjs";

export const group = "rooms";
export const description = "RoomDO local sends vs raw DO insert; state resolution of 10k-member forks; state bytes per event";

export const cases = [
  { name: "profile-build", path: "_bench/profile/build", startN: 20, description: "profiling: build + hash + sign a local event inside the RoomDO (no persistence)" },
  { name: "profile-create-local", path: "_bench/profile/create-local", startN: 20, description: "profiling: build + accept + commit inside the RoomDO, one transaction each, no outbox delivery" },
  { name: "room-send-sequential", path: "_bench/rooms/send-sequential", startN: 20, description: "RoomDO.send, awaited one by one (build, hash, sign, auth, persist, outbox, sender's sync stream)" },
  { name: "raw-insert-sequential", path: "_bench/raw/insert-sequential", startN: 20, description: "baseline: Worker→DO RPC + one SQLite insert of an event-sized row, one by one" },
  { name: "room-send-concurrent", path: "_bench/rooms/send-concurrent", startN: 20, description: "RoomDO.send, n at once" },
  { name: "raw-insert-concurrent", path: "_bench/raw/insert-concurrent", startN: 20, description: "baseline: n raw inserts at once" },
  { name: "state-res-two-forks-10k", path: "_bench/stateres/two-forks", query: { members: "10000", version: "12" }, startN: 1, description: "resolveState over two forks of a 10,000-member room (50 joins + 50 leaves/kicks and power changes per fork), v2.1" },
  { name: "state-res-two-forks-10k-v2", path: "_bench/stateres/two-forks", query: { members: "10000", version: "11" }, startN: 1, description: "the same with state resolution v2 (room version 11)" },
];

/** Applies the D1 migrations to a fresh storage folder, starts the bench server on it. */
export async function startAxon() {
  const persist = mkdtempSync(join(tmpdir(), "axon-bench-"));
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const migrate = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", "bench/axon.wrangler.toml"], {
    cwd: ROOT,
    env: { ...process.env, CI: "true", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    encoding: "utf8",
  });
  if (migrate.status !== 0) throw new Error(`D1 migrations failed: ${migrate.stderr || migrate.stdout}`);
  const worker = await startWorker({ config: "bench/axon.wrangler.toml", dev: { persist } });
  const dispose = worker.dispose.bind(worker);
  worker.dispose = async () => {
    await dispose();
    rmSync(persist, { recursive: true, force: true });
  };
  return worker;
}

export async function run(options = {}) {
  const worker = await startAxon();
  try {
    const results = await measureCases(worker, cases.filter((c) => !options.filter || c.name.includes(options.filter)), { ...options, label: "rooms " });
    const by = (name) => results.find((r) => r.name === name);
    log("rooms: building a 10,000-member room for the storage figures (takes a while)");
    const storage = options.filter && !"storage".includes(options.filter) ? undefined : (await timedGet(worker, "/_bench/rooms/storage?members=10000&messages=2000&state_events=2000", { timeoutMs: 900_000 })).body;
    const ratio = (a, b) => (by(a) && by(b) ? round(by(a).ops_per_sec / by(b).ops_per_sec, 3) : undefined);
    const comparisons = {
      sequential_send_vs_raw: ratio("room-send-sequential", "raw-insert-sequential"),
      concurrent_send_vs_raw: ratio("room-send-concurrent", "raw-insert-concurrent"),
    };
    const targets = [];
    if (comparisons.sequential_send_vs_raw !== undefined)
      targets.push({ name: "sequential local sends ≥ 50% of the raw insert rate", target: 0.5, unit: "ratio", measured: comparisons.sequential_send_vs_raw, met: comparisons.sequential_send_vs_raw >= 0.5 });
    if (comparisons.concurrent_send_vs_raw !== undefined)
      targets.push({ name: "concurrent local sends ≥ 50% of the raw insert rate", target: 0.5, unit: "ratio", measured: comparisons.concurrent_send_vs_raw, met: comparisons.concurrent_send_vs_raw >= 0.5 });
    for (const name of ["state-res-two-forks-10k", "state-res-two-forks-10k-v2"]) {
      const r = by(name);
      if (r) targets.push({ name: `${name} under 100 ms`, target: 100, unit: "ms (lower is better)", measured: r.median_ms / r.n, met: r.median_ms / r.n < 100 });
    }
    if (storage) {
      targets.push({ name: "state storage: no state rows for message events", target: 0, unit: "rows/event", measured: storage.state_rows_per_message, met: storage.state_rows_per_message === 0 });
      targets.push({ name: "state storage per state event grows with log(changes), far below a full copy (10,000 rows)", target: 64, unit: "rows/event (lower is better)", measured: storage.state_rows_per_state_event, met: storage.state_rows_per_state_event < 64 });
    }
    return { group, ...environment(), results, comparisons, storage, targets };
  } finally {
    await worker.dispose();
  }
}
