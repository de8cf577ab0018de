/**
 * Activity for presence (docs/presence.md): a local user who sends an event (message, state, redaction), starts
 * typing, or sends a receipt or read markers is active — last active now, and back online if they were
 * unavailable. Mounted once on the client API (src/index.ts): after a successful request of that kind, the
 * user's UserDO is told in the background (the response never waits). Requests made by an application service
 * (as its users) do not count.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../http/app";
import { getConfig } from "../config";

const ACTIVE = [
  { method: "PUT", path: /^\/_matrix\/client\/(?:v3|r0)\/rooms\/[^/]+\/(?:send|state|redact)\// },
  { method: "PUT", path: /^\/_matrix\/client\/(?:v3|r0)\/rooms\/[^/]+\/typing\//, typing: true },
  { method: "POST", path: /^\/_matrix\/client\/(?:v3|r0)\/rooms\/[^/]+\/(?:receipt\/|read_markers$)/ },
] as const;

export const presenceActivity: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  if (c.res.status !== 200) return;
  const method = c.req.method;
  const path = new URL(c.req.url).pathname;
  const rule = ACTIVE.find((r) => r.method === method && r.path.test(path));
  if (!rule) return;
  const requester = c.get("requester") as AppEnv["Variables"]["requester"] | undefined;
  if (!requester || requester.appserviceId !== undefined || !getConfig(c.env).presenceEnabled) return;
  if ("typing" in rule) {
    // Only starting to type counts (the body was already read by the route: it is cached).
    const body = await c.req.json<{ typing?: unknown }>().catch(() => undefined);
    if (body?.typing !== true) return;
  }
  const user = c.env.USERS.get(c.env.USERS.idFromName(requester.userId));
  c.executionCtx.waitUntil(user.presenceActive().catch((e: unknown) => console.warn(`presence: activity of ${requester.userId}: ${String((e as Error)?.message ?? e)}`)));
};
