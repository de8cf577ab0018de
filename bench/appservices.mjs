// Benchmark group `appservices` (issue 7): delivery of room events to a local application service.
//
// The real Axon Worker (wrangler.toml, fresh temporary storage; test/e2e/axon-worker.mjs) runs with one appservice
// registered whose URL is a Node HTTP server on loopback (this file). Its bot creates rooms and sends messages
// through the client API with its as_token; the Node server acknowledges each transaction and records when every
// event arrived.
//
// - `live`: the appservice is up while N messages are sent (64 in flight, spread over 16 rooms). Reports the send
//   rate and the delivery rate (events delivered ÷ time from the first send to the last delivery), and the lag.
// - `live_direct`: the same with events produced inside the RoomDO (the rooms benchmark's Worker,
//   bench/axon-worker.ts: `/_bench/rooms/send-concurrent`, no HTTP client path), so the event source is not the
//   bottleneck: what the delivery path sustains when events arrive fast.
// - `backlog`: the appservice answers 503 while 10,000 messages are sent (delivery goes DOWN and backs off), then
//   comes back and pings through the homeserver (POST /_matrix/client/v1/appservice/{id}/ping, which makes a DOWN
//   appservice retry at once). Reports the time from the ping until all 10,000 were delivered, and the drain rate.
//
// Targets: ≥ 2,000 events/s delivered; the 10,000-event backlog drained within 10 s. `npm run bench -- appservices`.
import { createServer } from "node:http";
import { environment, log, round } from "./lib.mjs";
import { freePort, startAxon } from "../test/e2e/axon-worker.mjs";

export const group = "appservices";
export const description = "events/s delivered to a local appservice; 10,000-event backlog drain after recovery";

const SERVER_NAME = "bench.localhost";
/** The sender of the rooms benchmark Worker's `/_bench/rooms/*` events (bench/axon-worker.ts). */
const DIRECT_SENDER = "@bench:bench.local";
const ROOMS = 16;
const IN_FLIGHT = 64;

/** The appservice: acknowledges transactions (or answers 503 while `down`), records event arrivals. */
function appserviceServer(hsToken) {
  const state = { down: false, arrivals: new Map(), transactions: 0, failed: 0, eventsPerTxn: [], waiters: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (req.headers.authorization !== `Bearer ${hsToken}`) {
        res.writeHead(403, { "content-type": "application/json" }).end('{"errcode":"M_FORBIDDEN"}');
        return;
      }
      if (req.method === "POST" && req.url.startsWith("/_matrix/app/v1/ping")) {
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
        return;
      }
      if (req.method !== "PUT" || !req.url.startsWith("/_matrix/app/v1/transactions/")) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"errcode":"M_UNRECOGNIZED"}');
        return;
      }
      if (state.down) {
        state.failed++;
        res.writeHead(503, { "content-type": "application/json" }).end('{"errcode":"M_UNKNOWN"}');
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const now = performance.now();
      state.transactions++;
      state.eventsPerTxn.push(body.events.length);
      for (const ev of body.events) if (!state.arrivals.has(ev.event_id)) state.arrivals.set(ev.event_id, now);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
      for (const w of [...state.waiters]) w();
    });
  });
  return { server, state };
}

/** Resolves when every ID in `ids` has arrived (or rejects after `timeoutMs`). */
function allArrived(state, ids, timeoutMs) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (ids.every((id) => state.arrivals.has(id))) {
        state.waiters.splice(state.waiters.indexOf(check), 1);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      state.waiters.splice(state.waiters.indexOf(check), 1);
      const missing = ids.filter((id) => !state.arrivals.has(id)).length;
      reject(new Error(`${missing} of ${ids.length} events not delivered within ${timeoutMs} ms`));
    }, timeoutMs);
    state.waiters.push(check);
    check();
  });
}

