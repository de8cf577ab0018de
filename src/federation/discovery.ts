/**
 * Server discovery: from a server name to the URL its federation API is reached at
 * (https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names).
 *
 * Order: `FEDERATION_OVERRIDES` → IP literal → explicit port → `/.well-known/matrix/server` (cached) → SRV
 * `_matrix-fed._tcp` then `_matrix._tcp` (over DNS-over-HTTPS) → port 8448.
 *
 * What a Worker's `fetch` can and cannot do: it resolves the URL's host name itself and always sends that name as
 * SNI and (with the port, when not 443) as `Host`; it cannot connect to one name while presenting another.
 * So when the spec asks for a connection to an SRV target with the `Host`/SNI of the delegated name, we can only
 * connect to `https://<target>:<port>`, which presents the target's name; and when it asks for `Host:
 * <hostname>` on port 8448 we send `Host: <hostname>:8448`. `ResolvedServer.host` and `tlsName` record what the
 * spec asks for, so the difference is visible (docs/federation.md, "Server discovery").
 */
import { parseServerName, type ServerName } from "../protocol/identifiers";
import type { FetchLike } from "./fetch";

export const DEFAULT_FEDERATION_PORT = 8448;
/** Well-known results: 24 h unless the response says otherwise, never more than 48 h. */
export const WELL_KNOWN_DEFAULT_TTL_MS = 24 * 3600 * 1000;
export const WELL_KNOWN_MAX_TTL_MS = 48 * 3600 * 1000;
/** A well-known lookup that failed is retried after 2 min, doubling per consecutive failure, at most 1 h. */
export const WELL_KNOWN_ERROR_TTL_MIN_MS = 2 * 60 * 1000;
export const WELL_KNOWN_ERROR_TTL_MAX_MS = 3600 * 1000;
/** Even a response that asks not to be cached is kept this long, so discovery is not repeated per request. */
export const WELL_KNOWN_MIN_TTL_MS = 5 * 60 * 1000;
const WELL_KNOWN_TIMEOUT_MS = 10_000;
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
/** SRV answers are cached for their DNS TTL within these bounds. */
const SRV_MIN_TTL_MS = 60 * 1000;
const SRV_MAX_TTL_MS = 24 * 3600 * 1000;
const DOH_TIMEOUT_MS = 5_000;

export interface ResolvedServer {
  /** Base URL of the server's federation API (no trailing slash), e.g. `https://matrix.example.org:8448`. */
  baseUrl: string;
  /** The `Host` header the spec asks for. */
  host: string;
  /** The name the server's TLS certificate must be valid for (SNI), or undefined for an IP address. */
  tlsName: string | undefined;
  /** Which step of the algorithm decided. */
  via: "override" | "ip-literal" | "explicit-port" | "well-known" | "srv" | "default-port";
}

interface CacheEntry<T> {
  value: T;
  expires: number;
  failures?: number;
}

/** Caches that outlive a single resolution (one per isolate in production; tests pass their own). */
export class DiscoveryCache {
  readonly wellKnown = new Map<string, CacheEntry<string | null>>();
  readonly srv = new Map<string, CacheEntry<SrvTarget | null>>();
  /** Keeps the maps bounded. */
  constructor(readonly maxEntries = 10_000) {}

  put<T>(map: Map<string, CacheEntry<T>>, key: string, entry: CacheEntry<T>): void {
    if (map.size >= this.maxEntries && !map.has(key)) map.delete(map.keys().next().value!);
    map.set(key, entry);
  }
}

export interface DiscoveryDeps {
  fetch: FetchLike;
  /** DNS-over-HTTPS endpoint answering `?name=…&type=SRV` with `application/dns-json`. */
  dohUrl: string;
  /** Server name → base URL, consulted first. */
  overrides: ReadonlyMap<string, string>;
  cache: DiscoveryCache;
  now: () => number;
}

export interface SrvTarget {
  target: string;
  port: number;
}

export class DiscoveryError extends Error {
  override readonly name = "DiscoveryError";
}

/** The process-wide cache used by the federation client. */
export const sharedDiscoveryCache = new DiscoveryCache();

function formatHost(host: string, port: number | undefined): string {
  return port === undefined ? host : `${host}:${port}`;
}

