/**
 * PUT /sendToDevice/{eventType}/{txnId} (https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging).
 * The sender's UserDO records the transaction (a repeated txnId is a no-op) and delivers to each recipient's
 * UserDO through its outbox; remote recipients go to the federation hook (src/e2ee/federation.ts). Messages reach
 * the recipient's /sync `to_device` and are deleted once that device syncs past them.
 */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, invalidParam, missingParam } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { isValidUserId } from "../../protocol/identifiers";
import { isObject } from "../../e2ee/keys";

export const toDeviceRoutes = new Hono<AppEnv>();

toDeviceRoutes.put("/sendToDevice/:eventType/:txnId", requireAuth, async (c) => {
  const { userId, deviceId } = c.get("requester");
  const eventType = c.req.param("eventType");
  const txnId = c.req.param("txnId");
  const body = await readJsonObject(c);
  if (body.messages === undefined) throw missingParam("Missing 'messages'");
  if (!isObject(body.messages)) throw badJson("messages must be an object");
  const byRecipient: Record<string, Record<string, string>> = {};
  for (const [recipient, devices] of Object.entries(body.messages)) {
    if (!isValidUserId(recipient)) throw invalidParam(`${JSON.stringify(recipient)} is not a user ID`);
    if (!isObject(devices)) throw badJson(`messages.${recipient} must map device IDs to contents`);
    const contents: Record<string, string> = {};
    for (const [device, content] of Object.entries(devices)) {
      if (!isObject(content)) throw badJson(`messages.${recipient}.${device} must be an object`);
      contents[device] = JSON.stringify(content);
    }
    if (Object.keys(contents).length > 0) byRecipient[recipient] = contents;
  }
  await c.env.USERS.get(c.env.USERS.idFromName(userId)).sendToDevice(userId, deviceId, txnId, eventType, byRecipient);
  return c.json({});
});
