/**
 * Requests from the homeserver to an application service: `Authorization: Bearer <hs_token>` (spec v1.4+), and
 * the legacy `?access_token=` only when the registration asks for it (`legacy_access_token_query: true`).
 *
 * Tests replace the transport with `setAppserviceFetch` (the Workers test pool runs the Durable Objects in the
 * test's isolate), so a test appservice can fail, recover and record what it received without any network.
 */
import type { AppService } from "./registration";

export type AppserviceFetch = (url: string, init: RequestInit) => Promise<Response>;

let transport: AppserviceFetch | undefined;

/** Tests: route every request to appservices through `f` (undefined: the real `fetch`). */
export function setAppserviceFetch(f: AppserviceFetch | undefined): void {
  transport = f;
}

export interface AppserviceRequest {
  method: "GET" | "PUT" | "POST";
  /** Path under the appservice URL, e.g. `/_matrix/app/v1/transactions/1`. Already encoded. */
  path: string;
  query?: Record<string, string | string[]>;
  body?: unknown;
  timeoutMs: number;
}

/** The URL a request goes to (without the legacy token). */
export function appserviceUrl(as: AppService, path: string, query?: Record<string, string | string[]>): string {
  if (as.url === null) throw new Error(`appservice ${as.id} has no url`);
  const url = new URL(as.url + path);
  for (const [k, v] of Object.entries(query ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  return url.toString();
}

/** What the appservice answered: the status and the whole body as text. */
export interface AppserviceResponse {
  status: number;
  ok: boolean;
  text: string;
}

/**
 * Sends one request to the appservice and reads the whole answer. Network failures and timeouts throw (a
 * timeout as an Error named "TimeoutError"); any HTTP status is returned. The timer is cleared as soon as the
 * answer is read, so no timer outlives the request (a Durable Object with a pending timer stays busy).
 */
export async function callAppservice(as: AppService, req: AppserviceRequest): Promise<AppserviceResponse> {
  const url = new URL(appserviceUrl(as, req.path, req.query));
  if (as.legacyAccessTokenQuery) url.searchParams.set("access_token", as.hsToken);
  const headers: Record<string, string> = { authorization: `Bearer ${as.hsToken}` };
  let body: string | undefined;
  if (req.body !== undefined) {
    body = JSON.stringify(req.body);
    headers["content-type"] = "application/json";
  }
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  try {
    const res = await (transport ?? fetch)(url.toString(), { method: req.method, headers, body, signal: controller.signal });
    const text = await res.text();
    return { status: res.status, ok: res.ok, text };
  } catch (e) {
    if (timedOut) {
      const err = new Error(`appservice ${as.id}: no answer within ${req.timeoutMs} ms`);
      err.name = "TimeoutError";
      throw err;
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
