// Benchmark group `client` (issue 4): the client-server API through the FULL HTTP path of the real Axon Worker
// (Node → Worker → Durable Objects), each figure compared in the same run with a raw request (Node → Worker →
// RawInsertDO → one SQLite insert, `PUT /_bench/raw/request`):
//
//   - sequential send latency (p50, p95): PUT /rooms/{roomId}/send one at a time, vs raw requests one at a time;
//   - concurrent send throughput: a closed loop keeping `CONCURRENCY` sends in flight to one room, vs raw;
//   - sync wake: a member long-polls /sync; another sends; the time from the send's response to the /sync's;
//   - initial sync of a user in 100 rooms with 50 messages each.
//
// `npm run bench -- client`; `--reps N` (default 9) sets the rounds of the latency and throughput measurements;
// `--filter latency|throughput|wake|initial-sync` runs one section (the raw latency is always measured). The
// storage folder is created under the OS temporary directory: `TMPDIR=/dev/shm` puts it in memory.
// Writes bench/results/client.json; docs/benchmarks.md ("The client group") has figures and how to read them.
import { tmpdir } from "node:os";
import { environment, log, round } from "./lib.mjs";
import { startAxon } from "./rooms.mjs";

export const group = "client";
export const description = "client API over HTTP: send latency and throughput, sync wake, 100-room initial sync; each vs a raw Worker→DO→SQLite request";

const V3 = "/_matrix/client/v3";
/** Requests per round for the sequential latency figures (each round does this many raw and this many sends). */
const SEQ_PER_ROUND = 40;
/** Requests in flight in the throughput measurement, and requests per throughput sample. */
const CONCURRENCY = 32;
const CONCURRENT_TOTAL = 480;
const WAKE_SAMPLES = 40;
const ROOMS = 100;
const MESSAGES_PER_ROOM = 50;
const INITIAL_SYNC_SAMPLES = 7;

/** An ordinary chat message, the same bytes for the raw request and the send. */
const message = (i) => ({ msgtype: "m.text", body: `benchmark message number ${i} — some ordinary chat text to send` });

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function stats(xs) {
  return { n: xs.length, p50_ms: round(percentile(xs, 50)), p95_ms: round(percentile(xs, 95)), min_ms: round(Math.min(...xs)), max_ms: round(Math.max(...xs)) };
}

class Client {
  constructor(base) {
    this.base = base;
    this.txn = 0;
  }
  async call(method, path, { token, body, signal } = {}) {
    const res = await fetch(new URL(path, this.base), {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal ?? AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : {};
  }
  async register(name) {
    return this.call("POST", `${V3}/register`, { body: { username: name, password: "benchmark password", auth: { type: "m.login.dummy" } } });
  }
  send(user, roomId, i) {
    return this.call("PUT", `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${++this.txn}`, { token: user.access_token, body: message(i) });
  }
  raw(i) {
    return this.call("PUT", "/_bench/raw/request", { body: message(i) });
  }
  /** Variant: a Worker request that touches no Durable Object (the HTTP floor). */
  noop() {
    return this.call("PUT", "/_bench/raw/noop", { body: message(0) });
  }
  /** Variant: Worker → the sender's UserDO.roomAdvanced, the hop a send makes for read-your-writes. */
  userAdvance() {
    return this.call("PUT", `/_bench/client/user-advance?n=${++this.txn}`, { body: message(0) });
  }
  /** Variant: the raw request plus the access-token lookup (D1). */
  rawAuth(user, i) {
    return this.call("PUT", "/_bench/raw/request-auth", { token: user.access_token, body: message(i) });
  }
  /** Variant: the send's RoomDO.clientWrite without the HTTP route and authentication in front of it. */
  roomWrite(user, roomId, i) {
    return this.call("PUT", `/_bench/client/room-write?room=${encodeURIComponent(roomId)}&user=${encodeURIComponent(user.user_id)}`, { body: message(i) });
  }
}

/** Wall time of `fn()` in ms. */
async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Runs `total` calls of `fn(i)` keeping `concurrency` in flight; returns requests per second. */
async function closedLoop(fn, total, concurrency) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await fn(next++);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

const median = (xs) => percentile(xs, 50);

/** Sequential latency: each round interleaves raw requests, sends, and the variants that tell where a send's time goes. */
async function latency(ctx, reps) {
  const { http, alice, roomId } = ctx;
  const kinds = {
    http_floor_no_durable_object: () => http.noop(),
    raw: (i) => http.raw(i),
    user_do_room_advanced: () => http.userAdvance(),
    raw_with_token_lookup: (i) => http.rawAuth(alice, i),
    room_write_without_http_auth: (i) => http.roomWrite(alice, roomId, i),
    send: (i) => http.send(alice, roomId, i),
  };
  const lat = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < SEQ_PER_ROUND; i++) for (const [k, fn] of Object.entries(kinds)) lat[k].push(await timed(() => fn(i)));
    log(`client: latency round ${r + 1}/${reps}`);
  }
  return Object.fromEntries(Object.entries(lat).map(([k, xs]) => [k, stats(xs)]));
}

