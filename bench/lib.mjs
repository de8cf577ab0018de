// Shared helpers for benchmark groups (bench/<group>.mjs): start the benchmark Worker inside workerd, time
// requests to it from Node, and turn timings into results. See docs/benchmarks.md.
//
// Why time from outside: inside workerd, Date.now() and performance.now() only advance on I/O (a Spectre
// mitigation), so a loop of pure computation reads 0 ms in the Worker. Each benchmark case therefore runs its
// operation n times per request, and the cost of the same request with n = 0 is subtracted.
import { readdirSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(BENCH_DIR, "..");

/** Progress messages go to stderr; stdout carries only the JSON result. */
export function log(...args) {
  process.stderr.write(`bench: ${args.join(" ")}\n`);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Rounds to `digits` significant digits (results are not more precise than that). */
export function round(x, digits = 3) {
  return Number.isFinite(x) ? Number(x.toPrecision(digits)) : x;
}

export function packageVersion(name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

/** Where the figures come from: runtime and tool versions, machine. */
export function environment() {
  const cpu = cpus();
  return {
    runtime: "workerd",
    node: process.version,
    workerd: packageVersion("workerd"),
    wrangler: packageVersion("wrangler"),
    cpus: cpu.length,
    cpu_model: cpu[0]?.model?.trim(),
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    // 1-minute load average when the report was made. The benchmark itself keeps about one core busy; more
    // than that means something else was competing for the machine.
    loadavg_1m: round(loadavg()[0], 3),
  };
}

// ---- the Worker ----

const running = new Set();

/**
 * Starts the Worker described by a wrangler config (path relative to the repository root) with wrangler's
 * programmatic API, on a free loopback port, offline, without file watching (other edits to the tree must not
 * reload it mid-run) and without an inspector. Returns `{url, pids, dispose()}`; {@link stopAllWorkers}
 * disposes whatever is still running (used on errors and signals).
 */
export async function startWorker({ config = "bench/wrangler.toml", dev = {}, bindings } = {}) {
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
  process.env.WRANGLER_SEND_METRICS = "false";
  process.env.WRANGLER_LOG ??= "warn";
  const { unstable_startWorker } = await import("wrangler");
  const started = performance.now();
  const earlier = new Set(childWorkerdPids()); // other Workers this process runs are not this one's
  const worker = await unstable_startWorker({
    config: join(ROOT, config),
    // `bindings`: variables overriding the config's (e.g. FEDERATION_OVERRIDES for bench/federation.mjs).
    ...(bindings ? { bindings } : {}),
    dev: { server: { hostname: "127.0.0.1", port: 0 }, inspector: false, watch: false, ...dev },
  });
  let disposed = false;
  const handle = {
    url: undefined,
    async dispose() {
      if (disposed) return;
      disposed = true;
      running.delete(handle);
      await worker.dispose();
    },
  };
  running.add(handle);
  try {
    await worker.ready;
    handle.url = await worker.url;
    // Looked up on each use: workerd starts the process that runs the Worker's code after `ready` resolves, so
    // a list taken here would hold only the proxy in front of it (and CPU figures would miss the Worker).
    Object.defineProperty(handle, "pids", { get: () => childWorkerdPids().filter((p) => !earlier.has(p)), enumerable: true });
  } catch (e) {
    await handle.dispose().catch(() => {});
    throw e;
  }
  log(`worker ${config} ready at ${handle.url.href} in ${Math.round(performance.now() - started)} ms`);
  return handle;
}

/**
 * The workerd processes this Node process started (Linux: read from /proc; empty elsewhere). wrangler runs
 * two: the Worker's runtime and its proxy in front of it.
 */
function childWorkerdPids() {
  const pids = [];
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const comm = stat.slice(stat.indexOf("(") + 1, close);
        const ppid = Number(stat.slice(close + 2).split(" ")[1]);
        if (comm === "workerd" && ppid === process.pid) pids.push(Number(entry));
      } catch {
        // the process went away meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return pids;
}

/**
 * CPU accounting of the given processes from /proc/<pid>/task/<tid>/schedstat (Linux scheduler statistics,
 * nanoseconds): `run` is time spent on a CPU, `wait` time spent runnable but waiting for one. Summed over all
 * threads. `undefined` where unavailable.
 */
export function schedSnapshot(pids) {
  if (!pids || pids.length === 0) return undefined;
  let run = 0;
  let wait = 0;
  try {
    for (const pid of pids) {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
        run += Number(r);
        wait += Number(w);
      }
    }
  } catch {
    return undefined;
  }
  return { run, wait };
}

export async function stopAllWorkers() {
  await Promise.allSettled([...running].map((w) => w.dispose()));
}

/**
 * GET `path` on the Worker; returns `{ms, body, cpuMs, waitMs}`: wall time until the whole body is read, and
 * (on Linux) the CPU time workerd used meanwhile and the time its threads waited for a CPU. Throws on non-2xx.
 */
export async function timedGet(worker, path, { timeoutMs = 60_000 } = {}) {
  const url = new URL(path, worker.url);
  const before = schedSnapshot(worker.pids);
  const t0 = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  const ms = performance.now() - t0;
  const after = before && schedSnapshot(worker.pids);
  const cpuMs = after ? (after.run - before.run) / 1e6 : undefined;
  const waitMs = after ? (after.wait - before.wait) / 1e6 : undefined;
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  if (!res.ok) throw new Error(`GET ${url.pathname}${url.search}: ${res.status} ${typeof body === "object" ? body.error ?? text : text}`);
  return { ms, body, cpuMs, waitMs };
}

export async function getJson(worker, path) {
  return (await timedGet(worker, path)).body;
}

// ---- measuring ----

function casePath(bench, n) {
  const q = new URLSearchParams({ ...bench.query, n: String(n) });
  return `/${bench.path}?${q}`;
}

/**
 * Prepares one case for timing: the median cost of an empty request (n = 0, subtracted from every sample);
 * then n is raised until one request does at least `minMs` of work (this also warms the JIT up); then one
 * more warm-up request at that n. Returns the state {@link sampleCase} and {@link caseResult} work on.
 */
export async function prepareCase(worker, bench, { minMs = 200, baselineReps = 15, maxN = 1 << 22 } = {}) {
  const get = (n) => timedGet(worker, casePath(bench, n));
  for (let i = 0; i < 3; i++) await get(0);
  const empty = [];
  for (let i = 0; i < baselineReps; i++) empty.push(await get(0));
  const baseline = median(empty.map((r) => r.ms));

  let n = bench.startN ?? 4;
  for (;;) {
    const net = (await get(n)).ms - baseline;
    if (net >= minMs || n >= maxN) break;
    // Aim a little past minMs; grow at least 2× and at most 16× per step (a slow first call is JIT warm-up).
    const factor = net <= 0 ? 16 : Math.min(16, Math.max(2, (minMs * 1.3) / net));
    n = Math.min(maxN, Math.ceil(n * factor));
  }
  await get(n);
  return { bench, n, baseline, samples: [], runMs: 0, waitMs: 0 };
}

/** One timed request of a prepared case; records wall time minus the empty request's (and workerd's CPU waits). */
export async function sampleCase(worker, prepared) {
  const r = await timedGet(worker, casePath(prepared.bench, prepared.n));
  prepared.samples.push(r.ms - prepared.baseline);
  if (r.cpuMs !== undefined) {
    prepared.runMs += r.cpuMs;
    prepared.waitMs += r.waitMs;
  }
}

/**
 * The result entry for a prepared and sampled case. The headline `ops_per_sec` is n over the median net wall
 * time; `best_ops_per_sec` is n over the fastest sample (outside disturbances only ever add time, so this is
 * the figure least affected by a busy machine). `cpu_wait_pct` (Linux only) says how busy the machine was:
 * the time workerd's threads spent runnable but waiting for a CPU, relative to the time they ran.
 */
export function caseResult(prepared) {
  const { bench, n, baseline, samples } = prepared;
  const net = median(samples);
  const best = Math.min(...samples);
  return {
    name: bench.name,
    ops_per_sec: Math.round(round(n / (net / 1000))),
    median_ms: round(net, 4),
    n,
    per_op_us: round((net * 1000) / n),
    reps: samples.length,
    best_ops_per_sec: Math.round(round(n / (best / 1000))),
    ...(prepared.runMs > 0 ? { cpu_wait_pct: round((100 * prepared.waitMs) / prepared.runMs, 2) } : {}),
    samples_ms: samples.map((s) => round(s, 4)),
    spread_pct: round((100 * (Math.max(...samples) - best)) / net, 2),
    empty_request_ms: round(baseline, 3),
    ...(bench.query && Object.keys(bench.query).length ? { params: bench.query } : {}),
    description: bench.description,
  };
}

/**
 * Measures a list of cases: each is prepared ({@link prepareCase}), then timed in `reps` rounds that visit
 * every case once. Interleaving spreads any outside disturbance (another process on the machine) over all
 * cases instead of letting it land on one, and each result is the median of its `reps` samples.
 */
export async function measureCases(worker, cases, { reps = 9, label = "", ...options } = {}) {
  const prepared = [];
  for (const [i, bench] of cases.entries()) {
    const p = await prepareCase(worker, bench, options);
    log(`${label}[${i + 1}/${cases.length}] ${bench.name}: n=${p.n} (empty request ${round(p.baseline, 3)} ms)`);
    prepared.push(p);
  }
  for (let r = 0; r < reps; r++) {
    for (const p of prepared) await sampleCase(worker, p);
    log(`${label}round ${r + 1}/${reps} done`);
  }
  return prepared.map(caseResult);
}

/**
 * Runs a group module (bench/<group>.mjs): starts its Worker, measures the cases in `mod.cases` (those whose
 * name contains `options.filter`, if given) with {@link measureCases}, evaluates `mod.targets` against the
 * median figures, stops the Worker (also on error), and returns the JSON report. A group may export
 * `info(worker)` for extra report fields (e.g. fixture sizes).
 */
export async function runGroup(mod, options = {}) {
  const loadBefore = round(loadavg()[0], 3);
  const worker = await startWorker(mod.worker ?? {});
  try {
    const info = mod.info ? await mod.info(worker) : undefined;
    const cases = mod.cases.filter((c) => !options.filter || c.name.includes(options.filter) || c.path.includes(options.filter));
    const results = await measureCases(worker, cases, { ...options, label: `${mod.group} ` });
    for (const r of results) {
      const wait = r.cpu_wait_pct === undefined ? "" : `, waited for a CPU ${r.cpu_wait_pct}%`;
      log(`${mod.group} ${r.name}: ${r.ops_per_sec} ops/s median, ${r.best_ops_per_sec} best (n=${r.n}, spread ${r.spread_pct}%${wait})`);
    }
    const targets = (mod.targets ?? [])
      .map((t) => {
        const r = results.find((x) => x.name === t.result);
        if (!r) return undefined;
        return {
          name: t.name,
          result: t.result,
          target: t.target,
          unit: t.unit ?? "ops/s",
          measured: r.ops_per_sec,
          met: r.ops_per_sec >= t.target,
          measured_best: r.best_ops_per_sec,
        };
      })
      .filter(Boolean);
    return { group: mod.group, ...environment(), loadavg_1m_before: loadBefore, ...(info !== undefined ? { fixture: info } : {}), results, targets };
  } finally {
    await worker.dispose();
  }
}
