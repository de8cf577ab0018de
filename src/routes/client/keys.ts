/**
 * End-to-end encryption key management (https://spec.matrix.org/v1.19/client-server-api/#key-management-api,
 * #cross-signing):
 *   POST /keys/upload, /keys/query, /keys/claim, GET /keys/changes,
 *   POST /keys/device_signing/upload, /keys/signatures/upload.
 * Each local user's keys live in their UserDO (durable-objects/user/keys.ts). Remote users go through the
 * federation hooks of src/e2ee/federation.ts (until those are implemented, remote servers show up in `failures`).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, invalidParam, missingParam } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { requireUia } from "../../http/uia";
import { getConfig } from "../../config";
import { canonicalJson } from "../../protocol/canonical-json";
import { isValidUserId, serverNameOf } from "../../protocol/identifiers";
import { parseSyncToken } from "../../sync/tokens";
import {
  CROSS_SIGNING_FIELDS,
  CROSS_SIGNING_USAGES,
  checkCrossSigningKey,
  checkDeviceKeys,
  isObject,
  parseKeyMap,
  type JsonObject,
} from "../../e2ee/keys";
import { attempt, unwrap } from "../../e2ee/result";
import { claimRemoteKeys, queryRemoteKeys, RemoteUnavailable } from "../../e2ee/federation";
import type { CrossSigningUpload } from "../../../durable-objects/user/keys";
import type { UserKeys } from "../../../durable-objects/user/keys";
import { reauthOptions } from "./account";

export const keyRoutes = new Hono<AppEnv>();
keyRoutes.use("/keys/*", requireAuth);

/** Runs a pure check, turning its E2eeError into the matching Matrix error. */
function checked<T>(fn: () => T): T {
  return unwrap(attempt(fn));
}

function userStub(c: AppContext, userId: string) {
  return c.env.USERS.get(c.env.USERS.idFromName(userId));
}

/** The default wait for remote servers (the spec's recommendation). */
const DEFAULT_REMOTE_TIMEOUT_MS = 10_000;

function timeoutOf(body: Record<string, unknown>): number {
  const t = body.timeout;
  if (t === undefined) return DEFAULT_REMOTE_TIMEOUT_MS;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0) throw badJson("timeout must be a non-negative number");
  return Math.min(t, 60_000);
}

/** A field that may be absent; `{}` and `null` count as absent (Synapse does the same). */
function present(v: unknown): boolean {
  return v !== undefined && v !== null && !(isObject(v) && Object.keys(v).length === 0);
}

/** Failure entry for an unreachable server. */
function unreachable(e: unknown): Record<string, unknown> {
  return { status: 503, message: e instanceof Error ? e.message : String(e) };
}

/** Splits user IDs into this server's and other servers' (grouped by server). */
function partition(c: AppContext, userIds: Iterable<string>): { local: string[]; remote: Map<string, string[]> } {
  const own = getConfig(c.env).serverName;
  const local: string[] = [];
  const remote = new Map<string, string[]>();
  for (const u of userIds) {
    const server = serverNameOf(u);
    if (server === own) local.push(u);
    else remote.set(server, [...(remote.get(server) ?? []), u]);
  }
  return { local, remote };
}

/** D1 `IN (…)` lists are chunked below the bound-parameter limit. */
async function inChunks<T>(ids: readonly string[], fn: (chunk: string[]) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < ids.length; i += 90) out.push(...(await fn(ids.slice(i, i + 90))));
  return out;
}

/** Which of `userIds` are existing (not deactivated) local accounts. */
async function existingUsers(c: AppContext, userIds: readonly string[]): Promise<Set<string>> {
  const rows = await inChunks(userIds, async (chunk) => {
    const { results } = await c.env.DB.prepare(
      `SELECT user_id FROM users WHERE deactivated = 0 AND user_id IN (${chunk.map(() => "?").join(",")})`,
    )
      .bind(...chunk)
      .all<{ user_id: string }>();
    return results;
  });
  return new Set(rows.map((r) => r.user_id));
}