/** Concurrent throughput: `CONCURRENCY` requests in flight, samples alternating raw and send. */
async function throughput(ctx, reps) {
  const { http, alice, roomId } = ctx;
  const raw = [];
  const send = [];
  for (let r = 0; r < reps; r++) {
    raw.push(await closedLoop((i) => http.raw(i), CONCURRENT_TOTAL, CONCURRENCY));
    send.push(await closedLoop((i) => http.send(alice, roomId, i), CONCURRENT_TOTAL, CONCURRENCY));
    log(`client: throughput round ${r + 1}/${reps}: raw ${Math.round(raw.at(-1))}/s, send ${Math.round(send.at(-1))}/s`);
  }
  const summary = (xs) => ({ median: Math.round(median(xs)), best: Math.round(Math.max(...xs)), samples: xs.map((x) => Math.round(x)) });
  return { raw: summary(raw), send: summary(send), ratio: round(median(send) / median(raw)) };
}

/** Sync wake: bob long-polls; once his UserDO holds the waiter, alice sends; when does bob's /sync return? */
async function wake(ctx) {
  const { http, alice, bob, roomId } = ctx;
  const afterSend = [];
  const afterSendStart = [];
  const sendWhilePolled = [];
  let since = (await http.call("GET", `${V3}/sync?timeout=0`, { token: bob.access_token })).next_batch;
  for (let i = 0; i < WAKE_SAMPLES; i++) {
    const poll = http.call("GET", `${V3}/sync?since=${since}&timeout=30000`, { token: bob.access_token }).then((body) => ({ body, at: performance.now() }));
    for (let tries = 0; ; tries++) {
      const { waiters } = await http.call("GET", `/_bench/client/waiters?user=${encodeURIComponent(bob.user_id)}`);
      if (waiters >= 1) break;
      if (tries > 2000) throw new Error("bob's long poll never reached his UserDO");
    }
    const t0 = performance.now();
    const { event_id } = await http.send(alice, roomId, i);
    const sent = performance.now();
    const { body, at } = await poll;
    const events = body.rooms?.join?.[roomId]?.timeline?.events ?? [];
    if (!events.some((e) => e.event_id === event_id)) throw new Error(`the woken /sync did not carry ${event_id}`);
    afterSend.push(at - sent);
    afterSendStart.push(at - t0);
    sendWhilePolled.push(sent - t0);
    since = body.next_batch;
  }
  return { after_send_response: stats(afterSend), after_send_start: stats(afterSendStart), send_latency_while_polled: stats(sendWhilePolled) };
}

/** Initial sync of carol, in 100 rooms with 50 messages each; variants to see where the time goes. */
async function initialSync(ctx) {
  const { http, suffix } = ctx;
  log(`client: building ${ROOMS} rooms × ${MESSAGES_PER_ROOM} messages for the initial sync`);
  const carol = await http.register(`carol_${suffix}`);
  const rooms = [];
  let built = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (rooms.length < ROOMS) {
        const slot = rooms.length;
        rooms.push(undefined);
        const { room_id } = await http.call("POST", `${V3}/createRoom`, { token: carol.access_token, body: { preset: "private_chat", name: `room ${slot}` } });
        rooms[slot] = room_id;
        for (let m = 0; m < MESSAGES_PER_ROOM; m++) await http.send(carol, room_id, m);
        if (++built % 20 === 0) log(`client: ${built}/${ROOMS} rooms built`);
      }
    }),
  );
  const sync = (filter) => http.call("GET", `${V3}/sync${filter ? `?filter=${encodeURIComponent(JSON.stringify(filter))}` : ""}`, { token: carol.access_token });
  const full = [];
  const noTimeline = [];
  const oneRoom = [];
  const fanoutRooms = [];
  const fanoutRaw = [];
  let shape;
  for (let i = 0; i < INITIAL_SYNC_SAMPLES; i++) {
    let body;
    full.push(await timed(async () => (body = await sync())));
    const joined = Object.keys(body.rooms?.join ?? {});
    if (joined.length !== ROOMS) throw new Error(`initial sync listed ${joined.length} joined rooms, not ${ROOMS}`);
    shape = { rooms: joined.length, timeline_events: joined.reduce((n, r) => n + body.rooms.join[r].timeline.events.length, 0), bytes: JSON.stringify(body).length };
    // Variants: no timeline at all; one room alone; the bare fan-out (one trivial RPC to each of the 100 RoomDOs
    // at once, and to 100 RawInsertDOs).
    noTimeline.push(await timed(() => sync({ room: { timeline: { limit: 0 } } })));
    oneRoom.push(await timed(() => sync({ room: { rooms: [rooms[0]] } })));
    fanoutRooms.push(await timed(() => http.call("POST", "/_bench/client/fanout", { body: { rooms } })));
    fanoutRaw.push(await timed(() => http.call("POST", "/_bench/client/fanout?to=raw", { body: { rooms } })));
  }
  return {
    full: { ...stats(full), ...shape },
    no_timeline: stats(noTimeline),
    one_room_of_100: stats(oneRoom),
    fanout_100_room_dos_trivial_rpc: stats(fanoutRooms),
    fanout_100_raw_dos_trivial_rpc: stats(fanoutRaw),
  };
}

