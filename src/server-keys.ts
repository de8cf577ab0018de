/**
 * This server's signing keys. The current key comes from `SIGNING_KEY`, or — when it is not configured — is
 * generated once and kept in D1, so a local development server keeps its identity across restarts. Every key
 * ever used is recorded in D1; keys no longer current are served as `old_verify_keys`.
 */
import type { Env } from "./env";
import { encodeBase64, decodeBase64 } from "./protocol/base64";
import { generateSigningKey, parseSigningKey, publicKeyBase64, signingKeyFromSeed, type SigningKey } from "./protocol/signing";
import { ConfigError } from "./config";

export interface ServerKeys {
  current: SigningKey;
  /** Earlier keys: key ID → public key (unpadded base64) and when it stopped being used. */
  old: { keyId: string; publicKey: string; expiredTs: number }[];
}

interface KeyRow {
  key_id: string;
  public_key: string;
  seed: string | null;
  created_ts: number;
  expired_ts: number | null;
}

/** One load per isolate and configuration: keys change only on redeploy. */
const loaded = new Map<string, Promise<ServerKeys>>();

export function getServerKeys(env: Env): Promise<ServerKeys> {
  const cacheKey = env.SIGNING_KEY ?? "";
  let keys = loaded.get(cacheKey);
  if (!keys) {
    keys = loadServerKeys(env);
    loaded.set(cacheKey, keys);
    keys.catch(() => loaded.delete(cacheKey));
  }
  return keys;
}

async function loadServerKeys(env: Env): Promise<ServerKeys> {
  const now = Date.now();
  let current: SigningKey;
  if (env.SIGNING_KEY) {
    try {
      current = parseSigningKey(env.SIGNING_KEY.trim());
    } catch (e) {
      throw new ConfigError(`SIGNING_KEY: ${(e as Error).message}`);
    }
    await env.DB.prepare(
      "INSERT OR IGNORE INTO server_signing_keys (key_id, public_key, seed, created_ts) VALUES (?, ?, NULL, ?)",
    )
      .bind(current.keyId, publicKeyBase64(current), now)
      .run();
  } else {
    current = await generatedKey(env, now);
  }
  // Whatever else was current before is now an old key.
  await env.DB.prepare("UPDATE server_signing_keys SET expired_ts = ? WHERE key_id != ? AND expired_ts IS NULL")
    .bind(now, current.keyId)
    .run();
  await env.DB.prepare("UPDATE server_signing_keys SET expired_ts = NULL WHERE key_id = ?").bind(current.keyId).run();
  const rows = await env.DB.prepare(
    "SELECT key_id, public_key, expired_ts FROM server_signing_keys WHERE key_id != ? AND expired_ts IS NOT NULL",
  )
    .bind(current.keyId)
    .all<KeyRow>();
  return {
    current,
    old: rows.results.map((r) => ({ keyId: r.key_id, publicKey: r.public_key, expiredTs: r.expired_ts! })),
  };
}

/** The generated key: the newest stored one with a seed, or a new one (first writer wins under races). */
async function generatedKey(env: Env, now: number): Promise<SigningKey> {
  const find = () =>
    env.DB.prepare(
      "SELECT key_id, seed FROM server_signing_keys WHERE seed IS NOT NULL ORDER BY created_ts DESC, key_id LIMIT 1",
    ).first<KeyRow>();
  let row = await find();
  if (!row) {
    const version = `a_${encodeBase64(crypto.getRandomValues(new Uint8Array(3))).replace(/[^A-Za-z0-9]/g, "x")}`;
    const key = generateSigningKey(version);
    // A conditional insert: only the first isolate to get here creates the key.
    await env.DB.prepare(
      `INSERT INTO server_signing_keys (key_id, public_key, seed, created_ts)
       SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM server_signing_keys WHERE seed IS NOT NULL)`,
    )
      .bind(key.keyId, publicKeyBase64(key), encodeBase64(key.seed), now)
      .run();
    row = await find();
  }
  if (!row?.seed) throw new Error("could not create or read the generated signing key");
  return signingKeyFromSeed(row.key_id.slice("ed25519:".length), decodeBase64(row.seed));
}
