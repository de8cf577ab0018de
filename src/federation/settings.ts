/**
 * Federation settings from the environment (validated once per env object, like src/config.ts):
 *
 * - `TRUSTED_KEY_SERVERS`: notary servers asked for a server's keys when the server itself cannot be reached.
 *   A JSON array of server names or `{"server_name": "...", "verify_keys": {"ed25519:x": "<base64>"}}` objects;
 *   with `verify_keys` the notary's own key is pinned, without it it is fetched from the notary. Default: none.
 * - `DNS_OVER_HTTPS_URL`: the DNS-over-HTTPS JSON endpoint used for SRV lookups (Workers cannot send raw DNS
 *   queries). Default: Cloudflare's `https://cloudflare-dns.com/dns-query`.
 */
import type { Env } from "../env";
import { ConfigError } from "../config";
import { isValidServerName } from "../protocol/identifiers";
import { tryDecodeBase64 } from "../protocol/base64";

export interface TrustedKeyServer {
  serverName: string;
  /** Pinned keys of the notary (key ID → unpadded base64); undefined: fetch them from the notary itself. */
  verifyKeys?: Record<string, string>;
}

export interface FederationSettings {
  trustedKeyServers: TrustedKeyServer[];
  dohUrl: string;
}

export const DEFAULT_DOH_URL = "https://cloudflare-dns.com/dns-query";

const cache = new WeakMap<object, FederationSettings>();

export function federationSettings(env: Env): FederationSettings {
  let s = cache.get(env);
  if (!s) {
    s = {
      trustedKeyServers: parseTrustedKeyServers(env.TRUSTED_KEY_SERVERS),
      dohUrl: parseDohUrl(env.DNS_OVER_HTTPS_URL),
    };
    cache.set(env, s);
  }
  return s;
}

export function parseTrustedKeyServers(raw: string | undefined): TrustedKeyServer[] {
  if (raw === undefined || raw.trim() === "") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`TRUSTED_KEY_SERVERS is not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new ConfigError("TRUSTED_KEY_SERVERS must be a JSON array");
  return parsed.map((entry, i) => {
    const where = `TRUSTED_KEY_SERVERS[${i}]`;
    if (typeof entry === "string") {
      if (!isValidServerName(entry)) throw new ConfigError(`${where} is not a server name`);
      return { serverName: entry };
    }
    if (typeof entry !== "object" || entry === null) throw new ConfigError(`${where} must be a string or an object`);
    const { server_name, verify_keys } = entry as { server_name?: unknown; verify_keys?: unknown };
    if (typeof server_name !== "string" || !isValidServerName(server_name)) {
      throw new ConfigError(`${where}.server_name is not a server name`);
    }
    if (verify_keys === undefined) return { serverName: server_name };
    if (typeof verify_keys !== "object" || verify_keys === null || Array.isArray(verify_keys)) {
      throw new ConfigError(`${where}.verify_keys must be an object of key ID → base64 key`);
    }
    const keys: Record<string, string> = {};
    for (const [keyId, key] of Object.entries(verify_keys)) {
      if (typeof key !== "string" || tryDecodeBase64(key)?.length !== 32) {
        throw new ConfigError(`${where}.verify_keys[${keyId}] is not an unpadded base64 ed25519 key`);
      }
      keys[keyId] = key;
    }
    return { serverName: server_name, verifyKeys: keys };
  });
}

function parseDohUrl(raw: string | undefined): string {
  if (raw === undefined || raw.trim() === "") return DEFAULT_DOH_URL;
  try {
    const u = new URL(raw.trim());
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("not http(s)");
    return u.toString();
  } catch {
    throw new ConfigError(`DNS_OVER_HTTPS_URL is not an http(s) URL: ${JSON.stringify(raw)}`);
  }
}
