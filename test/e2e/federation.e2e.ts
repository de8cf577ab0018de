/**
 * Two real Axon Workers federating over plain HTTP on loopback, as the README's "Several servers on one machine"
 * starts them: each started from Node (wrangler's unstable_startWorker, own port, own storage, own SERVER_NAME)
 * with FEDERATION_OVERRIDES naming the other's `http://127.0.0.1:<port>`. Everything goes through the client API
 * (registration with m.login.dummy) and real federation between the processes: X-Matrix signing with the
 * destination's name, key fetches over HTTP, make_join/send_join, transactions, invites, make_leave/send_leave,
 * backfill, alias queries.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error -- a plain ES module shared with the benchmarks (no types).
import { freePort, startAxon } from "./axon-worker.mjs";

type Axon = { baseUrl: string; dispose(): Promise<void> };
interface User {
  base: string;
  userId: string;
  token: string;
}

const HS1 = "hs1.e2e";
const HS2 = "hs2.e2e";
const WAIT_MS = 20_000;
let hs1: Axon;
let hs2: Axon;

beforeAll(async () => {
  const [p1, p2] = [(await freePort()) as number, (await freePort()) as number];
  const common = { RATE_LIMITS: JSON.stringify({ registration: null, login_address: null, login_account: null }), ENABLE_REGISTRATION: "true" };
  [hs1, hs2] = (await Promise.all([
    startAxon({ port: p1, vars: { ...common, SERVER_NAME: HS1, FEDERATION_OVERRIDES: JSON.stringify({ [HS2]: `http://127.0.0.1:${p2}` }) } }),
    startAxon({ port: p2, vars: { ...common, SERVER_NAME: HS2, FEDERATION_OVERRIDES: JSON.stringify({ [HS1]: `http://127.0.0.1:${p1}` }) } }),
  ])) as [Axon, Axon];
});

afterAll(async () => {
  await Promise.allSettled([hs1?.dispose(), hs2?.dispose()]);
});

const enc = encodeURIComponent;
let txn = 0;

async function req<T = Record<string, any>>(base: string, method: string, path: string, token: string | null, body?: unknown, status = 200): Promise<T> {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== status) throw new Error(`${method} ${base}${path}: expected ${status}, got ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : {}) as T;
}

async function register(base: string, username: string): Promise<User> {
  const first = await fetch(`${base}/_matrix/client/v3/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username, password: `pw-${username}` }) });
  const { session } = (await first.json()) as { session: string };
  const r = await req<{ user_id: string; access_token: string }>(base, "POST", "/_matrix/client/v3/register", null, {
    username, password: `pw-${username}`, auth: { type: "m.login.dummy", session },
  });
  return { base, userId: r.user_id, token: r.access_token };
}

const c = <T = Record<string, any>>(u: User, method: string, path: string, body?: unknown, status = 200) =>
  req<T>(u.base, method, `/_matrix/client/v3${path}`, u.token, body, status);
const send = (u: User, room: string, body: string) => c(u, "PUT", `/rooms/${enc(room)}/send/m.room.message/t${++txn}`, { msgtype: "m.text", body });

async function waitFor<T>(probe: () => Promise<T>, what: string): Promise<NonNullable<T>> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Message bodies seen through /messages going back from the live end, until `end` is gone. */
async function history(u: User, room: string, limit: number): Promise<string[]> {
  const out: string[] = [];
  let from: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ dir: "b", limit: String(limit) });
    if (from) q.set("from", from);
    const page = await c<{ chunk: { type: string; content: { body?: string } }[]; end?: string }>(u, "GET", `/rooms/${enc(room)}/messages?${q}`);
    out.push(...page.chunk.filter((e) => e.type === "m.room.message").map((e) => String(e.content.body)));
    if (!page.end) return out;
    from = page.end;
  }
}

const joinedOn = async (u: User, room: string, who: string) => (await c(u, "GET", `/rooms/${enc(room)}/joined_members`)).joined[who];

