// Benchmark group `federation` (issue 5): the real Axon Worker (bench/axon-worker.ts) with fresh local storage.
//
// - inbound: `PUT /_matrix/federation/v1/send/{txnId}` of 50 PDUs + 100 EDUs from a pretend remote server whose
//   key the Worker holds (X-Matrix verified, every PDU's signature and hash checked, auth, persistence, EDUs):
//   wall time per transaction, and workerd CPU time (Linux /proc schedstat) during the request and including
//   what it set off in the background (outbox deliveries), measured up to the next transaction.
// - fan-out: one message sent by a local user in a room with 100 remote servers (pointed at a closed loopback
//   port): the time until the sender's request returns, and until all 100 DestinationDOs have the event queued.
//
// `npm run bench -- federation` (options: --reps N).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, environment, log, median, round, schedSnapshot, startWorker, getJson } from "./lib.mjs";

export const group = "federation";
export const description = "inbound /send of 50 PDUs + 100 EDUs (wall and CPU); outbound fan-out of one event to 100 servers";

const FANOUT_SERVERS = 100;
const PDUS = 50;
const EDUS = 100;

/** FEDERATION_OVERRIDES: every remote server of the bench at a closed loopback port (fails at once, no DNS). */
function overrides() {
  const map = {};
  for (let i = 0; i < 20; i++) map[`remote${i}.bench`] = "http://127.0.0.1:9";
  for (let i = 0; i < FANOUT_SERVERS; i++) map[`fanout${i}.bench`] = "http://127.0.0.1:9";
  return JSON.stringify(map);
}

async function startAxon() {
  const persist = mkdtempSync(join(tmpdir(), "axon-bench-fed-"));
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const migrate = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", "bench/axon.wrangler.toml"], {
    cwd: ROOT,
    env: { ...process.env, CI: "true", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    encoding: "utf8",
  });
  if (migrate.status !== 0) throw new Error(`D1 migrations failed: ${migrate.stderr || migrate.stdout}`);
  const worker = await startWorker({
    config: "bench/axon.wrangler.toml",
    dev: { persist },
    bindings: { FEDERATION_OVERRIDES: { type: "plain_text", value: overrides() } },
  });
  const dispose = worker.dispose.bind(worker);
  worker.dispose = async () => {
    await dispose();
    rmSync(persist, { recursive: true, force: true });
  };
  return worker;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuBetween = (a, b) => (a && b ? (b.run - a.run) / 1e6 : undefined);

function stats(xs) {
  const v = xs.filter((x) => x !== undefined);
  if (v.length === 0) return undefined;
  return { median: round(median(v), 4), min: round(Math.min(...v), 4), max: round(Math.max(...v), 4) };
}