/** `--filter` picks sections by name: latency, throughput, wake, initial-sync (raw latency is always measured). */
export async function run(options = {}) {
  const reps = options.reps ?? 9;
  const want = (name) => !options.filter || name.includes(options.filter);
  const worker = await startAxon();
  const http = new Client(worker.url);
  const suffix = Date.now().toString(36);
  try {
    const alice = await http.register(`alice_${suffix}`);
    const bob = await http.register(`bob_${suffix}`);
    const { room_id: roomId } = await http.call("POST", `${V3}/createRoom`, { token: alice.access_token, body: { preset: "public_chat", name: "bench" } });
    await http.call("POST", `${V3}/join/${encodeURIComponent(roomId)}`, { token: bob.access_token, body: {} });
    const ctx = { http, alice, bob, roomId, suffix };

    // Warm-up: JIT, DO instances, connections.
    for (let i = 0; i < 30; i++) {
      await http.raw(i);
      await http.send(alice, roomId, i);
      await http.rawAuth(alice, i);
      await http.roomWrite(alice, roomId, i);
      await http.noop();
      await http.userAdvance();
    }

    const lat = await latency(ctx, want("latency") ? reps : Math.min(reps, 2));
    const tput = want("throughput") ? await throughput(ctx, reps) : undefined;
    const wk = want("wake") ? await wake(ctx) : undefined;
    const init = want("initial-sync") ? await initialSync(ctx) : undefined;

    const rawP50 = lat.raw.p50_ms;
    const figures = {
      raw_request_latency: lat.raw,
      send_latency: lat.send,
      send_vs_raw_p50: round(lat.send.p50_ms / rawP50),
      send_variants_latency: {
        http_floor_no_durable_object: lat.http_floor_no_durable_object,
        user_do_room_advanced: lat.user_do_room_advanced,
        raw_with_token_lookup: lat.raw_with_token_lookup,
        room_write_without_http_auth: lat.room_write_without_http_auth,
      },
      ...(tput ? { concurrency: CONCURRENCY, raw_concurrent_rps: tput.raw, send_concurrent_rps: tput.send, concurrent_send_vs_raw: tput.ratio } : {}),
      ...(wk ? { sync_wake: wk } : {}),
      ...(init ? { initial_sync_100_rooms: init, initial_sync_in_raw_requests: round(init.full.p50_ms / rawP50) } : {}),
    };
    const targets = [{ name: "send p50 ≤ 1.5 × raw request p50", target: 1.5, unit: "ratio (lower is better)", measured: figures.send_vs_raw_p50, met: figures.send_vs_raw_p50 <= 1.5 }];
    if (tput) targets.push({ name: "concurrent send throughput ≥ 60% of raw", target: 0.6, unit: "ratio", measured: tput.ratio, met: tput.ratio >= 0.6 });
    if (wk) {
      const measured = wk.after_send_response.p50_ms;
      targets.push({ name: "sync wake p50 ≤ 1 raw request p50", target: rawP50, unit: "ms (lower is better)", measured, met: measured <= rawP50 });
    }
    if (init) {
      const measured = figures.initial_sync_in_raw_requests;
      targets.push({ name: "initial sync (100 rooms × 50 messages) p50 ≤ 20 raw request p50s", target: 20, unit: "raw requests (lower is better)", measured, met: measured <= 20 });
    }
    return { group, ...environment(), reps, storage_dir: tmpdir(), figures, targets };
  } finally {
    await worker.dispose();
  }
}
