/**
 * Device management: GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices.
 * https://spec.matrix.org/v1.19/client-server-api/#device-management
 *
 * Deleting needs user-interactive auth with the password (application services skip it). Deleting a device
 * revokes its tokens through `onDeviceDeleted` (src/accounts/lifecycle.ts). `last_seen_*` are kept up to date by
 * requireAuth (src/accounts/activity.ts), at most every few minutes per device.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { badJson, MatrixError, notFound } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { requireAuth } from "../../http/auth";
import { requireUia } from "../../http/uia";
import { optString } from "../../accounts/body";
import { createDevice, getDevice, listDevices, MAX_DEVICE_DISPLAY_NAME, setDeviceDisplayName } from "../../accounts/store";
import { deleteDevices } from "../../accounts/lifecycle";
import { reauthOptions } from "./account";

export const deviceRoutes = new Hono<AppEnv>();

deviceRoutes.use("/devices", requireAuth);
deviceRoutes.use("/devices/*", requireAuth);
deviceRoutes.use("/delete_devices", requireAuth);

deviceRoutes.get("/devices", async (c) => c.json({ devices: await listDevices(c.env.DB, c.get("requester").userId) }));

deviceRoutes.get("/devices/:deviceId", async (c) => {
  const device = await getDevice(c.env.DB, c.get("requester").userId, c.req.param("deviceId"));
  if (!device) throw notFound("Unknown device");
  return c.json(device);
});

deviceRoutes.put("/devices/:deviceId", async (c) => {
  const body = await readJsonObject(c);
  const requester = c.get("requester");
  const deviceId = c.req.param("deviceId");
  const displayName = optString(body, "display_name");
  if (displayName !== undefined && displayName.length > MAX_DEVICE_DISPLAY_NAME) {
    throw new MatrixError(400, "M_TOO_LARGE", `Device display name is too long (max ${MAX_DEVICE_DISPLAY_NAME})`);
  }
  const exists = (await getDevice(c.env.DB, requester.userId, deviceId)) !== null;
  if (!exists) {
    // Only application services may create devices this way (spec v1.17).
    if (!requester.appserviceId) throw notFound("Unknown device");
    const created = await createDevice(c.env.DB, requester.userId, deviceId, displayName ?? null);
    if (created) return c.json({}, 201);
  }
  if (displayName !== undefined) await setDeviceDisplayName(c.env.DB, requester.userId, deviceId, displayName);
  return c.json({});
});

deviceRoutes.delete("/devices/:deviceId", async (c) => {
  const body = await readJsonObject(c);
  const requester = c.get("requester");
  if (!requester.appserviceId) await requireUia(c, body, await reauthOptions(c, requester.userId));
  await deleteDevices(c.env, requester.userId, [c.req.param("deviceId")]);
  return c.json({});
});

deviceRoutes.post("/delete_devices", async (c) => {
  const body = await readJsonObject(c);
  const requester = c.get("requester");
  const devices = body.devices;
  if (devices === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'devices'");
  if (!Array.isArray(devices) || !devices.every((d) => typeof d === "string")) {
    throw badJson("'devices' must be an array of device IDs");
  }
  if (!requester.appserviceId) await requireUia(c, body, await reauthOptions(c, requester.userId));
  await deleteDevices(c.env, requester.userId, devices as string[]);
  return c.json({});
});
