/**
 * Configuration from the Worker's environment, validated once per isolate. A bad value fails every request with
 * a clear message rather than half-working.
 */
import type { Env } from "./env";
import { parseServerName } from "./protocol/identifiers";

export interface Config {
  serverName: string;
  /** Server name → base URL (no trailing slash). Consulted before any server discovery. */
  federationOverrides: ReadonlyMap<string, string>;
  registrationEnabled: boolean;
  registrationSharedSecret: string | undefined;
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
