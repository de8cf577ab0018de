/** Server discovery with an injected fetch: nothing here touches the network. */
import { describe, expect, it } from "vitest";
import {
  cacheLifetimeMs,
  DiscoveryCache,
  parseDohSrv,
  resolveServerName,
  WELL_KNOWN_DEFAULT_TTL_MS,
  WELL_KNOWN_MAX_TTL_MS,
  type DiscoveryDeps,
} from "../../src/federation/discovery";

interface World {
  /** host → well-known response (status, body, headers) */
  wellKnown?: Record<string, { status?: number; body?: unknown; headers?: Record<string, string> } | "throw">;
  /** SRV name → DNS JSON answer records "prio weight port target." */
  srv?: Record<string, string[]>;
}

function deps(world: World, now = { t: 1_000_000 }) {
  const calls: string[] = [];
  const d: DiscoveryDeps = {
    dohUrl: "https://dns.test/dns-query",
    overrides: new Map([["local.test", "http://127.0.0.1:8802"]]),
    cache: new DiscoveryCache(),
    now: () => now.t,
    fetch: async (input) => {
      const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
      calls.push(url.toString());
      if (url.hostname === "dns.test") {
        const name = url.searchParams.get("name")!;
        const records = world.srv?.[name];
        if (!records) return Response.json({ Status: 3 });
        return Response.json({ Status: 0, Answer: records.map((data) => ({ name, type: 33, TTL: 300, data })) });
      }
      if (url.pathname === "/.well-known/matrix/server") {
        const wk = world.wellKnown?.[url.host];
        if (wk === "throw") throw new Error("connection refused");
        if (!wk) return new Response("not found", { status: 404 });
        return new Response(typeof wk.body === "string" ? wk.body : JSON.stringify(wk.body), {
          status: wk.status ?? 200,
          headers: wk.headers ?? {},
        });
      }
      throw new Error(`unexpected fetch ${url}`);
    },
  };
  return { d, calls, now };
}

