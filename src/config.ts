/**
 * Configuration from the Worker's environment, validated once per isolate. A bad value fails every request with
 * a clear message rather than half-working.
 */
import type { Env } from "./env";
import { parseServerName } from "./protocol/identifiers";
// --- application services (docs/appservices.md) ---
import { parseRegistrations } from "./appservices/registration";
import { AppServiceRegistry } from "./appservices/registry";

export interface Config {
  serverName: string;
  /** Server name → base URL (no trailing slash). Consulted before any server discovery. */
  federationOverrides: ReadonlyMap<string, string>;
  registrationEnabled: boolean;
  registrationSharedSecret: string | undefined;
  /** /register needs a registration token (REGISTRATION_REQUIRES_TOKEN, default off). */
  registrationRequiresToken: boolean;
  // --- accounts and authentication (docs/accounts.md) ---
  /** Rate limits by action name (RATE_LIMITS overrides the defaults in src/http/rate-limit.ts; null disables one). */
  rateLimits: ReadonlyMap<string, RateLimitRule | null>;
  /** Lifetime of access tokens issued together with a refresh token (ACCESS_TOKEN_LIFETIME_MS, default 5 min). */
  refreshableAccessTokenLifetimeMs: number;
  /** Whether logged-in users may get a login token for another device (LOGIN_VIA_EXISTING_SESSION, default on). */
  loginViaExistingSession: boolean;
  // --- VoIP and server contacts ---
  /** TURN servers handed to clients by GET /voip/turnServer (TURN_URIS and credentials; see README). */
  turn: TurnConfig;
  /** The document served at /.well-known/matrix/support (SUPPORT_CONTACTS), or null: 404. */
  support: Record<string, unknown> | null;
  // --- application services (docs/appservices.md) ---
  /** Registered application services (APPSERVICE_REGISTRATIONS: YAML documents). */
  appservices: AppServiceRegistry;
  // --- faster joins (docs/faster-joins.md) ---
  /** Whether remote joins ask for partial state (`omit_members`); PARTIAL_JOINS, default on. */
  partialJoins: boolean;
  // --- presence (docs/presence.md) ---
  /** Whether presence is tracked and shared (PRESENCE_ENABLED, default on). */
  presenceEnabled: boolean;
  // --- media (docs/media.md) ---
  /** Largest upload and largest remote media cached, in bytes (MAX_UPLOAD_SIZE, default 50 MiB). */
  maxUploadSize: number;
}

/** TURN credentials: Synapse's turn_shared_secret (time-limited HMAC credentials) or a fixed username/password. */
export interface TurnConfig {
  uris: string[];
  sharedSecret?: string;
  username?: string;
  password?: string;
  /** Lifetime of the credentials handed out (TURN_USER_LIFETIME_MS, default one day). */
  userLifetimeMs: number;
}

/** A token bucket: `burst` actions at once, refilled at `perSecond`. */
export interface RateLimitRule {
  perSecond: number;
  burst: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(`Invalid configuration: ${message}`);
    this.name = "ConfigError";
  }
}

const cache = new WeakMap<object, Config>();

/** Parses the environment into a `Config` (memoised per env object). Throws `ConfigError` on bad input. */
export function getConfig(env: Env): Config {
  let config = cache.get(env);
  if (!config) {
    config = parseConfig(env);
    cache.set(env, config);
  }
  return config;
}

export function parseConfig(env: Env): Config {
  const serverName = (env.SERVER_NAME ?? "").trim();
  if (!serverName) throw new ConfigError("SERVER_NAME is not set");
  try {
    parseServerName(serverName);
  } catch (e) {
    throw new ConfigError(`SERVER_NAME ${JSON.stringify(serverName)}: ${(e as Error).message}`);
  }
  return {
    serverName,
    federationOverrides: parseFederationOverrides(env.FEDERATION_OVERRIDES),
    registrationEnabled: parseBool("ENABLE_REGISTRATION", env.ENABLE_REGISTRATION, false),
    registrationSharedSecret: env.REGISTRATION_SHARED_SECRET || undefined,
    registrationRequiresToken: parseBool("REGISTRATION_REQUIRES_TOKEN", env.REGISTRATION_REQUIRES_TOKEN, false),
    rateLimits: parseRateLimits(env.RATE_LIMITS),
    refreshableAccessTokenLifetimeMs: parsePositiveInt("ACCESS_TOKEN_LIFETIME_MS", env.ACCESS_TOKEN_LIFETIME_MS, 5 * 60_000),
    appservices: new AppServiceRegistry(parseRegistrations(env.APPSERVICE_REGISTRATIONS, serverName), serverName),
    partialJoins: parseBool("PARTIAL_JOINS", env.PARTIAL_JOINS, true), // faster joins
    presenceEnabled: parseBool("PRESENCE_ENABLED", env.PRESENCE_ENABLED, true), // presence
    maxUploadSize: parsePositiveInt("MAX_UPLOAD_SIZE", env.MAX_UPLOAD_SIZE, 50 * 1024 * 1024), // media
    loginViaExistingSession: parseBool("LOGIN_VIA_EXISTING_SESSION", env.LOGIN_VIA_EXISTING_SESSION, true),
    turn: parseTurn(env),
    support: parseSupport(env.SUPPORT_CONTACTS),
  };
}

