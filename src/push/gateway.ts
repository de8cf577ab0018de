/**
 * Requests to push gateways (Push Gateway API, https://spec.matrix.org/v1.19/push-gateway-api/):
 * `POST <pusher data.url>` with `{"notification": …}`; the gateway answers `{"rejected": [pushkey, …]}`.
 *
 * Tests replace the transport with `setPushGatewayFetch` (the Workers test pool runs the Durable Objects in the
 * test's isolate), so a fake gateway can fail, recover and record what it received without any network.
 */

export type PushGatewayFetch = (url: string, init: RequestInit) => Promise<Response>;

let transport: PushGatewayFetch | undefined;

/** Tests: route every request to push gateways through `f` (undefined: the real `fetch`). */
export function setPushGatewayFetch(f: PushGatewayFetch | undefined): void {
  transport = f;
}

/** How long one request to a gateway may take before it counts as failed (and is retried). */
export const GATEWAY_TIMEOUT_MS = 15_000;

export type GatewayOutcome = { ok: true; rejected: string[] } | { ok: false; error: string };

/**
 * Posts one notification. Any 2xx answer is a success (its `rejected` list, if any, returned); anything else —
 * a network error, a timeout, a non-2xx status — is a failure to retry later, as the reference server treats it.
 * The timer is cleared once the answer is read, so no timer outlives the request.
 */
export async function postToGateway(url: string, notification: unknown): Promise<GatewayOutcome> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), GATEWAY_TIMEOUT_MS);
  try {
    const init: RequestInit = {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ notification }),
      signal: controller.signal,
    };
    const res = await (transport ?? ((u: string, i: RequestInit) => fetch(u, i)))(url, init);
    const text = await res.text();
    if (res.status < 200 || res.status >= 300) return { ok: false, error: `HTTP ${res.status}: ${text.slice(0, 200)}` };
    let rejected: string[] = [];
    try {
      const body = JSON.parse(text) as { rejected?: unknown };
      if (Array.isArray(body?.rejected)) rejected = body.rejected.filter((k): k is string => typeof k === "string");
    } catch {
      // A 2xx without a JSON body: delivered, nothing rejected.
    }
    return { ok: true, rejected };
  } catch (e) {
    return { ok: false, error: String((e as Error)?.message ?? e).slice(0, 200) };
  } finally {
    clearTimeout(timer);
  }
}
