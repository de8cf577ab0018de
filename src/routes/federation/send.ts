/** https://spec.matrix.org/v1.19/server-server-api/#put_matrixfederationv1sendtxnid */
import { Hono } from "hono";
import type { AppEnv } from "../../http/app";
import { readJsonObject } from "../../http/json";
import { receiveTransaction } from "../../federation/inbound";
import { MAX_FEDERATION_BODY_BYTES } from "./auth";

export const federationSend = new Hono<AppEnv>();

federationSend.put("/_matrix/federation/v1/send/:txnId", async (c) => {
  const body = await readJsonObject(c, MAX_FEDERATION_BODY_BYTES);
  return c.json(await receiveTransaction(c.env, c.get("origin"), c.req.param("txnId"), body));
});