/** The devices (and display names) of local users. */
async function devicesOf(c: AppContext, userIds: readonly string[]): Promise<Map<string, Map<string, string | null>>> {
  const rows = await inChunks(userIds, async (chunk) => {
    const { results } = await c.env.DB.prepare(
      `SELECT user_id, device_id, display_name FROM devices WHERE user_id IN (${chunk.map(() => "?").join(",")})`,
    )
      .bind(...chunk)
      .all<{ user_id: string; device_id: string; display_name: string | null }>();
    return results;
  });
  const out = new Map<string, Map<string, string | null>>();
  for (const r of rows) {
    let m = out.get(r.user_id);
    if (!m) out.set(r.user_id, (m = new Map()));
    m.set(r.device_id, r.display_name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// POST /keys/upload

keyRoutes.post("/keys/upload", async (c) => {
  const body = await readJsonObject(c);
  const { userId, deviceId } = c.get("requester");
  const fallback = body.fallback_keys ?? body["org.matrix.msc2732.fallback_keys"];
  const upload = checked(() => {
    let deviceKeys: string | null = null;
    if (present(body.device_keys)) {
      // For this very user and device, and signed by the device's own Ed25519 key.
      checkDeviceKeys(body.device_keys, userId, deviceId);
      deviceKeys = canonicalJson(body.device_keys);
    }
    return {
      deviceKeys,
      oneTimeKeys: present(body.one_time_keys) ? parseKeyMap(body.one_time_keys, "one_time_keys") : [],
      fallbackKeys: present(fallback) ? parseKeyMap(fallback, "fallback_keys") : [],
    };
  });
  const counts = unwrap(await userStub(c, userId).uploadKeys(userId, deviceId, upload));
  return c.json({ one_time_key_counts: counts });
});

// ---------------------------------------------------------------------------------------------------------
// POST /keys/query

/** `{user: [device IDs]}` of a query body; an empty list means all devices. */
function parseDeviceKeysQuery(v: unknown): Map<string, string[] | null> {
  if (v === undefined) throw missingParam("Missing 'device_keys'");
  if (!isObject(v)) throw badJson("device_keys must be an object");
  const out = new Map<string, string[] | null>();
  for (const [user, devices] of Object.entries(v)) {
    if (!isValidUserId(user)) throw invalidParam(`${JSON.stringify(user)} is not a user ID`);
    if (devices !== null && (!Array.isArray(devices) || !devices.every((d) => typeof d === "string"))) {
      throw badJson(`device_keys.${user} must be a list of device IDs`);
    }
    out.set(user, devices && devices.length > 0 ? (devices as string[]) : null);
  }
  return out;
}

function masterPublicKey(key: unknown, userId: string): string | undefined {
  const r = attempt(() => checkCrossSigningKey(key, userId, "master"));
  return r.ok ? r.value.publicKey : undefined;
}

keyRoutes.post("/keys/query", async (c) => {
  const body = await readJsonObject(c);
  const viewer = c.get("requester").userId;
  const query = parseDeviceKeysQuery(body.device_keys);
  const timeout = timeoutOf(body);
  const { local, remote } = partition(c, query.keys());

  const device_keys: Record<string, Record<string, JsonObject>> = {};
  const master_keys: Record<string, JsonObject> = {};
  const self_signing_keys: Record<string, JsonObject> = {};
  const user_signing_keys: Record<string, JsonObject> = {};
  const failures: Record<string, unknown> = {};

  const [existing, devices] = await Promise.all([existingUsers(c, local), devicesOf(c, local)]);
  await Promise.all(
    local.map(async (userId) => {
      device_keys[userId] = {};
      if (!existing.has(userId)) return;
      const keys = JSON.parse(await userStub(c, userId).queryKeys(userId, viewer, query.get(userId) ?? null)) as UserKeys;
      const live = devices.get(userId) ?? new Map<string, string | null>();
      for (const [deviceId, k] of Object.entries(keys.device_keys)) {
        if (!live.has(deviceId)) continue;
        const name = live.get(deviceId);
        device_keys[userId]![deviceId] = { ...k, unsigned: name ? { device_display_name: name } : {} };
      }
      if (keys.master_key) master_keys[userId] = keys.master_key;
      if (keys.self_signing_key) self_signing_keys[userId] = keys.self_signing_key;
      if (keys.user_signing_key) user_signing_keys[userId] = keys.user_signing_key;
    }),
  );

  await Promise.all(
    [...remote].map(async ([server, users]) => {
      try {
        const res = await queryRemoteKeys(c.env, server, Object.fromEntries(users.map((u) => [u, query.get(u) ?? []])), timeout);
        for (const u of users) {
          if (res.device_keys?.[u]) device_keys[u] = res.device_keys[u] as Record<string, JsonObject>;
          if (isObject(res.master_keys?.[u])) master_keys[u] = res.master_keys[u] as JsonObject;
          if (isObject(res.self_signing_keys?.[u])) self_signing_keys[u] = res.self_signing_keys[u] as JsonObject;
        }
      } catch (e) {
        if (!(e instanceof RemoteUnavailable)) console.warn(`keys/query to ${server} failed`, e);
        failures[server] = unreachable(e);
      }
    }),
  );

  // Signatures the viewer made of other users' master keys (with their user-signing key) are visible to them only.
  const targets: [string, string][] = [];
  for (const [u, key] of Object.entries(master_keys)) {
    const pub = u === viewer ? undefined : masterPublicKey(key, u);
    if (pub) targets.push([u, pub]);
  }
  if (targets.length > 0) {
    const mine = JSON.parse(await userStub(c, viewer).keySignaturesByMe(targets)) as Record<string, Record<string, string>>;
    for (const [u, sigs] of Object.entries(mine)) {
      const key = master_keys[u]!;
      const signatures = isObject(key.signatures) ? { ...key.signatures } : {};
      signatures[viewer] = { ...(isObject(signatures[viewer]) ? signatures[viewer] : {}), ...sigs };
      master_keys[u] = { ...key, signatures };
    }
  }

  return c.json({ device_keys, master_keys, self_signing_keys, user_signing_keys, failures });
});

// ---------------------------------------------------------------------------------------------------------
// POST /keys/claim

keyRoutes.post("/keys/claim", async (c) => {
  const body = await readJsonObject(c);
  const req = body.one_time_keys;
  if (req === undefined) throw missingParam("Missing 'one_time_keys'");
  if (!isObject(req)) throw badJson("one_time_keys must be an object");
  const wanted = new Map<string, Record<string, string>>();
  for (const [user, devices] of Object.entries(req)) {
    if (!isValidUserId(user)) throw invalidParam(`${JSON.stringify(user)} is not a user ID`);
    if (!isObject(devices) || !Object.values(devices).every((a) => typeof a === "string")) {
      throw badJson(`one_time_keys.${user} must map device IDs to algorithms`);
    }
    wanted.set(user, devices as Record<string, string>);
  }
  const timeout = timeoutOf(body);
  const { local, remote } = partition(c, wanted.keys());
  const one_time_keys: Record<string, Record<string, Record<string, unknown>>> = {};
  const failures: Record<string, unknown> = {};

  const existing = await existingUsers(c, local);
  await Promise.all(
    local.filter((u) => existing.has(u)).map(async (userId) => {
      const requests = Object.entries(wanted.get(userId)!).map(([device_id, algorithm]) => ({ device_id, algorithm }));
      for (const k of await userStub(c, userId).claimKeys(requests)) {
        ((one_time_keys[userId] ??= {})[k.device_id] ??= {})[k.key_id] = JSON.parse(k.json) as unknown;
      }
    }),
  );
  await Promise.all(
    [...remote].map(async ([server, users]) => {
      try {
        const res = await claimRemoteKeys(c.env, server, Object.fromEntries(users.map((u) => [u, wanted.get(u)!])), timeout);
        for (const u of users) if (res[u]) one_time_keys[u] = res[u];
      } catch (e) {
        if (!(e instanceof RemoteUnavailable)) console.warn(`keys/claim to ${server} failed`, e);
        failures[server] = unreachable(e);
      }
    }),
  );
  return c.json({ one_time_keys, failures });
});

// ---------------------------------------------------------------------------------------------------------
// GET /keys/changes

keyRoutes.get("/keys/changes", async (c) => {
  const userId = c.get("requester").userId;
  const fromToken = c.req.query("from");
  if (fromToken === undefined) throw missingParam("Missing 'from'");
  const from = parseSyncToken(fromToken);
  if (from === undefined) throw invalidParam("'from' is not a sync token");
  const user = userStub(c, userId);
  const toToken = c.req.query("to");
  let to: number;
  if (toToken === undefined || toToken === "") {
    to = await user.streamHead();
  } else {
    const parsed = parseSyncToken(toToken);
    if (parsed === undefined) throw invalidParam("'to' is not a sync token");
    to = parsed;
  }
  const delta = await user.deviceListChanges(from, to);
  return c.json({ changed: delta.changed, left: delta.left });
});

// ---------------------------------------------------------------------------------------------------------
// POST /keys/device_signing/upload

keyRoutes.post("/keys/device_signing/upload", async (c) => {
  const body = await readJsonObject(c);
  const requester = c.get("requester");
  const userId = requester.userId;
  const upload: CrossSigningUpload = {};
  for (const usage of CROSS_SIGNING_USAGES) {
    const key = body[CROSS_SIGNING_FIELDS[usage]];
    if (key === undefined || key === null) continue;
    checked(() => checkCrossSigningKey(key, userId, usage));
    upload[usage] = canonicalJson(key);
  }
  const { results } = await c.env.DB.prepare("SELECT device_id FROM devices WHERE user_id = ?").bind(userId).all<{ device_id: string }>();
  const deviceIds = results.map((r) => r.device_id);
  const user = userStub(c, userId);
  const uia = async () => requireUia(c, body, await reauthOptions(c, userId));

  // Application services are exempt from user-interactive auth (spec v1.17); a request that already carries
  // `auth` completes it first. Otherwise the UserDO decides, atomically with the write, whether auth is needed.
  let authenticated = requester.appserviceId !== undefined;
  if (!authenticated && body.auth !== undefined) {
    await uia();
    authenticated = true;
  }
  const result = unwrap(await user.uploadCrossSigningKeys(userId, upload, deviceIds, authenticated));
  if (result === "needs_auth") {
    await uia(); // throws the 401 that starts user-interactive auth
    unwrap(await user.uploadCrossSigningKeys(userId, upload, deviceIds, true));
  }
  return c.json({});
});

// ---------------------------------------------------------------------------------------------------------
// POST /keys/signatures/upload

keyRoutes.post("/keys/signatures/upload", async (c) => {
  const body = await readJsonObject(c);
  const userId = c.get("requester").userId;
  for (const [user, objects] of Object.entries(body)) {
    if (!isValidUserId(user)) throw invalidParam(`${JSON.stringify(user)} is not a user ID`);
    if (!isObject(objects) || !Object.values(objects).every(isObject)) throw badJson(`${user} must map key IDs to signed objects`);
  }
  // Other users' current master keys, which their signed copies must match.
  const own = getConfig(c.env).serverName;
  const masters: Record<string, JsonObject | null> = {};
  await Promise.all(
    Object.keys(body)
      .filter((u) => u !== userId)
      .map(async (u) => {
        // Remote users' master keys come from federation (not available yet: their signatures fail as unknown).
        const text = serverNameOf(u) === own ? await userStub(c, u).masterKey() : null;
        masters[u] = text === null ? null : (JSON.parse(text) as JsonObject);
      }),
  );
  const failures = JSON.parse(unwrap(await userStub(c, userId).uploadKeySignatures(userId, JSON.stringify(body), JSON.stringify(masters))));
  return c.json({ failures });
});
