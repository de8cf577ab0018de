/**
 * Remote servers' signing keys (https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys).
 *
 * A key is looked up in D1 first. When it is unknown, or not known to be valid until the time it is needed for,
 * the server's own `/_matrix/key/v2/server` is fetched (the document must be signed by the server with its
 * listed keys and name the server), then each configured notary (`TRUSTED_KEY_SERVERS`) is asked through
 * `POST /_matrix/key/v2/query` (the notary must sign the documents too). What is learnt is stored in D1:
 * `remote_server_keys` for lookups, `remote_server_key_documents` for serving as a notary ourselves.
 *
 * Validity: a current key is valid until min(`valid_until_ts`, fetch time + 7 days); an old key
 * (`old_verify_keys`) until its `expired_ts`. Request signatures need a key valid now; event signatures in room
 * versions 5+ need a key valid at the event's `origin_server_ts`, and in every version a key that expired before
 * the event's timestamp is ignored.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { getServerKeys } from "../server-keys";
import { publicKeyBase64, verifyJsonSignature, verifyJsonSignatureWebCrypto } from "../protocol/signing";
import { tryDecodeBase64 } from "../protocol/base64";
import { isValidServerName, MatrixIdError } from "../protocol/identifiers";
import { redactEvent } from "../protocol/redaction";
import { requiredSignatureServers } from "../protocol/pdu-format";
import type { RoomVersion } from "../protocol/room-versions";
import { federationSettings, type TrustedKeyServer } from "./settings";
import { FederationClient } from "./client";

/** Servers may not make their keys valid for longer than this from when we fetched them. */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000;
/** After a fetch that did not produce a wanted key, the same server is not asked again for this long. */
export const REFETCH_COOLDOWN_MS = 30 * 1000;

export interface VerifyKey {
  serverName: string;
  keyId: string;
  publicKey: string;
  validUntilTs: number;
  /** Set for keys the server listed as old (`old_verify_keys`). */
  expiredTs: number | null;
}

/** A server's key document (`/_matrix/key/v2/server`), as received. */
export interface KeyDocument {
  server_name: string;
  valid_until_ts: number;
  verify_keys: Record<string, { key: string }>;
  old_verify_keys?: Record<string, { key: string; expired_ts: number }>;
  signatures: Record<string, Record<string, string>>;
}