/** Inbound transactions: `reps` timed after `warmup` untimed ones. */
async function inbound(worker, { reps, warmup = 3 }) {
  const setup = await getJson(worker, "/_bench/federation/setup-inbound");
  const samples = [];
  for (let i = 0; i < warmup + reps; i++) {
    const txn = await getJson(worker, `/_bench/federation/inbound-txn?room=${encodeURIComponent(setup.room_id)}&pdus=${PDUS}&edus=${EDUS}`);
    await sleep(50); // let the generation request's own work settle
    const before = schedSnapshot(worker.pids);
    const t0 = performance.now();
    const res = await fetch(new URL(txn.path, worker.url), {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: txn.authorization },
      body: txn.body,
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    const afterRequest = schedSnapshot(worker.pids);
    if (!res.ok) throw new Error(`send: ${res.status} ${text}`);
    const errors = Object.values(JSON.parse(text).pdus ?? {}).filter((r) => r.error);
    if (errors.length > 0) throw new Error(`send: ${errors.length} PDUs failed: ${JSON.stringify(errors[0])}`);
    await sleep(250); // background work the transaction set off (outbox deliveries to the local user)
    const settled = schedSnapshot(worker.pids);
    if (i >= warmup) {
      samples.push({ ms, cpuMs: cpuBetween(before, afterRequest), cpuTotalMs: cpuBetween(before, settled), waitMs: before && afterRequest ? (afterRequest.wait - before.wait) / 1e6 : undefined });
      log(`federation inbound ${i - warmup + 1}/${reps}: ${round(ms, 3)} ms wall, ${round(samples.at(-1).cpuMs ?? NaN, 3)} ms CPU`);
    }
  }
  return {
    name: "inbound-send-50-pdus-100-edus",
    pdus: PDUS,
    edus: EDUS,
    wall_ms: stats(samples.map((s) => s.ms)),
    cpu_ms: stats(samples.map((s) => s.cpuMs)),
    cpu_ms_including_background: stats(samples.map((s) => s.cpuTotalMs)),
    cpu_wait_ms: stats(samples.map((s) => s.waitMs)),
    reps: samples.length,
    samples_ms: samples.map((s) => round(s.ms, 4)),
    samples_cpu_ms: samples.map((s) => (s.cpuMs === undefined ? null : round(s.cpuMs, 4))),
    description: "PUT /send from a remote whose key is known: X-Matrix check, 50 chained messages (signatures verified together, hashes, auth, persistence), 100 EDUs (typing, to-device into a local inbox, read receipts)",
  };
}

/**
 * Fan-out: `reps` messages, each timed to the sender's response and to all `servers` DestinationDOs queued
 * (`servers` = 0: the same send in a room with no other server, for comparison).
 */
async function fanout(worker, { reps, servers = FANOUT_SERVERS }) {
  const setup = await getJson(worker, `/_bench/federation/setup-fanout?servers=${servers}`);
  const room = encodeURIComponent(setup.room_id);
  const samples = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const res = await fetch(new URL(`/_matrix/client/v3/rooms/${room}/send/m.room.message/fan${i}`, worker.url), {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${setup.access_token}` },
      body: JSON.stringify({ msgtype: "m.text", body: `fan-out ${i}` }),
    });
    await res.text();
    const sendMs = performance.now() - t0;
    if (!res.ok) throw new Error(`send: ${res.status}`);
    const { position } = await getJson(worker, `/_bench/federation/room-position?room=${room}`);
    let queuedMs;
    for (;;) {
      const s = await getJson(worker, `/_bench/federation/fanout-status?room=${room}&servers=${servers}&position=${position}`);
      if (s.queued === servers) {
        queuedMs = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > 60_000) throw new Error(`only ${s.queued} of ${servers} destinations queued the event`);
      await sleep(2);
    }
    if (i > 0) {
      samples.push({ sendMs, queuedMs });
      log(`federation fan-out (${servers}) ${i}/${reps}: sender answered after ${round(sendMs, 3)} ms, all ${servers} queued after ${round(queuedMs, 3)} ms`);
    }
    await sleep(300);
  }
  return {
    name: `fanout-${servers}-destinations`,
    servers,
    sender_response_ms: stats(samples.map((s) => s.sendMs)),
    all_queued_ms: stats(samples.map((s) => s.queuedMs)),
    reps: samples.length,
    samples: samples.map((s) => ({ sender_ms: round(s.sendMs, 4), queued_ms: round(s.queuedMs, 4) })),
    description: servers
      ? `PUT /rooms/{roomId}/send by a local user in a room with one user on each of ${servers} servers (closed port): the sender's response vs. every DestinationDO having recorded the event (polled every ~2 ms)`
      : "the same send in a room with no other server (baseline for the sender's response)",
  };
}

export async function run(options = {}) {
  const reps = options.reps ?? 9;
  const worker = await startAxon();
  try {
    const results = [];
    if (!options.filter || "inbound".includes(options.filter)) results.push(await inbound(worker, { reps }));
    if (!options.filter || "fanout".includes(options.filter)) {
      results.push(await fanout(worker, { reps, servers: 0 }));
      results.push(await fanout(worker, { reps }));
    }
    const by = (n) => results.find((r) => r.name.startsWith(n));
    const targets = [];
    const inb = by("inbound");
    if (inb?.cpu_ms) targets.push({ name: "inbound transaction (50 PDUs + 100 EDUs) ≤ 50 ms CPU", target: 50, unit: "ms CPU (lower is better)", measured: inb.cpu_ms.median, met: inb.cpu_ms.median <= 50 });
    const fan = by(`fanout-${FANOUT_SERVERS}`);
    if (fan) {
      targets.push({
        name: "fan-out does not block the sender: its response comes before the destinations are all queued",
        target: "sender_response_ms < all_queued_ms",
        unit: "ms",
        measured: `sender ${fan.sender_response_ms.median} ms, all queued ${fan.all_queued_ms.median} ms`,
        met: fan.sender_response_ms.median < fan.all_queued_ms.median,
      });
    }
    return { group, ...environment(), results, targets };
  } finally {
    await worker.dispose();
  }
}
