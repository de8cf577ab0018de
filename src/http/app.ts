/**
 * The Hono application shell shared by every route group: CORS, Matrix-shaped errors, 404 `M_UNRECOGNIZED` for
 * unknown endpoints and 405 for a known endpoint called with the wrong method.
 */
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import { PatternRouter } from "hono/router/pattern-router";
import type { Env } from "../env";
import { ConfigError } from "../config";
import { MatrixError, methodNotAllowed, unknown, unrecognized } from "./errors";

/** Who made an authenticated client request (set by `requireAuth`). */
export interface Requester {
  userId: string;
  deviceId: string;
  isGuest: boolean;
  /** The application service acting, when authenticated with an `as_token`. */
  appserviceId?: string;
  /** Application services: `?ts=` timestamp massaging (origin_server_ts of events sent with /send and /state). */
  timestamp?: number;
}

/** `origin`: the server that signed a federation request (set by src/routes/federation/auth.ts). */
export type AppEnv = { Bindings: Env; Variables: { requester: Requester; origin: string } };
export type AppContext = Context<AppEnv>;

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] as const;

export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  // The client-server spec asks for these headers on every response so that web clients work from any origin.
  app.use(
    "*",
    cors({
      origin: "*",
      allowMethods: ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
      allowHeaders: ["X-Requested-With", "Content-Type", "Authorization"],
      maxAge: 86400,
    }),
  );

  app.onError((err, c) => {
    if (err instanceof MatrixError) return err.toResponse(c.res?.headers);
    if (err instanceof ConfigError) {
      console.error(err.message);
      return unknown(err.message).toResponse();
    }
    console.error("unhandled error", c.req.method, c.req.path, err);
    return unknown("Internal server error").toResponse();
  });

  let methodRouter: PatternRouter<true> | undefined;
  app.notFound((c) => {
    // Built on first miss, after every route is registered.
    methodRouter ??= routerOf(app);
    const path = c.req.path;
    const knownElsewhere = METHODS.some((m) => m !== c.req.method && methodRouter!.match(m, path)[0].length > 0);
    return (knownElsewhere ? methodNotAllowed() : unrecognized()).toResponse();
  });

  return app;
}

function routerOf(app: Hono<AppEnv>): PatternRouter<true> {
  const router = new PatternRouter<true>();
  for (const route of app.routes) {
    if (route.method !== "ALL") router.add(route.method, route.path, true);
  }
  return router;
}
