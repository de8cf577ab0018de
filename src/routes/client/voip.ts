/**
 * GET /voip/turnServer: TURN credentials for calls.
 * https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3voipturnserver
 *
 * As Synapse: with TURN_SHARED_SECRET, time-limited credentials in the TURN REST API scheme coturn understands
 * (`use-auth-secret`): username `<expiry seconds>:<user ID>`, password base64(HMAC-SHA1(secret, username));
 * otherwise the fixed TURN_USERNAME / TURN_PASSWORD; with no TURN server configured, `{}` (clients then call
 * without TURN).
 */
import { Hono } from "hono";
import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";
import type { AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { getConfig, type TurnConfig } from "../../config";
import { encodeBase64 } from "../../protocol/base64";

export const voipRoutes = new Hono<AppEnv>();

/** Padded standard base64, as coturn compares it. */
function paddedBase64(bytes: Uint8Array): string {
  const s = encodeBase64(bytes);
  return s + "=".repeat((4 - (s.length % 4)) % 4);
}

export function turnCredentials(turn: TurnConfig, userId: string, now = Date.now()): Record<string, unknown> {
  if (turn.uris.length === 0) return {};
  const ttl = Math.floor(turn.userLifetimeMs / 1000);
  if (turn.sharedSecret) {
    const username = `${Math.floor((now + turn.userLifetimeMs) / 1000)}:${userId}`;
    const enc = new TextEncoder();
    const password = paddedBase64(hmac(sha1, enc.encode(turn.sharedSecret), enc.encode(username)));
    return { username, password, ttl, uris: turn.uris };
  }
  if (turn.username && turn.password) return { username: turn.username, password: turn.password, ttl, uris: turn.uris };
  return {};
}

voipRoutes.get("/voip/turnServer", requireAuth, (c) => c.json(turnCredentials(getConfig(c.env).turn, c.get("requester").userId)));
