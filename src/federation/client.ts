/**
 * Outbound federation requests: resolve the destination (FEDERATION_OVERRIDES, then server discovery), sign the
 * request with our key (`Authorization: X-Matrix …`), send it through `federationFetch`, parse the JSON answer.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { getServerKeys } from "../server-keys";
import { federationFetch } from "./fetch";
import { resolveServerName, sharedDiscoveryCache, type DiscoveryCache } from "./discovery";
import { federationSettings } from "./settings";
import { signRequest } from "./x-matrix";

/** Default time allowed for a federation request. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Largest response body read (a `/state` answer for a big room is large). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** A request that did not produce a 2xx JSON answer. `status` is undefined for network errors and timeouts. */
export class FederationRequestError extends Error {
  override readonly name = "FederationRequestError";
  constructor(
    readonly destination: string,
    readonly status: number | undefined,
    message: string,
    readonly errcode?: string,
  ) {
    super(`${destination}: ${message}`);
  }
}

export interface RequestOptions {
  /** Sign with X-Matrix (default true; key endpoints are fetched unsigned). */
  signed?: boolean;
  timeoutMs?: number;
  /** Query parameters appended to the path (values are URL-encoded). */
  query?: Record<string, string | number | string[] | undefined>;
}

export class FederationClient {
  constructor(
    private readonly env: Env,
    private readonly discoveryCache: DiscoveryCache = sharedDiscoveryCache,
  ) {}

  get serverName(): string {
    return getConfig(this.env).serverName;
  }

  /**
   * Sends `method path` to `destination` with an optional JSON body and returns the parsed JSON response.
   * `path` starts with `/_matrix/` and has its path segments already encoded. Throws {@link FederationRequestError}.
   */
  async request<T = unknown>(
    destination: string,
    method: "GET" | "PUT" | "POST" | "DELETE",
    path: string,
    body?: unknown,
    opts: RequestOptions = {},
  ): Promise<T> {
    const res = await this.send(destination, method, path, body, opts, "application/json");
    const text = await readBody(res, destination);
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (res.status < 200 || res.status >= 300) {
      const err = parsed as { errcode?: unknown; error?: unknown } | undefined;
      const errcode = typeof err?.errcode === "string" ? err.errcode : undefined;
      const msg = typeof err?.error === "string" ? err.error : text.slice(0, 200);
      throw new FederationRequestError(destination, res.status, `${method} ${path}: ${res.status} ${errcode ?? ""} ${msg}`.trim(), errcode);
    }
    if (typeof parsed !== "object" || parsed === null) {
      throw new FederationRequestError(destination, res.status, `${method} ${path}: response is not a JSON object`);
    }
    return parsed as T;
  }

  /**
   * Sends `method path` to `destination` like {@link request} and returns the response as it is, whatever its
   * status (media downloads are multipart, not JSON). The caller reads or cancels the body. Throws
   * {@link FederationRequestError} only when no response arrived (discovery, network, timeout).
   */
  async send(
    destination: string,
    method: "GET" | "PUT" | "POST" | "DELETE",
    path: string,
    body?: unknown,
    opts: RequestOptions = {},
    accept = "*/*",
  ): Promise<Response> {
    const config = getConfig(this.env);
    const uri = path + queryString(opts.query);
    let resolved;
    try {
      resolved = await resolveServerName(destination, {
        fetch: federationFetch,
        dohUrl: federationSettings(this.env).dohUrl,
        overrides: config.federationOverrides,
        cache: this.discoveryCache,
        now: Date.now,
      });
    } catch (e) {
      throw new FederationRequestError(destination, undefined, (e as Error).message);
    }
    const headers: Record<string, string> = { accept };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    if (opts.signed !== false) {
      const key = (await getServerKeys(this.env)).current;
      headers.authorization = signRequest(
        { method, uri, origin: config.serverName, destination, ...(body !== undefined ? { content: body } : {}) },
        key,
      );
    }
    try {
      return await federationFetch(resolved.baseUrl + uri, {
        method,
        headers,
        body: payload,
        signal: AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      });
    } catch (e) {
      throw new FederationRequestError(destination, undefined, `${method} ${path} failed: ${(e as Error).message}`);
    }
  }
}

function queryString(query: RequestOptions["query"]): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v) params.append(k, item);
    else params.append(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

async function readBody(res: Response, destination: string): Promise<string> {
  const length = Number(res.headers.get("content-length") ?? "0");
  if (length > MAX_RESPONSE_BYTES) {
    await res.body?.cancel();
    throw new FederationRequestError(destination, res.status, `response of ${length} bytes is too large`);
  }
  const buf = await res.arrayBuffer();
  if (buf.byteLength > MAX_RESPONSE_BYTES) {
    throw new FederationRequestError(destination, res.status, `response of ${buf.byteLength} bytes is too large`);
  }
  return new TextDecoder().decode(buf);
}

/** Encodes one path segment (room IDs, event IDs, transaction IDs). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}
