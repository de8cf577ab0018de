/**
 * User-interactive authentication (https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api).
 *
 * An endpoint offers flows (ordered lists of stage types). A request without `auth` gets a 401 carrying the flows,
 * `params` and a new `session`; each request with `auth: {type, session, …}` attempts the next stage of some flow;
 * once every stage of one flow is completed the endpoint runs. Sessions live in D1 (`uia_sessions`) so every
 * isolate sees them; a session is bound to the method and path it started on and, on authenticated endpoints, to
 * the requesting user. Sessions expire UIA_SESSION_TTL_MS after creation. A completed session stays usable until
 * then, so a client that lost the response can retry and get the result (as the spec asks).
 *
 * Stages implemented: `m.login.dummy`, `m.login.password` (failed attempts are rate limited per account),
 * `m.login.registration_token` (src/accounts/registration-tokens.ts).
 */
import type { AppContext } from "./app";
import { badJson, forbidden, MatrixError } from "./errors";
import { randomId } from "../accounts/tokens";
import { checkPassword, identifiedUserId, passwordOf } from "../accounts/credentials";
import { claimRegistrationToken, TOKEN_PATTERN } from "../accounts/registration-tokens";
import { clientIp, rateLimit } from "./rate-limit";

export const UIA_SESSION_TTL_MS = 60 * 60_000;

export const LOGIN_DUMMY = "m.login.dummy";
export const LOGIN_PASSWORD = "m.login.password";
export const LOGIN_REGISTRATION_TOKEN = "m.login.registration_token";

/** The 401 that asks for (more) authentication. `errcode`/`error` appear only when a stage attempt failed. */
export class UiaRequired extends MatrixError {
  constructor(
    readonly response: { flows: { stages: string[] }[]; params: Record<string, unknown>; session: string; completed?: string[] },
    readonly failure?: MatrixError,
  ) {
    super(401, failure?.errcode ?? "M_FORBIDDEN", failure?.message ?? "User-interactive authentication required");
  }

  override body() {
    const out: Record<string, unknown> = { ...this.response };
    if (this.failure) {
      out.errcode = this.failure.errcode;
      out.error = this.failure.message;
    }
    return out as ReturnType<MatrixError["body"]>;
  }
}

export interface UiaOptions {
  /** The flows offered, each an ordered list of stage types. */
  flows: string[][];
  /** For authenticated endpoints: the user every stage must authenticate as (and who owns the session). */
  userId?: string;
  /** Per-stage parameters for the 401 body. */
  params?: Record<string, unknown>;
  /** Server-side data to store with a new session (called only when one is created). */
  newSessionData?: () => Promise<Record<string, unknown>> | Record<string, unknown>;
}

export interface UiaSession {
  id: string;
  completed: string[];
  /** Server-side data stored with the session (see {@link setUiaSessionData}). */
  data: Record<string, unknown>;
}

interface SessionRow {
  session_id: string;
  method: string;
  path: string;
  user_id: string | null;
  completed: string;
  data: string;
  created_ts: number;
}

/** The session ID a request body names in `auth.session`, if any. */
export function uiaSessionIdOf(body: Record<string, unknown>): string | undefined {
  const auth = body.auth;
  if (typeof auth !== "object" || auth === null) return undefined;
  const s = (auth as Record<string, unknown>).session;
  return typeof s === "string" ? s : undefined;
}

export async function loadUiaSession(c: AppContext, sessionId: string): Promise<UiaSession | undefined> {
  const row = await c.env.DB.prepare("SELECT * FROM uia_sessions WHERE session_id = ? AND created_ts > ?")
    .bind(sessionId, Date.now() - UIA_SESSION_TTL_MS)
    .first<SessionRow>();
  return row ? { id: row.session_id, completed: JSON.parse(row.completed), data: JSON.parse(row.data) } : undefined;
}

/** Merges `patch` into a session's server-side data. */
export async function setUiaSessionData(c: AppContext, sessionId: string, patch: Record<string, unknown>): Promise<void> {
  const session = await loadUiaSession(c, sessionId);
  if (!session) return;
  await c.env.DB.prepare("UPDATE uia_sessions SET data = ? WHERE session_id = ?")
    .bind(JSON.stringify({ ...session.data, ...patch }), sessionId)
    .run();
}

/**
 * Runs user-interactive authentication for this request. Returns the completed session when some flow is done;
 * otherwise throws {@link UiaRequired} (401) — or another error for requests that are wrong in themselves
 * (unknown session, session of another request or user).
 */