type KeyRow = {
  server_name: string;
  key_id: string;
  public_key: string;
  valid_until_ts: number;
  expired_ts: number | null;
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks that `doc` is a well-formed key document of `serverName`, signed by the server with at least one of its
 * `verify_keys` and with no bad signature from those keys. Returns the reason it is not, or undefined.
 */
export function keyDocumentProblem(doc: unknown, serverName: string): string | undefined {
  if (!isObject(doc)) return "key document is not an object";
  if (doc.server_name !== serverName) return `key document is for ${JSON.stringify(doc.server_name)}, not ${serverName}`;
  if (typeof doc.valid_until_ts !== "number" || !Number.isInteger(doc.valid_until_ts)) return "valid_until_ts is not an integer";
  if (!isObject(doc.verify_keys)) return "verify_keys is not an object";
  for (const [keyId, k] of Object.entries(doc.verify_keys)) {
    if (!isObject(k) || typeof k.key !== "string") return `verify_keys[${keyId}] has no key`;
  }
  if (doc.old_verify_keys !== undefined) {
    if (!isObject(doc.old_verify_keys)) return "old_verify_keys is not an object";
    for (const [keyId, k] of Object.entries(doc.old_verify_keys)) {
      if (!isObject(k) || typeof k.key !== "string" || typeof k.expired_ts !== "number") {
        return `old_verify_keys[${keyId}] needs key and expired_ts`;
      }
    }
  }
  const sigs = isObject(doc.signatures) ? doc.signatures[serverName] : undefined;
  if (!isObject(sigs)) return `key document is not signed by ${serverName}`;
  let verified = 0;
  for (const keyId of Object.keys(sigs)) {
    const key = (doc.verify_keys as Record<string, { key: string }>)[keyId];
    if (!key || !keyId.startsWith("ed25519:")) continue;
    if (!verifyJsonSignature(doc, serverName, keyId, key.key)) return `bad self-signature with ${keyId}`;
    verified++;
  }
  if (verified === 0) return `key document is not signed by any of ${serverName}'s verify_keys`;
  return undefined;
}

/** Key rows (current and old) described by a verified key document fetched at `fetchedTs`. */
export function keysOfDocument(doc: KeyDocument, fetchedTs: number): VerifyKey[] {
  const out: VerifyKey[] = [];
  const currentUntil = Math.min(doc.valid_until_ts, fetchedTs + MAX_KEY_VALIDITY_MS);
  for (const [keyId, k] of Object.entries(doc.old_verify_keys ?? {})) {
    if (!keyId.startsWith("ed25519:") || tryDecodeBase64(k.key)?.length !== 32) continue;
    out.push({ serverName: doc.server_name, keyId, publicKey: k.key, validUntilTs: k.expired_ts, expiredTs: k.expired_ts });
  }
  for (const [keyId, k] of Object.entries(doc.verify_keys)) {
    if (!keyId.startsWith("ed25519:") || tryDecodeBase64(k.key)?.length !== 32) continue;
    out.push({ serverName: doc.server_name, keyId, publicKey: k.key, validUntilTs: currentUntil, expiredTs: null });
  }
  return out;
}

/** In-flight fetches per server (one at a time) and when each server was last asked. Per isolate. */
const inFlight = new Map<string, Promise<void>>();
const lastFetch = new Map<string, number>();

export interface KeyStoreOptions {
  client?: FederationClient;
  now?: () => number;
}

export class KeyStore {
  private readonly client: FederationClient;
  private readonly now: () => number;

  constructor(
    private readonly env: Env,
    opts: KeyStoreOptions = {},
  ) {
    this.client = opts.client ?? new FederationClient(env);
    this.now = opts.now ?? Date.now;
  }

  /**
   * The keys of `serverName` among `keyIds` that are known to be valid at `minValidTs` (0: any known key),
   * fetching the server's keys (then asking notaries) when one of them is missing or not valid long enough.
   */
  async keys(serverName: string, keyIds: readonly string[], minValidTs: number): Promise<Map<string, VerifyKey>> {
    const ours = await this.ownKeys(serverName);
    if (ours) return new Map(ours.filter((k) => keyIds.includes(k.keyId)).map((k) => [k.keyId, k]));

    let found = await this.stored(serverName, keyIds);
    const satisfied = () => keyIds.every((id) => (found.get(id)?.validUntilTs ?? -1) >= minValidTs);
    if (satisfied() || !isValidServerName(serverName)) return found;

    const last = lastFetch.get(serverName);
    if (last === undefined || this.now() - last >= REFETCH_COOLDOWN_MS) {
      await this.fetchOnce(serverName, keyIds, minValidTs);
      found = await this.stored(serverName, keyIds);
    }
    return found;
  }

  /** One key valid at `minValidTs`, or undefined. */
  async key(serverName: string, keyId: string, minValidTs: number): Promise<VerifyKey | undefined> {
    const k = (await this.keys(serverName, [keyId], minValidTs)).get(keyId);
    return k && k.validUntilTs >= minValidTs ? k : undefined;
  }

  /** Fetches a server's keys directly, then from notaries, sharing one fetch among concurrent callers. */
  private fetchOnce(serverName: string, keyIds: readonly string[], minValidTs: number): Promise<void> {
    let p = inFlight.get(serverName);
    if (!p) {
      p = (async () => {
        try {
          const direct = await this.fetchDirect(serverName).catch(() => false);
          if (direct) {
            const got = await this.stored(serverName, keyIds);
            if (keyIds.every((id) => (got.get(id)?.validUntilTs ?? -1) >= minValidTs)) return;
          }
          await this.fetchFromNotaries(serverName, keyIds, minValidTs);
        } finally {
          lastFetch.set(serverName, this.now());
          if (lastFetch.size > 10_000) lastFetch.delete(lastFetch.keys().next().value!);
          inFlight.delete(serverName);
        }
      })();
      inFlight.set(serverName, p);
    }
    return p;
  }

  /** GET `/_matrix/key/v2/server` from the server itself. Returns whether a valid document was stored. */
  async fetchDirect(serverName: string): Promise<boolean> {
    const doc = await this.client.request<unknown>(serverName, "GET", "/_matrix/key/v2/server", undefined, {
      signed: false,
      timeoutMs: 10_000,
    });
    const problem = keyDocumentProblem(doc, serverName);
    if (problem) {
      console.warn(`keys: rejecting ${serverName}'s key document: ${problem}`);
      return false;
    }
    await this.storeDocument(doc as KeyDocument, serverName);
    return true;
  }

  /** Asks each trusted notary in turn until one vouches for keys that satisfy the request. */
  async fetchFromNotaries(serverName: string, keyIds: readonly string[], minValidTs: number): Promise<boolean> {
    for (const notary of federationSettings(this.env).trustedKeyServers) {
      if (notary.serverName === serverName) continue;
      try {
        const criteria = Object.fromEntries(keyIds.map((id) => [id, { minimum_valid_until_ts: minValidTs }]));
        const res = await this.client.request<{ server_keys?: unknown }>(
          notary.serverName,
          "POST",
          "/_matrix/key/v2/query",
          { server_keys: { [serverName]: criteria } },
          { signed: false, timeoutMs: 10_000 },
        );
        if (!Array.isArray(res.server_keys)) continue;
        let stored = false;
        for (const doc of res.server_keys) {
          if (!isObject(doc) || doc.server_name !== serverName) continue;
          const problem = keyDocumentProblem(doc, serverName);
          if (problem) continue;
          if (!(await this.notarySigned(doc, notary))) continue;
          await this.storeDocument(doc as unknown as KeyDocument, notary.serverName);
          stored = true;
        }
        if (stored) {
          const got = await this.stored(serverName, keyIds);
          if (keyIds.every((id) => (got.get(id)?.validUntilTs ?? -1) >= minValidTs)) return true;
        }
      } catch (e) {
        console.warn(`keys: notary ${notary.serverName} failed for ${serverName}: ${(e as Error).message}`);
      }
    }
    return false;
  }

  /** Whether the notary signed `doc` with one of its keys (pinned in the configuration, or its own current keys). */
  private async notarySigned(doc: Record<string, unknown>, notary: TrustedKeyServer): Promise<boolean> {
    const sigs = isObject(doc.signatures) ? doc.signatures[notary.serverName] : undefined;
    if (!isObject(sigs)) return false;
    for (const keyId of Object.keys(sigs)) {
      let publicKey = notary.verifyKeys?.[keyId];
      if (publicKey === undefined && notary.verifyKeys === undefined) {
        publicKey = (await this.key(notary.serverName, keyId, this.now()))?.publicKey;
      }
      if (publicKey !== undefined && verifyJsonSignature(doc, notary.serverName, keyId, publicKey)) return true;
    }
    return false;
  }

  /** Stores a verified document: its keys, and the document itself (the server's own signatures only). */
  async storeDocument(doc: KeyDocument, fetchedFrom: string): Promise<void> {
    const now = this.now();
    const keys = keysOfDocument(doc, now);
    const db = this.env.DB;
    const own: KeyDocument = { ...doc, signatures: { [doc.server_name]: doc.signatures[doc.server_name]! } };
    await db.batch([
      ...keys.map((k) =>
        db
          .prepare(
            `INSERT INTO remote_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts, fetched_from)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (server_name, key_id) DO UPDATE SET
               public_key = excluded.public_key,
               -- an old key stays old; a current key's validity only moves forward
               expired_ts = coalesce(remote_server_keys.expired_ts, excluded.expired_ts),
               valid_until_ts = CASE
                 WHEN coalesce(remote_server_keys.expired_ts, excluded.expired_ts) IS NOT NULL
                   THEN coalesce(remote_server_keys.expired_ts, excluded.expired_ts)
                 ELSE max(remote_server_keys.valid_until_ts, excluded.valid_until_ts) END,
               fetched_ts = excluded.fetched_ts,
               fetched_from = excluded.fetched_from`,
          )
          .bind(k.serverName, k.keyId, k.publicKey, k.validUntilTs, k.expiredTs, now, fetchedFrom),
      ),
      db
        .prepare(
          `INSERT INTO remote_server_key_documents (server_name, document, valid_until_ts, fetched_ts) VALUES (?, ?, ?, ?)
           ON CONFLICT (server_name) DO UPDATE SET document = excluded.document, valid_until_ts = excluded.valid_until_ts,
             fetched_ts = excluded.fetched_ts
           WHERE excluded.valid_until_ts >= remote_server_key_documents.valid_until_ts`,
        )
        .bind(doc.server_name, JSON.stringify(own), doc.valid_until_ts, now),
    ]);
  }

  /** The newest stored key document of a server (for the notary endpoint). */
  async storedDocument(serverName: string): Promise<{ document: KeyDocument; validUntilTs: number } | undefined> {
    const row = await this.env.DB.prepare(
      "SELECT document, valid_until_ts FROM remote_server_key_documents WHERE server_name = ?",
    )
      .bind(serverName)
      .first<{ document: string; valid_until_ts: number }>();
    return row ? { document: JSON.parse(row.document) as KeyDocument, validUntilTs: row.valid_until_ts } : undefined;
  }

  private async stored(serverName: string, keyIds: readonly string[]): Promise<Map<string, VerifyKey>> {
    if (keyIds.length === 0) return new Map();
    const rows = await this.env.DB.prepare(
      `SELECT server_name, key_id, public_key, valid_until_ts, expired_ts FROM remote_server_keys
       WHERE server_name = ? AND key_id IN (${keyIds.map(() => "?").join(",")})`,
    )
      .bind(serverName, ...keyIds)
      .all<KeyRow>();
    return new Map(
      rows.results.map((r) => [
        r.key_id,
        { serverName: r.server_name, keyId: r.key_id, publicKey: r.public_key, validUntilTs: r.valid_until_ts, expiredTs: r.expired_ts },
      ]),
    );
  }

  /** Our own keys when `serverName` is us (never fetched over the network). */
  private async ownKeys(serverName: string): Promise<VerifyKey[] | undefined> {
    if (serverName !== getConfig(this.env).serverName) return undefined;
    const keys = await getServerKeys(this.env);
    return [
      {
        serverName,
        keyId: keys.current.keyId,
        publicKey: publicKeyBase64(keys.current),
        validUntilTs: Number.MAX_SAFE_INTEGER,
        expiredTs: null,
      },
      ...keys.old.map((k) => ({ serverName, keyId: k.keyId, publicKey: k.publicKey, validUntilTs: k.expiredTs, expiredTs: k.expiredTs })),
    ];
  }
}

// -------------------------------------------------------------------------------------------------------------
// Event signatures

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

interface PendingCheck {
  index: number;
  server: string;
  keyId: string;
  redacted: object;
}

/**
 * Checks the signatures an event needs (https://spec.matrix.org/v1.19/server-server-api/#validating-hashes-and-signatures-on-received-events):
 * for each server in `requiredSignatureServers` (the sender's server, v1–v2 the event ID's server, restricted
 * joins the authorising server), at least one signature by a known key of that server, and every signature by a
 * known, usable key valid. Keys that are unknown, or that expired before the event (and in v5+ rooms keys not
 * valid at the event's `origin_server_ts`), are skipped. The content hash is not checked here.
 */
export async function verifyEventSignatures(pdu: object, roomVersion: RoomVersion, keys: KeyStore): Promise<SignatureCheck> {
  return (await verifyEventsSignatures([{ pdu, roomVersion }], keys))[0]!;
}

/**
 * {@link verifyEventSignatures} for many events at once: keys are fetched once per server (for the latest
 * timestamp needed) and all signatures are verified concurrently through WebCrypto.
 */
export async function verifyEventsSignatures(
  events: readonly { pdu: object; roomVersion: RoomVersion }[],
  keys: KeyStore,
): Promise<SignatureCheck[]> {
  const results: (SignatureCheck | undefined)[] = new Array(events.length).fill(undefined);
  // Per event: the servers and key IDs to check; per server: the key IDs and the latest validity needed.
  const wanted = new Map<string, { keyIds: Set<string>; minValidTs: number }>();
  const plans: { servers: { server: string; keyIds: string[] }[]; redacted: object; ts: number; enforce: boolean }[] = [];
  events.forEach(({ pdu, roomVersion }, i) => {
    const e = pdu as { origin_server_ts?: unknown; signatures?: unknown };
    let servers: string[];
    let redacted: object;
    try {
      servers = requiredSignatureServers(pdu, roomVersion);
      redacted = redactEvent(pdu, roomVersion);
    } catch (err) {
      results[i] = { ok: false, reason: err instanceof MatrixIdError ? err.message : "event cannot be checked" };
      plans.push({ servers: [], redacted: {}, ts: 0, enforce: false });
      return;
    }
    const ts = typeof e.origin_server_ts === "number" ? e.origin_server_ts : 0;
    const sigs = isObject(e.signatures) ? e.signatures : {};
    const plan = { servers: [] as { server: string; keyIds: string[] }[], redacted, ts, enforce: roomVersion.enforceKeyValidity };
    for (const server of servers) {
      const byServer = sigs[server];
      const keyIds = isObject(byServer) ? Object.keys(byServer).filter((k) => k.startsWith("ed25519:")) : [];
      if (keyIds.length === 0) {
        results[i] ??= { ok: false, reason: `not signed by ${server}` };
        continue;
      }
      plan.servers.push({ server, keyIds });
      const w = wanted.get(server) ?? { keyIds: new Set<string>(), minValidTs: 0 };
      for (const k of keyIds) w.keyIds.add(k);
      if (plan.enforce) w.minValidTs = Math.max(w.minValidTs, ts);
      wanted.set(server, w);
    }
    plans.push(plan);
  });

  const known = new Map<string, Map<string, VerifyKey>>();
  await Promise.all(
    [...wanted].map(async ([server, w]) => {
      try {
        known.set(server, await keys.keys(server, [...w.keyIds], w.minValidTs));
      } catch {
        known.set(server, new Map());
      }
    }),
  );

  const checks: (PendingCheck & { publicKey: string })[] = [];
  plans.forEach((plan, i) => {
    if (results[i]) return;
    for (const { server, keyIds } of plan.servers) {
      let usable = 0;
      for (const keyId of keyIds) {
        const k = known.get(server)?.get(keyId);
        if (!k) continue;
        if (k.expiredTs !== null && k.expiredTs < plan.ts) continue; // expired before the event
        if (plan.enforce && k.validUntilTs < plan.ts) continue; // v5+: not valid when the event was sent
        checks.push({ index: i, server, keyId, redacted: plan.redacted, publicKey: k.publicKey });
        usable++;
      }
      if (usable === 0) results[i] ??= { ok: false, reason: `no known valid key of ${server} signed the event` };
    }
  });

  const outcomes = await Promise.all(
    checks.map((c) => verifyJsonSignatureWebCrypto(c.redacted, c.server, c.keyId, c.publicKey)),
  );
  checks.forEach((c, j) => {
    if (!outcomes[j]) results[c.index] ??= { ok: false, reason: `bad signature by ${c.server} (${c.keyId})` };
  });
  return results.map((r) => r ?? { ok: true });
}
