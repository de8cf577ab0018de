/**
 * GET /sync (https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync). The work happens in
 * src/sync/sync.ts; this parses the query: `since`, `timeout`, `full_state`, `set_presence`, `filter` (an ID
 * stored with POST /user/{userId}/filter, or inline JSON starting with `{`).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam, MatrixError } from "../../http/errors";
import { parseFilter, type Filter } from "../../sync/filter";
import { parseSyncToken } from "../../sync/tokens";
import { runSync, SyncCancelled } from "../../sync/sync";
import { getConfig } from "../../config";

export const syncRoutes = new Hono<AppEnv>();

syncRoutes.use("/sync", requireAuth);

syncRoutes.get("/sync", async (c) => {
  const requester = c.get("requester");
  const q = (name: string) => c.req.query(name);

  const sinceRaw = q("since");
  let since: number | null = null;
  if (sinceRaw !== undefined && sinceRaw !== "") {
    const parsed = parseSyncToken(sinceRaw);
    if (parsed === undefined) throw invalidParam("Invalid 'since' token");
    since = parsed;
  }
  const timeoutRaw = q("timeout");
  let timeoutMs = 0;
  if (timeoutRaw !== undefined && timeoutRaw !== "") {
    if (!/^\d{1,12}$/.test(timeoutRaw)) throw invalidParam("'timeout' must be a non-negative integer");
    timeoutMs = Number(timeoutRaw);
  }
  const fullState = booleanParam(q("full_state"), "full_state");
  const presence = q("set_presence");
  // Presence (docs/presence.md): online (the default) or unavailable sets the user's presence while syncing;
  // offline leaves it alone.
  if (presence !== undefined && !["online", "offline", "unavailable"].includes(presence)) {
    throw invalidParam("'set_presence' must be one of online, offline, unavailable");
  }
  const filter = await loadFilter(c, q("filter"));

  try {
    const body = await runSync(
      c.env,
      requester,
      { since, timeoutMs, fullState, filter, setPresence: getConfig(c.env).presenceEnabled ? (presence ?? "online") : "offline" },
      c.req.raw.signal,
      (p) => c.executionCtx.waitUntil(p),
    );
    return c.json(body);
  } catch (e) {
    // The client is gone: nobody reads this answer.
    if (e instanceof SyncCancelled) return new Response(null, { status: 499 });
    throw e;
  }
});

function booleanParam(v: string | undefined, name: string): boolean {
  if (v === undefined || v === "" || v === "false") return false;
  if (v === "true") return true;
  throw invalidParam(`'${name}' must be true or false`);
}

/** The filter of a /sync: inline JSON or the ID of a stored filter. */
async function loadFilter(c: AppContext, raw: string | undefined): Promise<Filter> {
  if (raw === undefined || raw === "") return {};
  if (raw.trimStart().startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw invalidParam("'filter' is not valid JSON");
    }
    return parseFilter(value);
  }
  const user = c.env.USERS.get(c.env.USERS.idFromName(c.get("requester").userId));
  const stored = await user.getFilter(raw);
  if (stored === null) throw new MatrixError(400, "M_INVALID_PARAM", `No such filter: ${raw}`);
  return JSON.parse(stored) as Filter;
}
