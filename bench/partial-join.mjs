// Benchmark group `partial-join` (issue 6, faster joins; docs/faster-joins.md): three real Axon bench Workers
// (bench/axon-worker.ts) federating over loopback — a resident holding a public room of 10,000 members plus 100
// other state events, a joiner with PARTIAL_JOINS=false (full join) and a joiner with partial joins (the
// default) — each with its own storage, FEDERATION_OVERRIDES pointing at the others' ports.
//
// Measured, for the same room in the same run:
// - the full join: POST /join on the first joiner until it answers (make_join, send_join with the whole state
//   and its auth chain, signatures verified, everything stored);
// - the partial join: POST /join on the second joiner until it answers; then that user sends a message and
//   receives one from the resident while the room is still partial (times until each is done);
// - the resync in the background: from the partial join's answer until the room is fully stated (polled every
//   25 ms), the state events fetched, and state events per second;
// - memory: peak resident set size of each joiner's workerd processes (Linux /proc VmHWM, and the largest
//   VmRSS sampled during the resync) — an approximation of the RoomDO's memory: it includes the runtime, the
//   Worker and every other object in that process.
//
// Targets: the partial join at least 50× faster than the full join; the resync at least 5,000 state events/s.
// `npm run bench -- partial-join` (options: --members N, --state-events N via env BENCH_MEMBERS/BENCH_STATE_EVENTS).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, environment, getJson, log, round, startWorker } from "./lib.mjs";

export const group = "partial-join";
export const description = "faster joins: partial vs full join of a 10,000-member room from another server; background resync rate; joiner memory";

const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 10_000);
const STATE_EVENTS = Number(process.env.BENCH_STATE_EVENTS ?? 100);
const NAMES = { resident: "resident.bench", full: "full.bench", partial: "partial.bench" };

/** A free loopback port (bound, then released). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function migrate(persist) {
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const r = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", "bench/axon.wrangler.toml"], {
    cwd: ROOT,
    env: { ...process.env, CI: "true", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`D1 migrations failed: ${r.stderr || r.stdout}`);
}

/** Starts one bench server named `name` on `port` with overrides for the others; `vars` adds variables. */
async function startServer(name, port, ports, vars = {}) {
  const persist = mkdtempSync(join(tmpdir(), `axon-bench-pj-${name.split(".")[0]}-`));
  migrate(persist);
  const overrides = {};
  for (const [other, p] of Object.entries(ports)) if (other !== name) overrides[other] = `http://127.0.0.1:${p}`;
  // The pretend server of the room's members lives on the resident's bench routes.
  overrides["members.bench"] = `http://127.0.0.1:${ports[NAMES.resident]}/_bench/partial-join/fake-members`;
  const plain = (value) => ({ type: "plain_text", value });
  const worker = await startWorker({
    config: "bench/axon.wrangler.toml",
    dev: { persist, server: { hostname: "127.0.0.1", port } },
    bindings: {
      SERVER_NAME: plain(name),
      FEDERATION_OVERRIDES: plain(JSON.stringify(overrides)),
      ...Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, plain(v)])),
    },
  });
  const dispose = worker.dispose.bind(worker);
  worker.dispose = async () => {
    await dispose();
    rmSync(persist, { recursive: true, force: true });
  };
  return worker;
}

/**
 * Memory of a Worker's largest workerd process (the runtime; the other one is wrangler's proxy in front of it):
 * its peak (VmHWM) and current (VmRSS) resident set size in MiB (Linux /proc; undefined elsewhere).
 */
function memory(pids) {
  let best;
  try {
    for (const pid of pids) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      if (!best || rss > best.rss_mib) best = { peak_mib: round(hwm, 4), rss_mib: round(rss, 4) };
    }
  } catch {
    return undefined;
  }
  return best;
}

/** A Worker's own workerd processes: lib.startWorker lists those started after it, so later Workers' are removed. */
function ownPids(worker, later) {
  const theirs = new Set(later.flatMap((w) => w.pids));
  return () => worker.pids.filter((p) => !theirs.has(p));
}