/** Resolves a server name. Throws {@link DiscoveryError} for names that are not valid server names. */
export async function resolveServerName(serverName: string, deps: DiscoveryDeps): Promise<ResolvedServer> {
  const override = deps.overrides.get(serverName);
  if (override !== undefined) {
    return { baseUrl: override, host: new URL(override).host, tlsName: new URL(override).hostname, via: "override" };
  }
  let name: ServerName;
  try {
    name = parseServerName(serverName);
  } catch (e) {
    throw new DiscoveryError(`cannot resolve ${JSON.stringify(serverName)}: ${(e as Error).message}`);
  }

  // 1. IP literal: that address, the given port or 8448; Host is the server name.
  if (name.hostKind !== "dns") {
    const port = name.port ?? DEFAULT_FEDERATION_PORT;
    return { baseUrl: `https://${formatHost(name.host, port)}`, host: serverName, tlsName: undefined, via: "ip-literal" };
  }
  // 2. Explicit port: that host and port; Host is the server name.
  if (name.port !== undefined) {
    return { baseUrl: `https://${serverName}`, host: serverName, tlsName: name.host, via: "explicit-port" };
  }
  // 3. /.well-known/matrix/server.
  const delegated = await wellKnownDelegation(name.host, deps);
  if (delegated !== null) {
    const d = parseServerName(delegated);
    // 3.1 IP literal; 3.2 explicit port.
    if (d.hostKind !== "dns") {
      const port = d.port ?? DEFAULT_FEDERATION_PORT;
      return { baseUrl: `https://${formatHost(d.host, port)}`, host: delegated, tlsName: undefined, via: "well-known" };
    }
    if (d.port !== undefined) {
      return { baseUrl: `https://${delegated}`, host: delegated, tlsName: d.host, via: "well-known" };
    }
    // 3.3/3.4 SRV for the delegated host; 3.5 port 8448.
    const srv = await lookupSrv(d.host, deps);
    if (srv) return { baseUrl: `https://${formatHost(srv.target, srv.port)}`, host: d.host, tlsName: d.host, via: "srv" };
    return {
      baseUrl: `https://${formatHost(d.host, DEFAULT_FEDERATION_PORT)}`,
      host: d.host,
      tlsName: d.host,
      via: "well-known",
    };
  }
  // 4/5. SRV for the hostname; 6. port 8448.
  const srv = await lookupSrv(name.host, deps);
  if (srv) return { baseUrl: `https://${formatHost(srv.target, srv.port)}`, host: name.host, tlsName: name.host, via: "srv" };
  return {
    baseUrl: `https://${formatHost(name.host, DEFAULT_FEDERATION_PORT)}`,
    host: name.host,
    tlsName: name.host,
    via: "default-port",
  };
}

/**
 * The `m.server` of `https://<host>/.well-known/matrix/server`, or null when there is none (any error, bad JSON,
 * missing or invalid `m.server`). Results, including failures, are cached.
 */
export async function wellKnownDelegation(host: string, deps: DiscoveryDeps): Promise<string | null> {
  const now = deps.now();
  const cached = deps.cache.wellKnown.get(host);
  if (cached && cached.expires > now) return cached.value;

  let result: { value: string | null; ttl: number | undefined; failed: boolean };
  try {
    result = await fetchWellKnown(host, deps);
  } catch {
    result = { value: null, ttl: undefined, failed: true };
  }
  if (result.failed) {
    const failures = (cached?.failures ?? 0) + 1;
    const ttl = Math.min(WELL_KNOWN_ERROR_TTL_MAX_MS, WELL_KNOWN_ERROR_TTL_MIN_MS * 2 ** (failures - 1));
    deps.cache.put(deps.cache.wellKnown, host, { value: null, expires: now + ttl, failures });
  } else {
    const ttl = Math.max(WELL_KNOWN_MIN_TTL_MS, Math.min(WELL_KNOWN_MAX_TTL_MS, result.ttl ?? WELL_KNOWN_DEFAULT_TTL_MS));
    deps.cache.put(deps.cache.wellKnown, host, { value: result.value, expires: now + ttl });
  }
  return result.value;
}

async function fetchWellKnown(
  host: string,
  deps: DiscoveryDeps,
): Promise<{ value: string | null; ttl: number | undefined; failed: boolean }> {
  const res = await deps.fetch(`https://${host}/.well-known/matrix/server`, {
    redirect: "follow",
    signal: AbortSignal.timeout(WELL_KNOWN_TIMEOUT_MS),
    headers: { accept: "application/json" },
  });
  const ttl = cacheLifetimeMs(res.headers, deps.now());
  if (res.status !== 200) {
    await res.body?.cancel();
    return { value: null, ttl, failed: true };
  }
  const text = await readLimited(res, WELL_KNOWN_MAX_BYTES);
  if (text === undefined) return { value: null, ttl, failed: true };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { value: null, ttl, failed: true };
  }
  const server = typeof body === "object" && body !== null ? (body as Record<string, unknown>)["m.server"] : undefined;
  if (typeof server !== "string") return { value: null, ttl, failed: true };
  try {
    parseServerName(server);
  } catch {
    return { value: null, ttl, failed: true };
  }
  return { value: server, ttl, failed: false };
}