describe("two Axon servers federating over HTTP", () => {
  const tag = Date.now().toString(36);
  let alice: User; // hs2
  let bob: User; // hs1
  let carol: User; // hs1
  let room: string;

  it("serve their keys under their own names over plain HTTP", async () => {
    const k1 = await req(hs1.baseUrl, "GET", "/_matrix/key/v2/server", null);
    const k2 = await req(hs2.baseUrl, "GET", "/_matrix/key/v2/server", null);
    expect([k1.server_name, k2.server_name]).toEqual([HS1, HS2]);
    alice = await register(hs2.baseUrl, `alice${tag}`);
    bob = await register(hs1.baseUrl, `bob${tag}`);
    carol = await register(hs1.baseUrl, `carol${tag}`);
    expect([alice.userId, bob.userId]).toEqual([`@alice${tag}:${HS2}`, `@bob${tag}:${HS1}`]);
  });

  it("a user of one joins a room of the other by alias; messages go both ways", async () => {
    room = (await c<{ room_id: string }>(alice, "POST", "/createRoom", { preset: "public_chat", name: "Across", room_alias_name: `across${tag}` })).room_id;
    for (let i = 0; i < 40; i++) await send(alice, room, `old ${i}`);
    expect((await c(bob, "POST", `/join/${enc(`#across${tag}:${HS2}`)}`, {})).room_id).toBe(room);
    await waitFor(() => joinedOn(alice, room, bob.userId), "bob joined on hs2");
    await send(bob, room, "hi from hs1");
    await waitFor(async () => (await history(alice, room, 50)).includes("hi from hs1"), "bob's message on hs2");
    await send(alice, room, "hi from hs2");
    await waitFor(async () => (await history(bob, room, 50)).includes("hi from hs2"), "alice's message on hs1");
    const sync = await c(bob, "GET", "/sync?timeout=0");
    expect(sync.rooms.join[room].timeline.events.some((e: { content: { body?: string } }) => e.content.body === "hi from hs2")).toBe(true);
  });

  it("paginates the history from before the join (backfill), every message once, in order", async () => {
    const seen = await history(bob, room, 15);
    expect(seen).toEqual(["hi from hs2", "hi from hs1", ...Array.from({ length: 40 }, (_, i) => `old ${39 - i}`)]);
  });

  it("invites across servers: the invite shows in sync, the invitee joins, then leaves", async () => {
    await c(alice, "POST", `/rooms/${enc(room)}/invite`, { user_id: carol.userId });
    const s = await waitFor(async () => (await c(carol, "GET", "/sync?timeout=0")).rooms?.invite?.[room], "carol's invite");
    expect(s.invite_state.events.find((e: { type: string }) => e.type === "m.room.name").content.name).toBe("Across");
    await c(carol, "POST", `/rooms/${enc(room)}/join`, {});
    await waitFor(() => joinedOn(alice, room, carol.userId), "carol joined on hs2");
    await c(carol, "POST", `/rooms/${enc(room)}/leave`, {});
    await waitFor(async () => !(await joinedOn(alice, room, carol.userId)), "carol left on hs2");
  });

  it("rejects a remote invite, and leaves a remote room", async () => {
    const other = (await c<{ room_id: string }>(bob, "POST", "/createRoom", { preset: "private_chat" })).room_id;
    await c(bob, "POST", `/rooms/${enc(other)}/invite`, { user_id: alice.userId });
    await waitFor(async () => (await c(alice, "GET", "/sync?timeout=0")).rooms?.invite?.[other], "alice's invite");
    await c(alice, "POST", `/rooms/${enc(other)}/leave`, {});
    await waitFor(async () => {
      const m = await c(bob, "GET", `/rooms/${enc(other)}/members`);
      return m.chunk.find((e: { state_key: string; content: { membership: string } }) => e.state_key === alice.userId && e.content.membership === "leave");
    }, "alice's rejection on hs1");
    await c(bob, "POST", `/rooms/${enc(room)}/leave`, {});
    await waitFor(async () => !(await joinedOn(alice, room, bob.userId)), "bob left on hs2");
  });
});