async function client(worker, method, path, token, body) {
  const res = await fetch(new URL(path, worker.url), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(300_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;

async function timedJoin(worker, user, roomId) {
  const t0 = performance.now();
  await client(worker, "POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${NAMES.resident}`, user.access_token, {});
  return performance.now() - t0;
}

export async function run() {
  const ports = { [NAMES.resident]: await freePort(), [NAMES.full]: await freePort(), [NAMES.partial]: await freePort() };
  const started = [];
  try {
    const resident = await startServer(NAMES.resident, ports[NAMES.resident], ports);
    started.push(resident);
    const full = await startServer(NAMES.full, ports[NAMES.full], ports, { PARTIAL_JOINS: "false" });
    started.push(full);
    const partial = await startServer(NAMES.partial, ports[NAMES.partial], ports);
    started.push(partial);
    const pids = { full: ownPids(full, [partial]), partial: ownPids(partial, []) };

    // Warm-up on a small room: key fetches, JIT, first-use costs paid on both joiners alike.
    const warm = await getJson(resident, `/_bench/partial-join/setup?members=20&state_events=2`);
    const fullUser = await getJson(full, "/_bench/partial-join/user?localpart=fulljoiner");
    const partialUser = await getJson(partial, "/_bench/partial-join/user?localpart=partialjoiner");
    await timedJoin(full, fullUser, warm.room_id);
    await timedJoin(partial, partialUser, warm.room_id);
    // Let the warm-up room's resync finish before the resident gets busy building the big room.
    for (let t0 = performance.now(); (await getJson(partial, `/_bench/partial-join/progress?room=${enc(warm.room_id)}`)).partial !== null; ) {
      if (performance.now() - t0 > 120_000) throw new Error("the warm-up room's resync did not finish");
      await sleep(50);
    }

    log(`partial-join: building the resident room (${MEMBERS} members, ${STATE_EVENTS} more state events)`);
    const big = await getJson(resident, `/_bench/partial-join/setup?members=${MEMBERS}&state_events=${STATE_EVENTS}`);
    log(`partial-join: room ${big.room_id} ready (${big.events} events) in ${big.setup_ms} ms`);
    const roomId = big.room_id;
    const memBefore = { full: memory(pids.full()), partial: memory(pids.partial()) };

    log("partial-join: full join");
    const fullMs = await timedJoin(full, fullUser, roomId);
    const fullProgress = await getJson(full, `/_bench/partial-join/progress?room=${enc(roomId)}`);
    const memFull = memory(pids.full());

    log("partial-join: partial join");
    const partialMs = await timedJoin(partial, partialUser, roomId);
    const joinedAt = performance.now();
    let peakRss = memory(pids.partial())?.rss_mib ?? 0;
    const first = await getJson(partial, `/_bench/partial-join/progress?room=${enc(roomId)}`);
    // The resync, in the background: polled every 25 ms from now on, alongside the send/receive checks.
    let last = first.partial;
    const resynced = (async () => {
      for (;;) {
        const p = await getJson(partial, `/_bench/partial-join/progress?room=${enc(roomId)}`);
        const m = memory(pids.partial());
        if (m) peakRss = Math.max(peakRss, m.rss_mib);
        if (p.partial === null) return { done: p, ms: performance.now() - joinedAt };
        last = p.partial;
        if (performance.now() - joinedAt > 600_000) throw new Error(`resync did not finish: ${JSON.stringify(p.partial)}`);
        await sleep(25);
      }
    })();

    // The user can send and receive at once.
    const s0 = performance.now();
    await client(partial, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/bench1`, partialUser.access_token, { msgtype: "m.text", body: "hi from a partial join" });
    const sendMs = performance.now() - s0;
    const r0 = performance.now();
    const incoming = await getJson(resident, `/_bench/partial-join/send?room=${enc(roomId)}&body=welcome`);
    let receiveMs;
    let receivedWhilePartial = false;
    for (;;) {
      const [held, p] = await Promise.all([
        getJson(partial, `/_bench/partial-join/held?room=${enc(roomId)}&event=${enc(incoming.event_id)}`),
        getJson(partial, `/_bench/partial-join/progress?room=${enc(roomId)}`),
      ]);
      if (held.held) {
        receiveMs = performance.now() - r0;
        receivedWhilePartial = p.partial !== null;
        break;
      }
      if (performance.now() - r0 > 60_000) throw new Error("the resident's message never arrived");
      await sleep(10);
    }

    const { done, ms: resyncMs } = await resynced;
    const memPartial = memory(pids.partial());
    // Events the resync brought in: everything the partial joiner holds now beyond what the join brought.
    const fetched = done.events - first.events - 2; // minus our own message and the resident's
    const stateEventsPerSec = fetched / (resyncMs / 1000);

    const speedup = fullMs / partialMs;
    const result = {
      group,
      ...environment(),
      room: { members: MEMBERS, other_state_events: STATE_EVENTS, events_at_resident: big.events },
      full_join: { ms: round(fullMs, 4), events_held_after: fullProgress.events, joined_members: fullProgress.joined_members, memory: memFull, memory_before: memBefore.full },
      partial_join: {
        ms: round(partialMs, 4),
        events_held_after: first.events,
        send_ms: round(sendMs, 4),
        receive_ms: round(receiveMs, 4),
        received_while_partial: receivedWhilePartial,
        servers_in_room: first.partial?.servers_in_room,
      },
      resync: {
        ms: round(resyncMs, 4),
        state_events_fetched: fetched,
        state_events_per_sec: round(stateEventsPerSec, 4),
        events_held_after: done.events,
        joined_members_after: done.joined_members,
        last_progress: last,
      },
      memory_partial_joiner: { before: memBefore.partial, peak_rss_sampled_mib: round(peakRss, 4), after: memPartial },
      speedup_partial_vs_full: round(speedup, 4),
      notes: "Memory is the joiner's workerd process (runtime + Worker + every object in it): an approximation of the RoomDO's footprint.",
    };
    result.targets = [
      { name: "partial join ≥ 50× faster than the full join", target: 50, unit: "×", measured: result.speedup_partial_vs_full, met: speedup >= 50 },
      { name: "resync ≥ 5,000 state events/s", target: 5000, unit: "events/s", measured: result.resync.state_events_per_sec, met: stateEventsPerSec >= 5000 },
    ];
    return result;
  } finally {
    await Promise.allSettled(started.map((w) => w.dispose()));
  }
}