/** How long a response may be cached, from `Cache-Control` (no-store/no-cache/max-age) or `Expires`. */
export function cacheLifetimeMs(headers: Headers, now: number): number | undefined {
  const cc = headers.get("cache-control");
  if (cc) {
    const directives = cc.toLowerCase().split(",").map((d) => d.trim());
    if (directives.includes("no-store") || directives.includes("no-cache")) return 0;
    for (const d of directives) {
      const m = /^max-age\s*=\s*"?(\d+)"?$/.exec(d);
      if (m) return Number(m[1]) * 1000;
    }
  }
  const expires = headers.get("expires");
  if (expires) {
    const t = Date.parse(expires);
    if (!Number.isNaN(t)) return Math.max(0, t - now);
  }
  return undefined;
}

async function readLimited(res: Response, maxBytes: number): Promise<string | undefined> {
  const buf = await res.arrayBuffer();
  if (buf.byteLength > maxBytes) return undefined;
  return new TextDecoder().decode(buf);
}

/** `_matrix-fed._tcp.<host>`, then the deprecated `_matrix._tcp.<host>`; null when neither has a usable record. */
export async function lookupSrv(host: string, deps: DiscoveryDeps): Promise<SrvTarget | null> {
  for (const service of ["_matrix-fed._tcp", "_matrix._tcp"]) {
    const found = await srvRecord(`${service}.${host}`, deps);
    if (found) return found;
  }
  return null;
}

async function srvRecord(name: string, deps: DiscoveryDeps): Promise<SrvTarget | null> {
  const now = deps.now();
  const cached = deps.cache.srv.get(name);
  if (cached && cached.expires > now) return cached.value;
  let value: SrvTarget | null = null;
  let ttlMs = SRV_MIN_TTL_MS;
  try {
    const url = new URL(deps.dohUrl);
    url.searchParams.set("name", name);
    url.searchParams.set("type", "SRV");
    const res = await deps.fetch(url.toString(), {
      headers: { accept: "application/dns-json" },
      signal: AbortSignal.timeout(DOH_TIMEOUT_MS),
    });
    if (res.ok) {
      const answer = parseDohSrv(await res.json());
      value = answer.target;
      if (answer.ttlSeconds !== undefined) ttlMs = answer.ttlSeconds * 1000;
    } else {
      await res.body?.cancel();
    }
  } catch {
    value = null;
  }
  ttlMs = Math.max(SRV_MIN_TTL_MS, Math.min(SRV_MAX_TTL_MS, ttlMs));
  deps.cache.put(deps.cache.srv, name, { value, expires: now + ttlMs });
  return value;
}

/**
 * Picks the SRV record to use from a DNS JSON answer (RFC 8427-style, as Cloudflare and Google serve it): the
 * lowest priority, then the highest weight (deterministic rather than RFC 2782's weighted random choice: a
 * DestinationDO keeps talking to one target). A target of "." means "no service here".
 */
export function parseDohSrv(body: unknown): { target: SrvTarget | null; ttlSeconds: number | undefined } {
  if (typeof body !== "object" || body === null) return { target: null, ttlSeconds: undefined };
  const { Status, Answer } = body as { Status?: unknown; Answer?: unknown };
  if (Status !== 0 || !Array.isArray(Answer)) return { target: null, ttlSeconds: undefined };
  let best: { priority: number; weight: number; port: number; target: string; ttl: number } | undefined;
  for (const rr of Answer) {
    if (typeof rr !== "object" || rr === null) continue;
    const { type, data, TTL } = rr as { type?: unknown; data?: unknown; TTL?: unknown };
    if (type !== 33 || typeof data !== "string") continue;
    const parts = data.trim().split(/\s+/);
    if (parts.length !== 4) continue;
    const [priority, weight, port] = parts.slice(0, 3).map(Number) as [number, number, number];
    const target = parts[3]!.replace(/\.$/, "");
    if (![priority, weight, port].every((n) => Number.isInteger(n) && n >= 0 && n <= 65535)) continue;
    const candidate = { priority, weight, port, target, ttl: typeof TTL === "number" ? TTL : 0 };
    if (
      !best ||
      candidate.priority < best.priority ||
      (candidate.priority === best.priority && candidate.weight > best.weight)
    ) {
      best = candidate;
    }
  }
  if (!best || best.target === "" || best.port === 0) return { target: null, ttlSeconds: best?.ttl };
  return { target: { target: best.target, port: best.port }, ttlSeconds: best.ttl };
}
