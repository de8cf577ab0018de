/**
 * https://spec.matrix.org/v1.19/server-server-api/#get_matrixkeyv2server
 * The server's own key document, signed by its current key.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { getConfig } from "../../config";
import { getServerKeys, type ServerKeys } from "../../server-keys";
import { publicKeyBase64, signJson } from "../../protocol/signing";

/** How long remote servers may cache our keys before asking again. */
export const KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000;

export const serverKeys = new Hono<AppEnv>();

serverKeys.get("/_matrix/key/v2/server", async (c) => {
  const keys = await getServerKeys(c.env);
  return c.json(serverKeyDocument(getConfig(c.env).serverName, keys, Date.now()));
});
// Deprecated form with a key ID; the whole document is returned either way.
serverKeys.get("/_matrix/key/v2/server/:keyId", async (c) => {
  const keys = await getServerKeys(c.env);
  return c.json(serverKeyDocument(getConfig(c.env).serverName, keys, Date.now()));
});

export function serverKeyDocument(serverName: string, keys: ServerKeys, now: number) {
  const doc = {
    server_name: serverName,
    valid_until_ts: now + KEY_VALIDITY_MS,
    verify_keys: { [keys.current.keyId]: { key: publicKeyBase64(keys.current) } },
    old_verify_keys: Object.fromEntries(
      keys.old.map((k) => [k.keyId, { key: k.publicKey, expired_ts: k.expiredTs }]),
    ),
  };
  return signJson(doc, serverName, keys.current);
}
