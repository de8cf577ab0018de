/**
 * Device lists and keys of our users, for other servers: `GET /_matrix/federation/v1/user/devices/{userId}`,
 * `POST /user/keys/query`, `POST /user/keys/claim`. https://spec.matrix.org/v1.19/server-server-api/#device-management
 * Keys come from each user's UserDO (durable-objects/user/keys.ts); devices and display names from D1.
 *
 * `stream_id` is the user's sync-stream position: it only grows, and every device-list change moves it. Our
 * `m.device_list_update` EDUs carry the same number and no `prev_id`, so receivers resync with this endpoint.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import type { Env } from "../../env";
import { readJsonObject } from "../../http/json";
import { badJson, invalidParam, notFound } from "../../http/errors";
import { getConfig } from "../../config";
import { isValidUserId, serverNameOf } from "../../protocol/identifiers";
import { keysForServer, localDevices } from "../../federation/user-keys";
import { userIdParam } from "./common";

function userStub(env: Env, userId: string) {
  return env.USERS.get(env.USERS.idFromName(userId));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}


export const federationUser = new Hono<AppEnv>();

federationUser.get("/_matrix/federation/v1/user/devices/:userId", async (c) => {
  const userId = userIdParam(c);
  if (serverNameOf(userId) !== getConfig(c.env).serverName) throw invalidParam(`${userId} is not a user of this server`);
  const devices = await localDevices(c.env, userId);
  if (!devices) throw notFound(`Unknown user ${userId}`);
  const keys = await keysForServer(c.env, userId, devices, null);
  const body: Record<string, unknown> = {
    user_id: userId,
    stream_id: await userStub(c.env, userId).streamHead(),
    devices: [...devices].map(([device_id, name]) => ({
      device_id,
      ...(keys.device_keys[device_id] ? { keys: keys.device_keys[device_id] } : {}),
      ...(name ? { device_display_name: name } : {}),
    })),
  };
  if (keys.master_key) body.master_key = keys.master_key;
  if (keys.self_signing_key) body.self_signing_key = keys.self_signing_key;
  return c.json(body);
});

federationUser.post("/_matrix/federation/v1/user/keys/query", async (c) => {
  const body = await readJsonObject(c);
  if (!isObject(body.device_keys)) throw badJson("'device_keys' must be an object");
  const ours = getConfig(c.env).serverName;
  const device_keys: Record<string, Record<string, unknown>> = {};
  const master_keys: Record<string, unknown> = {};
  const self_signing_keys: Record<string, unknown> = {};
  await Promise.all(
    Object.entries(body.device_keys).slice(0, 1000).map(async ([userId, wanted]) => {
      if (!isValidUserId(userId) || serverNameOf(userId) !== ours) return;
      if (wanted !== null && (!Array.isArray(wanted) || !wanted.every((d) => typeof d === "string"))) return;
      const devices = await localDevices(c.env, userId);
      device_keys[userId] = {};
      if (!devices) return;
      const ids = Array.isArray(wanted) && wanted.length > 0 ? (wanted as string[]) : null;
      const keys = await keysForServer(c.env, userId, devices, ids);
      for (const [id, k] of Object.entries(keys.device_keys)) {
        const name = devices.get(id);
        device_keys[userId]![id] = { ...k, unsigned: name ? { device_display_name: name } : {} };
      }
      if (keys.master_key) master_keys[userId] = keys.master_key;
      if (keys.self_signing_key) self_signing_keys[userId] = keys.self_signing_key;
    }),
  );
  return c.json({ device_keys, master_keys, self_signing_keys });
});

federationUser.post("/_matrix/federation/v1/user/keys/claim", async (c) => {
  const body = await readJsonObject(c);
  if (!isObject(body.one_time_keys)) throw badJson("'one_time_keys' must be an object");
  const ours = getConfig(c.env).serverName;
  const one_time_keys: Record<string, Record<string, Record<string, unknown>>> = {};
  await Promise.all(
    Object.entries(body.one_time_keys).slice(0, 1000).map(async ([userId, wanted]) => {
      if (!isValidUserId(userId) || serverNameOf(userId) !== ours || !isObject(wanted)) return;
      if (!Object.values(wanted).every((a) => typeof a === "string")) return;
      const devices = await localDevices(c.env, userId);
      if (!devices) return;
      const requests = Object.entries(wanted as Record<string, string>)
        .filter(([deviceId]) => devices.has(deviceId))
        .map(([device_id, algorithm]) => ({ device_id, algorithm }));
      if (requests.length === 0) return;
      for (const k of await userStub(c.env, userId).claimKeys(requests)) {
        ((one_time_keys[userId] ??= {})[k.device_id] ??= {})[k.key_id] = JSON.parse(k.json) as unknown;
      }
    }),
  );
  return c.json({ one_time_keys });
});
