/**
 * The notary endpoints (https://spec.matrix.org/v1.19/server-server-api/#querying-keys-through-another-server):
 * GET /_matrix/key/v2/query/{serverName} and POST /_matrix/key/v2/query.
 *
 * For our own name we return our key document. For another server we return its key document as it signed it
 * (from D1), fetching it from the server first when we hold none or the one we hold is not valid until
 * `minimum_valid_until_ts`; when the server cannot be reached the document we hold is served anyway (so old
 * signatures stay checkable). Every document gets our signature added. Servers we know nothing about are left
 * out of the answer.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { badJson } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { getConfig } from "../../config";
import { getServerKeys } from "../../server-keys";
import { signJson } from "../../protocol/signing";
import { isValidServerName } from "../../protocol/identifiers";
import type { Env } from "../../env";
import { KeyStore, type KeyDocument } from "../../federation/keys";
import { serverKeyDocument } from "./server";

/** Most servers one POST may ask about. */
const MAX_SERVERS_PER_QUERY = 100;

export const keyQuery = new Hono<AppEnv>();

keyQuery.get("/_matrix/key/v2/query/:serverName", async (c) => {
  const serverName = c.req.param("serverName");
  const min = parseMinValid(c.req.query("minimum_valid_until_ts"));
  const doc = await notarise(c.env, serverName, min);
  return c.json({ server_keys: doc ? [doc] : [] });
});

keyQuery.post("/_matrix/key/v2/query", async (c) => {
  const body = await readJsonObject(c);
  const criteria = body.server_keys;
  if (typeof criteria !== "object" || criteria === null || Array.isArray(criteria)) {
    throw badJson("server_keys must be an object of server name → key ID → criteria");
  }
  const entries = Object.entries(criteria as Record<string, unknown>);
  if (entries.length > MAX_SERVERS_PER_QUERY) throw badJson(`at most ${MAX_SERVERS_PER_QUERY} servers per query`);
  const now = Date.now();
  const docs = await Promise.all(
    entries.map(([serverName, keys]) => {
      // The latest minimum_valid_until_ts asked for among the key IDs (now when none is given).
      let min = now;
      if (typeof keys === "object" && keys !== null) {
        for (const k of Object.values(keys as Record<string, unknown>)) {
          const ts = (k as { minimum_valid_until_ts?: unknown } | null)?.minimum_valid_until_ts;
          if (typeof ts === "number" && Number.isFinite(ts)) min = Math.max(min, ts);
        }
      }
      return notarise(c.env, serverName, min);
    }),
  );
  return c.json({ server_keys: docs.filter((d) => d !== undefined) });
});

function parseMinValid(raw: string | undefined): number {
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(n) ? n : Date.now();
}

/** The key document of `serverName` signed by us, or undefined when we have none. */
async function notarise(env: Env, serverName: string, minValidTs: number): Promise<object | undefined> {
  const config = getConfig(env);
  const keys = await getServerKeys(env);
  if (serverName === config.serverName) return serverKeyDocument(config.serverName, keys, Date.now());
  if (!isValidServerName(serverName)) return undefined;
  const store = new KeyStore(env);
  let held = await store.storedDocument(serverName);
  if (!held || held.validUntilTs < minValidTs) {
    try {
      if (await store.fetchDirect(serverName)) held = await store.storedDocument(serverName);
    } catch {
      // Unreachable: serve what we hold, if anything.
    }
  }
  if (!held) return undefined;
  return signJson(held.document as KeyDocument, config.serverName, keys.current);
}