function parseBool(name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined || value === "") return fallback;
  const v = String(value).trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off"].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(value)}`);
}

function parseFederationOverrides(raw: string | undefined): Map<string, string> {
  const map = new Map<string, string>();
  if (raw === undefined || raw.trim() === "") return map;
  let parsed: unknown;
  try {
    parsed = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch (e) {
    throw new ConfigError(`FEDERATION_OVERRIDES is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("FEDERATION_OVERRIDES must be a JSON object mapping server names to base URLs");
  }
  for (const [name, url] of Object.entries(parsed)) {
    if (typeof url !== "string") throw new ConfigError(`FEDERATION_OVERRIDES[${name}] must be a URL string`);
    let parsedUrl: URL;
    try {
      parsedUrl = new URL(url);
    } catch {
      throw new ConfigError(`FEDERATION_OVERRIDES[${name}] is not a URL: ${JSON.stringify(url)}`);
    }
    if (parsedUrl.protocol !== "http:" && parsedUrl.protocol !== "https:") {
      throw new ConfigError(`FEDERATION_OVERRIDES[${name}] must be an http(s) URL`);
    }
    map.set(name, parsedUrl.origin + parsedUrl.pathname.replace(/\/+$/, ""));
  }
  return map;
}

// --- accounts and authentication ---

function parsePositiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || String(value).trim() === "") return fallback;
  const n = Number(String(value).trim());
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `RATE_LIMITS`: `{"<action>": {"per_second": 0.2, "burst_count": 10} | null, …}` (Synapse's field names). */
function parseRateLimits(raw: string | undefined): Map<string, RateLimitRule | null> {
  const map = new Map<string, RateLimitRule | null>();
  if (raw === undefined || String(raw).trim() === "") return map;
  let parsed: unknown;
  try {
    parsed = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch (e) {
    throw new ConfigError(`RATE_LIMITS is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("RATE_LIMITS must be a JSON object mapping action names to {per_second, burst_count} or null");
  }
  for (const [action, rule] of Object.entries(parsed)) {
    if (rule === null) {
      map.set(action, null);
      continue;
    }
    const r = rule as { per_second?: unknown; burst_count?: unknown };
    const perSecond = r.per_second;
    const burst = r.burst_count;
    if (typeof perSecond !== "number" || !(perSecond > 0) || typeof burst !== "number" || !(burst >= 1)) {
      throw new ConfigError(`RATE_LIMITS[${action}] needs per_second > 0 and burst_count >= 1`);
    }
    map.set(action, { perSecond, burst });
  }
  return map;
}

// --- VoIP and server contacts ---

function parseTurn(env: Env): TurnConfig {
  const raw = env.TURN_URIS?.trim() ?? "";
  let uris: unknown = [];
  if (raw !== "") {
    try {
      uris = raw.startsWith("[") ? JSON.parse(raw) : raw.split(",").map((u) => u.trim()).filter(Boolean);
    } catch (e) {
      throw new ConfigError(`TURN_URIS is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!Array.isArray(uris) || !uris.every((u) => typeof u === "string" && /^turns?:/.test(u))) {
    throw new ConfigError("TURN_URIS must be a comma-separated list or JSON array of turn: / turns: URIs");
  }
  const turn: TurnConfig = {
    uris: uris as string[],
    userLifetimeMs: parsePositiveInt("TURN_USER_LIFETIME_MS", env.TURN_USER_LIFETIME_MS, 86_400_000),
  };
  if (env.TURN_SHARED_SECRET) turn.sharedSecret = env.TURN_SHARED_SECRET;
  if (env.TURN_USERNAME) turn.username = env.TURN_USERNAME;
  if (env.TURN_PASSWORD) turn.password = env.TURN_PASSWORD;
  return turn;
}

/** SUPPORT_CONTACTS: the JSON of /.well-known/matrix/support (`contacts` and/or `support_page`). */
function parseSupport(raw: string | undefined): Record<string, unknown> | null {
  if (raw === undefined || raw.trim() === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`SUPPORT_CONTACTS is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("SUPPORT_CONTACTS must be a JSON object with `contacts` and/or `support_page`");
  }
  const doc = parsed as Record<string, unknown>;
  const contacts = doc.contacts;
  if (contacts !== undefined) {
    const ok =
      Array.isArray(contacts) &&
      contacts.every(
        (x) =>
          typeof x === "object" && x !== null && typeof (x as Record<string, unknown>).role === "string" &&
          ((x as Record<string, unknown>).matrix_id !== undefined || (x as Record<string, unknown>).email_address !== undefined),
      );
    if (!ok) throw new ConfigError("SUPPORT_CONTACTS.contacts must be an array of {role, matrix_id and/or email_address}");
  }
  if (doc.support_page !== undefined && typeof doc.support_page !== "string") {
    throw new ConfigError("SUPPORT_CONTACTS.support_page must be a URL string");
  }
  if (contacts === undefined && doc.support_page === undefined) {
    throw new ConfigError("SUPPORT_CONTACTS needs `contacts` or `support_page`");
  }
  return doc;
}