async function clientCall(base, token, method, path, body) {
  const res = await fetch(`${base}/_matrix/client${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Sends `n` messages over `rooms` with IN_FLIGHT requests at once; returns event IDs and send timings. */
async function sendMessages(base, token, rooms, n, label) {
  const ids = new Array(n);
  let next = 0;
  const t0 = performance.now();
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const room = rooms[i % rooms.length];
      const r = await clientCall(base, token, "PUT", `/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${label}-${i}`, { msgtype: "m.text", body: `${label} ${i}` });
      ids[i] = r.event_id;
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { ids, t0, t1: performance.now() };
}

export async function run(options = {}) {
  const liveN = Number(process.env.BENCH_AS_LIVE ?? 2000);
  const directN = Number(process.env.BENCH_AS_DIRECT ?? 10_000);
  const backlogN = Number(process.env.BENCH_AS_BACKLOG ?? 10_000);
  const port = await freePort();
  const hsToken = `hs-${crypto.randomUUID()}`;
  const asToken = `as-${crypto.randomUUID()}`;
  const { server, state } = appserviceServer(hsToken);
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const registration = [
    "id: bench",
    `url: "http://127.0.0.1:${port}"`,
    `as_token: ${asToken}`,
    `hs_token: ${hsToken}`,
    "sender_localpart: _bench_bot",
    "rate_limited: false",
    "namespaces:",
    `  users: [{ exclusive: true, regex: "@_bench_.*" }]`,
    "",
  ].join("\n");
  const axon = await startAxon({ vars: { SERVER_NAME, APPSERVICE_REGISTRATIONS: registration } });
  log(`appservices: Axon at ${axon.baseUrl}, appservice on 127.0.0.1:${port}`);
  try {
    const base = axon.baseUrl;
    const rooms = [];
    for (let i = 0; i < ROOMS; i++) rooms.push((await clientCall(base, asToken, "POST", "/v3/createRoom", { name: `bench ${i}` })).room_id);
    // Warm-up: the rooms' creation events go out first.
    const warm = await sendMessages(base, asToken, rooms, 200, "warm");
    await allArrived(state, warm.ids, 60_000);

    const results = [];
    if (!options.filter || "baseline".includes(options.filter)) {
      // The same sends by an ordinary user in rooms no appservice is interested in: what the send path costs alone.
      const reg = await (await fetch(`${base}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: `plain${Date.now()}`, password: "bench-password-1", auth: { type: "m.login.dummy" } }),
      })).json();
      const plainRooms = [];
      for (let i = 0; i < ROOMS; i++) plainRooms.push((await clientCall(base, reg.access_token, "POST", "/v3/createRoom", {})).room_id);
      await sendMessages(base, reg.access_token, plainRooms, 200, "pwarm");
      const sent = await sendMessages(base, reg.access_token, plainRooms, liveN, "plain");
      results.push({
        name: "baseline_sends",
        events: liveN,
        send_events_per_sec: Math.round(liveN / ((sent.t1 - sent.t0) / 1000)),
        description: `the same ${liveN} sends by an ordinary user in rooms no appservice is interested in (the send path alone, for comparison)`,
      });
    }
    if (!options.filter || "live".includes(options.filter)) {
      log(`appservices: live delivery of ${liveN} messages`);
      const txBefore = state.transactions;
      const sent = await sendMessages(base, asToken, rooms, liveN, "live");
      await allArrived(state, sent.ids, 120_000);
      const last = Math.max(...sent.ids.map((id) => state.arrivals.get(id)));
      const lags = sent.ids.map((id) => state.arrivals.get(id)).sort((a, b) => a - b);
      const elapsed = (last - sent.t0) / 1000;
      results.push({
        name: "live",
        events: liveN,
        delivered_events_per_sec: Math.round(liveN / elapsed),
        send_events_per_sec: Math.round(liveN / ((sent.t1 - sent.t0) / 1000)),
        seconds: round(elapsed, 3),
        lag_after_last_send_ms: round(last - sent.t1, 3),
        transactions: state.transactions - txBefore,
        mean_events_per_transaction: round(liveN / (state.transactions - txBefore), 3),
        first_delivery_ms: round(lags[0] - sent.t0, 3),
        description: `${liveN} messages sent through the client API (${IN_FLIGHT} in flight over ${ROOMS} rooms) while the appservice is up; rate = events ÷ (last delivery − first send)`,
      });
    }
    if (!options.filter || "backlog".includes(options.filter)) {
      log(`appservices: backlog of ${backlogN} messages while the appservice is down`);
      state.down = true;
      const sent = await sendMessages(base, asToken, rooms, backlogN, "backlog");
      // Wait until delivery has noticed (a transaction failed), so the backlog is really behind a DOWN appservice.
      const deadline = Date.now() + 30_000;
      while (state.failed === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const txBefore = state.transactions;
      state.down = false;
      const back = performance.now();
      await clientCall(base, asToken, "POST", "/v1/appservice/bench/ping", { transaction_id: "bench" });
      await allArrived(state, sent.ids, 120_000);
      const arrivals = sent.ids.map((id) => state.arrivals.get(id));
      const first = Math.min(...arrivals);
      const last = Math.max(...arrivals);
      const perTxn = state.eventsPerTxn.slice(txBefore);
      results.push({
        name: "backlog",
        events: backlogN,
        drain_seconds_after_recovery: round((last - back) / 1000, 3),
        drain_events_per_sec: Math.round(backlogN / ((last - first) / 1000)),
        send_events_per_sec: Math.round(backlogN / ((sent.t1 - sent.t0) / 1000)),
        failed_attempts_while_down: state.failed,
        transactions: perTxn.length,
        max_events_per_transaction: Math.max(...perTxn),
        description: `${backlogN} messages sent while the appservice answered 503; then it came back and pinged; time from the ping to the last delivery`,
      });
    }
    if (!options.filter || "live_direct".includes(options.filter)) results.push(await liveDirect(directN));
    const by = (n) => results.find((r) => r.name === n);
    const targets = [];
    if (by("live_direct")) targets.push({ name: "events delivered per second (live, events produced in the RoomDO)", result: "live_direct", target: 2000, unit: "events/s", measured: by("live_direct").delivered_events_per_sec, met: by("live_direct").delivered_events_per_sec >= 2000 });
    if (by("live")) targets.push({ name: "events delivered per second (live, client-API sends)", result: "live", target: 2000, unit: "events/s", measured: by("live").delivered_events_per_sec, met: by("live").delivered_events_per_sec >= 2000 });
    if (by("backlog")) {
      targets.push({ name: "10,000-event backlog drained after recovery", result: "backlog", target: 10, unit: "s (at most)", measured: by("backlog").drain_seconds_after_recovery, met: by("backlog").drain_seconds_after_recovery <= 10 });
      targets.push({ name: "backlog drain rate", result: "backlog", target: 2000, unit: "events/s", measured: by("backlog").drain_events_per_sec, met: by("backlog").drain_events_per_sec >= 2000 });
    }
    return { group, ...environment(), results, targets };
  } finally {
    await axon.dispose();
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * `live_direct`: the rooms benchmark Worker (bench/axon.wrangler.toml) with an appservice interested in its
 * sender; batches of events are produced inside the RoomDO (`/_bench/rooms/send-concurrent?n=`) while the
 * appservice is up. Rate = events ÷ (last delivery − start of the first batch).
 */
async function liveDirect(n) {
  const port = await freePort();
  const hsToken = `hs-${crypto.randomUUID()}`;
  const { server, state } = appserviceServer(hsToken);
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const registration = [
    "id: bench-direct",
    `url: "http://127.0.0.1:${port}"`,
    `as_token: as-${crypto.randomUUID()}`,
    `hs_token: ${hsToken}`,
    "sender_localpart: _bench_bot",
    "rate_limited: false",
    "namespaces:",
    `  users: [{ exclusive: false, regex: "${DIRECT_SENDER.replace(/\./g, "\\\\.")}" }]`,
    "",
  ].join("\n");
  const axon = await startAxon({ config: "bench/axon.wrangler.toml", vars: { APPSERVICE_REGISTRATIONS: registration } });
  try {
    const count = () => [...state.arrivals.keys()].length;
    const produce = async (k) => {
      const res = await fetch(`${axon.baseUrl}/_bench/rooms/send-concurrent?n=${k}`);
      if (!res.ok) throw new Error(`/_bench/rooms/send-concurrent: ${res.status} ${await res.text()}`);
    };
    // Warm-up: the room's creation and a first batch.
    await produce(200);
    const waitFor = async (total, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (count() < total) {
        if (Date.now() > deadline) throw new Error(`only ${count()} of ${total} events delivered`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await waitFor(200, 60_000);
    const before = count();
    const txBefore = state.transactions;
    const batch = 500;
    const t0 = performance.now();
    for (let done = 0; done < n; done += batch) await produce(Math.min(batch, n - done));
    const t1 = performance.now();
    await waitFor(before + n, 120_000);
    const last = Math.max(...state.arrivals.values());
    const elapsed = (last - t0) / 1000;
    return {
      name: "live_direct",
      events: n,
      delivered_events_per_sec: Math.round(n / elapsed),
      produced_events_per_sec: Math.round(n / ((t1 - t0) / 1000)),
      seconds: round(elapsed, 3),
      lag_after_last_event_ms: round(last - t1, 3),
      transactions: state.transactions - txBefore,
      mean_events_per_transaction: round(n / (state.transactions - txBefore), 3),
      description: `${n} events produced inside the RoomDO in batches of ${batch} (rooms benchmark Worker) while the appservice is up; rate = events ÷ (last delivery − first batch start)`,
    };
  } finally {
    await axon.dispose();
    await new Promise((resolve) => server.close(resolve));
  }
}