export async function requireUia(c: AppContext, body: Record<string, unknown>, opts: UiaOptions): Promise<UiaSession> {
  const auth = body.auth;
  if (auth !== undefined && (typeof auth !== "object" || auth === null || Array.isArray(auth))) {
    throw badJson("'auth' must be an object");
  }
  const authDict = (auth ?? {}) as Record<string, unknown>;
  if (authDict.session !== undefined && typeof authDict.session !== "string") throw badJson("'auth.session' must be a string");
  if (authDict.type !== undefined && typeof authDict.type !== "string") throw badJson("'auth.type' must be a string");

  const db = c.env.DB;
  const now = Date.now();
  const method = c.req.method;
  const path = c.req.path;
  let session: UiaSession;
  if (authDict.session === undefined) {
    const data = opts.newSessionData ? await opts.newSessionData() : {};
    session = { id: randomId(), completed: [], data };
    await db.batch([
      db.prepare("DELETE FROM uia_sessions WHERE created_ts <= ?").bind(now - UIA_SESSION_TTL_MS),
      db
        .prepare("INSERT INTO uia_sessions (session_id, method, path, user_id, data, created_ts) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(session.id, method, path, opts.userId ?? null, JSON.stringify(data), now),
    ]);
  } else {
    const row = await db
      .prepare("SELECT * FROM uia_sessions WHERE session_id = ? AND created_ts > ?")
      .bind(authDict.session, now - UIA_SESSION_TTL_MS)
      .first<SessionRow>();
    if (!row) throw new MatrixError(400, "M_UNKNOWN", "Unknown session ID");
    if (row.method !== method || row.path !== path) {
      throw forbidden("Requested operation has changed during the UI authentication session.");
    }
    if ((row.user_id ?? undefined) !== opts.userId) throw forbidden("This session belongs to another user");
    session = { id: row.session_id, completed: JSON.parse(row.completed), data: JSON.parse(row.data) };
  }

  const response = () => ({
    flows: opts.flows.map((stages) => ({ stages })),
    params: opts.params ?? {},
    session: session.id,
    ...(session.completed.length ? { completed: session.completed } : {}),
  });

  const isDone = () => opts.flows.some((f) => f.length === session.completed.length && f.every((s, i) => session.completed[i] === s));

  const type = authDict.type as string | undefined;
  if (type !== undefined && !session.completed.includes(type)) {
    // The stage must be the next one of some flow that the completed stages are a prefix of.
    const allowed = opts.flows.some(
      (f) => f.length > session.completed.length && session.completed.every((s, i) => f[i] === s) && f[session.completed.length] === type,
    );
    if (!allowed) {
      throw new UiaRequired(response(), new MatrixError(401, "M_UNRECOGNIZED", `Stage ${JSON.stringify(type)} is not expected now`));
    }
    const failure = await attemptStage(c, type, authDict, opts, session.id);
    if (failure) throw new UiaRequired(response(), failure);
    session.completed = [...session.completed, type];
    await db
      .prepare("UPDATE uia_sessions SET completed = ? WHERE session_id = ?")
      .bind(JSON.stringify(session.completed), session.id)
      .run();
  }
  if (!isDone()) throw new UiaRequired(response());
  return session;
}

/** Checks one stage; returns the error to show with the 401 when the attempt failed. */
async function attemptStage(
  c: AppContext,
  type: string,
  auth: Record<string, unknown>,
  opts: UiaOptions,
  sessionId: string,
): Promise<MatrixError | undefined> {
  switch (type) {
    case LOGIN_DUMMY:
      return undefined;
    case LOGIN_PASSWORD: {
      let userId: string;
      let password: string;
      try {
        userId = identifiedUserId(c.env, auth);
        password = passwordOf(auth);
      } catch (e) {
        if (e instanceof MatrixError) return e;
        throw e;
      }
      if (opts.userId !== undefined && userId.toLowerCase() !== opts.userId.toLowerCase()) {
        return forbidden("Authenticated as a different user than the one making the request");
      }
      const user = await checkPassword(c.env, opts.userId ?? userId, password);
      if (!user || user.deactivated) return forbidden("Invalid password");
      return undefined;
    }
    case LOGIN_REGISTRATION_TOKEN: {
      const token = auth.token;
      if (typeof token !== "string") return badJson("'auth.token' must be a string");
      await rateLimit(c, "registration_token", clientIp(c));
      if (!TOKEN_PATTERN.test(token) || !(await claimRegistrationToken(c.env, sessionId, token))) {
        return new MatrixError(401, "M_UNAUTHORIZED", "Invalid registration token");
      }
      return undefined;
    }
    default:
      return new MatrixError(401, "M_UNRECOGNIZED", `Unsupported stage type ${JSON.stringify(type)}`);
  }
}