describe("resolveServerName", () => {
  it("uses FEDERATION_OVERRIDES before anything else", async () => {
    const { d, calls } = deps({});
    expect(await resolveServerName("local.test", d)).toMatchObject({ baseUrl: "http://127.0.0.1:8802", via: "override" });
    expect(calls).toEqual([]);
  });

  it("connects to IP literals directly, on 8448 or the given port", async () => {
    const { d, calls } = deps({});
    expect(await resolveServerName("1.2.3.4", d)).toEqual({ baseUrl: "https://1.2.3.4:8448", host: "1.2.3.4", tlsName: undefined, via: "ip-literal" });
    expect(await resolveServerName("[2001:db8::1]:9000", d)).toMatchObject({ baseUrl: "https://[2001:db8::1]:9000", host: "[2001:db8::1]:9000" });
    expect(calls).toEqual([]);
  });

  it("uses an explicit port without well-known or SRV", async () => {
    const { d, calls } = deps({});
    expect(await resolveServerName("example.test:1234", d)).toEqual({
      baseUrl: "https://example.test:1234",
      host: "example.test:1234",
      tlsName: "example.test",
      via: "explicit-port",
    });
    expect(calls).toEqual([]);
  });

  it("follows .well-known delegation with a port", async () => {
    const { d } = deps({ wellKnown: { "example.test": { body: { "m.server": "matrix.example.test:443" } } } });
    expect(await resolveServerName("example.test", d)).toEqual({
      baseUrl: "https://matrix.example.test:443",
      host: "matrix.example.test:443",
      tlsName: "matrix.example.test",
      via: "well-known",
    });
  });

  it("follows .well-known delegation to an IP literal", async () => {
    const { d } = deps({ wellKnown: { "example.test": { body: { "m.server": "10.0.0.1" } } } });
    expect(await resolveServerName("example.test", d)).toMatchObject({ baseUrl: "https://10.0.0.1:8448", tlsName: undefined });
  });

  it("looks up SRV for a delegated name without a port, _matrix-fed first", async () => {
    const { d } = deps({
      wellKnown: { "example.test": { body: { "m.server": "deleg.test" } } },
      srv: {
        "_matrix-fed._tcp.deleg.test": ["10 5 8449 fed.deleg.test."],
        "_matrix._tcp.deleg.test": ["10 5 8450 old.deleg.test."],
      },
    });
    expect(await resolveServerName("example.test", d)).toEqual({
      baseUrl: "https://fed.deleg.test:8449",
      host: "deleg.test",
      tlsName: "deleg.test",
      via: "srv",
    });
  });

  it("falls back to the deprecated _matrix._tcp record, then to 8448 for a delegated name", async () => {
    const withOld = deps({
      wellKnown: { "example.test": { body: { "m.server": "deleg.test" } } },
      srv: { "_matrix._tcp.deleg.test": ["10 5 8450 old.deleg.test."] },
    });
    expect((await resolveServerName("example.test", withOld.d)).baseUrl).toBe("https://old.deleg.test:8450");
    const none = deps({ wellKnown: { "example.test": { body: { "m.server": "deleg.test" } } } });
    expect(await resolveServerName("example.test", none.d)).toMatchObject({ baseUrl: "https://deleg.test:8448", host: "deleg.test" });
  });

  it("without a usable well-known, uses SRV of the server name, then 8448", async () => {
    const bad = [
      { status: 404, body: "nope" },
      { body: "not json" },
      { body: { "m.server": 42 } },
      { body: { "m.server": "bad host name!" } },
      { status: 500, body: { "m.server": "x.test" } },
    ];
    for (const wk of bad) {
      const srv = deps({ wellKnown: { "example.test": wk }, srv: { "_matrix-fed._tcp.example.test": ["0 0 8555 t.example.test."] } });
      expect((await resolveServerName("example.test", srv.d)).baseUrl).toBe("https://t.example.test:8555");
      const plain = deps({ wellKnown: { "example.test": wk } });
      expect(await resolveServerName("example.test", plain.d)).toEqual({
        baseUrl: "https://example.test:8448",
        host: "example.test",
        tlsName: "example.test",
        via: "default-port",
      });
    }
    const down = deps({ wellKnown: { "example.test": "throw" } });
    expect((await resolveServerName("example.test", down.d)).baseUrl).toBe("https://example.test:8448");
  });

  it("picks the lowest-priority, highest-weight SRV record and treats '.' as no service", () => {
    const answer = (data: string[]) => ({ Status: 0, Answer: data.map((d) => ({ type: 33, TTL: 60, data: d })) });
    expect(parseDohSrv(answer(["20 100 1 a.test.", "10 1 2 b.test.", "10 5 3 c.test."])).target).toEqual({ target: "c.test", port: 3 });
    expect(parseDohSrv(answer(["0 0 0 ."])).target).toBeNull();
    expect(parseDohSrv({ Status: 3 }).target).toBeNull();
    expect(parseDohSrv(answer(["garbage"])).target).toBeNull();
  });

  it("caches well-known answers for their max-age, within 48 hours", async () => {
    const world: World = { wellKnown: { "example.test": { body: { "m.server": "a.test:1" }, headers: { "cache-control": "max-age=3600" } } } };
    const { d, calls, now } = deps(world);
    await resolveServerName("example.test", d);
    world.wellKnown!["example.test"] = { body: { "m.server": "b.test:2" } };
    now.t += 3599_000;
    expect((await resolveServerName("example.test", d)).baseUrl).toBe("https://a.test:1");
    expect(calls.filter((u) => u.includes("well-known"))).toHaveLength(1);
    now.t += 2_000;
    expect((await resolveServerName("example.test", d)).baseUrl).toBe("https://b.test:2");
  });

  it("caps a long max-age at 48 hours and defaults to 24 hours", () => {
    expect(cacheLifetimeMs(new Headers({ "cache-control": "public, max-age=86400" }), 0)).toBe(86_400_000);
    expect(cacheLifetimeMs(new Headers({ "cache-control": "no-store" }), 0)).toBe(0);
    expect(cacheLifetimeMs(new Headers({ expires: new Date(10_000).toUTCString() }), 0)).toBe(10_000);
    expect(cacheLifetimeMs(new Headers(), 0)).toBeUndefined();
    expect(WELL_KNOWN_DEFAULT_TTL_MS).toBe(24 * 3600 * 1000);
    expect(WELL_KNOWN_MAX_TTL_MS).toBe(48 * 3600 * 1000);
  });

  it("enforces the 48 hour cap and the default lifetime in the cache", async () => {
    const world: World = { wellKnown: { "long.test": { body: { "m.server": "a.test:1" }, headers: { "cache-control": "max-age=31536000" } }, "plain.test": { body: { "m.server": "a.test:1" } } } };
    const { d, calls, now } = deps(world);
    await resolveServerName("long.test", d);
    await resolveServerName("plain.test", d);
    now.t += 24 * 3600 * 1000 + 1;
    await resolveServerName("plain.test", d); // expired after 24 h
    await resolveServerName("long.test", d); // still cached
    expect(calls.filter((u) => u.includes("well-known"))).toHaveLength(3);
    now.t += 24 * 3600 * 1000;
    await resolveServerName("long.test", d); // expired after 48 h
    expect(calls.filter((u) => u.includes("long.test/.well-known"))).toHaveLength(2);
  });

  it("caches failures briefly and backs off when they repeat", async () => {
    const { d, calls, now } = deps({ wellKnown: { "example.test": "throw" } });
    const wkCalls = () => calls.filter((u) => u.includes("well-known")).length;
    await resolveServerName("example.test", d);
    await resolveServerName("example.test", d);
    expect(wkCalls()).toBe(1);
    now.t += 2 * 60 * 1000 + 1; // first failure: 2 min
    await resolveServerName("example.test", d);
    expect(wkCalls()).toBe(2);
    now.t += 2 * 60 * 1000 + 1; // second failure: 4 min
    await resolveServerName("example.test", d);
    expect(wkCalls()).toBe(2);
    now.t += 2 * 60 * 1000;
    await resolveServerName("example.test", d);
    expect(wkCalls()).toBe(3);
  });

  it("caches SRV answers", async () => {
    const { d, calls } = deps({ srv: { "_matrix-fed._tcp.example.test": ["0 0 8555 t.example.test."] } });
    await resolveServerName("example.test", d);
    await resolveServerName("example.test", d);
    expect(calls.filter((u) => u.includes("dns.test"))).toHaveLength(1);
  });

  it("refuses names that are not server names", async () => {
    const { d } = deps({});
    await expect(resolveServerName("bad name", d)).rejects.toThrow(/cannot resolve/);
  });
});
